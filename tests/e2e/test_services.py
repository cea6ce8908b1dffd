"""End to end: one-window approvals (services/) over real HTTP, with tokens from the real provider.

`onewindow serve --demo` runs as a child process on a database of its own (one server for the
module); every person signs in through the provider's authorization endpoint: citizens with the
citizen app's code flow (PKCE, loopback redirect), staff through the console's. Three stories:

1. Online: citizen1 (password and TOTP, enrolled on the provider's account security page:
   assurance substantial, which the open-restaurant bundle needs) applies for the bundle, uploads the documents, submits (Idempotency-Key), the fire
   department returns it for a correction, the citizen corrects and resubmits, the four
   departments (two of them with a supervisor's sign-off) approve, four certificates are issued
   and verify (the public route, and the JWS against the JWKS with cryptojwt), a rating of 1
   opens a follow-up for each department's supervisor, due in 5 working days.
2. At the counter: clerk1 makes a citizen's account (ID document checked), a draft for them,
   takes it in with the lease contract pending; the citizen later uploads it online; the
   departments approve; the clerk hands a certificate over.
3. Who may do what: another citizen, an officer of another department, a citizen on staff
   routes, anonymous callers.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptojwt.exception import BadSignature  # type: ignore[import-untyped]  # no type information
from cryptojwt.jwk.jwk import key_from_jwk_dict  # type: ignore[import-untyped]  # no type information
from cryptojwt.jws.jws import JWS  # type: ignore[import-untyped]

from onewindow.settings import Settings
from tests.e2e.conftest import Provider, running_provider
from tests.e2e.services_flow import Tokens, document_for, enrol_totp, idempotency, working_days_between

pytestmark = pytest.mark.e2e

PASSWORD = "onewindow-demo"  # identity.seed's default demo password (ONEWINDOW_DEMO_PASSWORD unset)
BUNDLE = "open-restaurant"
SUBSTANTIAL = "urn:onewindow:loa:substantial"
# Each department of the bundle: its item, its officer, its supervisor, and whether the item's
# workflow (services/data/catalog.yaml, services/workflows/) needs the supervisor's sign-off.
DEPARTMENTS: dict[str, tuple[str, str, str, bool]] = {
    "market": ("business-licence", "officer1", "supervisor-market", False),
    "health": ("food-operation-licence", "officer5", "supervisor-health", True),
    "fire": ("fire-safety-inspection", "officer2", "supervisor-fire", True),
    "urban": ("outdoor-signage-permit", "officer3", "supervisor-urban", False),
}
STAFF = {
    "clerk1",
    "officer4",
    *(officer for _, officer, _, _ in DEPARTMENTS.values()),
    *(supervisor for _, _, supervisor, _ in DEPARTMENTS.values()),
}
# The bundle's one form: every field the four items ask, once. Owned premises of 120 m² and a
# sign of 4.8 m²: no lease, no fire facility test, no structural report.
FORM: dict[str, Any] = {
    "business_name": "滨江小馆餐饮店",
    "legal_representative": "李明",
    "contact_phone": "13987650001",
    "premises_address": "滨江区江滨路88号一层",
    "premises_owned": True,
    "entity_type": "individual",
    "business_scope": "餐饮服务；预包装食品销售",
    "premises_area_m2": 120,
    "food_categories": ["hot_meals", "drinks"],
    "food_safety_manager": "王芳",
    "max_occupancy": 60,
    "sign_text": "滨江小馆",
    "sign_width_m": 4,
    "sign_height_m": 1.2,
    "illuminated": True,
}
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def provider(
    servers: tuple[str, str], settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Provider]:
    """`onewindow serve --demo` (the demo city with its catalog) on a database of its own."""
    with running_provider(
        servers, settings, tmp_path_factory.mktemp("services"), prefix="onewindow_services", demo_mode=True
    ) as running:
        yield running


@pytest.fixture(scope="module")
def tokens(provider: Provider) -> Tokens:
    """Sign-ins for the demo's people; citizen1 enrols a TOTP second factor on the provider's
    account security page first (see services_flow)."""
    found = Tokens(provider, PASSWORD, staff=set(STAFF))
    found.totp["citizen1"] = enrol_totp(provider, "citizen1", PASSWORD)
    return found


@pytest.fixture(scope="module")
def api(provider: Provider) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=provider.base_url, timeout=20) as client:
        yield client


@pytest.fixture(scope="module")
def counter_citizen(api: httpx.Client, tokens: Tokens) -> str:
    """A second citizen, made at the counter by clerk1 with the ID document seen; their login."""
    email = f"diner-{secrets.token_hex(4)}@example.invalid"
    password = f"Window-{secrets.token_urlsafe(12)}"
    made = api.post(
        "/api/v1/identity/counter/citizens",
        json={
            "display_name": "张三",
            "national_id": _resident_id(),
            "document": "resident_id",
            "document_checked": True,
            "email": email,
            "password": password,
            "locale": "zh",
        },
        headers=tokens("clerk1"),
    )
    assert made.status_code == 201, made.text
    tokens.extra_passwords[email] = password
    return email


def _resident_id() -> str:
    """A well-formed resident ID number (GB 11643: region, birth date, serial, check character)."""
    body = f"110101199003{secrets.randbelow(28) + 1:02d}{secrets.randbelow(900) + 100:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(digit) * weight for digit, weight in zip(body, weights, strict=True))
    return body + "10X98765432"[total % 11]


# --- small steps ---------------------------------------------------------------------------------


def ok(reply: httpx.Response, status: int = 200) -> Any:
    assert reply.status_code == status, (
        f"{reply.request.method} {reply.request.url}: {reply.status_code} {reply.text}"
    )
    return reply.json()


def refused(reply: httpx.Response, status: int) -> dict[str, Any]:
    """A refusal: the status, as problem+json."""
    assert reply.status_code == status, (
        f"{reply.request.method} {reply.request.url}: {reply.status_code} {reply.text}"
    )
    assert reply.headers["content-type"].startswith(PROBLEM), reply.headers["content-type"]
    body: dict[str, Any] = reply.json()
    assert body["status"] == status
    return body


def subject_of(api: httpx.Client, headers: dict[str, str]) -> str:
    subject: str = ok(api.get("/api/v1/identity/me", headers=headers))["subject"]
    return subject


def supply_documents(
    api: httpx.Client, headers: dict[str, str], app_id: str, *, leave: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Upload a file for every required entry still missing (except `leave`); the checklist after."""
    checklist = ok(api.get(f"/api/v1/applications/{app_id}/documents", headers=headers))
    for entry in checklist["entries"]:
        if entry["status"] != "missing" or entry["optional"] or entry["code"] in leave:
            continue
        name, content, declared = document_for(entry["code"], entry["media_types"])
        uploaded = api.post(
            f"/api/v1/applications/{app_id}/documents",
            data={"checklist_code": entry["code"]},
            files={"file": (name, content, declared)},
            headers=headers,
        )
        assert ok(uploaded, 201)["status"] == "provided"
    after: dict[str, Any] = ok(api.get(f"/api/v1/applications/{app_id}/documents", headers=headers))
    return after


def task_for(api: httpx.Client, headers: dict[str, str], item_id: str, state: str) -> dict[str, Any]:
    """The open task of one application item in this person's inbox (their tasks and queues)."""
    page = ok(
        api.get("/api/v1/tasks", params={"subject_kind": "application_item", "limit": 200}, headers=headers)
    )
    found = [t for t in page["items"] if t["subject_id"] == item_id and t["state"] == state]
    assert len(found) == 1, [(t["subject_id"], t["state"]) for t in page["items"]]
    task: dict[str, Any] = found[0]
    return task


def act(
    api: httpx.Client, headers: dict[str, str], task: dict[str, Any], action: str, **body: Any
) -> dict[str, Any]:
    """Claim the task, then act on it, as the back office does (Idempotency-Key, If-Match)."""
    claimed = api.post(f"/api/v1/tasks/{task['id']}/claim", headers=headers)
    ok(claimed)
    acted = api.post(
        f"/api/v1/tasks/{task['id']}/actions",
        json={"action": action, **body},
        headers={**headers, **idempotency(), "If-Match": claimed.headers["etag"]},
    )
    result: dict[str, Any] = ok(acted)
    return result


def approve_everywhere(api: httpx.Client, tokens: Tokens, items: dict[str, str]) -> None:
    """Each department's officer approves its item; two-step items also get the supervisor's sign-off."""
    for department, (_, officer, supervisor, two_step) in DEPARTMENTS.items():
        item_id = items[department]
        act(api, tokens(officer), task_for(api, tokens(officer), item_id, "review"), "approve")
        if two_step:
            signoff = task_for(api, tokens(supervisor), item_id, "signoff")
            act(api, tokens(supervisor), signoff, "approve", comment="Signed off.")


def items_by_department(view: dict[str, Any]) -> dict[str, str]:
    return {item["department"]["code"]: item["id"] for item in view["items"]}


def verify_certificates(
    api: httpx.Client, provider: Provider, holder: dict[str, str], subject: str, number: str
) -> list[str]:
    """The holder's four certificates of application `number`: each valid at the public route, its
    JWS verified against the published JWKS by an independent library. Their numbers."""
    mine = ok(api.get("/api/v1/certificates", params={"limit": 100}, headers=holder))["items"]
    ours = [c for c in mine if c["application_number"] == number]
    assert sorted(c["item"]["code"] for c in ours) == sorted(code for code, *_ in DEPARTMENTS.values())
    jwks = ok(api.get("/api/v1/certificates/jwks.json"))  # public: no token
    keys = [key_from_jwk_dict(key) for key in jwks["keys"]]
    numbers = []
    for summary in ours:
        assert re.fullmatch(r"YC-CERT-\d{4}-\d{6}", summary["number"]), summary["number"]
        verified = ok(api.get(f"/api/v1/certificates/{summary['number']}/verify"))
        assert verified["status"] == "valid"
        assert verified["item"]["code"] == summary["item"]["code"]
        assert subject not in str(verified)  # the public page names nobody
        full = ok(api.get(f"/api/v1/certificates/{summary['number']}", headers=holder))
        claims = JWS(alg="ES256").verify_compact(full["jws"], keys)
        assert claims["number"] == summary["number"]
        assert claims["holder"] == claims["sub"] == subject
        assert claims["application_number"] == number
        assert claims["item"]["code"] == summary["item"]["code"]
        assert (
            claims["verification_url"]
            == f"{provider.base_url}/api/v1/certificates/{summary['number']}/verify"
        )
        # A signature that is not the key's is not taken for one.
        head, payload, signature = full["jws"].split(".")
        forged = f"{head}.{payload}.{signature[:10]}{'A' if signature[10] != 'A' else 'B'}{signature[11:]}"
        with pytest.raises(BadSignature):
            JWS(alg="ES256").verify_compact(forged, keys)
        numbers.append(summary["number"])
    return numbers


def apply_online(api: httpx.Client, tokens: Tokens) -> tuple[dict[str, Any], httpx.Response]:
    """citizen1's open-restaurant application, documents supplied, submitted: (view, submit reply)."""
    me = tokens("citizen1")
    draft = ok(api.post("/api/v1/applications", json={"bundle": BUNDLE, "form": FORM}, headers=me), 201)
    supply_documents(api, me, draft["id"])
    submitted = api.post(f"/api/v1/applications/{draft['id']}/submit", headers={**me, **idempotency()})
    return ok(submitted), submitted


# --- 1. the full story online ---------------------------------------------------------------------


def test_online_bundle_from_sign_in_to_certificates_and_a_bad_rating(
    api: httpx.Client, provider: Provider, tokens: Tokens, settings: Settings
) -> None:
    # A sign-in with the second factor reaches substantial, which every item of the bundle needs.
    claims = tokens.claims("citizen1")
    assert claims["acr"] == SUBSTANTIAL, claims
    me = tokens("citizen1")
    subject = subject_of(api, me)

    # The public catalog: the search finds the restaurant's items; the bundle has one form and
    # one document list for four departments.
    found = ok(api.get("/api/v1/catalog/items", params={"q": "licence"}))
    assert {"business-licence", "food-operation-licence"} <= {i["code"] for i in found["items"]}
    bundles = ok(api.get("/api/v1/catalog/bundles", params={"q": "restaurant"}))
    assert BUNDLE in {b["code"] for b in bundles["bundles"]}
    bundle = ok(api.get(f"/api/v1/catalog/bundles/{BUNDLE}"))
    assert sorted(i["code"] for i in bundle["items"]) == sorted(code for code, *_ in DEPARTMENTS.values())
    assert bundle["min_assurance"] == "substantial"
    schema = bundle["form_schema"]
    assert set(FORM) <= set(schema["properties"])
    assert set(schema["required"]) <= set(schema["properties"])

    # A draft with the union form.
    made = api.post(
        "/api/v1/applications", json={"bundle": BUNDLE, "form": FORM}, headers={**me, **idempotency()}
    )
    draft = ok(made, 201)
    app_id = draft["id"]
    assert (draft["status"], draft["bundle"], draft["number"]) == ("draft", BUNDLE, None)
    assert [e["kind"] for e in draft["expected"]] == ["submit"]

    # Submitting without documents lists every missing one at once, and nothing moves.
    early = refused(api.post(f"/api/v1/applications/{app_id}/submit", headers={**me, **idempotency()}), 400)
    pointers = {e["pointer"] for e in early["errors"]}
    assert {"/documents/id_card", "/documents/fire_safety_plan", "/documents/sign_design"} <= pointers
    assert not any(p.startswith("/form/") for p in pointers)

    # The documents, one upload per entry (the id card once for the two items that ask for it).
    checklist = supply_documents(api, me, app_id)
    assert checklist["complete"] is True, checklist["missing"]
    codes = {e["code"] for e in checklist["entries"]}
    assert "lease_contract" not in codes  # owned premises: no lease asked
    assert [e["code"] for e in checklist["entries"]].count("id_card") == 1
    on_file = ok(api.get("/api/v1/documents", headers=me))
    assert len(on_file["documents"]) >= len([e for e in checklist["entries"] if e["status"] == "provided"])

    # Submit with an Idempotency-Key; the same key again is the same reply, not a second submission.
    key = idempotency()
    submitted = api.post(f"/api/v1/applications/{app_id}/submit", headers={**me, **key})
    view = ok(submitted)
    replay = api.post(f"/api/v1/applications/{app_id}/submit", headers={**me, **key})
    assert replay.status_code == 200, replay.text
    assert replay.json() == view
    assert re.fullmatch(r"YC-\d{4}-\d{6}", view["number"]), view["number"]
    assert view["status"] == "in_review"
    items = items_by_department(view)
    assert set(items) == set(DEPARTMENTS)
    number = view["number"]
    assert ok(api.get(f"/api/v1/applications/{app_id}", headers=me))["number"] == number

    # Each department's officer finds its own item, and only that, in the inbox.
    for department, (_, officer, _, _) in DEPARTMENTS.items():
        staff = tokens(officer)
        task = task_for(api, staff, items[department], "review")
        assert task["role"] == "officer"
        others = {i for d, i in items.items() if d != department}
        inbox = ok(
            api.get("/api/v1/tasks", params={"subject_kind": "application_item", "limit": 200}, headers=staff)
        )
        assert not others & {t["subject_id"] for t in inbox["items"]}

    # Fire returns it for a correction with the exact list of what to fix.
    fix = [{"field": "max_occupancy", "detail": "60 people do not fit 120 m² with the kitchen: count again."}]
    fire_officer = tokens("officer2")
    act(
        api,
        fire_officer,
        task_for(api, fire_officer, items["fire"], "review"),
        "return",
        comment="The occupancy does not match the floor plan.",
        data={"missing": fix},
    )
    seen = api.get(f"/api/v1/applications/{app_id}", headers=me)
    returned = ok(seen)
    assert returned["status"] == "needs_correction"
    fire_item = next(i for i in returned["items"] if i["department"]["code"] == "fire")
    assert fire_item["status"] == "needs_correction"
    correction = next(e for e in returned["expected"] if e["kind"] == "correction")
    assert correction["what_to_fix"][0]["what_to_fix"] == fix
    assert correction["what_to_fix"][0]["note"] == "The occupancy does not match the floor plan."
    # Citizen-safe: neither the officer's subject nor name.
    assert subject_of(api, fire_officer) not in str(returned)
    assert "Officer Two" not in str(returned)

    # The citizen corrects the form (merge patch, If-Match) and resubmits.
    stale = {"If-Match": '"0"'}
    refused(
        api.patch(
            f"/api/v1/applications/{app_id}", json={"form": {"max_occupancy": 40}}, headers={**me, **stale}
        ),
        412,
    )
    patched = api.patch(
        f"/api/v1/applications/{app_id}",
        json={"form": {"max_occupancy": 40}},
        headers={**me, "If-Match": seen.headers["etag"]},
    )
    assert ok(patched)["form"]["max_occupancy"] == 40
    again = ok(
        api.post(
            f"/api/v1/applications/{app_id}/resubmit", json={"comment": "Counted again: 40."}, headers=me
        )
    )
    assert again["status"] == "in_review"

    # Every department approves (health and fire with their supervisor's sign-off).
    approve_everywhere(api, tokens, items)
    decided = ok(api.get(f"/api/v1/applications/{app_id}", headers=me))
    assert (decided["status"], decided["outcome"]) == ("decided", "approved")
    assert {i["status"] for i in decided["items"]} == {"approved"}
    assert next(i for i in decided["items"] if i["department"]["code"] == "fire")["corrections"] == 1
    assert decided["expected"] == []

    # Four certificates, each valid and verifiable offline against the JWKS.
    verify_certificates(api, provider, me, subject, number)

    # A rating of 1 opens a follow-up in each deciding department, for its supervisor, due in 5 working days.
    rated = api.post(
        f"/api/v1/applications/{app_id}/rating",
        json={"level": 1, "comment": "Four departments, and fire sent it back over a number."},
        headers=me,
    )
    rating = ok(rated, 201)
    assert rating["level"] == 1
    refused(api.post(f"/api/v1/applications/{app_id}/rating", json={"level": 5}, headers=me), 409)
    follow_ups = {
        f["department"]: f
        for f in ok(api.get(f"/api/v1/applications/{app_id}/rating", headers=me))["follow_ups"]
    }
    assert set(follow_ups) == set(DEPARTMENTS)
    for department, (_, _, supervisor, _) in DEPARTMENTS.items():
        inbox = ok(
            api.get(
                "/api/v1/tasks",
                params={"subject_kind": "rating_follow_up", "limit": 200},
                headers=tokens(supervisor),
            )
        )["items"]
        staff_rating = ok(api.get(f"/api/v1/applications/{app_id}/rating", headers=tokens(supervisor)))
        mine = {f["instance_id"] for f in staff_rating["follow_ups"] if f["department"] == department}
        tasks = [t for t in inbox if t["instance_id"] in mine]
        assert len(tasks) == 1, (department, inbox)
        task = tasks[0]
        assert (task["role"], task["state"]) == ("supervisor", "follow_up")
        created = datetime.fromisoformat(task["created_at"])
        due = datetime.fromisoformat(task["due_at"])
        assert working_days_between(provider, settings, created, due) == timedelta(days=5)
        assert due - created >= timedelta(days=7)  # five working days always span a weekend


# --- 2. at the counter, a document pending ---------------------------------------------------------


def test_counter_intake_with_a_pending_document_then_online_upload_and_hand_over(
    api: httpx.Client, provider: Provider, tokens: Tokens, counter_citizen: str
) -> None:
    clerk = tokens("clerk1")
    citizen = tokens(counter_citizen)
    subject = subject_of(api, citizen)
    assert tokens.claims(counter_citizen)["acr"] != SUBSTANTIAL  # a password alone: low
    # Rented premises: a lease contract, which may be brought later (容缺受理).
    form = FORM | {"premises_owned": False, "business_name": "河畔小馆餐饮店"}
    made = api.post(
        "/api/v1/counter/applications",
        json={"applicant": subject, "bundle": BUNDLE, "form": form},
        headers={**clerk, **idempotency()},
    )
    draft = ok(made, 201)
    app_id = draft["id"]
    assert (draft["status"], draft["channel"], draft["form_errors"]) == ("draft", "counter", [])
    lease = next(e for e in draft["checklist"] if e["code"] == "lease_contract")
    assert lease["later_allowed"] is True

    # The clerk scans what the citizen brought: everything but the lease.
    checklist = supply_documents(api, clerk, app_id, leave=frozenset({"lease_contract"}))
    assert [e["pointer"] for e in checklist["missing"]] == ["/documents/lease_contract"]

    # A plain accept is refused while the lease is missing; accept_pending takes it in.
    refused(
        api.post(
            f"/api/v1/counter/applications/{app_id}/intake",
            json={"decision": "accept"},
            headers={**clerk, **idempotency()},
        ),
        400,
    )
    due = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    intake = {
        "decision": "accept_pending",
        "pending": [{"code": "lease_contract", "due": due.isoformat()}],
        "note": "Lease to follow.",
    }
    key = idempotency()
    receipt = ok(
        api.post(f"/api/v1/counter/applications/{app_id}/intake", json=intake, headers={**clerk, **key})
    )
    assert re.fullmatch(r"YC-R-\d{4}-\d{6}", receipt["receipt_number"]), receipt
    assert re.fullmatch(r"YC-\d{4}-\d{6}", receipt["application_number"]), receipt
    assert receipt["decision"] == "accept_pending"
    assert [p["code"] for p in receipt["pending"]] == ["lease_contract"]
    assert sorted(i["department"] for i in receipt["items"]) == sorted(DEPARTMENTS)
    again = api.post(f"/api/v1/counter/applications/{app_id}/intake", json=intake, headers={**clerk, **key})
    assert ok(again)["receipt_number"] == receipt["receipt_number"]
    number = receipt["application_number"]

    # The citizen sees it, with the lease expected, and uploads it online: it becomes provided.
    view = ok(api.get(f"/api/v1/applications/{app_id}", headers=citizen))
    assert (view["number"], view["status"]) == (number, "in_review")
    assert any(e["kind"] == "documents" for e in view["expected"]), view["expected"]
    pending = ok(api.get(f"/api/v1/applications/{app_id}/documents", headers=citizen))
    assert next(e for e in pending["entries"] if e["code"] == "lease_contract")["status"] == "pending"
    name, content, declared = document_for("lease_contract", ["application/pdf"])
    uploaded = api.post(
        f"/api/v1/applications/{app_id}/documents",
        data={"checklist_code": "lease_contract"},
        files={"file": (name, content, declared)},
        headers=citizen,
    )
    assert ok(uploaded, 201)["status"] == "provided"
    after = ok(api.get(f"/api/v1/applications/{app_id}/documents", headers=citizen))
    assert next(e for e in after["entries"] if e["code"] == "lease_contract")["status"] == "provided"
    assert after["complete"] is True
    # The reviewing department can read it.
    market_officer = tokens("officer1")
    content_reply = api.get(
        f"/api/v1/applications/{app_id}/documents/lease_contract/content", headers=market_officer
    )
    assert content_reply.status_code == 200, content_reply.text
    assert content_reply.content == content
    assert content_reply.headers["content-type"].startswith("application/pdf")

    # The departments approve; four certificates; the clerk hands one over.
    approve_everywhere(api, tokens, items_by_department(view))
    decided = ok(api.get(f"/api/v1/applications/{app_id}", headers=citizen))
    assert (decided["status"], decided["outcome"]) == ("decided", "approved")
    numbers = verify_certificates(api, provider, citizen, subject, number)
    handed = ok(
        api.post(
            f"/api/v1/counter/certificates/{numbers[0]}/hand-over",
            json={"note": "Collected by the holder."},
            headers=clerk,
        )
    )
    assert handed["handed_over_by"] == subject_of(api, clerk)
    shown = ok(api.get(f"/api/v1/certificates/{numbers[0]}", headers=citizen))
    assert shown["delivery"] == "counter"
    assert shown["handed_over_at"] is not None
    refused(api.post(f"/api/v1/counter/certificates/{numbers[0]}/hand-over", json={}, headers=clerk), 409)


# --- 3. who may do what ------------------------------------------------------------------------


def test_refusals_over_http(api: httpx.Client, tokens: Tokens, counter_citizen: str) -> None:
    view, _ = apply_online(api, tokens)
    app_id = view["id"]
    items = items_by_department(view)

    me = tokens("citizen1")
    # Another citizen: citizen1's application, its documents and its rating do not exist for them.
    stranger = tokens(counter_citizen)
    for path in ("", "/documents", "/documents/id_card/content", "/rating"):
        refused(api.get(f"/api/v1/applications/{app_id}{path}", headers=stranger), 404)
    refused(api.post(f"/api/v1/applications/{app_id}/rating", json={"level": 5}, headers=stranger), 404)
    refused(
        api.post(f"/api/v1/applications/{app_id}/withdraw", json={"reason": "Not mine."}, headers=stranger),
        404,
    )
    name, content, declared = document_for("id_card", ["application/pdf"])
    refused(
        api.post(
            f"/api/v1/applications/{app_id}/documents",
            data={"checklist_code": "id_card"},
            files={"file": (name, content, declared)},
            headers=stranger,
        ),
        404,
    )
    assert app_id not in str(ok(api.get("/api/v1/applications", headers=stranger)))

    # A password alone (low) does not reach the bundle's substantial, whatever else is in order.
    low = ok(api.post("/api/v1/applications", json={"bundle": BUNDLE, "form": FORM}, headers=stranger), 201)
    assert supply_documents(api, stranger, low["id"])["complete"] is True
    too_low = refused(
        api.post(f"/api/v1/applications/{low['id']}/submit", headers={**stranger, **idempotency()}), 422
    )
    assert "assurance" in str(too_low).lower() or "substantial" in str(too_low).lower(), too_low
    assert ok(api.get(f"/api/v1/applications/{low['id']}", headers=stranger))["status"] == "draft"

    # Reuse of a document on file: citizen1's own, yes; another person's, as if it did not exist.
    mine = ok(api.get("/api/v1/documents", params={"limit": 100}, headers=me))["documents"]
    pdf = next(d for d in mine if d["media_type"] == "application/pdf")
    licence_form = {k: FORM[k] for k in ("business_name", "legal_representative", "contact_phone")}
    single = ok(
        api.post("/api/v1/applications", json={"item": "business-licence", "form": licence_form}, headers=me),
        201,
    )
    reuse = {"checklist_code": "id_card", "document_id": pdf["id"]}
    reused = api.post(f"/api/v1/applications/{single['id']}/documents", json=reuse, headers=me)
    assert ok(reused, 201)["status"] == "reused"
    refused(api.post(f"/api/v1/applications/{low['id']}/documents", json=reuse, headers=stranger), 404)

    # An officer sees only their department's item (and the form fields it asks for).
    market = ok(api.get(f"/api/v1/applications/{app_id}", headers=tokens("officer1")))
    assert market["staff"] is True
    assert [i["id"] for i in market["items"]] == [items["market"]]
    assert "max_occupancy" not in market["form"]  # fire's question, not the market's
    assert market["form"]["business_name"] == FORM["business_name"]
    # An officer of a department with no item in it: no such application.
    water = tokens("officer4")
    for path in ("", "/documents", "/documents/id_card/content"):
        refused(api.get(f"/api/v1/applications/{app_id}{path}", headers=water), 404)
    # Not their task either.
    assert items["market"] not in str(
        ok(api.get("/api/v1/tasks", params={"subject_kind": "application_item"}, headers=water))
    )

    # A citizen on the counter's and the catalog administrator's routes: 403.
    subject = subject_of(api, me)
    refused(api.get("/api/v1/counter/applications", headers=me), 403)
    refused(
        api.post(
            "/api/v1/counter/applications",
            json={"applicant": subject, "bundle": BUNDLE, "form": FORM},
            headers={**me, **idempotency()},
        ),
        403,
    )
    refused(
        api.post(
            f"/api/v1/counter/applications/{app_id}/intake",
            json={"decision": "accept"},
            headers={**me, **idempotency()},
        ),
        403,
    )
    item = ok(api.get("/api/v1/catalog/items/business-licence"))
    refused(
        api.put("/api/v1/catalog/items/business-licence", json=item, headers={**me, "If-Match": '"1"'}), 403
    )
    refused(api.put("/api/v1/catalog/items/my-own-licence", json=item, headers=me), 403)
    refused(api.put(f"/api/v1/catalog/bundles/{BUNDLE}", json={}, headers=me), 403)
    refused(api.post("/api/v1/catalog/items/validate", json=item, headers=me), 403)
    refused(api.get("/api/v1/services/statistics", headers=me), 403)

    # Anonymous: 401 on applications.
    for method, path in (
        ("GET", "/api/v1/applications"),
        ("POST", "/api/v1/applications"),
        ("GET", f"/api/v1/applications/{app_id}"),
        ("GET", f"/api/v1/applications/{app_id}/documents"),
        ("POST", f"/api/v1/applications/{app_id}/submit"),
        ("GET", "/api/v1/documents"),
        ("GET", "/api/v1/certificates"),
    ):
        reply = api.request(method, path, json={} if method == "POST" else None)
        refused(reply, 401)
