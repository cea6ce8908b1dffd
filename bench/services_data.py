#!/usr/bin/env python3
"""bench/services_data.py: fill a migrated database, with the demo city seeded, with applications.

Usage: .venv/bin/python bench/services_data.py DSN [--applications 1000000] [--drafts 20000]
           [--citizen citizen1] [--mine 40] [--item CODE] [--batch 100000] [--drafts-out FILE]

Rows as services itself would leave them, written with set-based SQL (INSERT ... SELECT FROM
generate_series, one transaction per batch), then VACUUM ANALYZE and CHECKPOINT:

- `--applications` past applications over 200,000 other applicants (bench-citizen-NNNNNN),
  `--mine` of them the signed-in citizen's (`--citizen`, a demo account): "my applications" reads
  a page of a person's own among a million. Each has one item (round robin over the demo
  catalog's active items), a number of 2023-2025 (the counters are set past them, so live submits
  never collide), and a status drawn as a city's would be: 90 % decided (85 % of those approved),
  3 % in review, 2 % waiting for a correction, 1 % for a payment, 2 % withdrawn, 2 % drafts. These
  past rows have no workflow instance: the bench reads them through the list, not their history.
- `--drafts` drafts of the signed-in citizen for `--item` (default: the first active item that
  asks for the lowest assurance and is offered online), with a form that validates (the item's
  form schema's first `examples` entry) and every document its checklist asks for attached
  (reused from one document on file per checklist entry): the submit scenario submits them, one
  request each. `--drafts-out FILE`: their ids, one a line, shuffled.

Runs again on the same database add more (numbering continues).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from onewindow.db import Connection, connect
from services import catalog

OTHERS = 200_000
PAST_YEARS = (2023, 2024, 2025)

# One batch n in [$1, $2], everything random drawn once into `gen` so both tables agree. Ids are
# md5 of the number: spread like gen_random_uuid's, and derivable.
_GEN = """
CREATE TEMPORARY TABLE gen (
    n bigint, id uuid, item_id uuid, applicant text, year int, seq bigint, created_at timestamptz,
    status text, item_status text, item_code text, item_version int, department text, fee bigint,
    promised_days int, days int
) ON COMMIT DROP
"""
_DRAW = """
INSERT INTO gen
SELECT n, md5('app' || n)::uuid, md5('item' || n)::uuid,
       CASE WHEN $3 > 0 AND n % $3 = 0 THEN $4 ELSE 'bench-citizen-' || lpad((n % $5)::text, 6, '0') END,
       y.year, s.seq, c.created_at, st.status,
       CASE st.status WHEN 'decided' THEN (CASE WHEN r < 0.85 THEN 'approved' ELSE 'rejected' END)
                      WHEN 'draft' THEN 'pending' WHEN 'withdrawn' THEN 'withdrawn'
                      WHEN 'in_review' THEN 'in_review' WHEN 'needs_correction' THEN 'needs_correction'
                      ELSE 'awaiting_payment' END,
       i.code, i.version, i.department, i.fee, i.promised_days, 1 + (n * 7919 % 25)::int
FROM generate_series($1::bigint, $2::bigint) AS n,
     LATERAL (SELECT random() AS r) AS rnd,
     LATERAL (SELECT ($6::int[])[1 + n % 3] AS year) AS y,
     LATERAL (SELECT n / 3 + 1 AS seq) AS s,
     LATERAL (SELECT make_timestamptz(y.year, 1, 1, 8, 0, 0, 'Asia/Shanghai')
                     + (random() * 360) * interval '1 day' AS created_at) AS c,
     LATERAL (SELECT CASE WHEN n % 100 < 90 THEN 'decided' WHEN n % 100 < 93 THEN 'in_review'
                          WHEN n % 100 < 95 THEN 'needs_correction' WHEN n % 100 < 96 THEN 'awaiting_payment'
                          WHEN n % 100 < 98 THEN 'withdrawn' ELSE 'draft' END AS status) AS st,
     LATERAL (SELECT * FROM bench_items WHERE idx = n % $7) AS i
"""
_APPLICATIONS = """
INSERT INTO services.applications (
    id, number, applicant, created_by, channel, status, outcome, form, created_at, updated_at,
    submitted_at, decided_at, withdrawn_at, withdrawn_reason, promised_at)
SELECT id, CASE WHEN status = 'draft' THEN NULL ELSE 'YC-' || year || '-' || lpad(seq::text, 6, '0') END,
       applicant, applicant, CASE WHEN n % 3 = 0 THEN 'app' ELSE 'online' END, status,
       CASE WHEN status = 'decided' THEN item_status END, '{}'::jsonb, created_at, created_at + days * interval '1 day',
       CASE WHEN status <> 'draft' THEN created_at END,
       CASE WHEN status = 'decided' THEN created_at + days * interval '1 day' END,
       CASE WHEN status = 'withdrawn' THEN created_at + interval '2 days' END,
       CASE WHEN status = 'withdrawn' THEN 'no longer needed' END,
       CASE WHEN status <> 'draft' THEN created_at + promised_days * interval '1.4 day' END
FROM gen
"""
_ITEMS = """
INSERT INTO services.application_items (
    id, application_id, position, item_code, item_version, department, status, fee_minor,
    promised_at, started_at, decided_at, decided_by, reason, corrections, working_days, on_time)
SELECT item_id, id, 1, item_code, item_version, department, item_status, fee,
       CASE WHEN status <> 'draft' THEN created_at + promised_days * interval '1.4 day' END,
       CASE WHEN status <> 'draft' THEN created_at END,
       CASE WHEN status = 'decided' THEN created_at + days * interval '1 day' END,
       CASE WHEN status = 'decided' THEN 'bench-officer' END,
       CASE WHEN item_status = 'rejected' THEN 'does not meet the requirements' END,
       CASE WHEN n % 10 = 0 THEN 1 ELSE 0 END,
       CASE WHEN status = 'decided' THEN days END,
       CASE WHEN status = 'decided' THEN days <= promised_days END
FROM gen
"""


def example_form(item: catalog.Item) -> dict[str, Any]:
    examples = item.form_schema.get("examples")
    if not isinstance(examples, list) or not examples or not isinstance(examples[0], dict):
        sys.exit(f"services_data: item {item.code} has no example form (form_schema.examples[0])")
    form: dict[str, Any] = examples[0]
    errors = catalog.form_errors([item], form)
    if errors:
        sys.exit(f"services_data: the example form of {item.code} does not validate: {errors[0].detail}")
    return form


async def bench_item(conn: Connection, code: str | None) -> catalog.Item:
    if code is not None:
        found = await catalog.item(conn, code)
        if found is None or not found.active:
            sys.exit(f"services_data: no active item {code!r}")
        return found
    codes = [
        row["code"] for row in await conn.fetch("SELECT code FROM services.items WHERE active ORDER BY code")
    ]
    for each in codes:
        item = await catalog.item(conn, each)
        if item is not None and item.min_assurance == "low" and "online" in item.channels:
            return item
    sys.exit("services_data: no active online item with the lowest assurance level; name one with --item")


async def past(conn: Connection, args: argparse.Namespace, subject: str) -> None:
    items = [
        {
            "code": r["code"],
            "version": r["version"],
            "department": r["department"],
            "fee": int(r["body"]["fee_minor"]),
            "promised_days": int(r["body"]["promised_days"]),
        }
        for r in await conn.fetch(
            "SELECT code, version, department, body FROM services.items WHERE active ORDER BY code"
        )
    ]
    if not items:
        sys.exit("services_data: the catalog is empty: seed the demo city first (onewindow seed --demo)")
    await conn.execute(
        "CREATE TEMPORARY TABLE bench_items (idx int PRIMARY KEY, code text, version int, department text,"
        " fee bigint, promised_days int)"
    )
    await conn.execute(
        "INSERT INTO bench_items SELECT row_number() OVER (ORDER BY code) - 1, code, version, department,"
        " fee, promised_days FROM jsonb_to_recordset($1::jsonb)"
        " AS x(code text, version int, department text, fee bigint, promised_days int)",
        items,
    )
    start = int(await conn.fetchval("SELECT count(*) FROM services.applications")) + 1
    every = max(args.applications // args.mine, 1) if args.mine else 0
    for low in range(start, start + args.applications, args.batch):
        high = min(low + args.batch, start + args.applications) - 1
        async with conn.transaction():
            await conn.execute(_GEN)
            await conn.execute(_DRAW, low, high, every, subject, OTHERS, list(PAST_YEARS), len(items))
            await conn.execute(_APPLICATIONS)
            await conn.execute(_ITEMS)
        print(f"services_data: {high - start + 1} of {args.applications}", file=sys.stderr)
    end = start + args.applications
    for index, year in enumerate(PAST_YEARS):
        # n % 3 == index picks the year and n / 3 + 1 the serial: the largest serial of the year.
        last = max((n // 3 + 1 for n in range(max(end - 3, 1), end) if n % 3 == index), default=0)
        await conn.execute(
            """
            INSERT INTO services.number_counters (prefix, year, last) VALUES ('YC', $1, $2)
            ON CONFLICT (prefix, year) DO UPDATE SET last = greatest(services.number_counters.last, EXCLUDED.last)
            """,
            year,
            last,
        )


async def drafts(conn: Connection, args: argparse.Namespace, subject: str) -> list[str]:
    item = await bench_item(conn, args.item)
    form = example_form(item)
    requirements = catalog.checklist([item], form)
    now = await conn.fetchval("SELECT now()")
    async with conn.transaction():
        documents: dict[str, str] = {}
        for requirement in requirements:
            if not requirement.media_types and requirement.reusable_certificate is None:
                continue
            content = f"bench document {requirement.code}".encode()
            documents[requirement.code] = str(
                await conn.fetchval(
                    """
                    INSERT INTO services.documents (id, owner, kind, filename, media_type, size_bytes,
                                                    sha256, uploaded_by, uploaded_at)
                    VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $1, $7) RETURNING id
                    """,
                    subject,
                    requirement.code,
                    f"{requirement.code}.pdf",
                    requirement.media_types[0] if requirement.media_types else "application/pdf",
                    len(content),
                    hashlib.sha256(content).hexdigest(),
                    now,
                )
            )
        ids = [
            str(row["id"])
            for row in await conn.fetch(
                """
                INSERT INTO services.applications (id, applicant, created_by, channel, status, form, created_at, updated_at)
                SELECT gen_random_uuid(), $1, $1, 'online', 'draft', $2::jsonb, $3, $3 FROM generate_series(1, $4)
                RETURNING id
                """,
                subject,
                form,
                now,
                args.drafts,
            )
        ]
        await conn.execute(
            """
            INSERT INTO services.application_items (id, application_id, position, item_code, item_version,
                                                    department, status, fee_minor)
            SELECT gen_random_uuid(), a::uuid, 1, $2, $3, $4, 'pending', $5 FROM unnest($1::text[]) AS a
            """,
            ids,
            item.code,
            item.version,
            item.department,
            item.fee_minor,
        )
        for code, document in documents.items():
            await conn.execute(
                """
                INSERT INTO services.application_documents (application_id, checklist_code, document_id,
                                                            status, attached_by, attached_at)
                SELECT a::uuid, $2, $3::uuid, 'reused', $4, $5 FROM unnest($1::text[]) AS a
                """,
                ids,
                code,
                document,
                subject,
                now,
            )
    print(
        f"services_data: {args.drafts} drafts of {item.code} v{item.version} with {len(documents)} documents each",
        file=sys.stderr,
    )
    return ids


async def generate(args: argparse.Namespace) -> None:
    started = time.monotonic()
    conn = await connect(args.dsn)
    try:
        subject = await conn.fetchval(
            "SELECT id::text FROM identity.persons WHERE username = $1", args.citizen
        )
        if subject is None:
            sys.exit(f"services_data: no account {args.citizen!r}: seed the demo city first")
        await past(conn, args, subject)
        ids = await drafts(conn, args, subject) if args.drafts else []
        loaded = time.monotonic()
        for table in (
            "services.applications",
            "services.application_items",
            "services.application_documents",
        ):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
        if args.drafts_out is not None:
            ordered = sorted(ids, key=lambda i: hashlib.md5(i.encode()).hexdigest())  # noqa: S324 - a shuffle
            args.drafts_out.write_text("".join(f"{i}\n" for i in ordered))
        total = int(await conn.fetchval("SELECT count(*) FROM services.applications"))
        mine = int(
            await conn.fetchval("SELECT count(*) FROM services.applications WHERE applicant = $1", subject)
        )
    finally:
        await conn.close()
    print(
        f"services_data: {args.applications} past applications and {args.drafts} drafts in"
        f" {time.monotonic() - started:.0f} s (loading {loaded - started:.0f} s); the database now holds"
        f" {total} applications, {mine} of them {args.citizen}'s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dsn", help="postgresql://... of a migrated database with the demo city seeded")
    parser.add_argument("--applications", type=int, default=1_000_000, help="past applications")
    parser.add_argument("--drafts", type=int, default=20_000, help="drafts ready to submit")
    parser.add_argument("--citizen", default="citizen1", help="the demo account the bench signs in as")
    parser.add_argument("--mine", type=int, default=40, help="how many past applications are the citizen's")
    parser.add_argument("--item", help="the drafts' item (default: an online item of the lowest assurance)")
    parser.add_argument("--batch", type=int, default=100_000, help="applications per transaction")
    parser.add_argument("--drafts-out", type=Path, help="write the drafts' ids here, one a line")
    args = parser.parse_args()
    if args.applications < 0 or args.drafts < 0 or args.batch < 1 or args.mine < 0:
        parser.error("counts not negative, --batch at least 1")
    asyncio.run(generate(args))


if __name__ == "__main__":
    main()
