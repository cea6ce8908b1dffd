"""The demo city's service catalog (services/data/catalog.yaml), published at demo start, and
the demo applications, one in every state an application and its items can be in.

Catalog: idempotent: every item and bundle goes through the same checks as an administrator's
edit, and an item equal to its current version is not a change, so seeding at every start adds
no versions; an edited YAML file publishes the edited entries as their next versions.

Applications (`seed_applications`): made through the same functions the routes call (drafts,
documents through the blob store, counter intake, the officers' and supervisors' workflow
actions, payments through the development provider, ratings), so every row agrees with its
workflow history, its documents, certificates and events. Idempotent by one rule: they are
seeded once, when the demo citizen `citizen1` has no application at all; anything they already
have (seeded earlier, or made by someone trying the demo) is left alone.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Literal

import msgspec
import yaml

from identity.api import Principal, RoleGrant, contact_details, role_holders, unit_path
from onewindow.db import Connection
from onewindow.settings import Settings
from onewindow.storage import BlobStore
from services import (
    api as services_api,
)
from services import (
    application_store,
    applications,
    catalog,
    certificates,
    counter,
    documents,
    payments,
    ratings,
)
from services.application_store import ApplicationItemRow, ApplicationRow
from services.counter import Decision, MissingEntry, PendingEntry
from services.documents_http import document_store
from workflows import api as workflows

__all__ = [
    "DEMO_APPLICANT",
    "SEEDED_BY",
    "DemoCatalog",
    "DemoPeople",
    "demo_catalog",
    "demo_pdf",
    "demo_people",
    "demo_png",
    "principal_of",
    "seed_applications",
    "seed_catalog",
]

SEEDED_BY = "demo-seed"


@dataclass(frozen=True, slots=True)
class DemoCatalog:
    items: list[catalog.Item]
    bundles: list[catalog.Bundle]


def demo_catalog() -> DemoCatalog:
    """The catalog as written in services/data/catalog.yaml (the `fields` and `media` sections
    only hold the YAML anchors the items share)."""
    text = resources.files("services").joinpath("data", "catalog.yaml").read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return DemoCatalog(
        items=msgspec.convert(document.get("items") or [], list[catalog.Item]),
        bundles=msgspec.convert(document.get("bundles") or [], list[catalog.Bundle]),
    )


async def seed_catalog(conn: Connection, settings: Settings) -> DemoCatalog:
    """Publish the demo catalog (the departments must exist: identity's demo seed runs first).
    Returns what is published now. `settings` is taken for the demo's seeding signature; the
    catalog itself needs none."""
    del settings
    demo = demo_catalog()
    now = workflows.now()
    items = [
        await catalog.publish_item(conn, item, by=SEEDED_BY, now=now, note="demo catalog")
        for item in demo.items
    ]
    bundles = [
        await catalog.publish_bundle(conn, bundle, by=SEEDED_BY, now=now, note="demo catalog")
        for bundle in demo.bundles
    ]
    return DemoCatalog(items=items, bundles=bundles)


# --- the demo applications -------------------------------------------------------------------------

DEMO_APPLICANT = "citizen1"
SUBSTANTIAL = catalog.ASSURANCE_LEVELS["substantial"]
HIGH = catalog.ASSURANCE_LEVELS["high"]
# identity's demo accounts have the e-mail <username>@demo.onewindow.invalid (identity/seed.py);
# services reaches identity only through identity.api, which finds people by role and unit.
_DEMO_EMAIL = "{}@demo.onewindow.invalid"
_REVIEWING = ("market", "fire", "urban", "water", "health", "housing", "planning")


@dataclass(frozen=True, slots=True)
class DemoPeople:
    """identity's demo accounts the applications need, as the workflow engine sees them."""

    citizen: workflows.Actor
    clerk: workflows.Actor
    officers: dict[str, workflows.Actor]  # department code -> its officer
    supervisors: dict[str, workflows.Actor]  # department code -> its supervisor


async def _demo_person(
    conn: Connection, settings: Settings, username: str, role: str, unit: str
) -> workflows.Actor:
    path = await unit_path(conn, unit)
    if path is None:
        raise RuntimeError(f"the demo unit {unit!r} is missing: identity's demo seed runs first")
    for subject in await role_holders(conn, role, within=path):
        contact = await contact_details(conn, settings, subject)
        if contact is not None and contact.email == _DEMO_EMAIL.format(username):
            grant = RoleGrant(role=role, unit=unit, path=path)
            return workflows.Actor(subject=subject, kind="person", roles=(grant,), name=contact.name)
    raise RuntimeError(
        f"the demo account {username!r} ({role} in {unit}) is missing: identity's demo seed runs first"
    )


async def demo_people(conn: Connection, settings: Settings) -> DemoPeople:
    """citizen1, clerk1 and each reviewing department's officer and supervisor (identity/seed.py)."""
    officer_of = {
        "market": "officer1",
        "fire": "officer2",
        "urban": "officer3",
        "water": "officer4",
        "health": "officer5",
        "housing": "officer6",
        "planning": "officer7",
    }
    return DemoPeople(
        citizen=await _demo_person(conn, settings, DEMO_APPLICANT, "citizen", "demo"),
        clerk=await _demo_person(conn, settings, "clerk1", "clerk", "bureau"),
        officers={d: await _demo_person(conn, settings, officer_of[d], "officer", d) for d in _REVIEWING},
        supervisors={
            d: await _demo_person(conn, settings, f"supervisor-{d}", "supervisor", d) for d in _REVIEWING
        },
    )


def principal_of(actor: workflows.Actor, *, acr: str) -> Principal:
    """The principal a signed-in demo person would have (for the functions that take one)."""
    staff = any(grant.role != "citizen" for grant in actor.roles)
    return Principal(
        subject=actor.subject,
        client_id="console" if staff else "citizen-app",
        kind="person",
        scopes=frozenset({"openid", "profile", "staff"} if staff else {"openid", "profile"}),
        roles=actor.roles,
        acr=acr,
        name=actor.name,
    )


def demo_pdf(title: str) -> bytes:
    """A small but well-formed one-page PDF saying `title` (ASCII), with a correct xref table."""
    text = (
        title.encode("ascii", "replace").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    )
    stream = b"BT /F1 14 Tf 56 780 Td (" + text + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def demo_png(rgb: tuple[int, int, int]) -> bytes:
    """A well-formed 8x8 PNG of one colour (a stand-in photo)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * 8
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * 8))
        + chunk(b"IEND", b"")
    )


@dataclass(slots=True)
class _Seeding:
    """One run of the demo applications: the connection, the time, the people and the blob store."""

    conn: Connection
    settings: Settings
    people: DemoPeople
    store: BlobStore
    examples: dict[str, dict[str, Any]]

    @property
    def now(self) -> datetime:
        """The engine's time at each step (the engine stamps its own steps with it too, and a
        certificate issued a moment ago is valid from then on)."""
        return workflows.now()

    def form(self, *codes: str, **changes: Any) -> dict[str, Any]:
        """The catalog's example forms of `codes` merged (a bundle's form), with `changes`."""
        merged: dict[str, Any] = {}
        for code in codes:
            merged |= self.examples[code]
        return merged | changes

    async def draft(
        self,
        *,
        item: str | None = None,
        bundle: str | None = None,
        form: dict[str, Any],
        channel: Literal["online", "app", "counter"] = "online",
        finish_at_counter: bool = False,
    ) -> ApplicationRow:
        by = self.people.clerk if channel == "counter" else self.people.citizen
        return await applications.create_draft(
            self.conn,
            applicant=self.people.citizen.subject,
            created_by=by.subject,
            channel=channel,
            item_code=item,
            bundle_code=bundle,
            form=form,
            finish_at_counter=finish_at_counter,
            now=self.now,
        )

    async def supply(
        self, app: ApplicationRow, *, skip: Sequence[str] = (), by: workflows.Actor | None = None
    ) -> None:
        """Upload a small real file for every entry of the checklist (not the optional ones,
        not `skip`), as the applicant (or the clerk at the counter)."""
        who = by or self.people.citizen
        for entry in await documents.requirements_of(self.conn, app):
            if entry.optional or entry.code in skip:
                continue
            if "application/pdf" in entry.media_types:
                content, filename = demo_pdf(f"{entry.name.en} (demo)"), f"{entry.code}.pdf"
            else:
                shade = sum(map(ord, entry.code)) % 200
                content, filename = demo_png((shade, 120, 200 - shade)), f"{entry.code}.png"
            await documents.supply(
                self.conn,
                self.store,
                app,
                entry.code,
                filename=filename,
                content=content,
                declared_type=None,
                limit=self.settings.document_max_bytes,
                by=who.subject,
                now=self.now,
            )

    async def submit(self, app: ApplicationRow) -> ApplicationRow:
        return await applications.submit(
            self.conn,
            app.id,
            actor=self.people.citizen,
            acr=SUBSTANTIAL,
            now=self.now,
            settings=self.settings,
        )

    async def submitted(self, **draft: Any) -> ApplicationRow:
        """A draft with its documents, submitted online."""
        app = await self.draft(**draft)
        await self.supply(app)
        return await self.submit(app)

    async def item_row(self, app: ApplicationRow, code: str) -> ApplicationItemRow:
        return next(row for row in await applications.items_of(self.conn, app.id) if row.item_code == code)

    async def act(
        self,
        app: ApplicationRow,
        code: str,
        actor: workflows.Actor,
        action: str,
        *,
        state: str = "review",
        comment: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """`actor` takes the open task `state` of the item `code` from the queue and acts on it."""
        row = await self.item_row(app, code)
        instance = await workflows.instance_for_subject(self.conn, applications.KIND, str(row.id))
        if instance is None:
            raise RuntimeError(f"the item {code} of the demo application has no workflow instance")
        task = next(t for t in instance.open_tasks if t.state == state)
        await workflows.claim(self.conn, task.id, actor=actor)
        await workflows.act(self.conn, task.id, action=action, actor=actor, comment=comment, data=data)

    async def approve(
        self, app: ApplicationRow, code: str, department: str, *, two_step: bool = False
    ) -> None:
        await self.act(app, code, self.people.officers[department], "approve", comment="材料齐全，符合条件。")
        if two_step:
            await self.act(
                app, code, self.people.supervisors[department], "approve", state="signoff", comment="同意。"
            )

    async def pay(self, app: ApplicationRow, code: str) -> None:
        row = await self.item_row(app, code)
        await payments.pay(
            self.conn,
            app.id,
            row.id,
            payer=self.people.citizen.subject,
            provider=payments.DevelopmentProvider(),
            now=self.now,
        )

    async def certificate_of(self, app: ApplicationRow, code: str) -> str:
        row = await self.item_row(app, code)
        held = await certificates.held_by(self.conn, self.people.citizen.subject)
        return next(c.number for c in held if c.application_item_id == row.id)

    async def intake(self, app: ApplicationRow, decision: Decision, **fields: Any) -> None:
        await counter.intake(
            self.conn,
            self.settings,
            app.id,
            clerk=principal_of(self.people.clerk, acr=HIGH),
            decision=decision,
            pending=fields.get("pending", ()),
            missing=fields.get("missing", ()),
            note=fields.get("note"),
            now=self.now,
        )


async def seed_applications(conn: Connection, settings: Settings) -> None:
    """The demo applications of citizen1, one in every state (see the module's docstring for the
    idempotency rule). identity's, workflows' and the catalog's demo seeds run first."""
    people = await demo_people(conn, settings)
    if await application_store.applications_of(
        conn, people.citizen.subject, statuses=None, after=None, limit=1
    ):
        return
    await services_api.install(conn)  # the review definitions (installed at start-up too; idempotent)
    demo = demo_catalog()
    run = _Seeding(
        conn=conn,
        settings=settings,
        people=people,
        store=document_store(settings),
        examples={item.code: dict(item.form_schema["examples"][0]) for item in demo.items},
    )
    for scenario in _SCENARIOS:
        await scenario(run)


async def _draft(run: _Seeding) -> None:
    """Being written: the form filled in, no document yet."""
    await run.draft(item="birth-registration", form=run.form("birth-registration"), channel="app")


async def _waiting_for_intake(run: _Seeding) -> None:
    """A home sale's transfer (offered only at the counter, where buyer and seller show their
    identity documents): prepared online with the contracts uploaded, sent to be finished at the
    counter; it waits in the bureau's queue with its number, the property certificate and the tax
    receipt to be brought in person."""
    code = "second-hand-housing-transfer"
    app = await run.draft(item=code, form=run.form(code), finish_at_counter=True)
    await run.supply(app, skip=("property_certificate", "tax_receipt"))
    await applications.submit_to_counter(
        run.conn, app.id, applicant=run.people.citizen.subject, now=run.now, settings=run.settings
    )


async def _returned_at_the_counter(run: _Seeding) -> None:
    app = await run.draft(
        item="public-place-hygiene-licence", form=run.form("public-place-hygiene-licence"), channel="counter"
    )
    await run.supply(app, by=run.people.clerk, skip=("hygiene_inspection_report", "business_licence"))
    await run.intake(
        app,
        "return",
        missing=[
            MissingEntry(code="hygiene_inspection_report", detail="请携带有资质机构出具的卫生检测报告原件。"),
            MissingEntry(code="business_licence", detail="请提供营业执照副本。"),
        ],
        note="申请人未带齐材料，已一次性告知。",
    )


async def _accepted_with_a_document_pending(run: _Seeding) -> None:
    """容缺受理: the lease contract may follow; the clerk gives it five working days."""
    app = await run.draft(item="business-licence", form=run.form("business-licence"), channel="counter")
    await run.supply(app, by=run.people.clerk, skip=("lease_contract",))
    due = await workflows.deadline(run.conn, run.now, f"P{min(5, run.settings.pending_documents_max_days)}D")
    await run.intake(
        app,
        "accept_pending",
        pending=[PendingEntry(code="lease_contract", due=due)],
        note="租赁合同容缺受理。",
    )


async def _in_review(run: _Seeding) -> None:
    await run.submitted(
        item="special-equipment-registration", form=run.form("special-equipment-registration")
    )


async def _restaurant_in_review(run: _Seeding) -> None:
    """The one-thing bundle: four departments in parallel; the market has approved already."""
    app = await run.submitted(bundle="open-restaurant", form=run.form(*_RESTAURANT))
    await run.approve(app, "business-licence", "market")


async def _needs_correction(run: _Seeding) -> None:
    app = await run.submitted(
        item="medical-institution-registration", form=run.form("medical-institution-registration")
    )
    await run.act(
        app,
        "medical-institution-registration",
        run.people.officers["health"],
        "return",
        comment="平面布局图缺少诊室面积标注，医师执业证书需加盖执业机构变更记录。",
        data={
            "missing": [
                {"code": "floor_plan", "detail": "平面布局图请标注每间诊室的面积。"},
                {"code": "physician_licences", "detail": "医师执业证书需包含执业地点变更页。"},
            ]
        },
    )


async def _awaiting_payment(run: _Seeding) -> None:
    app = await run.submitted(item="temporary-street-stall", form=run.form("temporary-street-stall"))
    await run.approve(app, "temporary-street-stall", "urban")


async def _approved_paid_and_handed_over(run: _Seeding) -> None:
    """A fee paid through the development provider, then the certificate collected at the counter."""
    app = await run.submitted(item="road-excavation-permit", form=run.form("road-excavation-permit"))
    await run.approve(app, "road-excavation-permit", "urban")
    await run.pay(app, "road-excavation-permit")
    number = await run.certificate_of(app, "road-excavation-permit")
    await certificates.hand_over(
        run.conn, principal_of(run.people.clerk, acr=HIGH), number, note="申请人本人领取。", now=run.now
    )


async def _rejected(run: _Seeding) -> None:
    app = await run.submitted(item="water-abstraction-permit", form=run.form("water-abstraction-permit"))
    await run.act(
        app,
        "water-abstraction-permit",
        run.people.officers["water"],
        "reject",
        comment="取水口位于饮用水水源保护区内，依法不予许可。",
    )


async def _partly_approved(run: _Seeding) -> None:
    """Start building: planning and drainage approved, the construction work permit refused."""
    app = await run.submitted(bundle="build-house", form=run.form(*_BUILD_HOUSE))
    await run.approve(app, "construction-planning-permit", "planning", two_step=True)
    await run.approve(app, "drainage-permit", "water")
    await run.act(
        app,
        "construction-work-permit",
        run.people.officers["housing"],
        "reject",
        comment="施工单位资质等级不满足该工程规模要求。",
    )


async def _withdrawn(run: _Seeding) -> None:
    app = await run.submitted(item="building-completion-filing", form=run.form("building-completion-filing"))
    await applications.withdraw(
        run.conn, app.id, actor=run.people.citizen, reason="验收资料需要重新整理，稍后再申请。", now=run.now
    )


async def _rated_five(run: _Seeding) -> None:
    app = await run.submitted(
        item="birth-registration",
        form=run.form("birth-registration", expected_or_birth_date="2026-06-18", child_order=2),
    )
    await run.approve(app, "birth-registration", "health")
    await ratings.rate(
        run.conn,
        principal_of(run.people.citizen, acr=SUBSTANTIAL),
        app.id,
        level=5,
        comment="全程网办，一天就办好了。",
        now=run.now,
    )


async def _rated_one(run: _Seeding) -> None:
    """A restaurant approved by all four departments, rated 1: each department's supervisor has a
    follow-up in their inbox. The fire and food items reuse the business licence certificate
    issued to citizen1 by the restaurant in review above."""
    form = run.form(*_RESTAURANT, business_name="滨江小馆二店", premises_address="滨江区江滨路120号")
    app = await run.draft(bundle="open-restaurant", form=form)
    licence = await run.certificate_of(
        await _latest(run, "open-restaurant", status="in_review"), "business-licence"
    )
    await documents.attach(
        run.conn,
        app.id,
        "business_licence",
        certificate_number=licence,
        by=run.people.citizen.subject,
        now=run.now,
    )
    await run.supply(app, skip=("business_licence",))
    app = await run.submit(app)
    await run.approve(app, "business-licence", "market")
    await run.approve(app, "food-operation-licence", "health", two_step=True)
    await run.approve(app, "fire-safety-inspection", "fire", two_step=True)
    await run.approve(app, "outdoor-signage-permit", "urban")
    await ratings.rate(
        run.conn,
        principal_of(run.people.citizen, acr=SUBSTANTIAL),
        app.id,
        level=1,
        comment="材料在几个部门之间来回要求补充，跑了三趟窗口。",
        now=run.now,
    )


async def _latest(run: _Seeding, bundle: str, *, status: str) -> ApplicationRow:
    found = await application_store.applications_of(
        run.conn, run.people.citizen.subject, statuses=[status], after=None, limit=50
    )
    return next(app for app in found if app.bundle_code == bundle)


_RESTAURANT = (
    "business-licence",
    "food-operation-licence",
    "fire-safety-inspection",
    "outdoor-signage-permit",
)
_BUILD_HOUSE = ("construction-planning-permit", "construction-work-permit", "drainage-permit")
_SCENARIOS: tuple[Callable[[_Seeding], Awaitable[None]], ...] = (
    _draft,
    _waiting_for_intake,
    _returned_at_the_counter,
    _accepted_with_a_document_pending,
    _in_review,
    _restaurant_in_review,
    _needs_correction,
    _awaiting_payment,
    _approved_paid_and_handed_over,
    _rejected,
    _partly_approved,
    _withdrawn,
    _rated_five,
    _rated_one,
)
