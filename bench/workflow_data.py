#!/usr/bin/env python3
"""bench/workflow_data.py: fill a migrated database with workflow instances, fast, for the bench.

Usage: .venv/bin/python bench/workflow_data.py DSN [--finished 1000000] [--open 50000]
           [--teams 50] [--batch 100000] [--staff] [--ids-out FILE]

Rows as the engine itself would leave them, written with set-based SQL (INSERT ... SELECT FROM
generate_series, one transaction per batch), then VACUUM ANALYZE and CHECKPOINT:

- one definition, `bench-review` (uploaded as tests/workflows/conftest.py `upload` does): a single
  `review` task for an officer of the subject's owner unit, deadline P5D; approve ends approved,
  reject (comment required) ends rejected;
- `--teams` units demo/market/team-01 ... under the demo city's market department (the demo seed
  must have run), and every subject belongs to one of them, round robin: its id is
  `team-07/0000123` and the bench's subject kind reads the owner unit from it;
- per subject (kind `bench`): an instance, its root token, its review task, and a row in
  bench.subjects (what the subject kind's hook updates); finished ones ended approved (80 %) or
  rejected, task completed, history `started` and `action`; open ones running, task open with a
  due date spread over the next 30 days, history `started`, timers `warn` (when still ahead)
  and `breach`;
- `--staff`: the accounts the bench signs in as (password: ONEWINDOW_DEMO_PASSWORD, else the
  demo's): bench-team-officer (officer of demo/market/team-01, who sees 1/teams of the open
  tasks) and bench-supervisor (supervisor of demo/market, who sees them all). The demo's
  officer1 (officer of demo/market) acts on tasks;
- `--ids-out FILE`: the ids of the open tasks, one a line, shuffled.

Runs again on the same database add more subjects (numbering continues).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

import asyncpg
import msgspec

from identity import store as identity_store
from identity.credentials import PasswordHashing, hash_password
from onewindow.db import Connection, connect
from workflows import engine
from workflows import store as workflow_store
from workflows.definitions import parse

KIND = "bench"
DEFINITION = """
key: bench-review
name: Bench review
start: review
states:
  review:
    type: task
    role: officer
    unit: owner
    deadline: P5D
    actions:
      approve: {target: approved}
      reject: {target: rejected, require: [comment]}
  approved: {type: end, outcome: approved}
  rejected: {type: end, outcome: rejected}
"""
BUDGET_S = 5 * 86400  # P5D on the working-days clock: five days of 24 hours
DEPARTMENT = "market"
TEAM_OFFICER = "bench-team-officer"
SUPERVISOR = "bench-supervisor"

# One batch of subjects n in [$1, $2]: everything random is drawn once, into `gen`, so the rows
# of every table agree. Ids are md5 of the number: spread like gen_random_uuid's, and derivable.
_GEN = """
CREATE TEMPORARY TABLE gen (
    n bigint, definition_id uuid, version int, instance_id uuid, token_id uuid, task_id uuid, team text, subject_id text, unit_path text,
    started_at timestamptz, completed_at timestamptz, open_due_at timestamptz, outcome text
) ON COMMIT DROP
"""
_DRAW = """
INSERT INTO gen
SELECT n,
       $5::uuid,
       $6::int,
       md5('instance:' || n)::uuid,
       md5('token:' || n)::uuid,
       md5('task:' || n)::uuid,
       team,
       team || '/' || lpad(n::text, 7, '0'),
       'demo/{department}/' || team,
       started_at,
       started_at + random() * interval '5 days',
       now() + interval '1 minute' + random() * interval '30 days',
       CASE WHEN random() < 0.8 THEN 'approved' ELSE 'rejected' END
FROM (
    SELECT n,
           'team-' || lpad((1 + n % $3)::text, 2, '0') AS team,
           CASE WHEN $4 THEN now() - interval '7 days' - random() * interval '365 days'
                ELSE now() - random() * interval '3 days' END AS started_at
    FROM generate_series($1::bigint, $2::bigint) AS n
) AS drawn
"""

_FINISHED = [
    """
    INSERT INTO workflows.instances (id, definition_id, subject_kind, subject_id, status, outcome,
        started_by, started_at, ended_at, version)
    SELECT instance_id, definition_id, '{kind}', subject_id, 'ended', outcome, 'intake', started_at, completed_at, 2
    FROM gen
    """,
    """
    INSERT INTO workflows.tokens (id, instance_id, state, status, outcome)
    SELECT token_id, instance_id, outcome, 'done', outcome FROM gen
    """,
    """
    INSERT INTO workflows.tasks (id, instance_id, token_id, definition_id, subject_kind, subject_id, state,
        kind, role, unit_path, status, created_at, due_at, budget_s, completed_at, completed_by, action, version)
    SELECT task_id, instance_id, token_id, definition_id, '{kind}', subject_id, 'review', 'task', 'officer', unit_path,
        'completed', started_at, started_at + interval '7 days', {budget}, completed_at,
        'officer-' || team, CASE outcome WHEN 'approved' THEN 'approve' ELSE 'reject' END, 2
    FROM gen
    """,
    """
    INSERT INTO workflows.history (instance_id, task_id, at, event, actor, actor_name, actor_role, actor_unit,
        action, from_state, to_state, comment, data, due_at)
    SELECT instance_id, NULL, started_at, 'started', 'intake', NULL, NULL, NULL, NULL, NULL, 'review', NULL,
        jsonb_build_object('version', version), NULL
    FROM gen
    UNION ALL
    SELECT instance_id, task_id, completed_at, 'action', 'officer-' || team, 'Officer ' || team, 'officer',
        unit_path, CASE outcome WHEN 'approved' THEN 'approve' ELSE 'reject' END, 'review', outcome,
        CASE outcome WHEN 'rejected' THEN 'The documents are incomplete.' END, '{{}}',
        started_at + interval '7 days'
    FROM gen
    """,
    "INSERT INTO bench.subjects (id, state) SELECT subject_id, outcome FROM gen",
]

_OPEN = [
    """
    INSERT INTO workflows.instances (id, definition_id, subject_kind, subject_id, started_by, started_at)
    SELECT instance_id, definition_id, '{kind}', subject_id, 'intake', started_at FROM gen
    """,
    """
    INSERT INTO workflows.tokens (id, instance_id, state) SELECT token_id, instance_id, 'review' FROM gen
    """,
    """
    INSERT INTO workflows.tasks (id, instance_id, token_id, definition_id, subject_kind, subject_id, state,
        kind, role, unit_path, created_at, due_at, budget_s)
    SELECT task_id, instance_id, token_id, definition_id, '{kind}', subject_id, 'review', 'task', 'officer', unit_path,
        started_at, open_due_at, {budget}
    FROM gen
    """,
    """
    INSERT INTO workflows.history (instance_id, at, event, actor, to_state, data)
    SELECT instance_id, started_at, 'started', 'intake', 'review', jsonb_build_object('version', version)
    FROM gen
    """,
    # The warning fires once 80 % of the budget is used: a working day before the due date.
    """
    INSERT INTO workflows.timers (instance_id, task_id, kind, fire_at)
    SELECT instance_id, task_id, 'warn', open_due_at - interval '1 day' FROM gen
    WHERE open_due_at - interval '1 day' > now()
    UNION ALL
    SELECT instance_id, task_id, 'breach', open_due_at FROM gen
    """,
    "INSERT INTO bench.subjects (id, state) SELECT subject_id, 'review' FROM gen",
]

_SUBJECTS = """
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.subjects (
    id          text PRIMARY KEY,
    state       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
"""


def _sql(template: str) -> str:
    return template.format(kind=KIND, budget=BUDGET_S, department=DEPARTMENT)


async def _definition(conn: Connection) -> workflow_store.DefinitionRow:
    """The bench's definition: the stored one when identical, else uploaded as the next version."""
    definition = parse(DEFINITION, media_type="yaml")
    body = msgspec.to_builtins(definition)
    checksum = engine.fingerprint(body)
    latest = await workflow_store.definition(conn, definition.key)
    if latest is not None and latest.checksum == checksum:
        return latest
    return await workflow_store.insert_definition(
        conn,
        key=definition.key,
        name=definition.name,
        body=body,
        source=DEFINITION,
        media_type="yaml",
        checksum=checksum,
        created_by="bench",
    )


async def _teams(conn: Connection, teams: int) -> dict[str, identity_store.UnitRow]:
    department = await identity_store.unit_by_code(conn, DEPARTMENT)
    if department is None:
        sys.exit(f"workflow_data: no unit {DEPARTMENT!r}: seed the demo city first (onewindow seed --demo)")
    units = {DEPARTMENT: department}
    for number in range(1, teams + 1):
        code = f"team-{number:02d}"
        units[code] = await identity_store.upsert_unit(
            conn,
            code=code,
            kind="department",
            parent=department,
            name_zh=f"市场监管第{number}组",
            name_en=f"Market team {number}",
        )
    return units


async def _staff(conn: Connection, units: dict[str, identity_store.UnitRow]) -> None:
    password = os.environ.get("ONEWINDOW_DEMO_PASSWORD", "onewindow-demo")
    hashed = hash_password(password, PasswordHashing())
    for username, name, role, unit in (
        (TEAM_OFFICER, "Bench officer (market team 01)", "officer", "team-01"),
        (SUPERVISOR, "Bench supervisor (market)", "supervisor", DEPARTMENT),
    ):
        person = await identity_store.upsert_person_by_username(
            conn, username=username, display_name=name, email=None, locale="en"
        )
        await identity_store.set_password_hash(conn, person.id, hashed)
        await identity_store.insert_role_assignment(
            conn, person_id=person.id, role=role, unit_id=units[unit].id, granted_by=None
        )


async def _batch(
    conn: Connection,
    definition: workflow_store.DefinitionRow,
    first: int,
    last: int,
    teams: int,
    *,
    finished: bool,
) -> None:
    async with conn.transaction():
        await conn.execute(_GEN)
        await conn.execute(_sql(_DRAW), first, last, teams, finished, definition.id, definition.version)
        for statement in _FINISHED if finished else _OPEN:
            await conn.execute(_sql(statement))


async def generate(args: argparse.Namespace) -> None:
    started = time.monotonic()
    conn = await connect(args.dsn)
    try:
        if await conn.fetchval("SELECT to_regclass('workflows.tasks')") is None:
            sys.exit("workflow_data: the database has no workflows schema: run `onewindow migrate` first")
        await conn.execute(_SUBJECTS)
        async with conn.transaction():
            definition = await _definition(conn)
            units = await _teams(conn, args.teams)
            if args.staff:
                await _staff(conn, units)
        offset = int(await conn.fetchval("SELECT count(*) FROM bench.subjects"))
        total = args.finished + args.open
        done = 0
        for finished, count in ((True, args.finished), (False, args.open)):
            base = offset + done
            for first in range(base + 1, base + count + 1, args.batch):
                last = min(first + args.batch - 1, base + count)
                await _batch(conn, definition, first, last, args.teams, finished=finished)
                done += last - first + 1
                print(
                    f"workflow_data: {done}/{total} subjects ({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                )
        loaded = time.monotonic()
        for table in (
            "workflows.instances",
            "workflows.tokens",
            "workflows.tasks",
            "workflows.history",
            "workflows.timers",
            "bench.subjects",
            "identity.org_units",
        ):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        # What was just written goes to disk now, not during the measurements that follow.
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
        analysed = time.monotonic()
        if args.ids_out is not None:
            rows = await conn.fetch(
                "SELECT id FROM workflows.tasks WHERE status = 'open' AND subject_kind = $1 ORDER BY md5(id::text)",
                KIND,
            )
            args.ids_out.write_text("".join(f"{row['id']}\n" for row in rows))
        tasks = int(await conn.fetchval("SELECT count(*) FROM workflows.tasks"))
        still_open = int(await conn.fetchval("SELECT count(*) FROM workflows.tasks WHERE status = 'open'"))
    finally:
        await conn.close()
    print(
        f"workflow_data: {args.finished} finished and {args.open} open subjects over {args.teams} teams"
        f" in {time.monotonic() - started:.0f} s (loading {loaded - started:.0f} s, VACUUM ANALYZE and CHECKPOINT"
        f" {analysed - loaded:.0f} s); the database now holds {tasks} tasks, {still_open} open"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dsn", help="postgresql://... of a migrated database with the demo city seeded")
    parser.add_argument("--finished", type=int, default=1_000_000, help="finished subjects (task completed)")
    parser.add_argument("--open", type=int, default=50_000, help="subjects with an open task")
    parser.add_argument("--teams", type=int, default=50, help="units under demo/market the tasks spread over")
    parser.add_argument("--batch", type=int, default=100_000, help="subjects per transaction")
    parser.add_argument("--staff", action="store_true", help="create the bench's staff accounts")
    parser.add_argument("--ids-out", type=Path, help="write the open tasks' ids here, one a line")
    args = parser.parse_args()
    if not 1 <= args.teams <= 99 or args.batch < 1 or args.finished < 0 or args.open < 0:
        parser.error("--teams is 1..99, --batch at least 1, counts not negative")
    asyncio.run(generate(args))


if __name__ == "__main__":
    main()
