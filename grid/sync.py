"""Offline sync: a phone sends what it did while out of coverage, each item with its own
client-generated id. Each item is applied in a savepoint of its own, so the good ones land and
each bad one is reported by its client id; an item already applied (a replayed batch) returns
what it returned the first time and changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
import msgspec

from grid import cases, store
from onewindow.db import Connection
from onewindow.errors import DomainError, FieldError, RuleViolation
from workflows import api as workflows


class CaseItem(msgspec.Struct, frozen=True, kw_only=True, tag="case", tag_field="type"):
    """A case the worker reported offline."""

    client_id: UUID
    category: str
    description: str
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    photos: list[str] = msgspec.field(default_factory=list)
    reported_at: datetime | None = None


class UpdateItem(msgspec.Struct, frozen=True, kw_only=True, tag="update", tag_field="type"):
    """An action the worker took offline on a case's open task (`handled`, `passed`, `failed`...),
    naming the case by its id or, for a case reported in this or an earlier batch, by the client
    id it was reported with."""

    client_id: UUID
    action: str
    case_id: UUID | None = None
    case_client_id: UUID | None = None
    comment: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)


Item = CaseItem | UpdateItem


class SyncBatch(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Item]


class ItemProblem(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    status: int
    detail: str
    errors: list[FieldError] = msgspec.field(default_factory=list)


class ItemResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    client_id: UUID
    outcome: Literal["applied", "replayed", "rejected"]
    case_id: UUID | None = None
    number: str | None = None
    status: str | None = None
    problem: ItemProblem | None = None


class SyncReply(msgspec.Struct, frozen=True, kw_only=True):
    applied: int
    replayed: int
    rejected: int
    results: list[ItemResult]


def _problem(error: DomainError) -> ItemProblem:
    return ItemProblem(type=error.type, status=error.status, detail=error.detail, errors=list(error.errors))


async def _apply_case(
    conn: Connection, item: CaseItem, actor: workflows.Actor, now: datetime
) -> store.CaseRow:
    new = cases.NewCase(
        category=item.category,
        description=item.description,
        lat=item.lat,
        lon=item.lon,
        address=item.address,
        photos=item.photos,
        reported_at=item.reported_at,
        client_id=item.client_id,
    )
    return await cases.report(conn, new, source="worker", reporter=actor.subject, actor=actor, now=now)


async def _apply_update(conn: Connection, item: UpdateItem, actor: workflows.Actor) -> store.CaseRow:
    case = None
    if item.case_id is not None:
        case = await store.case(conn, item.case_id)
    elif item.case_client_id is not None:
        case = await store.case_by_client_id(conn, item.case_client_id)
    if case is None or not cases.may_see(actor, case):
        raise RuleViolation(
            "No such case.",
            errors=[FieldError(pointer="/case_id", detail="no case with this id that you may work on")],
        )
    loop = await workflows.instance_for_subject(conn, cases.KIND, str(case.id))
    open_tasks = loop.open_tasks if loop else ()
    tasks = [task for task in open_tasks if any(a.name == item.action for a in task.actions)]
    if not tasks:
        raise RuleViolation(
            f"The case {case.number} has no open step of yours where {item.action!r} can be done"
            f" (it is {case.status}).",
            errors=[FieldError(pointer="/action", detail="not possible now")],
        )
    await workflows.act(
        conn, tasks[0].id, action=item.action, actor=actor, comment=item.comment, data=item.data
    )
    found = await store.case(conn, case.id)
    if not (found is not None):
        raise RuntimeError("grid invariant broken: the case vanished")
    return found


async def _apply_one(conn: Connection, item: Item, actor: workflows.Actor, now: datetime) -> ItemResult:
    """One item, in the caller's savepoint; recorded under its client id with its result."""
    if isinstance(item, CaseItem):
        case = await _apply_case(conn, item, actor, now)
    else:
        case = await _apply_update(conn, item, actor)
    result = ItemResult(
        client_id=item.client_id, outcome="applied", case_id=case.id, number=case.number, status=case.status
    )
    recorded = await store.record_sync(
        conn,
        client_id=item.client_id,
        worker=actor.subject,
        kind="case" if isinstance(item, CaseItem) else "update",
        case_id=case.id,
        result=msgspec.to_builtins(result),
    )
    if not recorded:
        raise _Raced
    return result


async def apply(conn: Connection, batch: SyncBatch, actor: workflows.Actor, now: datetime) -> SyncReply:
    done = await store.synced(conn, [item.client_id for item in batch.items])
    results: list[ItemResult] = []
    seen: set[UUID] = set()
    for item in batch.items:
        if item.client_id in seen:
            results.append(
                ItemResult(
                    client_id=item.client_id,
                    outcome="rejected",
                    problem=ItemProblem(
                        type="validation", status=400, detail="this client_id is twice in the batch"
                    ),
                )
            )
            continue
        seen.add(item.client_id)
        earlier = done.get(item.client_id)
        if earlier is not None:
            worker, stored = earlier
            if worker != actor.subject:
                problem = ItemProblem(
                    type="conflict", status=409, detail="this client_id was used by another device"
                )
                results.append(ItemResult(client_id=item.client_id, outcome="rejected", problem=problem))
            else:
                replay = msgspec.convert(stored, ItemResult)
                results.append(msgspec.structs.replace(replay, outcome="replayed"))
            continue
        try:
            async with conn.transaction():
                result = await _apply_one(conn, item, actor, now)
        except (_Raced, asyncpg.UniqueViolationError):
            results.append(
                ItemResult(
                    client_id=item.client_id,
                    outcome="rejected",
                    problem=ItemProblem(
                        type="conflict", status=409, detail="sent twice at once; send it again"
                    ),
                )
            )
        except DomainError as error:
            results.append(ItemResult(client_id=item.client_id, outcome="rejected", problem=_problem(error)))
        else:
            results.append(result)
    return SyncReply(
        applied=sum(r.outcome == "applied" for r in results),
        replayed=sum(r.outcome == "replayed" for r in results),
        rejected=sum(r.outcome == "rejected" for r in results),
        results=results,
    )


class _Raced(Exception):
    """Another request recorded this client id between our read and our write."""
