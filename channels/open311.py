"""Open311 GeoReport v2 at /open311/v2 (docs/open311.md), and the admin API of its api keys.

Every citizen-reportable case category is a service; a report becomes a grid case through
`grid.api.report` (source "citizen") in the request's transaction, so a refused report leaves
nothing behind. What Open311 says about a request (status, status_notes, agency_responsible,
expected_datetime, the history of updates) is read from the case each time: it follows the case
as its loop moves, and never runs ahead of it or behind it.

What is public (docs/open311.md): cases citizens reported, never those of grid workers or the
command centre; of their history, the status changes only, each told in the city's fixed words
for the status (`open311_rules.STATUS_TEXT`), never a staff comment. A signed-in citizen's own
reports (`mine=true`) add the notes they wrote themselves.

Errors on these routes are the specification's array of {code, description} (in the format
asked for), not problem+json: Open311 clients parse that.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Final
from urllib.parse import urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec
import redis.exceptions
from litestar import Controller, Request, Response, delete, get, post, route
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.types import ExceptionHandlersMap, OperationIDCreator

from channels import open311_store as store
from channels.open311_format import Format, negotiate, reply, split_format
from channels.open311_rules import (
    DEFAULT_WINDOW_DAYS,
    EXTENDED_STATUS,
    MAX_DESCRIPTION,
    MAX_IDS,
    MAX_REQUESTS,
    MAX_UPDATES,
    Open311Error,
    Problem,
    attribute_values,
    control_problems,
    extended_status,
    form_control_problems,
    grid_statuses,
    location_problems,
    media_url_problems,
    parse_datetime,
    parse_float,
    plain_status,
    status_text,
    submitted_attributes,
)
from channels.open311_seed import key_digest, key_prefix, new_key
from grid import api as grid_api
from identity import api as identity_api
from onewindow.db import UNREACHABLE, Connection
from onewindow.errors import DomainError, NotFound
from onewindow.problems import client_went_away
from onewindow.settings import Settings
from onewindow.web import decode_cursor, page, resources
from workflows import api as workflows

__all__ = ["OPEN311_CONTROLLERS", "PREFIX"]

log = logging.getLogger(__name__)

PREFIX: Final = "/open311/v2"
SPECIFICATION: Final = "http://wiki.open311.org/GeoReport_v2"
# When this API last changed (discovery's `changeset`): bump it with a change clients can see.
CHANGESET: Final = "2026-10-01T00:00:00+00:00"
_CLOCK_SKEW: Final = timedelta(minutes=5)
_UPDATES_DEFAULT_WINDOW: Final = timedelta(days=1)
# Open311 shows cases citizens reported only: grid workers' and the command centre's are internal.
_PUBLIC_SOURCE: Final = "citizen"
# grid's field names (its errors' JSON Pointers) as Open311 names them.
_FIELD_NAMES: Final = {
    "/lat": "lat",
    "/lon": "long",
    "/description": "description",
    "/category": "service_code",
    "/address": "address_string",
    "/reported_at": "requested_datetime",
}


def _paths(name: str) -> list[str]:
    return [f"/{name}.json", f"/{name}.xml", f"/{name}"]


def _operation(name: str) -> OperationIDCreator:
    """One operation id per path of a handler served at several (`requests.json`, `.xml`, bare)."""

    def operation_id(handler: Any, method: Any, components: list[Any]) -> str:
        last = components[-1] if components and isinstance(components[-1], str) else ""
        suffix = last.rpartition(".")[2].capitalize() if "." in last else ""
        return name + suffix

    return operation_id


def _format(request: Request[Any, Any, Any]) -> Format:
    return negotiate(request.url.path, request.headers.get("accept"))


# --- errors in the specification's format ------------------------------------------------------


def _problems(exc: Exception) -> tuple[int, list[Problem], dict[str, str]]:
    if isinstance(exc, Open311Error):
        return exc.status, exc.problems, exc.headers
    if isinstance(exc, DomainError):
        problems = [
            Problem(exc.status, f"{_FIELD_NAMES.get(e.pointer, e.parameter or e.pointer)}: {e.detail}")
            for e in exc.errors
        ] or [Problem(exc.status, exc.detail)]
        return exc.status, problems, exc.headers
    if isinstance(exc, ValidationException):
        return 400, [Problem(400, "The request is not valid.")], {}
    if client_went_away(exc):
        log.info("client went away before its request was read")
        return 400, [Problem(400, "The request body did not arrive: the client went away.")], {}
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        return exc.status_code, [Problem(exc.status_code, exc.detail)], dict(exc.headers or {})
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, *UNREACHABLE)):
        log.warning("backing service unreachable", extra={"error": type(exc).__name__})
        return (
            503,
            [Problem(503, "A service OneWindow depends on cannot be reached; try again shortly.")],
            {"Retry-After": "5"},
        )
    log.error("unexpected error", exc_info=exc)
    return 500, [Problem(500, "Something went wrong on our side.")], {}


def _error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    status, problems, headers = _problems(exc)
    body = [{"code": p.code, "description": p.description} for p in problems]
    return reply(_format(request), "errors", "error", body, status=status, headers=headers)


# Every class the app maps to problem+json is mapped here too: litestar picks the handler of the
# most specific class, whichever layer it is on.
_ERROR_HANDLERS: ExceptionHandlersMap = {
    Exception: _error,
    Open311Error: _error,
    DomainError: _error,
    ValidationException: _error,
    HTTPException: _error,
    redis.exceptions.ConnectionError: _error,
    redis.exceptions.TimeoutError: _error,
    **dict.fromkeys(UNREACHABLE, _error),
}


# --- what every route needs ----------------------------------------------------------------------


def _check_jurisdiction(settings: Settings, given: str | None) -> None:
    if given and settings.open311_jurisdiction_id and given != settings.open311_jurisdiction_id:
        raise Open311Error.one(404, "jurisdiction_id: this server does not serve that jurisdiction")


def _tz(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.timezone)


def _when(value: datetime | None, tz: ZoneInfo) -> str | None:
    return value.astimezone(tz).isoformat(timespec="seconds") if value else None


async def _form(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise Open311Error.one(400, "Send the parameters form-encoded (application/x-www-form-urlencoded).")
    form = await request.form()
    found: dict[str, list[str]] = {}
    for name, value in form.multi_items():
        if isinstance(value, str):
            found.setdefault(name, []).append(value)
    problems = form_control_problems([(name, value) for name, values in found.items() for value in values])
    if problems:
        raise Open311Error(problems)
    return found


async def _check_query(request: Request[Any, Any, Any]) -> None:
    """Every Open311 route: no api key in the URL (URLs are written to access logs, proxies'
    and browsers' histories), and no control characters in any parameter of the query or path."""
    if "api_key" in request.query_params:
        raise Open311Error.one(
            400,
            "api_key: not accepted in the URL, where it would be logged; send it in the form body of"
            " the POST (and ask the city to replace a key that was sent in a URL)",
        )
    problems = control_problems(
        [*request.query_params.multi_items(), *((k, str(v)) for k, v in request.path_params.items())]
    )
    if problems:
        raise Open311Error(problems)


def _one(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    if not values:
        return None
    value = values[0].strip()
    return value or None


async def _api_key(conn: Connection, form: dict[str, list[str]]) -> store.KeyRow:
    raw = _one(form, "api_key")
    if not raw:
        raise Open311Error.one(403, "api_key: required to write; ask the city for a key for your app")
    key = await store.key_by_digest(conn, key_digest(raw))
    if key is None or key.revoked_at is not None:
        raise Open311Error.one(403, "api_key: not a valid key (unknown or revoked)")
    return key


async def _within_rate(request: Request[Any, Any, Any], settings: Settings, key: store.KeyRow) -> None:
    """A minute's window per source address and per api key, counted in Redis (shared by every
    process). The address is kept only as a keyed digest: Redis holds no one's IP address."""
    source = request.client.host if request.client and request.client.host else "unknown"
    digest = hmac.new(
        settings.master_secret, b"open311.source:" + source.encode(), hashlib.sha256
    ).hexdigest()
    now = time.time()
    window = int(now // 60)
    limits = (
        (f"onewindow:open311:rate:source:{digest[:32]}:{window}", settings.open311_rate_per_minute),
        (
            f"onewindow:open311:rate:key:{key.id}:{window}",
            key.rate_per_minute or settings.open311_key_rate_per_minute,
        ),
    )
    pipe = resources(request.app.state).redis.pipeline()
    for name, _ in limits:
        pipe.incr(name)
        pipe.expire(name, 120)
    counts = (await pipe.execute())[::2]
    for (name, limit), count in zip(limits, counts, strict=True):
        if int(count) > limit:
            retry = max(1, 60 - int(now % 60))
            which = "this api key" if ":key:" in name else "this address"
            raise Open311Error.one(
                429,
                f"Too many reports or updates from {which}; try again in {retry} s.",
                headers={"Retry-After": str(retry)},
            )


async def _principal(request: Request[Any, Any, Any]) -> identity_api.Principal | None:
    """The signed-in citizen behind the app, if the app sent their access token; a token that is
    not valid is a 401 (never silently anonymous)."""
    principal = await identity_api.authenticate(request)
    return principal if principal is not None and principal.kind == "person" else None


async def _services(conn: Connection) -> dict[str, grid_api.ServiceCategory]:
    return {category.code: category for category in await grid_api.citizen_categories(conn)}


# --- shaping replies ----------------------------------------------------------------------------


def _service(category: grid_api.ServiceCategory) -> dict[str, Any]:
    return {
        "service_code": category.code,
        "service_name": category.name_en,
        "description": f"{category.name_en} ({category.name_zh})",
        "metadata": bool(category.attributes),
        "type": "realtime",
        "keywords": category.kind,
        "group": category.department,
    }


def _attribute(definition: dict[str, Any]) -> dict[str, Any]:
    return {
        "variable": bool(definition.get("variable", True)),
        "code": definition["code"],
        "datatype": definition["datatype"],
        "required": bool(definition.get("required", False)),
        "datatype_description": definition.get("datatype_description"),
        "order": definition.get("order"),
        "description": definition.get("description"),
        "values": [{"key": v["key"], "name": v["name"]} for v in definition.get("values", [])],
    }


class _Shaper:
    """Turns cases into Open311 requests; department names are looked up once per reply."""

    def __init__(self, conn: Connection, settings: Settings, services: dict[str, grid_api.ServiceCategory]):
        self.conn = conn
        self.settings = settings
        self.tz = _tz(settings)
        self.services = services
        self.agencies: dict[str, str | None] = {}

    async def agency(self, department: str) -> str:
        if department not in self.agencies:
            self.agencies[department] = await identity_api.unit_name(self.conn, department)
        return self.agencies[department] or department

    def update(self, entry: grid_api.StatusEntry) -> dict[str, Any]:
        """A status change in the city's fixed words, or the reader's own note in theirs."""
        return {
            "update_id": str(entry.id),
            "service_request_id": entry.number,
            "status": extended_status(entry.to_status),
            "updated_datetime": _when(entry.at, self.tz),
            "description": entry.own_note if entry.own_note is not None else status_text(entry.to_status),
            "media_url": None,
        }

    async def requests(
        self, cases: list[grid_api.CaseRef], *, extensions: bool, reporter: str | None = None
    ) -> list[dict[str, Any]]:
        """`reporter`: the signed-in citizen whose own reports these are (their notes are shown).
        A few queries whatever the number of cases: the requests taken, and with the extensions
        the status history and the photos, each for every case at once."""
        if not cases:
            return []
        ids = [case.id for case in cases]
        taken = await store.requests_of_cases(self.conn, ids)
        history: dict[UUID, list[grid_api.StatusEntry]] = {}
        photos: dict[UUID, list[str]] = {}
        if extensions:
            for entry in await grid_api.status_history(self.conn, ids, notes_by=reporter):
                history.setdefault(entry.case_id, []).append(entry)
            photos = await grid_api.photos_of_cases(self.conn, ids)
        shaped = []
        for case in cases:
            request = taken.get(case.id)
            service = self.services.get(case.category)
            item: dict[str, Any] = {
                "service_request_id": case.number,
                "status": plain_status(case.status),
                "status_notes": status_text(case.status),
                "service_name": service.name_en if service else None,
                "service_code": case.category,
                "description": case.description,
                "agency_responsible": await self.agency(case.department),
                "service_notice": None,
                "requested_datetime": _when(case.reported_at, self.tz),
                "updated_datetime": _when(case.closed_at or case.updated_at, self.tz),
                "expected_datetime": _when(case.handle_due_at, self.tz),
                "address": case.address,
                "address_id": request.address_id if request else None,
                "zipcode": None,
                "lat": case.lat,
                "long": case.lon,
                "media_url": request.media_url if request else None,
            }
            if extensions:
                item["extended_attributes"] = {
                    "status": extended_status(case.status),
                    "channel": "open311" if request else (case.source or "unknown"),
                    "attributes": [
                        {"code": code, "values": value if isinstance(value, list) else [value]}
                        for code, value in (request.attributes if request else {}).items()
                    ],
                    "photos": [
                        *([request.media_url] if request and request.media_url else []),
                        *(
                            f"{self.settings.public_url}/api/v1/grid/photos/{sha}"
                            for sha in photos.get(case.id, [])
                        ),
                    ],
                    "notes": [self.update(entry) for entry in history.get(case.id, [])],
                }
            shaped.append(item)
        return shaped


def _next_page(request: Request[Any, Any, Any], settings: Settings, number: int) -> dict[str, str]:
    """The `Link` header (RFC 8288) to the next page of a reply that was cut at its page size."""
    query = [(name, value) for name, value in request.query_params.multi_items() if name != "page"]
    query.append(("page", str(number + 1)))
    return {"Link": f'<{settings.public_url}{request.url.path}?{urlencode(query)}>; rel="next"'}


def _ints(query: Any, name: str, default: int, *, high: int, problems: list[Problem]) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= high:
        problems.append(Problem(400, f"{name}: a whole number from 1 to {high}"))
        return default
    return value


def _window(
    query: Any, problems: list[Problem], *, default: timedelta, now: datetime
) -> tuple[datetime, datetime]:
    start = parse_datetime("start_date", query["start_date"], problems) if query.get("start_date") else None
    end = parse_datetime("end_date", query["end_date"], problems) if query.get("end_date") else None
    end = end or (start + timedelta(days=DEFAULT_WINDOW_DAYS) if start else now)
    start = start or end - default
    if start > end:
        problems.append(Problem(400, "start_date: after end_date"))
    elif end - start > timedelta(days=DEFAULT_WINDOW_DAYS):
        problems.append(
            Problem(400, f"start_date, end_date: may not span more than {DEFAULT_WINDOW_DAYS} days")
        )
    return start, end


def _update_fields(
    form: dict[str, list[str]],
) -> tuple[str | None, str | None, str | None, str | None, datetime | None, str | None]:
    """A citizen's update as sent: (service_request_id, description, update_id, status,
    updated_datetime, media_url), or every problem with it at once."""
    problems: list[Problem] = []
    number = _one(form, "service_request_id")
    if number is None:
        problems.append(Problem(400, "service_request_id: required"))
    description = _one(form, "description")
    if description is None:
        problems.append(Problem(400, "description: required"))
    elif len(description) > MAX_DESCRIPTION:
        problems.append(Problem(400, f"description: at most {MAX_DESCRIPTION} characters"))
    client_id = _one(form, "update_id")
    if client_id is not None and len(client_id) > 100:
        problems.append(Problem(400, "update_id: at most 100 characters"))
    updated = _one(form, "updated_datetime")
    updated_at = parse_datetime("updated_datetime", updated, problems) if updated else None
    if updated_at is not None and updated_at > workflows.now() + _CLOCK_SKEW:
        problems.append(Problem(400, "updated_datetime: in the future"))
    status = _one(form, "status")
    if status is not None and status.upper() not in set(EXTENDED_STATUS.values()):
        problems.append(Problem(400, f"status: {status!r} is not open, closed or an extended status"))
    media_url = _one(form, "media_url")
    problems += media_url_problems(media_url)
    if problems:
        raise Open311Error(problems)
    return number, description, client_id, status, updated_at, media_url


# --- the Open311 routes --------------------------------------------------------------------------


class Open311Controller(Controller):
    """Public reads; writes need an api key (and, for some services, a signed-in citizen)."""

    path = PREFIX
    tags = ["open311"]  # noqa: RUF012 - litestar's declared type
    exception_handlers = _ERROR_HANDLERS
    before_request = staticmethod(_check_query)

    @get(_paths("discovery"), operation_id=_operation("open311Discovery"), summary="Service discovery")
    async def discovery(
        self, request: Request[Any, Any, Any], settings: NamedDependency[Settings]
    ) -> Response[bytes]:
        body = {
            "changeset": CHANGESET,
            "contact": f"The city's Open311 service: {settings.public_url}{PREFIX}",
            "key_service": "Api keys are issued per app by the city's administrators"
            " (POST /api/v1/channels/open311/keys).",
            "endpoints": [
                {
                    "specification": SPECIFICATION,
                    "url": f"{settings.public_url}{PREFIX}",
                    "changeset": CHANGESET,
                    "type": "production",
                    "formats": ["text/xml", "application/json"],
                }
            ],
        }
        return reply(_format(request), "discovery", None, body)

    @get(
        _paths("services"),
        operation_id=_operation("open311Services"),
        summary="The services citizens may report",
    )
    async def services(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[bytes]:
        _check_jurisdiction(settings, request.query_params.get("jurisdiction_id"))
        body = [_service(category) for category in (await _services(conn)).values()]
        return reply(_format(request), "services", "service", body)

    @get(
        "/services/{service_code:str}",
        operation_id="open311ServiceDefinition",
        summary="A service's attributes",
    )
    async def definition(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        settings: NamedDependency[Settings],
        service_code: FromPath[str],
    ) -> Response[bytes]:
        _check_jurisdiction(settings, request.query_params.get("jurisdiction_id"))
        code, _ = split_format(service_code)
        category = (await _services(conn)).get(code)
        if category is None:
            raise Open311Error.one(404, f"service_code: no service {code!r}")
        attributes = sorted(category.attributes, key=lambda a: (a.get("order") or 0, a["code"]))
        body = {"service_code": code, "attributes": [_attribute(a) for a in attributes]}
        return reply(_format(request), "service_definition", None, body)

    @post(
        _paths("requests"),
        operation_id=_operation("open311CreateRequest"),
        summary="Report a problem",
        status_code=201,
    )
    async def create(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[bytes]:
        fmt = _format(request)
        form = await _form(request)
        _check_jurisdiction(settings, _one(form, "jurisdiction_id"))
        key = await _api_key(conn, form)
        await _within_rate(request, settings, key)
        principal = await _principal(request)

        problems: list[Problem] = []
        code = _one(form, "service_code")
        if code is None:
            problems.append(Problem(400, "service_code: required"))
        category = (await _services(conn)).get(code) if code else None
        if code is not None and category is None:
            raise Open311Error.one(404, f"service_code: no service {code!r}")
        lat = parse_float("lat", _one(form, "lat"), problems)
        lon = parse_float("long", _one(form, "long"), problems)
        address = _one(form, "address_string")
        address_id = _one(form, "address_id")
        problems += location_problems(lat, lon, address, address_id)
        description = _one(form, "description")
        if description is not None and len(description) > MAX_DESCRIPTION:
            problems.append(Problem(400, f"description: at most {MAX_DESCRIPTION} characters"))
        media_url = _one(form, "media_url")
        problems += media_url_problems(media_url)
        values: dict[str, Any] = {}
        if category is not None:
            values, wrong = attribute_values(
                category.attributes, submitted_attributes([(k, v) for k, vs in form.items() for v in vs])
            )
            problems += wrong
        if problems:
            raise Open311Error(problems)
        if category is None:  # service_code was checked above: only a bug gets here
            raise RuntimeError("open311: a report without a service passed the checks")
        if principal is None and not category.anonymous_reports:
            raise Open311Error.one(
                403,
                "This service takes reports from signed-in citizens only: send the citizen's access"
                " token (Authorization: Bearer).",
            )

        new = grid_api.NewCase(
            category=category.code,
            description=description or category.name_en,
            lat=lat,
            lon=lon,
            address=address or (f"address id {address_id}" if address_id else None),
        )
        actor = workflows.Actor.of(principal) if principal else workflows.Actor.system("open311")
        reporter = principal.subject if principal else f"open311:{key.id}"
        case = await grid_api.report(conn, new, source="citizen", reporter=reporter, actor=actor)
        token = uuid.uuid4()
        await store.insert_request(
            conn,
            store.RequestRow(
                case_id=case.id,
                number=case.number,
                token=token,
                key_id=key.id,
                service_code=category.code,
                attributes=values,
                media_url=media_url,
                address_id=address_id,
                signed_in=principal is not None,
                requested_at=case.reported_at,
            ),
        )
        log.info("open311 request taken", extra={"case": case.number, "service": category.code})
        notice = (
            "Received. The command centre reviews every report; follow this one by its service_request_id."
            if case.grid
            else "Received without a location inside the city's grids: the city's command centre will locate it."
        )
        body = [
            {
                "service_request_id": case.number,
                "token": str(token),
                "service_notice": notice,
                "account_id": None,
            }
        ]
        return reply(fmt, "service_requests", "request", body, status=201)

    @get(_paths("requests"), operation_id=_operation("open311Requests"), summary="Find requests")
    async def find(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[bytes]:
        query = request.query_params
        _check_jurisdiction(settings, query.get("jurisdiction_id"))
        services = await _services(conn)
        problems: list[Problem] = []
        extensions = query.get("extensions", "").lower() == "true"
        reporter = None
        if query.get("mine", "").lower() == "true":
            principal = await _principal(request)
            if principal is None:
                raise Open311Error.one(
                    401,
                    "mine=true: sign in (send the citizen's access token)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            reporter, extensions = principal.subject, True
        numbers = None
        if query.get("service_request_id"):
            numbers = [n.strip() for n in query["service_request_id"].split(",") if n.strip()]
            if len(numbers) > MAX_IDS:
                problems.append(Problem(400, f"service_request_id: at most {MAX_IDS} ids"))
        codes = list(services)
        if query.get("service_code"):
            codes = [c.strip() for c in query["service_code"].split(",") if c.strip()]
            problems += [Problem(400, f"service_code: no service {c!r}") for c in codes if c not in services]
        statuses = None
        if query.get("status"):
            statuses, wrong = grid_statuses(query["status"])
            problems += wrong
        size = _ints(query, "page_size", MAX_REQUESTS, high=MAX_REQUESTS, problems=problems)
        number = _ints(query, "page", 1, high=1_000_000, problems=problems)
        start: datetime | None = None
        end: datetime | None = None
        if numbers is None and (reporter is None or query.get("start_date") or query.get("end_date")):
            start, end = _window(
                query, problems, default=timedelta(days=DEFAULT_WINDOW_DAYS), now=workflows.now()
            )
        if problems:
            raise Open311Error(problems)
        cases = await grid_api.find_cases(
            conn,
            categories=codes,
            numbers=numbers,
            statuses=statuses,
            reporter=reporter,
            source=_PUBLIC_SOURCE,
            start=start,
            end=end,
            offset=(number - 1) * size,
            limit=size + 1,
        )
        headers = _next_page(request, settings, number) if len(cases) > size else None
        body = await _Shaper(conn, settings, services).requests(
            cases[:size], extensions=extensions, reporter=reporter
        )
        return reply(_format(request), "service_requests", "request", body, headers=headers)

    @get("/requests/{service_request_id:str}", operation_id="open311Request", summary="One request")
    async def one(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        settings: NamedDependency[Settings],
        service_request_id: FromPath[str],
    ) -> Response[bytes]:
        _check_jurisdiction(settings, request.query_params.get("jurisdiction_id"))
        number, _ = split_format(service_request_id)
        services = await _services(conn)
        cases = await grid_api.find_cases(
            conn, categories=list(services), numbers=[number], source=_PUBLIC_SOURCE, limit=1
        )
        if not cases:
            raise Open311Error.one(404, f"service_request_id: no request {number!r}")
        extensions = request.query_params.get("extensions", "").lower() == "true"
        body = await _Shaper(conn, settings, services).requests(cases, extensions=extensions)
        return reply(_format(request), "service_requests", "request", body)

    @get("/tokens/{token:str}", operation_id="open311Token", summary="The request a token stands for")
    async def token(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        settings: NamedDependency[Settings],
        token: FromPath[str],
    ) -> Response[bytes]:
        _check_jurisdiction(settings, request.query_params.get("jurisdiction_id"))
        raw, _ = split_format(token)
        try:
            found = await store.request_by_token(conn, UUID(raw))
        except ValueError:
            found = None
        if found is None:
            raise Open311Error.one(404, "token: no request has this token")
        body = [{"service_request_id": found.number, "token": str(found.token)}]
        return reply(_format(request), "service_requests", "request", body)

    @get(
        _paths("servicerequestupdates"),
        operation_id=_operation("open311Updates"),
        summary="Updates since a time",
    )
    async def updates(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[bytes]:
        """FixMyStreet's extension: every status change of every request in [start_date, end_date],
        oldest first, each keyed by a stable update_id (re-reading an overlapping window gives
        the same ids, so a client never applies one twice, nor an older one after a newer).
        Paged by `page` / `page_size`: a page cut short of the window has a `Link: rel="next"`."""
        query = request.query_params
        _check_jurisdiction(settings, query.get("jurisdiction_id"))
        problems: list[Problem] = []
        start, end = _window(query, problems, default=_UPDATES_DEFAULT_WINDOW, now=workflows.now())
        size = _ints(query, "page_size", MAX_UPDATES, high=MAX_UPDATES, problems=problems)
        number = _ints(query, "page", 1, high=1_000_000, problems=problems)
        if problems:
            raise Open311Error(problems)
        services = await _services(conn)
        entries = await grid_api.status_changes_between(
            conn,
            categories=list(services),
            source=_PUBLIC_SOURCE,
            start=start,
            end=end,
            offset=(number - 1) * size,
            limit=size + 1,
        )
        headers = _next_page(request, settings, number) if len(entries) > size else None
        shaper = _Shaper(conn, settings, services)
        body = [shaper.update(entry) for entry in entries[:size]]
        return reply(_format(request), "service_request_updates", "request_update", body, headers=headers)

    @post(
        _paths("servicerequestupdates"),
        operation_id=_operation("open311PostUpdate"),
        summary="A citizen's update",
        status_code=201,
    )
    async def post_update(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[bytes]:
        """A citizen's update to a request: a note on the case that never moves its loop (the
        command centre decides that); a status the client asks for is recorded with the note.
        Idempotent by the app's `update_id`."""
        fmt = _format(request)
        form = await _form(request)
        _check_jurisdiction(settings, _one(form, "jurisdiction_id"))
        key = await _api_key(conn, form)
        await _within_rate(request, settings, key)
        principal = await _principal(request)
        number, description, client_id, status, updated_at, media_url = _update_fields(form)
        if number is None or description is None:  # checked above: only a bug gets here
            raise RuntimeError("open311: an update without its request passed the checks")
        services = await _services(conn)
        cases = await grid_api.find_cases(
            conn, categories=list(services), numbers=[number], source=_PUBLIC_SOURCE, limit=1
        )
        if not cases:
            raise Open311Error.one(404, f"service_request_id: no request {number!r}")
        case = cases[0]
        if client_id is not None:
            seen = await store.update_by_client_id(conn, key.id, client_id)
            if seen is not None:
                if seen[0] != case.id:
                    raise Open311Error.one(400, "update_id: already used by this app for another request")
                body = [{"update_id": str(seen[1]), "service_request_id": case.number}]
                return reply(fmt, "service_request_updates", "request_update", body, status=200)
        history_id = await grid_api.add_note(
            conn,
            case.id,
            note=description,
            actor=principal.subject if principal else f"open311:{key.id}",
            data={
                "channel": "open311",
                "key": str(key.id),
                "update_id": client_id,
                "requested_status": status.upper() if status else None,
                "updated_datetime": updated_at.isoformat() if updated_at else None,
                "media_url": media_url,
                "signed_in": principal is not None,
            },
        )
        if client_id is not None and not await store.record_update(
            conn, key_id=key.id, client_update_id=client_id, case_id=case.id, history_id=history_id
        ):
            raise Open311Error.one(409, "update_id: the same update is being taken right now; send it again")
        body = [{"update_id": str(history_id), "service_request_id": case.number}]
        return reply(fmt, "service_request_updates", "request_update", body, status=201)

    @route(
        "/{rest:path}",
        http_method=["GET", "POST", "PUT", "PATCH", "DELETE"],
        operation_id="open311Unknown",
        include_in_schema=False,
    )
    async def unknown(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        raise Open311Error.one(404, "No such Open311 resource; see discovery.")


# --- the admin API of api keys (problem+json, as every /api/v1 route) ---------------------------


class NewKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    app: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    rate_per_minute: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None


class KeyReply(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    app: str
    prefix: str
    rate_per_minute: int | None
    created_at: datetime
    revoked_at: datetime | None


class IssuedKey(KeyReply, frozen=True, kw_only=True):
    """The key itself is in this reply only: it is stored as a digest."""

    key: str


class KeyPage(msgspec.Struct, frozen=True):
    items: list[KeyReply]
    next_cursor: str | None


def _key_reply(row: store.KeyRow) -> KeyReply:
    return KeyReply(
        id=row.id,
        app=row.app,
        prefix=row.prefix,
        rate_per_minute=row.rate_per_minute,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


class Open311KeyController(Controller):
    path = "/api/v1/channels/open311/keys"
    tags = ["open311"]  # noqa: RUF012 - litestar's declared type
    middleware = [identity_api.require_role("admin")]  # noqa: RUF012 - litestar's declared type

    @post("", operation_id="issueOpen311Key", summary="Issue an api key to an app (shown once)")
    async def issue(
        self, request: Request[Any, Any, Any], conn: Connection, data: JSONBody[NewKey]
    ) -> IssuedKey:
        key = new_key()
        row = await store.insert_key(
            conn,
            app=data.app.strip(),
            digest=key_digest(key),
            prefix=key_prefix(key),
            rate_per_minute=data.rate_per_minute,
            by=identity_api.current_principal(request).subject,
        )
        if row is None:  # 256 random bits collided: never in practice
            raise RuntimeError("open311: a new api key's digest already exists")
        return IssuedKey(**msgspec.structs.asdict(_key_reply(row)), key=key)

    @get("", operation_id="listOpen311Keys", summary="Api keys, newest first")
    async def list_keys(
        self,
        conn: Connection,
        cursor: Annotated[str | None, QueryParameter(max_length=512)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        revoked: FromQuery[bool] = False,
    ) -> KeyPage:
        rows = await store.keys(
            conn, after=decode_cursor(cursor, tuple[datetime, UUID]), limit=limit + 1, revoked=revoked
        )
        items, next_cursor = page(rows, limit, lambda row: (row.created_at, row.id))
        return KeyPage(items=[_key_reply(row) for row in items], next_cursor=next_cursor)

    @delete("/{key_id:uuid}", operation_id="revokeOpen311Key", summary="Revoke an api key", status_code=200)
    async def revoke(
        self, request: Request[Any, Any, Any], conn: Connection, key_id: FromPath[UUID]
    ) -> KeyReply:
        row = await store.revoke_key(conn, key_id, by=identity_api.current_principal(request).subject)
        if row is None:
            raise NotFound("No such api key.")
        return _key_reply(row)


OPEN311_CONTROLLERS: Final = (Open311Controller, Open311KeyController)
