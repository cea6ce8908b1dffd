"""Documents: uploads judged by content, size limits, the checklist with conditions on the form,
reuse of a document on file and of a certificate, downloads, and who may do what."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from onewindow.db import Connection
from onewindow.errors import TooLarge, UnsupportedMediaType
from onewindow.settings import Settings
from onewindow.storage import DiskStore
from services import catalog, certificates, documents
from tests.conftest import RollbackDatabase, app_client, build_app
from tests.services.certificate_fixtures import Decided, insert_application
from tests.services.conftest import ITEMS, Bearer, People, configure
from tests.services.documents_fixtures import (
    BUSINESS_FORM,
    JPEG,
    PDF,
    PNG,
    TEXT,
    food_form,
    make_draft,
    set_status,
)
from tests.workflows.conftest import Clock

URL = "/api/v1/applications/{}/documents"


def _upload(
    code: str, content: bytes, filename: str = "scan.pdf", media_type: str = "application/pdf"
) -> Any:
    return {"data": {"checklist_code": code}, "files": {"file": (filename, content, media_type)}}


async def _business_draft(conn: Connection, people: People, clock: Clock, **kw: Any) -> UUID:
    return await make_draft(
        conn, applicant=people.citizen.subject, items=["t-business"], form=BUSINESS_FORM, at=clock(), **kw
    )


async def _requirements(conn: Connection, app_id: UUID) -> list[catalog.Requirement]:
    from services import application_store  # noqa: PLC0415

    app = await application_store.application(conn, app_id)
    assert app is not None
    return await documents.requirements_of(conn, app)


# --- uploads -------------------------------------------------------------------------------------


async def test_the_applicant_uploads_a_pdf_and_the_checklist_shows_it(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    me = await bearer(people.citizen)
    reply = await http.post(URL.format(app_id), headers=me, **_upload("lease", PDF, "租赁合同.pdf"))
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["status"] == "provided"
    assert body["document"]["media_type"] == "application/pdf"
    assert body["document"]["filename"] == "租赁合同.pdf"
    assert body["document"]["size_bytes"] == len(PDF)

    checklist = (await http.get(URL.format(app_id), headers=me)).json()
    assert [(e["code"], e["status"]) for e in checklist["entries"]] == [
        ("id_card", "missing"),
        ("lease", "provided"),
    ]
    assert checklist["complete"] is False
    assert checklist["missing"] == [{"pointer": "/documents/id_card", "detail": "Identity card is required"}]


async def test_a_png_is_accepted_where_the_entry_takes_images_and_downloads_as_it_was(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    me = await bearer(people.citizen)
    reply = await http.post(URL.format(app_id), headers=me, **_upload("id_card", PNG, "id.png", "image/png"))
    assert reply.status_code == 201, reply.text
    download = await http.get(f"{URL.format(app_id)}/id_card/content", headers=me)
    assert download.status_code == 200
    assert download.content == PNG
    assert download.headers["content-type"] == "image/png"
    assert download.headers["content-disposition"].startswith('attachment; filename="id.png"')
    assert download.headers["x-content-type-options"] == "nosniff"


async def test_a_file_we_do_not_recognise_is_415(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    reply = await http.post(
        URL.format(app_id), headers=await bearer(people.citizen), **_upload("lease", TEXT, "lease.pdf")
    )
    assert reply.status_code == 415
    assert reply.headers["content-type"].startswith("application/problem+json")


async def test_a_type_the_entry_does_not_take_is_415(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    reply = await http.post(
        URL.format(app_id),
        headers=await bearer(people.citizen),
        **_upload("lease", JPEG, "lease.jpg", "image/jpeg"),  # the lease is PDF only
    )
    assert reply.status_code == 415
    assert "application/pdf" in reply.json()["detail"]


async def test_the_content_decides_not_the_declared_type(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    me = await bearer(people.citizen)
    # A PDF sent as a PNG is a PDF (and the lease takes PDFs) ...
    reply = await http.post(URL.format(app_id), headers=me, **_upload("lease", PDF, "lease.png", "image/png"))
    assert reply.status_code == 201, reply.text
    assert reply.json()["document"]["media_type"] == "application/pdf"
    # ... and a PNG declared as a PDF is a PNG, which the lease does not take.
    refused = await http.post(URL.format(app_id), headers=me, **_upload("lease", PNG, "lease.pdf"))
    assert refused.status_code == 415


async def test_a_file_over_the_citys_limit_is_413(
    conn: Connection,
    settings: Settings,
    db: RollbackDatabase,
    people: People,
    bearer: Bearer,
    clock: Clock,
) -> None:
    small = settings.model_copy(update={"document_max_bytes": 2048})
    app = build_app(small, db)
    configure(small, clock)
    app_id = await _business_draft(conn, people, clock)
    big = PDF + b"%" + b"x" * 4096 + b"\n"
    async with app_client(app) as http:
        reply = await http.post(
            URL.format(app_id), headers=await bearer(people.citizen), **_upload("lease", big)
        )
        fits = await http.post(
            URL.format(app_id), headers=await bearer(people.citizen), **_upload("lease", PDF)
        )
    assert reply.status_code == 413
    assert fits.status_code == 201


async def test_a_body_without_its_length_is_refused_once_past_the_citys_limit(
    conn: Connection,
    settings: Settings,
    db: RollbackDatabase,
    people: People,
    bearer: Bearer,
    clock: Clock,
) -> None:
    """Chunked, with no Content-Length: the body is counted as it arrives and refused (413) as
    soon as it passes the limit, not read to the route's 200 MiB ceiling first."""
    small = settings.model_copy(update={"document_max_bytes": 2048})
    app = build_app(small, db)
    configure(small, clock)
    app_id = await _business_draft(conn, people, clock)
    boundary = "onewindow-test-boundary"
    chunk = b"x" * 16_384
    sent = 0

    async def body() -> Any:
        nonlocal sent
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="checklist_code"\r\n\r\nlease\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
            "Content-Type: application/pdf\r\n\r\n"
        ).encode() + PDF
        for _ in range(640):  # 10 MiB
            sent += 1
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {**await bearer(people.citizen), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    async with app_client(app) as http:
        reply = await http.post(URL.format(app_id), headers=headers, content=body())
    assert "content-length" not in reply.request.headers
    assert reply.status_code == 413, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert sent < 10  # stopped a little past 2 KiB + the envelope, far from the 10 MiB sent


async def test_an_entrys_own_limit_and_types_apply(conn: Connection, tmp_path: Path, clock: Clock) -> None:
    store = DiskStore(tmp_path)
    with pytest.raises(TooLarge):
        await documents.upload(
            conn, store, owner="p", kind="k", filename="a.pdf", content=PDF, declared_type=None,
            by="p", now=clock(), max_bytes=len(PDF) - 1,
        )  # fmt: skip
    with pytest.raises(UnsupportedMediaType):
        await documents.upload(
            conn, store, owner="p", kind="k", filename="a.pdf", content=PDF, declared_type="application/pdf",
            by="p", now=clock(), media_types=("image/png",),
        )  # fmt: skip
    row = await documents.upload(
        conn, store, owner="p", kind="k", filename="../../etc/pass\x00wd;.pdf", content=PDF,
        declared_type="image/png", by="p", now=clock(),
    )  # fmt: skip
    assert row.media_type == "application/pdf"
    assert row.filename == "pass_wd_.pdf"
    assert await store.get(row.sha256) == PDF


def test_filenames_are_made_safe() -> None:
    assert documents.safe_filename("C:\\Users\\me\\营业执照.pdf", "application/pdf") == "营业执照.pdf"
    assert documents.safe_filename('a"b\r\nc.png', "image/png") == "a_b_c.png"
    assert documents.safe_filename("...", "image/png") == "document.png"
    # Unicode controls and format characters are dropped: a right-to-left override would show
    # `invoice\u202egpj.exe` as `invoiceexe.jpg`; NEL and the line separators split headers.
    assert documents.safe_filename("invoice\u202egpj.exe", "image/jpeg") == "invoicegpj.exe"
    assert (
        documents.safe_filename("a\u0085b\u2028c\u2029d\u200be\ufeff.pdf", "application/pdf") == "abcde.pdf"
    )
    assert documents.safe_filename("\u202e\u2066\u0085", "image/png") == "document.png"
    assert documents.safe_filename("营业执照\u3000副本.pdf", "application/pdf") == "营业执照\u3000副本.pdf"
    long = documents.safe_filename("x" * 300 + ".pdf", "application/pdf")
    assert len(long) == 120
    assert long.endswith(".pdf")


async def test_an_entry_not_on_the_checklist_is_422(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    reply = await http.post(
        URL.format(app_id), headers=await bearer(people.citizen), **_upload("floor_plan", PDF)
    )
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["pointer"] == "/checklist_code"


async def test_a_form_without_the_file_is_400(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    reply = await http.post(
        URL.format(app_id),
        headers=await bearer(people.citizen),
        data={"checklist_code": "lease"},
        files={"other": ("x.pdf", PDF, "application/pdf")},
    )
    assert reply.status_code == 400
    assert reply.json()["errors"][0]["pointer"] == "/file"


async def test_a_body_that_is_neither_form_nor_json_is_415(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    headers = {**await bearer(people.citizen), "Content-Type": "application/pdf"}
    reply = await http.post(URL.format(app_id), headers=headers, content=PDF)
    assert reply.status_code == 415


async def test_a_decided_application_keeps_its_documents(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    await set_status(conn, app_id, "decided")
    reply = await http.post(URL.format(app_id), headers=await bearer(people.citizen), **_upload("lease", PDF))
    assert reply.status_code == 409


async def test_in_review_only_a_pending_entry_may_be_supplied_and_it_becomes_provided(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    await documents.mark_pending(conn, app_id, {"lease": clock() + timedelta(days=5)}, "clerk", clock())
    await set_status(conn, app_id, "in_review")
    me = await bearer(people.citizen)
    refused = await http.post(URL.format(app_id), headers=me, **_upload("id_card", PDF))
    assert refused.status_code == 409
    supplied = await http.post(URL.format(app_id), headers=me, **_upload("lease", PDF))
    assert supplied.status_code == 201, supplied.text
    assert supplied.json()["status"] == "provided"
    assert supplied.json()["due_at"] is not None  # the record keeps by when it was due


# --- who may ------------------------------------------------------------------------------------


async def test_someone_elses_application_is_404(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    other = await bearer(people.other)
    assert (await http.post(URL.format(app_id), headers=other, **_upload("lease", PDF))).status_code == 404
    assert (await http.get(URL.format(app_id), headers=other)).status_code == 404
    assert (await http.get(f"{URL.format(app_id)}/lease/content", headers=other)).status_code == 404


async def test_signed_out_is_401(
    conn: Connection, http: httpx.AsyncClient, people: People, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    assert (await http.get(URL.format(app_id))).status_code == 401
    assert (await http.get("/api/v1/documents")).status_code == 401


async def _sent_to_departments(conn: Connection, app_id: UUID, clock: Clock) -> None:
    """As a submission leaves it (its workflows play no part in who reads the documents)."""
    await conn.execute(
        "UPDATE services.applications SET status = 'in_review', submitted_at = $2 WHERE id = $1",
        app_id,
        clock(),
    )


async def test_the_reviewing_department_reads_but_cannot_upload_and_others_see_nothing(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    await http.post(URL.format(app_id), headers=await bearer(people.citizen), **_upload("lease", PDF))
    market = await bearer(people.officers["market"])
    # Before it is submitted, the application is the applicant's alone.
    assert (await http.get(URL.format(app_id), headers=market)).status_code == 404
    assert (await http.get(f"{URL.format(app_id)}/lease/content", headers=market)).status_code == 404
    await _sent_to_departments(conn, app_id, clock)
    assert (await http.post(URL.format(app_id), headers=market, **_upload("lease", PDF))).status_code == 403
    assert (await http.get(URL.format(app_id), headers=market)).status_code == 200
    download = await http.get(f"{URL.format(app_id)}/lease/content", headers=market)
    assert download.status_code == 200
    assert download.content == PDF
    supervisor = await bearer(people.supervisors["market"])
    assert (await http.get(URL.format(app_id), headers=supervisor)).status_code == 200
    fire = await bearer(people.officers["fire"])
    assert (await http.get(URL.format(app_id), headers=fire)).status_code == 404
    assert (await http.get(f"{URL.format(app_id)}/lease/content", headers=fire)).status_code == 404


@pytest.mark.parametrize("status", ["draft", "submitted", "returned"])
async def test_a_department_sees_nothing_of_an_application_not_sent_to_it(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock, status: str
) -> None:
    app_id = await _business_draft(conn, people, clock)
    await http.post(URL.format(app_id), headers=await bearer(people.citizen), **_upload("lease", PDF))
    await set_status(conn, app_id, status)
    for reader in (people.officers["market"], people.supervisors["market"]):
        headers = await bearer(reader)
        assert (await http.get(URL.format(app_id), headers=headers)).status_code == 404
        assert (await http.get(f"{URL.format(app_id)}/lease/content", headers=headers)).status_code == 404
        assert (await http.get(f"/api/v1/applications/{app_id}", headers=headers)).status_code == 404


async def test_a_department_of_a_bundle_reads_only_the_entries_its_items_ask_for(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await make_draft(
        conn,
        applicant=people.citizen.subject,
        items=["t-business", "t-food", "t-fire", "t-signage"],
        form={**food_form(80), "sign_text": "Noodles"},
        at=clock(),
        bundle="t-restaurant",
    )
    me = await bearer(people.citizen)
    for code in ("lease", "floor_plan"):
        assert (await http.post(URL.format(app_id), headers=me, **_upload(code, PDF))).status_code == 201
    await _sent_to_departments(conn, app_id, clock)

    market = await bearer(people.officers["market"])  # t-business: id_card, lease
    checklist = (await http.get(URL.format(app_id), headers=market)).json()
    assert [e["code"] for e in checklist["entries"]] == ["id_card", "lease"]
    assert [m["pointer"] for m in checklist["missing"]] == ["/documents/id_card"]
    assert (await http.get(f"{URL.format(app_id)}/lease/content", headers=market)).status_code == 200
    assert (await http.get(f"{URL.format(app_id)}/floor_plan/content", headers=market)).status_code == 404

    fire = await bearer(people.supervisors["fire"])  # t-fire: floor_plan
    checklist = (await http.get(URL.format(app_id), headers=fire)).json()
    assert [e["code"] for e in checklist["entries"]] == ["floor_plan"]
    assert (await http.get(f"{URL.format(app_id)}/floor_plan/content", headers=fire)).status_code == 200
    assert (await http.get(f"{URL.format(app_id)}/lease/content", headers=fire)).status_code == 404

    urban = await bearer(people.officers["urban"])  # t-signage asks for no document
    assert (await http.get(URL.format(app_id), headers=urban)).json()["entries"] == []
    assert (await http.get(f"{URL.format(app_id)}/lease/content", headers=urban)).status_code == 404

    # The applicant still reads everything.
    whole = (await http.get(URL.format(app_id), headers=me)).json()
    assert {e["code"] for e in whole["entries"]} == {"id_card", "lease", "floor_plan", "business_licence"}
    assert (await http.get(f"{URL.format(app_id)}/floor_plan/content", headers=me)).status_code == 200


async def test_a_clerk_supplies_for_a_counter_application_but_not_for_an_online_draft(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    clerk = await bearer(people.clerk)
    online = await _business_draft(conn, people, clock)
    at_counter = await _business_draft(
        conn, people, clock, channel="counter", created_by=people.clerk.subject
    )
    assert (await http.post(URL.format(online), headers=clerk, **_upload("lease", PDF))).status_code == 404
    reply = await http.post(URL.format(at_counter), headers=clerk, **_upload("lease", PDF))
    assert reply.status_code == 201
    # The document is the citizen's, on their file: they are offered it next time.
    mine = (await http.get("/api/v1/documents", headers=await bearer(people.citizen))).json()
    assert [d["id"] for d in mine["documents"]] == [reply.json()["document"]["id"]]


async def test_nothing_supplied_yet_is_404_on_download(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    reply = await http.get(f"{URL.format(app_id)}/lease/content", headers=await bearer(people.citizen))
    assert reply.status_code == 404


# --- the checklist and what is missing -----------------------------------------------------------


async def test_the_checklist_follows_the_form(conn: Connection, people: People, clock: Clock) -> None:
    small = await make_draft(
        conn, applicant=people.citizen.subject, items=["t-food"], form=food_form(30), at=clock()
    )
    large = await make_draft(
        conn, applicant=people.citizen.subject, items=["t-food"], form=food_form(80), at=clock()
    )
    small_codes = [
        s.code for s in await documents.checklist_status(conn, small, await _requirements(conn, small))
    ]
    large_codes = [
        s.code for s in await documents.checklist_status(conn, large, await _requirements(conn, large))
    ]
    assert "floor_plan" not in small_codes
    assert "floor_plan" in large_codes


async def test_an_entry_two_items_ask_for_is_supplied_once(
    conn: Connection, people: People, clock: Clock
) -> None:
    app_id = await make_draft(
        conn, applicant=people.citizen.subject, items=["t-business", "t-food"], form=food_form(80), at=clock()
    )
    statuses = await documents.checklist_status(conn, app_id, await _requirements(conn, app_id))
    id_card = [s for s in statuses if s.code == "id_card"]
    assert len(id_card) == 1
    assert set(id_card[0].items) == {"t-business", "t-food"}


async def test_missing_with_and_without_pending(conn: Connection, people: People, clock: Clock) -> None:
    app_id = await _business_draft(conn, people, clock)
    requirements = await _requirements(conn, app_id)
    due = clock() + timedelta(days=3)
    assert [e.pointer for e in await documents.missing(conn, app_id, requirements)] == [
        "/documents/id_card",
        "/documents/lease",
    ]
    # The lease may come later; the identity card may not.
    assert [
        e.pointer for e in await documents.missing(conn, app_id, requirements, pending={"lease": due})
    ] == ["/documents/id_card"]
    refused = await documents.missing(conn, app_id, requirements, pending={"id_card": due, "nonsense": due})
    assert [(e.pointer, "later" in e.detail) for e in refused] == [
        ("/documents/id_card", True),
        ("/documents/lease", False),
        ("/documents/nonsense", False),
    ]
    # Once recorded as pending, the lease no longer holds the application up.
    await documents.mark_pending(conn, app_id, {"lease": due}, "clerk", clock())
    assert [e.pointer for e in await documents.missing(conn, app_id, requirements)] == ["/documents/id_card"]


async def test_an_optional_entry_is_never_missing(conn: Connection, clock: Clock) -> None:
    optional = catalog.Requirement(
        code="photo",
        name=catalog.Text(zh="照片", en="Photo"),
        media_types=("image/jpeg",),
        max_bytes=None,
        later_allowed=False,
        optional=True,
        reusable_certificate=None,
        items=("x",),
    )
    assert await documents.missing(conn, UUID(int=1), [optional]) == []


# --- reuse ---------------------------------------------------------------------------------------


async def test_a_document_on_file_is_reused_in_another_application(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    me = await bearer(people.citizen)
    first = await _business_draft(conn, people, clock)
    uploaded = await http.post(
        URL.format(first), headers=me, **_upload("id_card", PNG, "id.png", "image/png")
    )
    document_id = uploaded.json()["document"]["id"]
    offered = (await http.get("/api/v1/documents", params={"kind": "id_card"}, headers=me)).json()
    assert [d["id"] for d in offered["documents"]] == [document_id]

    second = await _business_draft(conn, people, clock)
    reply = await http.post(
        URL.format(second), headers=me, json={"checklist_code": "id_card", "document_id": document_id}
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["status"] == "reused"
    assert reply.json()["document"]["id"] == document_id
    # A document on file serves an entry only in a type the entry takes (the lease is PDF only).
    wrong = await http.post(
        URL.format(second), headers=me, json={"checklist_code": "lease", "document_id": document_id}
    )
    assert wrong.status_code == 415


async def test_someone_elses_document_cannot_be_reused(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    theirs = await make_draft(
        conn, applicant=people.other.subject, items=["t-business"], form=BUSINESS_FORM, at=clock()
    )
    uploaded = await http.post(
        URL.format(theirs), headers=await bearer(people.other), **_upload("lease", PDF)
    )
    mine = await _business_draft(conn, people, clock)
    reply = await http.post(
        URL.format(mine),
        headers=await bearer(people.citizen),
        json={"checklist_code": "lease", "document_id": uploaded.json()["document"]["id"]},
    )
    assert reply.status_code == 404


async def test_a_reuse_names_exactly_one_thing(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await _business_draft(conn, people, clock)
    me = await bearer(people.citizen)
    neither = await http.post(URL.format(app_id), headers=me, json={"checklist_code": "lease"})
    assert neither.status_code == 400
    unknown_field = await http.post(URL.format(app_id), headers=me, json={"checklist_code": "lease", "x": 1})
    assert unknown_field.status_code == 400


async def _issue(
    conn: Connection, settings: Settings, holder: str, clock: Clock, item: str = "t-business"
) -> str:
    _, (item_id,) = await insert_application(conn, applicant=holder, items=[Decided(item=item)], at=clock())
    row = await certificates.issue(
        conn,
        application_item_id=item_id,
        application_number="YC-2026-000001",
        holder=holder,
        item_code=item,
        item_name=ITEMS[item].name,
        valid_days=ITEMS[item].valid_days,
        now=clock(),
        settings=settings,
    )
    return row.number


async def test_a_valid_certificate_stands_in_for_the_document(
    conn: Connection,
    settings: Settings,
    http: httpx.AsyncClient,
    people: People,
    bearer: Bearer,
    clock: Clock,
) -> None:
    number = await _issue(conn, settings, people.citizen.subject, clock)
    app_id = await make_draft(
        conn, applicant=people.citizen.subject, items=["t-food"], form=food_form(30), at=clock()
    )
    me = await bearer(people.citizen)
    reply = await http.post(
        URL.format(app_id),
        headers=me,
        json={"checklist_code": "business_licence", "certificate_number": number},
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["status"] == "reused"
    assert reply.json()["certificate_number"] == number
    # An entry that takes no certificate refuses one.
    other = await http.post(
        URL.format(app_id), headers=me, json={"checklist_code": "id_card", "certificate_number": number}
    )
    assert other.status_code == 422


@pytest.mark.parametrize("problem", ["revoked", "expired", "other_item", "other_holder"])
async def test_a_certificate_that_cannot_serve_is_refused(
    conn: Connection,
    settings: Settings,
    http: httpx.AsyncClient,
    people: People,
    bearer: Bearer,
    clock: Clock,
    problem: str,
) -> None:
    holder = people.other.subject if problem == "other_holder" else people.citizen.subject
    number = await _issue(
        conn, settings, holder, clock, item="t-food" if problem == "other_item" else "t-business"
    )
    if problem == "revoked":
        await conn.execute(
            "UPDATE services.certificates SET revoked_at = $2, revoked_by = 'x', revoked_reason = 'fraud'"
            " WHERE number = $1",
            number,
            clock(),
        )
    if problem == "expired":
        await conn.execute(
            "UPDATE services.certificates SET valid_until = $2 WHERE number = $1",
            number,
            clock() - timedelta(days=1),
        )
    app_id = await make_draft(
        conn, applicant=people.citizen.subject, items=["t-food"], form=food_form(30), at=clock()
    )
    reply = await http.post(
        URL.format(app_id),
        headers=await bearer(people.citizen),
        json={"checklist_code": "business_licence", "certificate_number": number},
    )
    assert reply.status_code == (404 if problem == "other_holder" else 422), reply.text


# --- my documents --------------------------------------------------------------------------------


async def test_my_documents_are_mine_newest_first_and_paged(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    me = await bearer(people.citizen)
    app_id = await _business_draft(conn, people, clock)
    await http.post(URL.format(app_id), headers=me, **_upload("lease", PDF))
    clock.advance(minutes=1)
    await http.post(URL.format(app_id), headers=me, **_upload("id_card", PNG, "id.png", "image/png"))
    first = (await http.get("/api/v1/documents", params={"limit": 1}, headers=me)).json()
    assert [d["kind"] for d in first["documents"]] == ["id_card"]
    second = (
        await http.get("/api/v1/documents", params={"limit": 1, "cursor": first["next_cursor"]}, headers=me)
    ).json()
    assert [d["kind"] for d in second["documents"]] == ["lease"]
    assert second["next_cursor"] is None
    theirs = (await http.get("/api/v1/documents", headers=await bearer(people.other))).json()
    assert theirs["documents"] == []
    bad = await http.get("/api/v1/documents", params={"cursor": "nonsense!"}, headers=me)
    assert bad.status_code == 400


async def test_the_routes_are_in_the_openapi_document_with_examples(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/schema/openapi.json")).json()
    upload = schema["paths"]["/api/v1/applications/{application_id}/documents"]["post"]
    assert set(upload["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert upload["responses"]["201"]["content"]["application/json"]["examples"]
    assert "415" in upload["responses"]
    assert "/api/v1/documents" in schema["paths"]
