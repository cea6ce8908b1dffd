"""The grid layer's geometry: parsing and checking an uploaded GeoJSON file, exporting it back, and
locating a point. Pure: no database, no HTTP, no files.

Coordinates are WGS84 longitude/latitude as GeoJSON has them (RFC 7946): positions are
`[lon, lat]`, while `Locator.locate` takes `(lat, lon)` as people and phones say them.

Checks run on degrees, not on a projection: a grid is a few hundred metres across, so areas in
square degrees are compared with one tolerance (`AREA_TOLERANCE`, about 0.01 m² at the equator)
and only converted to approximate square metres for the messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

import msgspec
import numpy as np
import shapely

from onewindow.errors import FieldError, ValidationFailed

__all__ = [
    "AREA_TOLERANCE",
    "GeoProblem",
    "GridFeature",
    "GridsInvalid",
    "Locator",
    "feature_collection",
    "parse_grids",
]

ProblemKind = Literal[
    "not_a_feature_collection",
    "missing_property",
    "bad_property",
    "duplicate_code",
    "unsupported_geometry",
    "out_of_range",
    "invalid_geometry",
    "self_intersection",
    "overlap",
    "gap",
    "too_many_features",
]

# Grid, community, street and district codes all become organisation-unit codes (identity's
# pattern). fullmatch, not `$`: `$` would let a trailing newline through.
_CODE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_NAME_MAX: Final = 200
# grid.grids.households is a PostgreSQL integer.
_HOUSEHOLDS_MAX: Final = 2**31 - 1
_UNIT_PROPERTIES: Final = ("community", "street", "district")
_PROPERTIES: Final = ("code", "name", "community", "street", "district", "households")

# Overlaps and gaps smaller than this (square degrees, about 0.01 m² at the equator) are
# digitisation noise: two wards digitised edge to edge still overlap or part by 1e-15 deg².
AREA_TOLERANCE: Final = 1e-12
# Metres per degree of a great circle on the mean Earth sphere (radius 6,371,008.8 m).
_M_PER_DEGREE: Final = math.pi * 6_371_008.8 / 180
_LOCATION: Final = re.compile(r"\[\s*(\S+)\s+(\S+)\s*\]")


class GridFeature(msgspec.Struct, frozen=True, kw_only=True):
    """One grid of an accepted file. `geometry` is the GeoJSON Polygon or MultiPolygon as
    uploaded after normalisation: `type` and `coordinates` only, positions `[lon, lat]` as floats
    (a third, altitude, value dropped), exterior rings counter-clockwise and holes clockwise
    (RFC 7946 §3.1.6). Rings are closed in the file already: an unclosed ring is refused."""

    code: str
    name: str
    community: str
    street: str
    district: str
    households: int
    geometry: dict[str, Any]


class GeoProblem(msgspec.Struct, frozen=True, kw_only=True):
    """One thing wrong with an uploaded grid file."""

    kind: ProblemKind
    # A JSON Pointer (RFC 6901) into the uploaded document.
    pointer: str
    # The grid codes concerned, when known: both for an overlap, those around it for a gap.
    codes: tuple[str, ...]
    detail: str


class GridsInvalid(ValidationFailed):
    """The grid file is refused; `problems` lists everything wrong with it, not just the first."""

    def __init__(self, problems: Sequence[GeoProblem]) -> None:
        count = len(problems)
        super().__init__(
            f"{count} problem{'' if count == 1 else 's'} in the grid file",
            errors=[FieldError(problem.pointer, problem.detail) for problem in problems],
        )
        self.problems = tuple(problems)


# --- parsing -----------------------------------------------------------------------------------


class _Invalid(Exception):
    """One feature's geometry is refused (raised inside the coordinate walk, caught per feature)."""

    def __init__(self, kind: ProblemKind, pointer: str, detail: str) -> None:
        super().__init__(detail)
        self.kind: ProblemKind = kind
        self.pointer = pointer
        self.detail = detail


def _show(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4,300 digits
        text = f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _is_number(value: object) -> bool:
    # bool is an int subclass: `true` is not a coordinate.
    return type(value) is float or type(value) is int


def _position_problem(position: object, pointer: str) -> _Invalid:
    """What is wrong with a position the fast path in _ring did not take."""
    if not isinstance(position, list | tuple) or len(position) not in (2, 3):
        return _Invalid(
            "invalid_geometry", pointer, f"a position must be [longitude, latitude], not {_show(position)}"
        )
    if not all(_is_number(value) for value in position):
        return _Invalid("invalid_geometry", pointer, f"a position holds numbers only, not {_show(position)}")
    lon, lat = position[0], position[1]
    if not all(type(value) is int or math.isfinite(value) for value in (lon, lat)):  # no float(10**400)
        return _Invalid("invalid_geometry", pointer, f"{_show(position)} is not a finite position")
    swapped = -90 <= lon <= 90 and -180 <= lat <= 180
    hint = (
        "; it looks like [latitude, longitude]: GeoJSON positions are [longitude, latitude]"
        if swapped
        else ""
    )
    return _Invalid(
        "out_of_range",
        pointer,
        f"position {_show(position)} is outside longitude -180..180, latitude -90..90{hint}",
    )


def _ring(raw: object, pointer: str, *, hole: bool) -> list[list[float]]:
    """A ring as `[lon, lat]` float pairs, oriented as RFC 7946 says (exterior counter-clockwise,
    holes clockwise); raises _Invalid on the first thing wrong."""
    if not isinstance(raw, list | tuple):
        raise _Invalid("invalid_geometry", pointer, f"a ring must be an array of positions, not {_show(raw)}")
    ring: list[list[float]] = []
    append = ring.append
    for position in raw:
        # Written out for speed (a city has hundreds of thousands of positions); whatever is not
        # plainly fine goes to _position_problem, which says what is wrong.
        if type(position) is list and len(position) == 2:
            lon, lat = position
        elif isinstance(position, list | tuple) and (
            len(position) == 2 or (len(position) == 3 and _is_number(position[2]))
        ):
            lon, lat = position[0], position[1]
        else:
            raise _position_problem(position, f"{pointer}/{len(ring)}")
        if (
            (type(lon) is float or type(lon) is int)
            and (type(lat) is float or type(lat) is int)
            and -180 <= lon <= 180
            and -90 <= lat <= 90
        ):
            append([float(lon), float(lat)])
        else:  # NaN fails every comparison and lands here too
            raise _position_problem(position, f"{pointer}/{len(ring)}")
    if len(ring) < 4:
        raise _Invalid(
            "invalid_geometry",
            pointer,
            f"a ring needs at least 4 positions (the last repeating the first), it has {len(ring)}",
        )
    if ring[0] != ring[-1]:
        raise _Invalid(
            "invalid_geometry",
            pointer,
            "the ring is not closed: its last position must repeat its first (RFC 7946)",
        )
    # Shoelace: twice the signed area, positive when counter-clockwise.
    signed = 0.0
    x0, y0 = ring[0]
    for x1, y1 in ring:
        signed += x0 * y1 - x1 * y0
        x0, y0 = x1, y1
    if (signed < 0) != hole:
        ring.reverse()
    return ring


def _polygon(raw: object, pointer: str) -> list[list[list[float]]]:
    if not isinstance(raw, list | tuple) or not raw:
        raise _Invalid(
            "invalid_geometry", pointer, f"a polygon must be a non-empty array of rings, not {_show(raw)}"
        )
    return [_ring(ring, f"{pointer}/{r}", hole=r > 0) for r, ring in enumerate(raw)]


def _geometry(raw: object, pointer: str) -> dict[str, Any]:
    """The normalised GeoJSON geometry; raises _Invalid on the first thing wrong."""
    if raw is None:
        raise _Invalid(
            "unsupported_geometry", pointer, "the feature has no geometry (Polygon or MultiPolygon)"
        )
    if not isinstance(raw, dict):
        raise _Invalid("unsupported_geometry", pointer, f"a geometry must be an object, not {_show(raw)}")
    kind = raw.get("type")
    coordinates = raw.get("coordinates")
    if kind == "Polygon":
        return {"type": "Polygon", "coordinates": _polygon(coordinates, f"{pointer}/coordinates")}
    if kind == "MultiPolygon":
        if not isinstance(coordinates, list | tuple) or not coordinates:
            raise _Invalid(
                "invalid_geometry",
                f"{pointer}/coordinates",
                f"a MultiPolygon must be a non-empty array of polygons, not {_show(coordinates)}",
            )
        polygons = [_polygon(polygon, f"{pointer}/coordinates/{p}") for p, polygon in enumerate(coordinates)]
        return {"type": "MultiPolygon", "coordinates": polygons}
    raise _Invalid(
        "unsupported_geometry",
        f"{pointer}/type",
        f"a grid is a Polygon or a MultiPolygon, not {_show(kind)}",
    )


def _shapes(geometries: Sequence[dict[str, Any]]) -> Any:
    """The shapely geometries (an array, every one a MultiPolygon) of GeoJSON Polygons and
    MultiPolygons, built in one call from flat coordinates: tens of thousands of grids take a
    fraction of what one constructor call each would. Rings are taken as they are."""
    coordinates: list[list[float]] = []
    ring_ends = [0]
    polygon_ends = [0]
    part_ends = [0]
    for geometry in geometries:
        if geometry["type"] == "Polygon":
            polygons = [geometry["coordinates"]]
        elif geometry["type"] == "MultiPolygon":
            polygons = geometry["coordinates"]
        else:
            raise ValueError(f"a grid is a Polygon or a MultiPolygon, not {geometry['type']!r}")
        for polygon in polygons:
            for ring in polygon:
                coordinates.extend([position[0], position[1]] for position in ring)
                ring_ends.append(len(coordinates))
            polygon_ends.append(len(ring_ends) - 1)
        part_ends.append(len(polygon_ends) - 1)
    if not geometries:
        return np.array([], dtype=object)
    return shapely.from_ragged_array(
        shapely.GeometryType.MULTIPOLYGON,
        np.array(coordinates, dtype=np.float64),
        (np.array(ring_ends), np.array(polygon_ends), np.array(part_ends)),
    )


def _square_metres(area: float, latitude: float) -> str:
    metres = area * _M_PER_DEGREE**2 * math.cos(math.radians(latitude))
    return f"{metres:,.0f}" if metres >= 10 else f"{metres:.2g}"


def _where(reason: str) -> str:
    """GEOS's "Self-intersection[80.27 13.04]" as " near lon 80.27, lat 13.04"."""
    found = _LOCATION.search(reason)
    return f" near lon {found[1]}, lat {found[2]}" if found else ""


def _listed(codes: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(codes[:limit])
    return shown if len(codes) <= limit else f"{shown} and {len(codes) - limit} more"


class _Feature:
    """What one feature yielded, valid parts only (None where refused)."""

    __slots__ = ("code", "geometry", "properties", "shape", "units")

    def __init__(self) -> None:
        self.code: str | None = None
        self.units: dict[str, str] = {}  # community/street/district when valid
        self.properties: dict[str, Any] | None = None  # every property valid
        self.geometry: dict[str, Any] | None = None
        self.shape: Any = None  # set once the geometry is also valid


def _property_problem(key: str, value: object) -> str | None:
    """What is wrong with a present property, None if nothing."""
    if key == "households":
        if type(value) is not int or not 0 <= value <= _HOUSEHOLDS_MAX:
            return f"households must be a whole number from 0 to {_HOUSEHOLDS_MAX}, not {_show(value)}"
        return None
    if key == "name":
        if not isinstance(value, str) or not value.strip() or len(value) > _NAME_MAX:
            return f"name must be a non-blank text of at most {_NAME_MAX} characters, not {_show(value)}"
        return None
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        return (
            f"{key} must be a code of 1 to 63 letters, digits, '.', '_' or '-' starting with a letter "
            f"or digit, not {_show(value)}"
        )
    return None


def _properties(index: int, raw: object, problems: list[GeoProblem]) -> _Feature:
    feature = _Feature()
    pointer = f"/features/{index}/properties"
    if not isinstance(raw, dict):
        if raw is None:
            detail = f"feature {index} has no properties; a grid needs {', '.join(_PROPERTIES)}"
            problems.append(GeoProblem(kind="missing_property", pointer=pointer, codes=(), detail=detail))
        else:
            detail = f"the properties of feature {index} must be an object, not {_show(raw)}"
            problems.append(GeoProblem(kind="bad_property", pointer=pointer, codes=(), detail=detail))
        return feature
    code = raw.get("code")
    if isinstance(code, str) and _CODE.fullmatch(code):
        feature.code = code
    codes = (feature.code,) if feature.code else ()
    name = f"grid {feature.code}" if feature.code else f"feature {index}"
    valid: dict[str, Any] = {}
    for key in _PROPERTIES:
        if key not in raw or raw[key] is None:
            detail = f"{name} has no {key}"
            problems.append(
                GeoProblem(kind="missing_property", pointer=f"{pointer}/{key}", codes=codes, detail=detail)
            )
            continue
        value = raw[key]
        wrong = _property_problem(key, value)
        if wrong is None:
            valid[key] = value
        else:
            problems.append(
                GeoProblem(
                    kind="bad_property", pointer=f"{pointer}/{key}", codes=codes, detail=f"{name}: {wrong}"
                )
            )
    feature.units = {key: valid[key] for key in _UNIT_PROPERTIES if key in valid}
    if len(valid) == len(_PROPERTIES):
        feature.properties = valid
    return feature


def _hierarchy(features: Sequence[_Feature], problems: list[GeoProblem]) -> None:
    """Every code names one organisation unit: a grid code is used once (duplicate_code), a
    community lies in one street, a street in one district, and no code names units at two
    levels (bad_property)."""
    first_grid: dict[str, int] = {}
    level_of: dict[str, tuple[str, int]] = {}  # code -> (level, first feature index)
    parent_of: dict[tuple[str, str], tuple[str, int]] = {}  # (level, code) -> (parent, index)
    parent_level = {"community": "street", "street": "district"}
    for index, feature in enumerate(features):
        if feature.code is not None:
            if feature.code in first_grid:
                problems.append(
                    GeoProblem(
                        kind="duplicate_code",
                        pointer=f"/features/{index}/properties/code",
                        codes=(feature.code,),
                        detail=f"grid code {feature.code} is also used by feature {first_grid[feature.code]}",
                    )
                )
            else:
                first_grid[feature.code] = index
        codes = (feature.code,) if feature.code else ()
        named = [("code", "grid", feature.code)] if feature.code else []
        named += [(level, level, code) for level, code in feature.units.items()]
        for key, level, code in named:
            seen_level, seen_index = level_of.setdefault(code, (level, index))
            if seen_level != level:
                problems.append(
                    GeoProblem(
                        kind="bad_property",
                        pointer=f"/features/{index}/properties/{key}",
                        codes=codes,
                        detail=(
                            f"{code} is a {level} here but a {seen_level} in feature {seen_index}; "
                            "grid, community, street and district codes are all unit codes and must differ"
                        ),
                    )
                )
        for level, upper in parent_level.items():
            unit, parent = feature.units.get(level), feature.units.get(upper)
            if unit is None or parent is None:
                continue
            seen_parent, seen_index = parent_of.setdefault((level, unit), (parent, index))
            if seen_parent != parent:
                problems.append(
                    GeoProblem(
                        kind="bad_property",
                        pointer=f"/features/{index}/properties/{upper}",
                        codes=codes,
                        detail=(
                            f"{level} {unit} is in {upper} {parent} here but in {upper} {seen_parent} "
                            f"in feature {seen_index}; a {level} belongs to one {upper}"
                        ),
                    )
                )


def _label(feature: _Feature, index: int) -> str:
    return f"grid {feature.code}" if feature.code else f"feature {index}"


def _overlaps(features: Sequence[_Feature], located: Sequence[int], problems: list[GeoProblem]) -> None:
    """Pairs of grids sharing more than AREA_TOLERANCE of area. The STRtree yields the pairs
    whose boxes and shapes meet (neighbours touching along an edge included), so the work grows
    with the number of neighbours, not with the square of the number of grids."""
    if len(located) < 2:
        return
    shapes = np.array([features[i].shape for i in located], dtype=object)
    left, right = shapely.STRtree(shapes).query(shapes, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    # Neighbours touching along an edge are most candidates: "interiors meet" is cheaper to
    # rule out than an intersection is to compute.
    inside = shapely.relate_pattern(shapes[left], shapes[right], "T********")
    left, right = left[inside], right[inside]
    common = shapely.intersection(shapes[left], shapes[right])
    areas = shapely.area(common)
    for a, b, area, piece in zip(left.tolist(), right.tolist(), areas.tolist(), common, strict=True):
        if area <= AREA_TOLERANCE:
            continue
        first, second = located[a], located[b]
        codes = tuple(code for code in (features[first].code, features[second].code) if code)
        spot = piece.representative_point()
        problems.append(
            GeoProblem(
                kind="overlap",
                pointer=f"/features/{second}/geometry",
                codes=codes,
                detail=(
                    f"{_label(features[first], first)} and {_label(features[second], second)} overlap "
                    f"(area {_square_metres(area, spot.y)} m² near lon {spot.x:.6f}, lat {spot.y:.6f})"
                ),
            )
        )


def _gaps(features: Sequence[_Feature], located: Sequence[int], problems: list[GeoProblem]) -> None:
    """Holes in the union of each community's grids that no grid covers: places inside a
    community that belong to nobody, including a grid's own hole that no other grid fills. A hole
    filled by another community's grids is an enclave, not a gap. Only holes are gaps; what lies
    between communities, or outside the city, is not checked."""
    everything = np.array([features[i].shape for i in located], dtype=object)
    city: shapely.STRtree | None = None
    communities: dict[str, list[int]] = {}
    for index in located:
        community = features[index].units.get("community")
        if community is not None:
            communities.setdefault(community, []).append(index)
    for community, members in communities.items():
        shapes = np.array([features[i].shape for i in members], dtype=object)
        union = shapely.union_all(shapes)
        tree: shapely.STRtree | None = None
        for part in shapely.get_parts(union):
            if part.geom_type != "Polygon":
                continue
            for ring in part.interiors:
                hole = shapely.Polygon(ring)
                if hole.area <= AREA_TOLERANCE:
                    continue
                # Grids (of this community or another) may stand inside the hole: not the gap.
                if city is None:
                    city = shapely.STRtree(everything)
                inside = everything[city.query(hole, predicate="intersects")]
                gap = shapely.difference(hole, shapely.union_all(inside)) if len(inside) else hole
                if gap.area <= AREA_TOLERANCE:
                    continue
                if tree is None:
                    tree = shapely.STRtree(shapes)
                around = sorted(members[k] for k in tree.query(hole, predicate="intersects").tolist())
                codes = tuple(sorted({code for i in around if (code := features[i].code)}))
                spot = gap.representative_point()
                problems.append(
                    GeoProblem(
                        kind="gap",
                        pointer=f"/features/{around[0]}/geometry" if around else "/features",
                        codes=codes,
                        detail=(
                            f"gap of {_square_metres(gap.area, spot.y)} m² inside community {community} "
                            f"near lon {spot.x:.6f}, lat {spot.y:.6f}, not covered by any of its grids; "
                            f"around it: {_listed(codes) or 'grids without a valid code'}"
                        ),
                    )
                )


def _valid_shapes(features: Sequence[_Feature], problems: list[GeoProblem]) -> list[int]:
    """GEOS validity of every well-formed geometry, in one call; the indexes of the valid ones,
    whose `shape` is set."""
    shaped = [(index, feature.geometry) for index, feature in enumerate(features) if feature.geometry]
    shapes = _shapes([geometry for _, geometry in shaped])
    reasons = shapely.is_valid_reason(shapes).tolist()
    located: list[int] = []
    for (index, geometry), shape, reason in zip(shaped, shapes, reasons, strict=True):
        feature = features[index]
        codes = (feature.code,) if feature.code else ()
        pointer = f"/features/{index}/geometry"
        if reason != "Valid Geometry":
            crossing = reason.startswith(("Self-intersection", "Ring Self-intersection"))
            parts = " (or two of its parts overlap)" if geometry["type"] == "MultiPolygon" else ""
            problems.append(
                GeoProblem(
                    kind="self_intersection" if crossing else "invalid_geometry",
                    pointer=pointer,
                    codes=codes,
                    detail=(
                        f"the outline of {_label(feature, index)} crosses itself{_where(reason)}{parts}"
                        if crossing
                        else f"{_label(feature, index)} is not a valid polygon: {reason}"
                    ),
                )
            )
        elif shape.area <= AREA_TOLERANCE:
            problems.append(
                GeoProblem(
                    kind="invalid_geometry",
                    pointer=pointer,
                    codes=codes,
                    detail=f"{_label(feature, index)} has no area (under {AREA_TOLERANCE} square degrees)",
                )
            )
        else:
            feature.shape = shape
            located.append(index)
    return located


def parse_grids(doc: object, *, max_features: int = 50_000) -> list[GridFeature]:
    """The grids of a GeoJSON FeatureCollection (a decoded JSON document), checked in full.

    Raises GridsInvalid listing every problem at once: each feature's properties, its geometry
    (the first thing wrong with it: structure, range, closed rings, then GEOS validity), duplicate
    codes and the unit hierarchy, overlaps between valid grids, and gaps inside each community.
    Two cases stop at once with that single problem: a document that is not a FeatureCollection,
    and one with more than `max_features` features (checked before anything else is looked at).
    Feature members other than `properties` and `geometry`, and properties other than the six,
    are ignored.
    """
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        found = doc.get("type") if isinstance(doc, dict) else doc
        raise GridsInvalid(
            [
                GeoProblem(
                    kind="not_a_feature_collection",
                    pointer="/type" if isinstance(doc, dict) else "",
                    codes=(),
                    detail=f"the file must be a GeoJSON FeatureCollection, not {_show(found)}",
                )
            ]
        )
    raw_features = doc.get("features")
    if not isinstance(raw_features, list):
        raise GridsInvalid(
            [
                GeoProblem(
                    kind="not_a_feature_collection",
                    pointer="/features",
                    codes=(),
                    detail=f"a FeatureCollection's features must be an array, not {_show(raw_features)}",
                )
            ]
        )
    if len(raw_features) > max_features:
        raise GridsInvalid(
            [
                GeoProblem(
                    kind="too_many_features",
                    pointer="/features",
                    codes=(),
                    detail=f"the file has {len(raw_features)} features; at most {max_features} are accepted",
                )
            ]
        )

    problems: list[GeoProblem] = []
    features: list[_Feature] = []
    for index, raw in enumerate(raw_features):
        if not isinstance(raw, dict) or raw.get("type") != "Feature":
            problems.append(
                GeoProblem(
                    kind="not_a_feature_collection",
                    pointer=f"/features/{index}" + ("/type" if isinstance(raw, dict) else ""),
                    codes=(),
                    detail=f"feature {index} is not a GeoJSON Feature",
                )
            )
            features.append(_Feature())
            continue
        feature = _properties(index, raw.get("properties"), problems)
        features.append(feature)
        try:
            feature.geometry = _geometry(raw.get("geometry"), f"/features/{index}/geometry")
        except _Invalid as invalid:
            codes = (feature.code,) if feature.code else ()
            problems.append(
                GeoProblem(
                    kind=invalid.kind,
                    pointer=invalid.pointer,
                    codes=codes,
                    detail=f"{_label(feature, index)}: {invalid.detail}",
                )
            )

    located = _valid_shapes(features, problems)
    _hierarchy(features, problems)
    shapely.prepare(np.array([features[i].shape for i in located], dtype=object))
    _overlaps(features, located, problems)
    _gaps(features, located, problems)
    if problems:
        raise GridsInvalid(problems)
    grids = []
    for feature in features:
        if feature.properties is None or feature.geometry is None:  # a problem would have been reported
            raise RuntimeError("a grid without problems lacks its properties or geometry")
        grids.append(GridFeature(geometry=feature.geometry, **feature.properties))
    return grids


def feature_collection(grids: Iterable[GridFeature]) -> dict[str, Any]:
    """The grids as a GeoJSON FeatureCollection in the import format (parse_grids reads it back to
    the same grids). The geometry dicts are the grids' own, not copies."""
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {
                    "code": grid.code,
                    "name": grid.name,
                    "community": grid.community,
                    "street": grid.street,
                    "district": grid.district,
                    "households": grid.households,
                },
                "geometry": grid.geometry,
            }
            for grid in grids
        ],
    }


# --- locating ----------------------------------------------------------------------------------


class Locator:
    """Which grid covers a point: an STRtree over the grids' prepared polygons, in memory.

    A point on the boundary of several grids (a shared edge or vertex) belongs to the one with
    the smallest code in string order, whatever the order the grids were given in; a point in a
    grid's hole is outside that grid. Grids are sorted by code when the locator is built, so the
    smallest tree index among the grids covering the point is that grid.
    """

    __slots__ = ("_codes", "_shapes", "_tree")

    def __init__(self, grids: Iterable[tuple[str, dict[str, Any]]]) -> None:
        ordered = sorted(grids, key=lambda grid: grid[0])
        self._codes: list[str] = [code for code, _ in ordered]
        self._shapes = _shapes([geometry for _, geometry in ordered])
        shapely.prepare(self._shapes)
        self._tree = shapely.STRtree(self._shapes)

    def __len__(self) -> int:
        return len(self._codes)

    def locate(self, lat: float, lon: float) -> str | None:
        """The code of the grid covering the point, None outside every grid (or for NaN/inf)."""
        try:
            if not (math.isfinite(lat) and math.isfinite(lon)):
                return None
        except OverflowError:  # an int too large for a float: nowhere on Earth
            return None
        point = shapely.Point(lon, lat)
        candidates = self._tree.query(point)
        if len(candidates) == 0:
            return None
        if len(candidates) > 1:
            candidates.sort()
        for index in candidates.tolist():
            if self._shapes[index].covers(point):
                return self._codes[int(index)]
        return None

    def locate_many(self, points: Sequence[tuple[float, float]]) -> list[str | None]:
        """`locate` for many `(lat, lon)` points at once, with the same answers."""
        if len(points) == 0:
            return []
        coordinates = np.asarray(points, dtype=float).reshape(-1, 2)
        finite = np.isfinite(coordinates).all(axis=1)
        shapes = shapely.points(coordinates[:, 1], coordinates[:, 0])
        shapes[~finite] = None  # never matches
        # Boxes first, then `covers` on the grids' prepared polygons (an indexed point-in-polygon
        # test): twice as fast as query(predicate="covered_by"), which prepares the points.
        where, index = self._tree.query(shapes)
        inside = shapely.covers(self._shapes[index], shapes[where])
        where, index = where[inside], index[inside]
        best = np.full(len(coordinates), len(self._codes), dtype=np.intp)
        np.minimum.at(best, where, index)
        codes = self._codes
        outside = len(codes)
        return [None if i == outside else codes[i] for i in best.tolist()]
