"""The IOC's own status updates for an incident (POST /ioc/v1/incidents/{id}/updates).

- Idempotent by the IOC's `update_id` (per client): the same update again gets the same reply and
  has no new effect; the same id with another body is a 422 (`idempotency-key-reused`).
- Never a step back: an update whose `occurred_at` is older than the incident's latest update is
  recorded (stale) and has no effect on the case.
- Mapped onto the case loop through `grid.api.external_update`: `resolved` completes the handle
  step when it is open (the case goes on to verification, as after a department's "handled"),
  else it is a note; `acknowledged` and `in_progress` are notes in the case's history (shown to
  the citizen through Open311). The grid events this causes carry `origin: "ioc"` and are not
  echoed back to the IOC (channels.ioc_feed).
- A closed or rejected case takes no updates (422); an unknown incident is a 404; nothing is
  written for a refused update.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal
from uuid import UUID

import msgspec

from channels import ioc_store as store
from grid import api as grid_api
from onewindow.db import Connection
from onewindow.errors import Conflict, FieldError, NotFound, RuleViolation, ValidationFailed
from onewindow.idempotency import KeyReused, fingerprint
from onewindow.text import has_control_characters

ORIGIN: Final = "ioc"
_CLOCK_SKEW: Final = timedelta(minutes=5)
_FINAL: Final = ("closed", "rejected")

IocStatus = Literal["acknowledged", "in_progress", "resolved"]
Effect = Literal["handled", "noted", "stale"]


class IncidentUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    update_id: Annotated[
        str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
    ]
    status: IocStatus
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]
    note: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)] | None = None


class UpdateReply(msgspec.Struct, frozen=True, kw_only=True):
    """What became of an update. `effect`: `handled` (the handle step was completed), `noted` (a
    note in the case's history), `stale` (older than the incident's latest update: recorded only)."""

    update_id: str
    incident: UUID
    number: str
    status: IocStatus
    occurred_at: datetime
    effect: Effect
    case_status: str
    received_at: datetime


async def receive(
    conn: Connection, *, client_id: str, reference: str, update: IncidentUpdate
) -> tuple[bool, UpdateReply]:
    """Apply (or recognise) one update in the caller's transaction: (new?, the reply)."""
    if update.note is not None and has_control_characters(update.note):
        raise ValidationFailed(
            "The note cannot hold control characters.",
            errors=[FieldError(pointer="/note", detail="no NUL or other control characters")],
        )
    case = await grid_api.find_case(conn, reference)
    if case is None:
        raise NotFound("No such incident.")
    await store.lock_incident_updates(conn, case.id)
    if not 1970 <= update.occurred_at.year <= 9000:  # also keeps the conversion to UTC in range
        raise ValidationFailed(
            "occurred_at is out of range.",
            errors=[FieldError(pointer="/occurred_at", detail="a year from 1970 to 9000")],
        )
    occurred_at = update.occurred_at.astimezone(UTC)
    request = fingerprint(str(case.id), update.update_id, update.status, update.note, occurred_at.isoformat())
    seen = await store.update(conn, client_id, update.update_id)
    if seen is not None:
        if seen.fingerprint != request or seen.case_id != case.id:
            raise KeyReused(
                "This update_id was already used for a different update: give a new update its own id.",
                errors=[FieldError(pointer="/update_id", detail="already used for a different update")],
            )
        return False, msgspec.convert(seen.reply, UpdateReply)
    now = datetime.now(UTC)
    if occurred_at > now + _CLOCK_SKEW:
        raise ValidationFailed(
            "The update cannot have happened in the future.",
            errors=[FieldError(pointer="/occurred_at", detail="in the future")],
        )
    if case.status in _FINAL or case.closed_at is not None:
        raise RuleViolation(f"The incident {case.number} is {case.status}: it takes no more updates.")
    latest = await store.latest_update_at(conn, case.id)
    stale = latest is not None and occurred_at < latest
    effect: Effect = "stale"
    status = case.status
    if not stale:
        after, action = await grid_api.external_update(
            conn,
            case.id,
            origin=ORIGIN,
            effect="handled" if update.status == "resolved" else "note",
            note=update.note,
            data={
                "update_id": update.update_id,
                "ioc_status": update.status,
                "occurred_at": occurred_at.isoformat(),
            },
        )
        effect = "handled" if action == "handled" else "noted"
        status = after.status
    reply = UpdateReply(
        update_id=update.update_id,
        incident=case.id,
        number=case.number,
        status=update.status,
        occurred_at=occurred_at,
        effect=effect,
        case_status=status,
        received_at=now,
    )
    stored = await store.insert_update(
        conn,
        client_id=client_id,
        update_id=update.update_id,
        case_id=case.id,
        status=update.status,
        note=update.note,
        occurred_at=occurred_at,
        stale=stale,
        effect=effect,
        fingerprint=request,
        reply=msgspec.to_builtins(reply),
    )
    if not stored:
        # Taken meanwhile by a request about another incident: this one's effects roll back.
        raise Conflict("This update_id was used by another request at the same moment; send it again.")
    return True, reply
