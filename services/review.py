"""An application's item as the workflow engine's subject (kind `application_item`).

The engine calls these hooks inside the transaction of every step, so an item's status, the
application's status, a certificate and the events are never out of step with the review:

- `context`: what conditions see as `subject` (the form, the item, its fee, the channel, the
  bundle), the department's unit (where `unit: owner` queues tasks) and the applicant (who
  acts on the wait states);
- `transitioned`: an action was taken. Answering a correction (`resubmit`, through whichever
  route) first checks the form and the checklist again (400, the step rolled back). Entering
  `correction` makes the item `needs_correction`
  (the reviewer's `data.missing` becomes the application's list of what to fix, and the
  applicant is told); the `fee` decision of an item with a fee leads to `payment`
  (`awaiting_payment`); coming back from a wait moves the promised date by the time spent
  waiting; an approval or a rejection records who decided and why;
- `ended`: the item is decided (approved, rejected, withdrawn) with its working days, paused
  time excluded, and whether the promise was kept. An approved item whose result is a
  certificate gets it now (services.certificates.issue). When the last item ends, the
  application is decided and `ApplicationDecided` is published.

The state names `correction`, `fee` and `payment` are those of services' definitions
(services/workflows/approval-*.yaml); an administrator's new version must keep them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from identity.api import unit_path
from onewindow import outbox
from onewindow.db import Connection
from services import application_store as store
from services import applications, catalog, certificates
from services.events import ApplicationDecided, ApplicationReturned, CertificateReady, ServiceName
from workflows import api as workflows

KIND = applications.KIND
_DECIDING_ACTIONS = frozenset({"approve", "reject"})


def _what_to_fix(data: dict[str, Any]) -> list[Any]:
    missing = data.get("missing")
    if isinstance(missing, list):
        return missing
    return [] if missing is None else [missing]


def _fix_text(entry: Any) -> str:
    """One line of what to fix, for a notification: the reviewer's words."""
    if isinstance(entry, dict):
        parts = [
            str(entry[k]) for k in ("field", "pointer", "code", "detail", "note", "what") if entry.get(k)
        ]
        return ": ".join(parts) if parts else str(entry)
    return str(entry)


class ItemKind:
    """`workflows.api.SubjectKind` for the items of applications."""

    name = KIND

    async def _item(self, conn: Connection, subject_id: str) -> store.ApplicationItemRow:
        try:
            found = await store.item(conn, UUID(subject_id))
        except ValueError:
            found = None
        if found is None:
            raise RuntimeError(f"no application item {subject_id}")
        return found

    async def context(self, conn: Connection, subject_id: str) -> workflows.SubjectContext:
        row = await self._item(conn, subject_id)
        app = await store.application(conn, row.application_id)
        if app is None:
            raise RuntimeError("invariant broken: an item without its application")
        return workflows.SubjectContext(
            data={
                "form": app.form,
                "item": row.item_code,
                "fee_minor": row.fee_minor,
                "channel": app.channel,
                "bundle": app.bundle_code,
            },
            owner_unit=await unit_path(conn, row.department),
            applicant=app.applicant,
        )

    async def transitioned(self, conn: Connection, transition: workflows.Transition) -> None:
        row = await self._item(conn, transition.subject_id)
        app = await store.application(conn, row.application_id, lock=True)
        if app is None:
            raise RuntimeError("invariant broken: an item without its application")
        if transition.from_state == applications.CORRECTION_STATE and transition.action == "resubmit":
            # However the correction is answered (applications.resubmit, or the task's own route),
            # the form and the checklist must be complete again: a 400 rolls the step back.
            await applications.check_complete(
                conn, app, await applications.catalog_items(conn, app), pending=None
            )
        if transition.action in _DECIDING_ACTIONS and transition.from_state not in applications.WAIT_STATES:
            await store.record_decider(
                conn,
                row.id,
                by=transition.actor,
                reason=transition.comment if transition.action == "reject" else None,
            )
        if transition.to_state == applications.CORRECTION_STATE:
            await self._returned(conn, app, row, transition)
        elif (
            transition.to_state in (applications.FEE_DECISION, applications.PAYMENT_STATE)
            and row.fee_minor > 0
        ):
            await store.set_item_status(conn, row.id, status="awaiting_payment")
        elif transition.from_state == applications.CORRECTION_STATE and transition.action == "resubmit":
            await store.set_item_status(
                conn, row.id, status="in_review", promised_at=await self._promise(conn, row, transition.at)
            )
        elif transition.from_state in applications.WAIT_STATES:
            pass  # paid, or a correction that lapsed: the instance ends now and `ended` records it
        elif row.status not in store.ENDED_ITEM:
            await store.set_item_status(conn, row.id, status="in_review")
        await applications.recompute(conn, app.id, now=transition.at)

    async def _returned(
        self,
        conn: Connection,
        app: store.ApplicationRow,
        row: store.ApplicationItemRow,
        transition: workflows.Transition,
    ) -> None:
        await store.set_item_status(conn, row.id, status="needs_correction", corrected=True)
        fix = _what_to_fix(transition.data)
        kept = [m for m in app.missing if not (isinstance(m, dict) and m.get("item_id") == str(row.id))]
        entry = {
            "item_id": str(row.id),
            "item": row.item_code,
            "note": transition.comment,
            "what_to_fix": fix,
            "at": transition.at.isoformat(),
        }
        await store.set_status(conn, app.id, status=app.status, missing=[*kept, entry], now=transition.at)
        if app.number is not None:
            found = await catalog.item(conn, row.item_code, row.item_version)
            await outbox.publish(
                conn,
                ApplicationReturned(
                    application_id=app.id,
                    number=app.number,
                    service=await applications.service_name(conn, app)
                    if found is None
                    else ServiceName(zh=found.name.zh, en=found.name.en),
                    applicant=app.applicant,
                    item=row.item_code,
                    what_to_fix=tuple(_fix_text(m) for m in fix) or ((transition.comment or "-"),),
                    due=transition.at + timedelta(days=applications.CORRECTION_DAYS),
                    at=transition.at,
                ),
            )

    async def _promise(
        self, conn: Connection, row: store.ApplicationItemRow, now: datetime
    ) -> datetime | None:
        """The promised date moved on by the time the applicant had the item (the department's
        working time so far is kept: what is left of the promise starts again now)."""
        found = await catalog.item(conn, row.item_code, row.item_version)
        if found is None or row.started_at is None:
            return None
        used = await self._active_hours(conn, row, now)
        left = max(found.promised_days * 24 - used, 0)
        if left == 0:
            return now
        return await workflows.deadline(conn, now, f"PT{left}H", clock="working_days")

    async def _active_hours(self, conn: Connection, row: store.ApplicationItemRow, end: datetime) -> int:
        """Working hours the department had the item, from its start to `end`, without the time
        it waited for the applicant (correction, payment): read from the instance's history."""
        if row.started_at is None:
            return 0
        instance = await workflows.instance_for_subject(conn, KIND, str(row.id))
        spans: list[tuple[datetime, datetime]] = []
        since: datetime | None = row.started_at
        for entry in instance.history if instance else ():
            if entry.to_state in applications.WAIT_STATES and since is not None:
                spans.append((since, entry.at))
                since = None
            elif (
                entry.from_state in applications.WAIT_STATES
                and since is None
                and entry.event in ("action", "decided")
            ):
                since = entry.at
        if since is not None:
            spans.append((since, end))
        return sum([await applications.working_hours(conn, start, stop) for start, stop in spans])

    async def ended(self, conn: Connection, ending: workflows.Ending) -> None:
        row = await self._item(conn, ending.subject_id)
        if ending.outcome == applications.WITHDRAWN:
            # The applicant's withdrawal (applications.withdraw) cancels the instances, then
            # settles the application itself: no application lock here (see there why).
            app = await store.application(conn, row.application_id)
            if app is None:
                raise RuntimeError("invariant broken: an item without its application")
            await store.decide_item(
                conn,
                row.id,
                status="withdrawn",
                at=ending.at,
                by=app.applicant,
                reason=None,
                working_days=None,
                on_time=None,
            )
            return
        app = await store.application(conn, row.application_id, lock=True)
        if app is None:
            raise RuntimeError("invariant broken: an item without its application")
        status: Literal["approved", "rejected", "withdrawn"] = (
            "approved"
            if ending.outcome == "approved"
            else "rejected"
            if ending.outcome == "rejected"
            else "withdrawn"
        )
        found = await catalog.item(conn, row.item_code, row.item_version)
        working_days = on_time = None
        if status != "withdrawn":
            working_days = applications.days_of(await self._active_hours(conn, row, ending.at))
            on_time = found is not None and working_days <= found.promised_days
        row = await store.decide_item(
            conn,
            row.id,
            status=status,
            at=ending.at,
            by=row.decided_by if status != "withdrawn" else app.applicant,
            reason=row.reason if status == "rejected" else None,
            working_days=working_days,
            on_time=on_time,
        )
        if (
            status == "approved"
            and found is not None
            and found.result == "certificate"
            and app.number is not None
        ):
            certificate = await certificates.issue(
                conn,
                application_item_id=row.id,
                application_number=app.number,
                holder=app.applicant,
                item_code=row.item_code,
                item_name=found.name,
                valid_days=found.valid_days,
                now=ending.at,
                settings=applications.settings_or(None),
            )
            await outbox.publish(
                conn,
                CertificateReady(
                    application_id=app.id,
                    number=app.number,
                    certificate=certificate.number,
                    service=ServiceName(zh=found.name.zh, en=found.name.en),
                    holder=app.applicant,
                    at=ending.at,
                ),
            )
        app, decided = await applications.recompute(conn, app.id, now=ending.at)
        if decided and app.number is not None and app.outcome is not None:
            await outbox.publish(
                conn,
                ApplicationDecided(
                    application_id=app.id,
                    number=app.number,
                    service=await applications.service_name(conn, app),
                    applicant=app.applicant,
                    decision=app.outcome,
                    at=ending.at,
                ),
            )
