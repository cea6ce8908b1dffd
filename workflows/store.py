"""The workflow engine's SQL. Functions take `conn` first and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

import msgspec

from onewindow import idempotency, outbox
from onewindow.db import Connection, row_as, rows_as
from onewindow.events import Event


class DefinitionRow(msgspec.Struct, frozen=True):
    id: UUID
    key: str
    version: int
    name: str
    body: dict[str, Any]
    source: str
    media_type: str
    checksum: bytes
    created_by: str
    created_at: datetime


class InstanceRow(msgspec.Struct):
    id: UUID
    definition_id: UUID
    subject_kind: str
    subject_id: str
    status: str
    outcome: str | None
    vars: dict[str, Any]
    started_by: str
    started_at: datetime
    ended_at: datetime | None
    due_at: datetime | None
    remaining_s: int | None
    warned: bool
    breached: bool
    pauses: int
    version: int


class TokenRow(msgspec.Struct):
    id: UUID
    instance_id: UUID
    parent_id: UUID | None
    branch: str | None
    state: str
    status: str
    outcome: str | None
    resume_state: str | None
    resume_s: int | None


class TaskRow(msgspec.Struct):
    id: UUID
    instance_id: UUID
    token_id: UUID
    definition_id: UUID
    subject_kind: str
    subject_id: str
    state: str
    kind: str
    role: str | None
    unit_path: str | None
    assignee: str | None
    status: str
    created_at: datetime
    due_at: datetime
    budget_s: int | None
    warned: bool
    breached: bool
    completed_at: datetime | None
    completed_by: str | None
    action: str | None
    version: int


class TimerRow(msgspec.Struct, frozen=True):
    id: int
    instance_id: UUID
    task_id: UUID | None
    kind: str
    fire_at: datetime


class HistoryRow(msgspec.Struct, frozen=True):
    seq: int
    instance_id: UUID
    task_id: UUID | None
    at: datetime
    event: str
    actor: str
    actor_name: str | None
    actor_role: str | None
    actor_unit: str | None
    action: str | None
    from_state: str | None
    to_state: str | None
    comment: str | None
    attachments: list[Any]
    data: dict[str, Any]
    due_at: datetime | None


class CalendarDayRow(msgspec.Struct, frozen=True):
    day: date
    working: bool
    name: str
    updated_by: str
    updated_at: datetime


class DelegationRow(msgspec.Struct, frozen=True):
    id: UUID
    person: str
    delegate: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


_DEFINITION = "id, key, version, name, body, source, media_type, checksum, created_by, created_at"
_INSTANCE = (
    "id, definition_id, subject_kind, subject_id, status, outcome, vars, started_by, started_at,"
    " ended_at, due_at, remaining_s, warned, breached, pauses, version"
)
_TOKEN = "id, instance_id, parent_id, branch, state, status, outcome, resume_state, resume_s"
_TASK = (
    "id, instance_id, token_id, definition_id, subject_kind, subject_id, state, kind, role, unit_path, assignee, status,"
    " created_at, due_at, budget_s, warned, breached, completed_at, completed_by, action, version"
)
_HISTORY = (
    "seq, instance_id, task_id, at, event, actor, actor_name, actor_role, actor_unit, action,"
    " from_state, to_state, comment, attachments, data, due_at"
)
_DELEGATION = "id, person, delegate, starts_at, ends_at, reason, created_by, created_at, revoked_at"


# --- definitions -------------------------------------------------------------------------------


async def lock_definition_key(conn: Connection, key: str) -> None:
    """Serialise uploads of one key, so two at once get versions n and n+1, not a conflict."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('workflows.definition:' || $1))", key)


async def insert_definition(
    conn: Connection,
    *,
    key: str,
    name: str,
    body: dict[str, Any],
    source: str,
    media_type: str,
    checksum: bytes,
    created_by: str,
) -> DefinitionRow:
    row = await conn.fetchrow(
        f"""
        INSERT INTO workflows.definitions (key, version, name, body, source, media_type, checksum, created_by)
        SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6, $7
        FROM workflows.definitions WHERE key = $1
        RETURNING {_DEFINITION}
        """,
        key,
        name,
        body,
        source,
        media_type,
        checksum,
        created_by,
    )
    return row_as(row, DefinitionRow)


async def definition(conn: Connection, key: str, version: int | None = None) -> DefinitionRow | None:
    """Version `version` of `key`, or its latest."""
    row = await conn.fetchrow(
        f"SELECT {_DEFINITION} FROM workflows.definitions WHERE key = $1 AND ($2::int IS NULL OR version = $2)"
        " ORDER BY version DESC LIMIT 1",
        key,
        version,
    )
    return row_as(row, DefinitionRow) if row else None


async def definition_by_id(conn: Connection, definition_id: UUID) -> DefinitionRow | None:
    row = await conn.fetchrow(f"SELECT {_DEFINITION} FROM workflows.definitions WHERE id = $1", definition_id)
    return row_as(row, DefinitionRow) if row else None


async def latest_definitions(conn: Connection) -> list[DefinitionRow]:
    rows = await conn.fetch(
        f"SELECT DISTINCT ON (key) {_DEFINITION} FROM workflows.definitions ORDER BY key, version DESC"
    )
    return rows_as(rows, DefinitionRow)


async def definition_versions(conn: Connection, key: str) -> list[DefinitionRow]:
    rows = await conn.fetch(
        f"SELECT {_DEFINITION} FROM workflows.definitions WHERE key = $1 ORDER BY version", key
    )
    return rows_as(rows, DefinitionRow)


# --- calendar ----------------------------------------------------------------------------------


async def calendar_version(conn: Connection) -> int:
    version: int = await conn.fetchval("SELECT version FROM workflows.calendar_version")
    return version


async def calendar_days(
    conn: Connection, start: date | None = None, end: date | None = None
) -> list[CalendarDayRow]:
    rows = await conn.fetch(
        "SELECT day, working, name, updated_by, updated_at FROM workflows.calendar_days"
        " WHERE ($1::date IS NULL OR day >= $1) AND ($2::date IS NULL OR day <= $2) ORDER BY day",
        start,
        end,
    )
    return rows_as(rows, CalendarDayRow)


async def put_calendar_day(
    conn: Connection, *, day: date, working: bool, name: str, by: str
) -> CalendarDayRow:
    row = await conn.fetchrow(
        """
        INSERT INTO workflows.calendar_days (day, working, name, updated_by) VALUES ($1, $2, $3, $4)
        ON CONFLICT (day) DO UPDATE SET working = excluded.working, name = excluded.name,
            updated_by = excluded.updated_by, updated_at = now()
        RETURNING day, working, name, updated_by, updated_at
        """,
        day,
        working,
        name,
        by,
    )
    return row_as(row, CalendarDayRow)


async def delete_calendar_day(conn: Connection, day: date) -> bool:
    result: str = await conn.execute("DELETE FROM workflows.calendar_days WHERE day = $1", day)
    return result != "DELETE 0"


# --- instances and tokens ----------------------------------------------------------------------


async def insert_instance(
    conn: Connection,
    *,
    definition_id: UUID,
    subject_kind: str,
    subject_id: str,
    vars: dict[str, Any],
    started_by: str,
    started_at: datetime,
) -> InstanceRow | None:
    """None when the subject already has an instance."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO workflows.instances (definition_id, subject_kind, subject_id, vars, started_by, started_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (subject_kind, subject_id) DO NOTHING
        RETURNING {_INSTANCE}
        """,
        definition_id,
        subject_kind,
        subject_id,
        vars,
        started_by,
        started_at,
    )
    return row_as(row, InstanceRow) if row else None


async def lock_instance(conn: Connection, instance_id: UUID) -> tuple[InstanceRow, int] | None:
    """The instance, locked for this transaction (every change to an instance takes this lock
    first, so parallel branches and timers act one at a time), and the calendar's version."""
    row = await conn.fetchrow(
        f"SELECT {_INSTANCE}, (SELECT version FROM workflows.calendar_version) AS calendar_version"
        " FROM workflows.instances WHERE id = $1 FOR UPDATE",
        instance_id,
    )
    if row is None:
        return None
    return row_as(row, InstanceRow), row["calendar_version"]


class LockedStep(msgspec.Struct, frozen=True):
    instance: InstanceRow
    calendar_version: int
    tokens: list[TokenRow]
    tasks: list[TaskRow]


async def lock_step_of_task(conn: Connection, task_id: UUID) -> LockedStep | None:
    """`lock_instance` for the instance a task belongs to, with its tokens and open tasks (as
    `work` reads them, after the lock), in one round trip (migrations 0011, 0015)."""
    found = await conn.fetchval("SELECT workflows.lock_task_step($1)::text", task_id)
    return None if found is None else msgspec.json.decode(found, type=LockedStep)


# One row per task, in the order of their instances' ids (transactions that lock several
# instances take them in one order, so they never wait for each other in a circle): its
# Idempotency-Key reserved first (migration 0015; none when the key is NULL), then
# `lock_step_of_task`. The reservation is volatile, so PostgreSQL evaluates it after the sort,
# row by row, just before the lock of the same row.
_LOCK_STEPS = """
SELECT r.n, r.answered, workflows.lock_task_step(r.task)::text AS step
FROM (
    SELECT x.n, x.task,
        CASE WHEN x.key IS NOT NULL THEN onewindow.reserve_idempotency_key(
            x.principal, x.scope, x.key, decode(x.fingerprint, 'base64')) END AS answered
    FROM ROWS FROM (json_to_recordset($1::json) AS (task uuid, principal text, scope text, key text,
        fingerprint text)) WITH ORDINALITY AS x(task, principal, scope, key, fingerprint, n)
    ORDER BY (SELECT t.instance_id FROM workflows.tasks t WHERE t.id = x.task), x.n
    OFFSET 0
) r
"""


async def lock_steps_of_tasks(
    conn: Connection, tasks: Sequence[tuple[UUID, idempotency.Claim | None]]
) -> list[tuple[LockedStep | None, Any]]:
    """`lock_step_of_task` for several tasks in one round trip, each task's Idempotency-Key
    (`claim`) reserved before its lock. Per task, in the order given: the locked step (None: no
    such task) and what the reservation found (`idempotency.stored` reads it: None, go ahead)."""
    rows = await conn.fetch(
        _LOCK_STEPS,
        [{"task": task_id, **({} if claim is None else claim.row())} for task_id, claim in tasks],
    )
    found: list[tuple[LockedStep | None, Any]] = [(None, None)] * len(tasks)
    for row in rows:
        step = row["step"]
        found[row["n"] - 1] = (
            None if step is None else msgspec.json.decode(step, type=LockedStep),
            row["answered"],
        )
    return found


async def try_lock_instance(conn: Connection, instance_id: UUID) -> tuple[InstanceRow, int] | None:
    """As `lock_instance`, but None at once when someone else holds it (the timer scan skips it)."""
    row = await conn.fetchrow(
        f"SELECT {_INSTANCE}, (SELECT version FROM workflows.calendar_version) AS calendar_version"
        " FROM workflows.instances WHERE id = $1 FOR UPDATE SKIP LOCKED",
        instance_id,
    )
    if row is None:
        return None
    return row_as(row, InstanceRow), row["calendar_version"]


async def instance(conn: Connection, instance_id: UUID) -> InstanceRow | None:
    row = await conn.fetchrow(f"SELECT {_INSTANCE} FROM workflows.instances WHERE id = $1", instance_id)
    return row_as(row, InstanceRow) if row else None


async def instance_by_subject(conn: Connection, subject_kind: str, subject_id: str) -> InstanceRow | None:
    row = await conn.fetchrow(
        f"SELECT {_INSTANCE} FROM workflows.instances WHERE subject_kind = $1 AND subject_id = $2",
        subject_kind,
        subject_id,
    )
    return row_as(row, InstanceRow) if row else None


async def work(conn: Connection, instance_id: UUID) -> tuple[list[TokenRow], list[TaskRow]]:
    """An instance's tokens and open tasks in one round trip (after its lock is held: a fresh
    statement, so what another transaction committed while we waited for the lock is seen)."""
    row: Any = await conn.fetchrow(
        f"""
        SELECT (SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]') FROM (
                    SELECT {_TOKEN} FROM workflows.tokens WHERE instance_id = $1) t) AS tokens,
               (SELECT coalesce(jsonb_agg(to_jsonb(k)), '[]') FROM (
                    SELECT {_TASK} FROM workflows.tasks WHERE instance_id = $1 AND status = 'open'
                    ORDER BY created_at, id) k) AS tasks
        """,
        instance_id,
    )
    return msgspec.convert(row["tokens"], list[TokenRow]), msgspec.convert(row["tasks"], list[TaskRow])


async def tokens(conn: Connection, instance_id: UUID) -> list[TokenRow]:
    rows = await conn.fetch(f"SELECT {_TOKEN} FROM workflows.tokens WHERE instance_id = $1", instance_id)
    return rows_as(rows, TokenRow)


async def insert_token(
    conn: Connection, *, instance_id: UUID, parent_id: UUID | None, branch: str | None, state: str
) -> TokenRow:
    row = await conn.fetchrow(
        f"INSERT INTO workflows.tokens (instance_id, parent_id, branch, state) VALUES ($1, $2, $3, $4)"
        f" RETURNING {_TOKEN}",
        instance_id,
        parent_id,
        branch,
        state,
    )
    return row_as(row, TokenRow)


# --- tasks -------------------------------------------------------------------------------------


async def insert_task(
    conn: Connection,
    *,
    instance: InstanceRow,
    token_id: UUID,
    state: str,
    kind: str,
    role: str | None,
    unit_path: str | None,
    assignee: str | None,
    created_at: datetime,
    due_at: datetime,
    budget_s: int | None,
    warn_at: datetime | None = None,
) -> TaskRow:
    """The task, and its deadline's timers when it has one (`budget_s`): breach at `due_at`,
    a warning at `warn_at` (None: none), in one statement."""
    row = await conn.fetchrow(
        f"""
        WITH task AS (
            INSERT INTO workflows.tasks (instance_id, token_id, definition_id, subject_kind, subject_id, state,
                kind, role, unit_path, assignee, created_at, due_at, budget_s)
            VALUES ($1, $2, $13, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            RETURNING {_TASK}
        ), timers AS (
            INSERT INTO workflows.timers (instance_id, task_id, kind, fire_at)
            SELECT task.instance_id, task.id, t.kind, t.fire_at
            FROM task, (VALUES ('warn', $14::timestamptz), ('breach', $11)) AS t(kind, fire_at)
            WHERE task.budget_s IS NOT NULL AND t.fire_at IS NOT NULL
        )
        SELECT {_TASK} FROM task
        """,
        instance.id,
        token_id,
        instance.subject_kind,
        instance.subject_id,
        state,
        kind,
        role,
        unit_path,
        assignee,
        created_at,
        due_at,
        budget_s,
        instance.definition_id,
        warn_at,
    )
    return row_as(row, TaskRow)


async def task(conn: Connection, task_id: UUID) -> TaskRow | None:
    row = await conn.fetchrow(f"SELECT {_TASK} FROM workflows.tasks WHERE id = $1", task_id)
    return row_as(row, TaskRow) if row else None


async def open_tasks(conn: Connection, instance_id: UUID) -> list[TaskRow]:
    rows = await conn.fetch(
        f"SELECT {_TASK} FROM workflows.tasks WHERE instance_id = $1 AND status = 'open' ORDER BY created_at, id",
        instance_id,
    )
    return rows_as(rows, TaskRow)


async def instance_tasks(conn: Connection, instance_id: UUID) -> list[TaskRow]:
    rows = await conn.fetch(
        f"SELECT {_TASK} FROM workflows.tasks WHERE instance_id = $1 ORDER BY created_at, id", instance_id
    )
    return rows_as(rows, TaskRow)


_INBOX_FILTERS = """
  AND ($4::text IS NULL OR t.subject_kind = $4)
  AND ($5::text IS NULL OR t.state = $5)
  AND ($6::text IS NULL OR t.unit_path = $6 OR (t.unit_path > $6 || '/' AND t.unit_path < $6 || '0'))
  AND ($7::timestamptz IS NULL OR t.due_at >= $7)
  AND ($8::timestamptz IS NULL OR t.due_at < $8)
  AND ($9::timestamptz IS NULL OR (t.due_at, t.id) > ($9, $10::uuid))
"""

# Someone who oversees units (a supervisor, a command centre) usually sees many tasks: walk the
# open tasks by due date and stop at the page's end.
_INBOX_OVERSEER = f"""
SELECT {_TASK} FROM workflows.tasks t
WHERE t.status = 'open'
  AND (
    t.assignee = ANY($1::text[])
    OR EXISTS (
      SELECT 1 FROM unnest($2::text[], $3::text[]) AS g(role, path)
      WHERE (g.role IN ('supervisor', 'command_centre') OR (g.role = t.role AND t.assignee IS NULL))
        AND (t.unit_path = g.path OR (t.unit_path > g.path || '/' AND t.unit_path < g.path || '0'))
    )
  )
  {_INBOX_FILTERS}
  AND (NOT $12::boolean OR t.assignee IS NULL)
ORDER BY t.due_at, t.id
LIMIT $11
"""

# Everyone else sees their own tasks and their roles' queues, however few: one index lookup per
# person and per role held (a walk by due date would read every open task of the city to find
# none), each stopped at the page's end, then merged.
_INBOX_MEMBER = f"""
WITH mine AS (
  SELECT found.id FROM unnest($1::text[]) AS p(person)
  CROSS JOIN LATERAL (
    SELECT t.id FROM workflows.tasks t
    WHERE t.status = 'open' AND t.assignee = p.person AND NOT $12::boolean
    {_INBOX_FILTERS}
    ORDER BY t.due_at, t.id
    LIMIT $11
  ) found
), queues AS (
  SELECT found.id FROM unnest($2::text[], $3::text[]) AS g(role, path)
  CROSS JOIN LATERAL (
    SELECT t.id FROM workflows.tasks t
    WHERE t.status = 'open' AND t.role = g.role AND t.assignee IS NULL
      AND (t.unit_path = g.path OR (t.unit_path > g.path || '/' AND t.unit_path < g.path || '0'))
    {_INBOX_FILTERS}
    ORDER BY t.due_at, t.id
    LIMIT $11
  ) found
)
SELECT {_TASK} FROM workflows.tasks t
WHERE t.id IN (SELECT id FROM mine UNION SELECT id FROM queues)
ORDER BY t.due_at, t.id
LIMIT $11
"""


async def inbox(
    conn: Connection,
    *,
    people: list[str],
    roles: list[str],
    paths: list[str],
    subject_kind: str | None,
    state: str | None,
    unit: str | None,
    due_from: datetime | None,
    due_before: datetime | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
    unclaimed_only: bool = False,
) -> list[TaskRow]:
    """Open tasks the caller may work on: claimed by `people` (the caller and whoever delegated to
    them), unclaimed in a unit where they hold the task's role, or anything in a unit they
    supervise; by due date. A unit path prefix is a byte range (`/` < `0`), which the index serves."""
    overseer = any(role in ("supervisor", "command_centre") for role in roles)
    rows = await conn.fetch(
        _INBOX_OVERSEER if overseer else _INBOX_MEMBER,
        people,
        roles,
        paths,
        subject_kind,
        state,
        unit,
        due_from,
        due_before,
        after[0] if after else None,
        after[1] if after else None,
        limit,
        unclaimed_only,
    )
    return rows_as(rows, TaskRow)


# --- timers ------------------------------------------------------------------------------------


async def insert_timers(
    conn: Connection,
    *,
    instance_id: UUID,
    task_id: UUID | None,
    warn_at: datetime | None,
    breach_at: datetime,
) -> None:
    """A deadline's breach timer, and its warning timer unless `warn_at` is None."""
    await conn.execute(
        "INSERT INTO workflows.timers (instance_id, task_id, kind, fire_at)"
        " SELECT $1, $2, kind, fire_at FROM (VALUES ('warn', $3::timestamptz), ('breach', $4::timestamptz))"
        " AS t(kind, fire_at) WHERE fire_at IS NOT NULL",
        instance_id,
        task_id,
        warn_at,
        breach_at,
    )


async def drop_instance_timers(conn: Connection, instance_id: UUID) -> None:
    """The instance's own timers (not its tasks')."""
    await conn.execute(
        "DELETE FROM workflows.timers WHERE instance_id = $1 AND task_id IS NULL AND fired_at IS NULL",
        instance_id,
    )


async def due_timers(conn: Connection, now: datetime, limit: int) -> list[TimerRow]:
    rows = await conn.fetch(
        "SELECT id, instance_id, task_id, kind, fire_at FROM workflows.timers"
        " WHERE fired_at IS NULL AND fire_at <= $1 ORDER BY fire_at, id LIMIT $2",
        now,
        limit,
    )
    return rows_as(rows, TimerRow)


async def claim_timer(conn: Connection, timer_id: int) -> TimerRow | None:
    """The timer, locked, if it is still unfired (the caller holds its instance's lock)."""
    row = await conn.fetchrow(
        "SELECT id, instance_id, task_id, kind, fire_at FROM workflows.timers"
        " WHERE id = $1 AND fired_at IS NULL FOR UPDATE",
        timer_id,
    )
    return row_as(row, TimerRow) if row else None


async def mark_timer(conn: Connection, timer_id: int, fired_at: datetime, error: str | None = None) -> None:
    await conn.execute(
        "UPDATE workflows.timers SET fired_at = $2, error = $3 WHERE id = $1", timer_id, fired_at, error
    )


# --- history -----------------------------------------------------------------------------------


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One history row before it is written (`flush` writes a step's entries in order)."""

    instance_id: UUID
    at: datetime
    event: str
    actor: str
    task_id: UUID | None = None
    actor_name: str | None = None
    actor_role: str | None = None
    actor_unit: str | None = None
    action: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    comment: str | None = None
    attachments: list[Any] = msgspec.field(default_factory=list)
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    due_at: datetime | None = None


class Staged(msgspec.Struct, frozen=True, kw_only=True):
    """What one step writes, as `flush` takes it: the instance row (None: unchanged), the tasks
    and tokens it changed (rows that exist already: inserts are not staged; a task's version is
    written as given), the tasks whose unfired timers go (closed: their deadlines no longer run),
    its new history entries and its events for the outbox, in order, and `answer`, the reply an
    Idempotency-Key keeps."""

    instance: InstanceRow | None
    tasks: list[TaskRow]
    drop_timers: list[UUID]
    tokens: list[TokenRow]
    history: list[HistoryEntry]
    events: list[Event]
    answer: idempotency.Answer | None = None


# Each part is a data-modifying CTE: PostgreSQL runs every one to completion, read or not. Every
# part takes its rows as json, so one statement text serves one step or many.
_FLUSH = """
WITH saved AS (
    UPDATE workflows.instances i SET status = v.status, outcome = v.outcome, vars = v.vars,
        ended_at = v.ended_at, due_at = v.due_at, remaining_s = v.remaining_s, warned = v.warned,
        breached = v.breached, pauses = v.pauses, version = i.version + 1
    FROM json_to_recordset($1::json) AS v(id uuid, status text, outcome text, vars jsonb,
        ended_at timestamptz, due_at timestamptz, remaining_s bigint, warned boolean, breached boolean,
        pauses integer)
    WHERE i.id = v.id
), tasks_saved AS (
    UPDATE workflows.tasks t SET role = v.role, unit_path = v.unit_path, assignee = v.assignee,
        status = v.status, due_at = v.due_at, warned = v.warned, breached = v.breached,
        completed_at = v.completed_at, completed_by = v.completed_by, action = v.action, version = v.version
    FROM json_to_recordset($3::json) AS v(id uuid, role text, unit_path text, assignee text, status text,
        due_at timestamptz, warned boolean, breached boolean, completed_at timestamptz, completed_by text,
        action text, version integer)
    WHERE t.id = v.id
), timers_dropped AS (
    DELETE FROM workflows.timers WHERE task_id IN (SELECT value::uuid FROM json_array_elements_text($4::json))
        AND fired_at IS NULL
), tokens_saved AS (
    UPDATE workflows.tokens k SET state = v.state, status = v.status, outcome = v.outcome,
        resume_state = v.resume_state, resume_s = v.resume_s
    FROM json_to_recordset($5::json) AS v(id uuid, state text, status text, outcome text,
        resume_state text, resume_s bigint)
    WHERE k.id = v.id
), recorded AS (
    INSERT INTO workflows.history (instance_id, task_id, at, event, actor, actor_name, actor_role,
        actor_unit, action, from_state, to_state, comment, attachments, data, due_at)
    SELECT h.instance_id, h.task_id, h.at, h.event, h.actor, h.actor_name, h.actor_role, h.actor_unit,
        h.action, h.from_state, h.to_state, h.comment, h.attachments, h.data, h.due_at
    FROM ROWS FROM (json_to_recordset($2::json) AS (
        instance_id uuid, task_id uuid, at timestamptz, event text, actor text, actor_name text,
        actor_role text, actor_unit text, action text, from_state text, to_state text, comment text,
        attachments jsonb, data jsonb, due_at timestamptz)) WITH ORDINALITY AS h
    ORDER BY h.ordinality
), published AS ({published}){answered}
SELECT 1
"""
_EVENTS_PARAM = 6


async def flush(conn: Connection, steps: Sequence[Staged]) -> None:
    """The writes of `steps` (`Staged`), in one round trip, each step's history and events in
    their order and the steps in theirs."""
    events = [event for step in steps for event in step.events]
    answers = [step.answer for step in steps if step.answer is not None]
    published, staged_events = outbox.staged(events, _EVENTS_PARAM)
    answered, answer_args = ("", []) if not answers else idempotency.staged(answers, _EVENTS_PARAM + 1)
    await conn.execute(
        _FLUSH.replace("{published}", published).replace("{answered}", answered),
        [step.instance for step in steps if step.instance is not None],
        [entry for step in steps for entry in step.history],
        [task for step in steps for task in step.tasks],
        [task_id for step in steps for task_id in step.drop_timers],
        [token for step in steps for token in step.tokens],
        staged_events,
        *answer_args,
    )


async def history(conn: Connection, instance_id: UUID) -> list[HistoryRow]:
    rows = await conn.fetch(
        f"SELECT {_HISTORY} FROM workflows.history WHERE instance_id = $1 ORDER BY seq", instance_id
    )
    return rows_as(rows, HistoryRow)


# --- delegations -------------------------------------------------------------------------------


async def delegators(conn: Connection, delegate: str, now: datetime) -> list[str]:
    """The people whose tasks `delegate` stands in for right now."""
    rows = await conn.fetch(
        "SELECT DISTINCT person FROM workflows.delegations"
        " WHERE delegate = $1 AND revoked_at IS NULL AND starts_at <= $2 AND ends_at > $2",
        delegate,
        now,
    )
    return [row["person"] for row in rows]


async def insert_delegation(
    conn: Connection,
    *,
    person: str,
    delegate: str,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    created_by: str,
) -> DelegationRow:
    row = await conn.fetchrow(
        f"""
        INSERT INTO workflows.delegations (person, delegate, starts_at, ends_at, reason, created_by)
        VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_DELEGATION}
        """,
        person,
        delegate,
        starts_at,
        ends_at,
        reason,
        created_by,
    )
    return row_as(row, DelegationRow)


async def delegations_of(conn: Connection, person: str, now: datetime) -> list[DelegationRow]:
    rows = await conn.fetch(
        f"SELECT {_DELEGATION} FROM workflows.delegations"
        " WHERE person = $1 AND revoked_at IS NULL AND ends_at > $2 ORDER BY starts_at",
        person,
        now,
    )
    return rows_as(rows, DelegationRow)


async def revoke_delegation(conn: Connection, delegation_id: UUID, person: str, now: datetime) -> bool:
    result: str = await conn.execute(
        "UPDATE workflows.delegations SET revoked_at = $3 WHERE id = $1 AND person = $2 AND revoked_at IS NULL",
        delegation_id,
        person,
        now,
    )
    return result != "UPDATE 0"


async def add_calendar_day(conn: Connection, *, day: date, working: bool, name: str, by: str) -> None:
    """Add a day unless the calendar already has an entry for it (an admin's entry wins)."""
    await conn.execute(
        "INSERT INTO workflows.calendar_days (day, working, name, updated_by) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (day) DO NOTHING",
        day,
        working,
        name,
        by,
    )
