"""Open311 GeoReport v2's decisions that need no I/O: what a case's status is called there and
what the city says about it, the limits, and checking what a client sent (control characters,
dates, the location, a media URL, a service's attribute values).

Every check collects all the problems at once: the client gets one reply naming each of them, in
the specification's error format (`Open311Error`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import msgspec

from onewindow.text import has_control_characters, http_url_problem

# Grid's case status -> FixMyStreet's extended Open311 status (docs/open311.md). A duplicate
# that closes with its primary becomes `closed`, so CLOSED.
EXTENDED_STATUS: Final[dict[str, str]] = {
    "registering": "OPEN",
    "dispatching": "ACTION_SCHEDULED",
    "handling": "IN_PROGRESS",
    "verifying": "FIXED",
    "closing": "FIXED",
    "evaluating": "FIXED",
    "closed": "CLOSED",
    "rejected": "NOT_COUNCILS_RESPONSIBILITY",
    "duplicate": "DUPLICATE",
}
CLOSED_STATUSES: Final = frozenset({"closed", "rejected", "duplicate"})

# What GeoReport v2 and its extensions allow a client to send.
MAX_DESCRIPTION: Final = 2000  # grid keeps a case's description to 2,000 characters
MAX_ADDRESS: Final = 500
MAX_TEXT_ATTRIBUTE: Final = 2000
MAX_STRING_ATTRIBUTE: Final = 200
MAX_IDS: Final = 100
DEFAULT_WINDOW_DAYS: Final = 90
MAX_REQUESTS: Final = 1000
MAX_UPDATES: Final = 1000
# Form fields whose value may run over several lines; every other value is one line.
_MULTILINE_FIELDS: Final = frozenset({"description"})

DATATYPES: Final = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")

# What the city says publicly of a case in each status: `status_notes`, and the description of
# each status change in the notes and in servicerequestupdates. Fixed words, written by the city:
# staff's comments on a step may name people or internal matters and are never shown.
STATUS_TEXT: Final[dict[str, str]] = {
    "registering": "Report received; the command centre reviews it.",
    "dispatching": "Accepted by the command centre; being sent to those responsible.",
    "handling": "With those responsible: work in progress.",
    "verifying": "Reported done; to be checked on site.",
    "closing": "Checked on site: fixed.",
    "evaluating": "Fixed.",
    "closed": "Closed.",
    "rejected": "Not for the city to handle.",
    "duplicate": "Already reported: followed on the earlier report.",
}


class Problem(msgspec.Struct, frozen=True):
    """One entry of an Open311 error reply."""

    code: int
    description: str


class Open311Error(Exception):
    """An error reply in the specification's format: an array of {code, description}, with the
    HTTP status of the first (400, 401, 403, 404, 429, ...)."""

    def __init__(self, problems: Sequence[Problem], *, headers: dict[str, str] | None = None) -> None:
        super().__init__(problems[0].description)
        self.problems = list(problems)
        self.status = problems[0].code
        self.headers = headers or {}

    @classmethod
    def one(cls, status: int, description: str, *, headers: dict[str, str] | None = None) -> Open311Error:
        return cls([Problem(status, description)], headers=headers)


def extended_status(status: str) -> str:
    return EXTENDED_STATUS.get(status, "CLOSED" if status in CLOSED_STATUSES else "OPEN")


def plain_status(status: str) -> str:
    return "closed" if status in CLOSED_STATUSES else "open"


def grid_statuses(value: str) -> tuple[list[str], list[Problem]]:
    """The grid statuses a `status` filter names: open, closed, or extended statuses (comma list)."""
    wanted: set[str] = set()
    problems: list[Problem] = []
    for word in (part.strip() for part in value.split(",")):
        if word.lower() == "open":
            wanted.update(s for s in EXTENDED_STATUS if s not in CLOSED_STATUSES)
        elif word.lower() == "closed":
            wanted.update(CLOSED_STATUSES)
        elif word.upper() in EXTENDED_STATUS.values():
            wanted.update(s for s, e in EXTENDED_STATUS.items() if e == word.upper())
        else:
            problems.append(Problem(400, f"status: {word!r} is not open, closed or an extended status"))
    return sorted(wanted), problems


def status_text(status: str) -> str:
    return STATUS_TEXT.get(status, "Updated.")


def control_problems(
    fields: Sequence[tuple[str, str]], *, multiline: frozenset[str] = frozenset()
) -> list[Problem]:
    """A problem for each field whose name or value holds a control character (NUL, the other C0
    controls, DEL): PostgreSQL cannot store some and XML 1.0 cannot carry any. Line breaks are
    allowed only in the values of `multiline` fields. A name with a control character is not
    echoed back (the reply would carry it)."""
    problems: list[Problem] = []
    for name, value in fields:
        if has_control_characters(name, multiline=False):
            said = "a parameter's name holds control characters"
        elif name in multiline and has_control_characters(value):
            said = f"{name[:100]}: control characters are not allowed"
        elif name not in multiline and has_control_characters(value, multiline=False):
            said = f"{name[:100]}: one line, without control characters"
        else:
            continue
        if all(p.description != said for p in problems):
            problems.append(Problem(400, said))
    return problems


def form_control_problems(fields: Sequence[tuple[str, str]]) -> list[Problem]:
    """`control_problems` of a POST's form: a description and attribute values may run over
    several lines (a `string` attribute is checked to be one line with its datatype)."""
    multiline = frozenset(
        name for name, _ in fields if name in _MULTILINE_FIELDS or name.startswith("attribute[")
    )
    return control_problems(fields, multiline=multiline)


def parse_datetime(name: str, value: str, problems: list[Problem]) -> datetime | None:
    """A W3C/ISO 8601 date-time with its offset (Z or +hh:mm); anything else is a 400."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value:
        problems.append(
            Problem(400, f"{name}: not a date and time with its offset, e.g. 2026-09-28T08:30:00+08:00")
        )
        return None
    # Within years 1970-9000, so the windows computed from it (and UTC) never leave datetime's range.
    if not 1970 <= parsed.year <= 9000:
        problems.append(Problem(400, f"{name}: a year from 1970 to 9000"))
        return None
    return parsed


def parse_float(name: str, value: str | None, problems: list[Problem]) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        problems.append(Problem(400, f"{name}: not a number"))
        return None
    return number


def location_problems(
    lat: float | None, lon: float | None, address: str | None, address_id: str | None
) -> list[Problem]:
    """lat and long together (WGS84), or an address (address_string or address_id)."""
    problems: list[Problem] = []
    if (lat is None) != (lon is None):
        problems.append(Problem(400, "lat and long: give both, or neither and an address_string"))
    elif lat is not None and lon is not None:
        if not -90 <= lat <= 90:
            problems.append(Problem(400, "lat: a latitude is within -90..90"))
        if not -180 <= lon <= 180:
            problems.append(Problem(400, "long: a longitude is within -180..180"))
    elif not address and not address_id:
        problems.append(Problem(400, "location: give lat and long, or an address_string (or address_id)"))
    if address is not None and len(address) > MAX_ADDRESS:
        problems.append(Problem(400, f"address_string: at most {MAX_ADDRESS} characters"))
    if address_id is not None and len(address_id) > 100:
        problems.append(Problem(400, "address_id: at most 100 characters"))
    return problems


def media_url_problems(value: str | None) -> list[Problem]:
    """The kernel's one URL check (parsed as the HTTP client parses it)."""
    problem = http_url_problem(value) if value is not None else None
    return [Problem(400, f"media_url: {problem}")] if problem else []


def attribute_values(
    definitions: list[dict[str, Any]], submitted: dict[str, list[str]]
) -> tuple[dict[str, Any], list[Problem]]:
    """Check a report's `attribute[code]` values against the service's definitions: every
    required one present, each value of its datatype, list values among the listed keys, no
    unknown codes. Attributes that only inform (`variable: false`) take no value."""
    problems: list[Problem] = []
    known = {d["code"]: d for d in definitions if d.get("variable", True)}
    for code in submitted:
        if code not in known:
            problems.append(Problem(400, f"attribute[{code}]: this service has no such attribute"))
    values: dict[str, Any] = {}
    for code, definition in known.items():
        given = [v for v in submitted.get(code, []) if v.strip() != ""]
        if not given:
            if definition.get("required"):
                problems.append(Problem(400, f"attribute[{code}]: required"))
            continue
        checked = _attribute_value(code, definition, given, problems)
        if checked is not None:
            values[code] = checked
    return values, problems


def _attribute_value(code: str, definition: dict[str, Any], given: list[str], problems: list[Problem]) -> Any:
    datatype = definition.get("datatype")
    name = f"attribute[{code}]"
    if datatype == "multivaluelist":
        keys = {v["key"] for v in definition.get("values", [])}
        wrong = [v for v in given if v not in keys]
        if wrong:
            problems.append(Problem(400, f"{name}: not among the listed values: {', '.join(sorted(wrong))}"))
            return None
        return list(dict.fromkeys(given))
    if len(given) > 1:
        problems.append(Problem(400, f"{name}: one value only"))
        return None
    value = given[0]
    if datatype == "singlevaluelist":
        if value not in {v["key"] for v in definition.get("values", [])}:
            problems.append(Problem(400, f"{name}: {value!r} is not among the listed values"))
            return None
        return value
    if datatype == "number":
        return parse_float(name, value, problems)
    if datatype == "datetime":
        parsed = parse_datetime(name, value, problems)
        return parsed.isoformat() if parsed else None
    limit = MAX_TEXT_ATTRIBUTE if datatype == "text" else MAX_STRING_ATTRIBUTE
    if datatype != "text" and has_control_characters(value, multiline=False):
        problems.append(Problem(400, f"{name}: one line, without control characters"))
        return None
    if len(value) > limit:
        problems.append(Problem(400, f"{name}: at most {limit} characters"))
        return None
    return value


_ATTRIBUTE_KEY = re.compile(r"^attribute\[([^\[\]]{1,100})\](\[\])?$")


def submitted_attributes(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    """`attribute[code]=v` and `attribute[code][]=v` form fields, by code."""
    found: dict[str, list[str]] = {}
    for key, value in items:
        match = _ATTRIBUTE_KEY.match(key)
        if match:
            found.setdefault(match.group(1), []).append(value)
    return found
