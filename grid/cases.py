"""Field cases: reporting one (located to its grid, numbered, its loop started), what each step of
the loop does to the case (the workflow engine calls `CaseKind` inside its transaction), who may
see a case, and duplicates."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Final, Literal
from uuid import UUID

import msgspec

from grid import layer, rules, store
from grid.events import CaseChanged, CaseClosed, CaseReported
from grid.store import CaseRow
from identity import api as identity_api
from onewindow.db import Connection
from onewindow.errors import Conflict, FieldError, NotFound, RuleViolation, ValidationFailed
from onewindow.outbox import publish
from workflows import api as workflows

KIND: Final = "grid_case"
DEFINITION: Final = "grid-case"
Source = Literal["worker", "citizen", "command_centre"]
_MAX_DESCRIPTION: Final = 2000
_MAX_ADDRESS: Final = 500
_MAX_PHOTOS: Final = 20
_CLOCK_SKEW: Final = timedelta(minutes=5)
_OLDEST_REPORT: Final = timedelta(days=30)
# Who works on cases, and so may see those of the units their roles are held in.
STAFF_ROLES: Final = ("grid_worker", "supervisor", "command_centre", "officer")


class NewCase(msgspec.Struct, frozen=True, kw_only=True):
    """A report as it arrives (from a phone, the command centre, or channels for a citizen)."""

    category: str
    description: str
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    photos: list[str] = msgspec.field(default_factory=list)
    reported_at: datetime | None = None
    client_id: UUID | None = None


class Duplicate(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    number: str
    status: str
    distance_m: float
    reported_at: datetime


# --- reporting -----------------------------------------------------------------------------------


async def report(
    conn: Connection, new: NewCase, *, source: Source, reporter: str, actor: workflows.Actor, now: datetime
) -> CaseRow:
    """Check the report (every problem at once), locate it, store it and start its loop, all in the
    caller's transaction. Outside every grid (or an address only) the case still counts: its
    loop queues at the city's command centre."""
    errors = rules.coordinate_errors(new.lat, new.lon)
    category = await store.category(conn, new.category)
    if category is None or not category.active:
        errors.append(FieldError(pointer="/category", detail=f"no active case category {new.category!r}"))
    elif source == "citizen" and not category.citizen_reportable:
        errors.append(FieldError(pointer="/category", detail="this category is not reported by citizens"))
    description = new.description.strip()
    if not description or len(description) > _MAX_DESCRIPTION:
        errors.append(FieldError(pointer="/description", detail=f"1 to {_MAX_DESCRIPTION} characters"))
    address = new.address.strip() if new.address else None
    if address is not None and len(address) > _MAX_ADDRESS:
        errors.append(FieldError(pointer="/address", detail=f"at most {_MAX_ADDRESS} characters"))
    if new.lat is None and not address:
        errors.append(FieldError(pointer="/lat", detail="give the location (lat and lon) or an address"))
    reported_at = new.reported_at or now
    if reported_at.tzinfo is None:
        errors.append(FieldError(pointer="/reported_at", detail="a time with its offset (RFC 3339)"))
    elif not now - _OLDEST_REPORT <= reported_at <= now + _CLOCK_SKEW:
        errors.append(FieldError(pointer="/reported_at", detail="not in the future nor older than 30 days"))
    errors.extend(await photo_errors(conn, new.photos, pointer="/photos"))
    if errors:
        raise ValidationFailed("The case cannot be reported as it is; see errors.", errors=errors)
    if new.client_id is not None and await store.case_by_client_id(conn, new.client_id) is not None:
        raise Conflict("A case with this client_id was already reported.")
    if not (category is not None):
        raise RuntimeError("grid invariant broken: category checked above")

    grid = None
    if new.lat is not None and new.lon is not None:
        code = (await layer.locator(conn)).locate(new.lat, new.lon)
        grid = await store.grid(conn, code) if code else None
    sequence = await store.next_case_sequence(conn)
    case = CaseRow(
        id=uuid.uuid4(),
        number=rules.case_number(now.year, sequence),
        client_id=new.client_id,
        source=source,
        reporter=reporter,
        category=category.code,
        department=category.department,
        severity=category.severity,
        grid_code=grid.code if grid else None,
        community=grid.community if grid else None,
        street=grid.street if grid else None,
        district=grid.district if grid else None,
        lat=new.lat,
        lon=new.lon,
        address=address,
        description=description,
        status="registering",
        duplicate_of=None,
        dispatched_to=None,
        rework_count=0,
        reported_at=reported_at,
        register_due_at=await workflows.deadline(
            conn, now, category.register_limit, clock=rules.hours_clock(category.register_limit)
        ),
        registered_at=None,
        dispatched_at=None,
        handle_due_at=None,
        handled_at=None,
        closed_at=None,
        rating=None,
        created_at=now,
        updated_at=now,
        version=1,
    )
    await store.insert_case(conn, case)
    await store.add_history(
        conn,
        case.id,
        at=now,
        actor=reporter,
        action="reported",
        from_status=None,
        to_status=case.status,
        data={"source": source, "grid": case.grid_code},
    )
    if new.photos:
        await store.attach_photos(conn, case.id, list(dict.fromkeys(new.photos)), stage="report", by=reporter)
    await publish(
        conn,
        CaseReported(
            case_id=case.id,
            number=case.number,
            sequence=1,  # insert_case: a report is its case's first event
            source=source,
            category=case.category,
            department=case.department,
            severity=case.severity,
            grid_code=case.grid_code,
            lat=case.lat,
            lon=case.lon,
            status=case.status,
            reported_at=case.reported_at,
            register_due_at=case.register_due_at,
        ),
    )
    await workflows.start(
        conn, subject_kind=KIND, subject_id=str(case.id), definition_key=DEFINITION, actor=actor
    )
    return case


async def photo_errors(conn: Connection, photos: list[str], *, pointer: str) -> list[FieldError]:
    if len(photos) > _MAX_PHOTOS:
        return [FieldError(pointer=pointer, detail=f"at most {_MAX_PHOTOS} photos")]
    known = await store.known_photos(conn, photos) if photos else set()
    return [
        FieldError(pointer=f"{pointer}/{index}", detail="no photo with this SHA-256 was uploaded")
        for index, digest in enumerate(photos)
        if digest not in known
    ]


async def possible_duplicates(conn: Connection, case: CaseRow) -> list[Duplicate]:
    """Open cases of the same category within 50 m, reported in the 7 days before this one."""
    if case.lat is None or case.lon is None:
        return []
    found = await store.open_cases_near(
        conn,
        category=case.category,
        box=rules.box_around(case.lat, case.lon, rules.DUPLICATE_RADIUS_M),
        since=case.reported_at - timedelta(days=rules.DUPLICATE_WINDOW_DAYS),
        exclude=case.id,
    )
    near = []
    for other in found:
        if other.lat is None or other.lon is None or other.reported_at > case.reported_at:
            continue
        distance = rules.distance_m(case.lat, case.lon, other.lat, other.lon)
        if distance <= rules.DUPLICATE_RADIUS_M:
            near.append(
                Duplicate(
                    id=other.id,
                    number=other.number,
                    status=other.status,
                    distance_m=round(distance, 1),
                    reported_at=other.reported_at,
                )
            )
    return sorted(near, key=lambda d: d.distance_m)


# --- who may see a case ------------------------------------------------------------------------


def scopes(actor: workflows.Actor) -> list[str] | None:
    """The unit codes whose cases the actor may see (a case's grid, community, street, district or
    department), or None for every case: an administrator, or staff of the whole city."""
    codes: list[str] = []
    for grant in actor.roles:
        if grant.role == "admin":
            return None
        if grant.role in STAFF_ROLES:
            if "/" not in grant.path:  # held at the city itself
                return None
            codes.append(grant.unit)
    return codes


def may_see(actor: workflows.Actor, case: CaseRow) -> bool:
    if case.reporter == actor.subject:
        return True
    allowed = scopes(actor)
    if allowed is None:
        return True
    mine = {case.grid_code, case.community, case.street, case.district, case.department}
    return any(code in mine for code in allowed)


async def visible_case(conn: Connection, case_id: UUID, actor: workflows.Actor) -> CaseRow:
    case = await store.case(conn, case_id)
    if case is None or not may_see(actor, case):
        raise NotFound("No such case.")
    return case


# --- the loop's hooks ----------------------------------------------------------------------------


def _rating(data: dict[str, Any]) -> int:
    rating = data.get("rating")
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise RuleViolation(
            "The rating is a whole number from 1 to 5.",
            errors=[FieldError(pointer="/data/rating", detail="1 to 5")],
        )
    return rating


async def _primary(conn: Connection, case: CaseRow, reference: Any) -> CaseRow:
    """The case a duplicate is linked to: by id or number, open and already registered."""
    problem = None
    primary = None
    if isinstance(reference, str):
        try:
            primary = await store.case(conn, UUID(reference))
        except ValueError:
            primary = await store.case_by_number(conn, reference)
    if primary is None:
        problem = "no such case"
    elif primary.id == case.id:
        problem = "a case cannot duplicate itself"
    elif primary.status not in rules.OPEN_STATUSES or primary.status == "registering":
        problem = f"the case {primary.number} is {primary.status}: link to a registered, open case"
    if problem or primary is None:
        raise RuleViolation(
            f"This case cannot be linked: {problem}.",
            errors=[FieldError(pointer="/data/duplicate_of", detail=problem or "no such case")],
        )
    return primary


async def _attach_step_photos(
    conn: Connection, case: CaseRow, step: str, data: dict[str, Any], actor: str
) -> int:
    photos = data.get("photos")
    if photos is None:
        return 0
    if not isinstance(photos, list) or not all(isinstance(p, str) for p in photos):
        raise RuleViolation(
            "photos is a list of SHA-256 digests of uploaded photos.",
            errors=[FieldError(pointer="/data/photos", detail="a list of SHA-256 digests")],
        )
    errors = await photo_errors(conn, photos, pointer="/data/photos")
    if errors:
        raise RuleViolation("Upload the photos before naming them.", errors=errors)
    stage = "verify" if step == "verify" else "handle" if step.startswith("handle") else "report"
    return await store.attach_photos(conn, case.id, list(dict.fromkeys(photos)), stage=stage, by=actor)


class CaseKind:
    """The case as the workflow engine's subject: what its conditions see, where its tasks
    queue, and what each step changes on the case (in the engine's transaction)."""

    name = KIND

    async def context(self, conn: Connection, subject_id: str) -> workflows.SubjectContext:
        case = await store.case(conn, UUID(subject_id))
        if case is None:
            raise NotFound(f"No grid case {subject_id}.")
        grid = await store.grid(conn, case.grid_code) if case.grid_code else None
        return workflows.SubjectContext(
            data={
                "category": case.category,
                "severity": case.severity,
                "source": case.source,
                "grid": case.grid_code,
                "dispatched_to": case.dispatched_to,
                "rework_count": case.rework_count,
            },
            owner_unit=await identity_api.unit_path(conn, case.department),
            # Unlocated cases (an address only, or outside every grid) queue at the city.
            grid_unit=grid.unit_path if grid else await identity_api.city_path(conn),
            applicant=case.reporter,
        )

    async def transitioned(self, conn: Connection, transition: workflows.Transition) -> None:
        case = await store.case(conn, UUID(transition.subject_id), lock=True)
        if case is None:
            raise NotFound(f"No grid case {transition.subject_id}.")
        before = case.status
        at = transition.at
        action, step, target = transition.action, transition.from_state, transition.to_state
        photos = await _attach_step_photos(conn, case, step, transition.data, transition.actor)
        if step == "register" and action == "register":
            case.registered_at = at
        elif action == "duplicate":
            primary = await _primary(conn, case, transition.data.get("duplicate_of"))
            case.duplicate_of = primary.id
            case.status = "duplicate"
        if target in ("handle_department", "handle_worker") and step == "dispatch":
            case.dispatched_to = "department" if target == "handle_department" else "worker"
            case.dispatched_at = at
            if case.handle_due_at is None:
                category = await store.category(conn, case.category)
                if category is None:  # categories are never deleted; a case always has one
                    raise RuntimeError(
                        f"grid invariant broken: the case's category {case.category!r} is gone"
                    )
                limit = category.handle_limit
                case.handle_due_at = await workflows.deadline(conn, at, limit, clock=rules.hours_clock(limit))
        if step.startswith("handle") and action == "handled":
            case.handled_at = at
        if step == "verify" and target == "rework":
            case.rework_count += 1
        if action == "evaluate":
            case.rating = _rating(transition.data)
        case.status = rules.STATUS_OF_STATE.get(target, case.status)
        sequence = await store.save_case(conn, case, at=at)
        await store.add_history(
            conn,
            case.id,
            at=at,
            actor=transition.actor,
            action=action,
            from_status=before,
            to_status=case.status,
            note=transition.comment,
            data={"step": step, "to": target, **({"photos": photos} if photos else {})},
        )
        await publish(
            conn,
            _changed(
                case, sequence, action, before, at, transition.comment, origin=origin_of(transition.actor)
            ),
        )

    async def ended(self, conn: Connection, ending: workflows.Ending) -> None:
        case = await store.case(conn, UUID(ending.subject_id), lock=True)
        if case is None:
            raise NotFound(f"No grid case {ending.subject_id}.")
        status = rules.OUTCOME_STATUS.get(ending.outcome)
        if status is None or status == "duplicate":
            return  # a linked duplicate stays open until its primary closes
        before = case.status
        case.status = status
        case.closed_at = ending.at
        sequence = await store.save_case(conn, case, at=ending.at)
        await store.add_history(
            conn, case.id, at=ending.at, actor="system", action=status, from_status=before, to_status=status
        )
        await publish(conn, _closed(case, sequence, ending.at))
        if status == "closed":
            for duplicate_id, last in await store.close_duplicates(conn, case.id, at=ending.at):
                duplicate = await store.case(conn, duplicate_id)
                if duplicate is None:
                    continue
                await store.add_history(
                    conn,
                    duplicate.id,
                    at=ending.at,
                    actor="system",
                    action="closed_with_primary",
                    from_status="duplicate",
                    to_status="closed",
                    data={"primary": case.number},
                )
                await publish(
                    conn, _changed(duplicate, last - 1, "closed_with_primary", "duplicate", ending.at, None)
                )
                await publish(conn, _closed(duplicate, last, ending.at))


# --- notes from outside the loop ---------------------------------------------------------------


async def add_note(
    conn: Connection, case_id: UUID, *, note: str, actor: str, at: datetime, data: dict[str, Any]
) -> int:
    """A note on a case (a citizen's update through Open311) that does not move its loop: recorded
    in the case's history and announced as a change with action `note`. The event carries no
    text: a citizen's words may name people, and the history keeps them. Returns the history id."""
    case = await store.case(conn, case_id, lock=True)
    if case is None:
        raise NotFound("No such case.")
    history_id, sequence = await store.add_note(
        conn, case.id, at=at, actor=actor, status=case.status, note=note, data=data
    )
    await publish(conn, _changed(case, sequence, "note", case.status, at, None))
    return history_id


def _changed(
    case: CaseRow,
    sequence: int,
    action: str,
    before: str,
    at: datetime,
    note: str | None,
    *,
    origin: str | None = None,
) -> CaseChanged:
    return CaseChanged(
        case_id=case.id,
        number=case.number,
        sequence=sequence,
        action=action,
        from_status=before,
        status=case.status,
        at=at,
        grid_code=case.grid_code,
        department=case.department,
        dispatched_to=case.dispatched_to,
        handle_due_at=case.handle_due_at,
        duplicate_of=case.duplicate_of,
        rework_count=case.rework_count,
        note=note,
        origin=origin,
    )


def _closed(case: CaseRow, sequence: int, at: datetime) -> CaseClosed:
    return CaseClosed(
        case_id=case.id,
        number=case.number,
        sequence=sequence,
        status=case.status,
        at=at,
        rating=case.rating,
        rework_count=case.rework_count,
    )


# --- updates from outside systems (the IOC) -------------------------------------------------------

EXTERNAL_ACTOR: Final = "external:"
ExternalEffect = Literal["note", "handled"]


def origin_of(actor: str) -> str | None:
    """The outside system behind a change (`external:ioc` -> `ioc`); None for the city's own."""
    return actor.removeprefix(EXTERNAL_ACTOR) if actor.startswith(EXTERNAL_ACTOR) else None


async def external_update(
    conn: Connection,
    case_id: UUID,
    *,
    origin: str,
    effect: ExternalEffect,
    note: str | None,
    at: datetime,
    data: dict[str, Any],
) -> tuple[CaseRow, str | None]:
    """An outside system's word on an open case, in the caller's transaction: "handled" completes
    the handle step when that step is open (as the system `external:<origin>`, through the engine,
    so the loop moves on to verification exactly as after a department's "handled"); anything
    else, or "handled" at another step, is a note in the case's history. One history row either
    way, its actor `external:<origin>`; the grid event carries `origin`. Returns the case after it
    and the loop action taken (None for a note). A closed or rejected case is a RuleViolation."""
    case = await store.case(conn, case_id)
    if case is None:
        raise NotFound("No such case.")
    if case.status not in rules.OPEN_STATUSES and case.status != "duplicate":
        raise RuleViolation(f"The case {case.number} is {case.status}: it takes no more updates.")
    actor = EXTERNAL_ACTOR + origin
    task = None
    if effect == "handled":
        instance = await workflows.instance_for_subject(conn, KIND, str(case.id))
        handling = ("handle_department", "handle_worker")
        task = next((t for t in instance.open_tasks if t.state in handling), None) if instance else None
    if task is not None:
        # The transition hook writes the history row and publishes CaseChanged with the origin.
        await workflows.act(
            conn,
            task.id,
            action="handled",
            actor=workflows.Actor.system(actor),
            comment=note or f"Resolved, as reported by {origin}.",
        )
    else:
        # Not locked before: the engine locks its instance before the case, and so would we, the
        # other way. Here no engine step follows, so the case is locked now, by taking its next
        # event number, and read again: the event carries the status its number goes with.
        sequence = await store.next_event_sequence(conn, case.id)
        locked = await store.case(conn, case.id)
        if sequence is None or locked is None:  # pragma: no cover - cases are never deleted
            raise RuntimeError("grid invariant broken: the case vanished")
        case = locked
        if case.status not in rules.OPEN_STATUSES and case.status != "duplicate":
            raise RuleViolation(f"The case {case.number} is {case.status}: it takes no more updates.")
        await store.add_history(
            conn,
            case.id,
            at=at,
            actor=actor,
            action="external_update",
            from_status=case.status,
            to_status=case.status,
            note=note,
            data={"origin": origin, **data},
        )
        await publish(conn, _changed(case, sequence, "external_update", case.status, at, note, origin=origin))
    after = await store.case(conn, case.id)
    if after is None:  # pragma: no cover - cases are never deleted
        raise RuntimeError("grid invariant broken: the case vanished")
    return after, "handled" if task is not None else None
