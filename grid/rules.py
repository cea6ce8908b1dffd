"""The decisions of grid management that need no I/O: coordinates, distances, the case's status
for each step of its loop, and what a worker's offline update means."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Final, Literal

from onewindow.errors import FieldError

Status = Literal[
    "registering",
    "dispatching",
    "handling",
    "verifying",
    "closing",
    "evaluating",
    "closed",
    "rejected",
    "duplicate",
]
OPEN_STATUSES: Final = ("registering", "dispatching", "handling", "verifying", "closing", "evaluating")
FINAL_STATUSES: Final = ("closed", "rejected")

# The loop's states (grid/case_loop.yaml) as the case's status. The state names are the contract
# between the definition and grid: an edited definition keeps them (a state grid does not know
# leaves the status as it was).
STATUS_OF_STATE: Final[dict[str, Status]] = {
    "register": "registering",
    "dispatch": "dispatching",
    "handle_department": "handling",
    "handle_worker": "handling",
    "rework": "handling",
    "verify": "verifying",
    "close": "closing",
    "evaluate": "evaluating",
}
OUTCOME_STATUS: Final[dict[str, Status]] = {
    "closed": "closed",
    "rejected": "rejected",
    "duplicate": "duplicate",
}

DUPLICATE_RADIUS_M: Final = 50.0
DUPLICATE_WINDOW_DAYS: Final = 7
_EARTH_RADIUS_M: Final = 6_371_008.8


def coordinate_errors(lat: float | None, lon: float | None, *, prefix: str = "") -> list[FieldError]:
    """Both or neither; each in range and finite. A latitude out of range whose longitude would
    be a valid latitude is most likely the two swapped: say so."""
    if lat is None and lon is None:
        return []
    if lat is None or lon is None:
        missing = "lat" if lat is None else "lon"
        return [FieldError(pointer=f"{prefix}/{missing}", detail="give both lat and lon, or neither")]
    errors: list[FieldError] = []
    swapped = not -90 <= lat <= 90 and -90 <= lon <= 90 and -180 <= lat <= 180
    if not math.isfinite(lat) or not -90 <= lat <= 90:
        hint = " (lat and lon look swapped: lat is north-south, -90..90)" if swapped else ""
        errors.append(FieldError(pointer=f"{prefix}/lat", detail=f"latitude must be within -90..90{hint}"))
    if not math.isfinite(lon) or not -180 <= lon <= 180:
        errors.append(FieldError(pointer=f"{prefix}/lon", detail="longitude must be within -180..180"))
    return errors


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine): exact enough at the scale of a street."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


def box_around(lat: float, lon: float, metres: float) -> tuple[float, float, float, float]:
    """(lat_min, lat_max, lon_min, lon_max) of a box containing every point within `metres`."""
    dlat = math.degrees(metres / _EARTH_RADIUS_M)
    dlon = math.degrees(metres / (_EARTH_RADIUS_M * max(math.cos(math.radians(lat)), 1e-6)))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


def case_number(year: int, sequence: int) -> str:
    """What people read out over the phone: GC-2026-000123."""
    return f"GC-{year}-{sequence:06d}"


def hours_clock(duration: str) -> Literal["continuous"] | None:
    """A category limit in hours (PT4H) is real time: a blocked drain does not wait for office
    hours. One in days (P3D) counts working days (the engine's default for days)."""
    return "continuous" if "T" in duration else None


def on_time(handled_at: datetime | None, due_at: datetime | None) -> bool | None:
    if handled_at is None or due_at is None:
        return None
    return handled_at <= due_at
