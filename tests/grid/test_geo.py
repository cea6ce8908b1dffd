"""grid.geo: parsing and checking a grid file, exporting it, and locating points. No database.

Hand-made squares in a small lon/lat window (1 degree is about 111 km there, so areas are in
the thousands of km²), and Chennai's 201 real ward boundaries (/work/shared/data/chennai, from
datameet/Municipal_Spatial_Data, CC BY-SA 2.5 India).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from grid.geo import (
    AREA_TOLERANCE,
    GeoProblem,
    GridFeature,
    GridsInvalid,
    Locator,
    feature_collection,
    parse_grids,
)
from onewindow.errors import FieldError, ValidationFailed

CHENNAI = Path("/work/shared/data/chennai/wards.geojson")

Ring = list[list[Any]]  # numbers, or deliberately wrong values


def box(west: float, south: float, east: float, north: float) -> Ring:
    """A closed counter-clockwise ring."""
    return [[west, south], [east, south], [east, north], [west, north], [west, south]]


def polygon(*rings: Ring) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def multipolygon(*polygons: list[Ring]) -> dict[str, Any]:
    return {"type": "MultiPolygon", "coordinates": list(polygons)}


def feature(code: Any, geometry: Any, **properties: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "code": code,
        "name": f"Grid {code}",
        "community": "C1",
        "street": "S1",
        "district": "D1",
        "households": 200,
    }
    values.update(properties)
    return {"type": "Feature", "properties": values, "geometry": geometry}


def collection(*features: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def problems_of(doc: object, **options: Any) -> list[GeoProblem]:
    with pytest.raises(GridsInvalid) as raised:
        parse_grids(doc, **options)
    return list(raised.value.problems)


def summary(problems: list[GeoProblem]) -> set[tuple[str, str, tuple[str, ...]]]:
    return {(problem.kind, problem.pointer, problem.codes) for problem in problems}


# --- locate --------------------------------------------------------------------------------------


def test_locate_polygon_multipolygon_and_outside() -> None:
    # Longitudes 10..13, latitudes 50..53: lat/lon swapped would land nowhere.
    locator = Locator(
        [
            ("A", polygon(box(10, 50, 11, 51))),
            ("B", multipolygon([box(11, 50, 12, 51)], [box(12.5, 52, 13, 53)])),
        ]
    )
    assert len(locator) == 2
    assert locator.locate(50.5, 10.5) == "A"
    assert locator.locate(50.5, 11.5) == "B"
    assert locator.locate(52.5, 12.75) == "B"  # the MultiPolygon's second part
    assert locator.locate(51.5, 12.75) is None  # between the parts
    assert locator.locate(10.5, 50.5) is None  # (lon, lat) by mistake
    assert locator.locate(0.0, 0.0) is None
    assert locator.locate_many([(50.5, 10.5), (52.5, 12.75), (51.5, 12.75), (10.5, 50.5)]) == [
        "A",
        "B",
        None,
        None,
    ]


def test_a_hole_is_outside_its_grid_and_inside_the_grid_filling_it() -> None:
    ring = polygon(box(0, 0, 3, 3), box(1, 1, 2, 2)[::-1])
    alone = Locator([("RING", ring)])
    assert alone.locate(1.5, 1.5) is None
    assert alone.locate(0.5, 0.5) == "RING"
    assert alone.locate(1.5, 1.0) == "RING"  # on the hole's edge: the ring's boundary covers it

    filled = Locator([("RING", ring), ("PLUG", polygon(box(1, 1, 2, 2)))])
    assert filled.locate(1.5, 1.5) == "PLUG"
    assert filled.locate(0.5, 0.5) == "RING"
    # On the hole's edge both cover the point: the smaller code wins.
    assert filled.locate(1.5, 1.0) == "PLUG"
    assert filled.locate_many([(1.5, 1.5), (0.5, 0.5), (1.5, 1.0)]) == ["PLUG", "RING", "PLUG"]


FOUR = [
    ("g-d", polygon(box(1, 1, 2, 2))),  # north-east
    ("g-b", polygon(box(0, 1, 1, 2))),  # north-west
    ("g-c", polygon(box(1, 0, 2, 1))),  # south-east
    ("g-a", polygon(box(0, 0, 1, 1))),  # south-west
]


@pytest.mark.parametrize(
    "grids", [FOUR, FOUR[::-1], FOUR[1:] + FOUR[:1]], ids=["given", "reversed", "rotated"]
)
def test_shared_edges_and_vertex_go_to_the_smallest_code(grids: list[tuple[str, dict[str, Any]]]) -> None:
    locator = Locator(grids)
    points = {
        # (lat, lon)
        (1.0, 1.0): "g-a",  # the vertex all four share
        (1.0, 1.5): "g-c",  # the edge between g-c (south) and g-d (north)
        (1.5, 1.0): "g-b",  # the edge between g-b (west) and g-d (east)
        (1.0, 0.5): "g-a",  # g-a (south) | g-b (north)
        (0.5, 1.0): "g-a",  # g-a (west) | g-c (east)
        (1.5, 1.5): "g-d",
        (2.0, 2.0): "g-d",  # the outer corner, covered by g-d alone
        (2.0, 2.0000001): None,
    }
    for (lat, lon), code in points.items():
        assert locator.locate(lat, lon) == code, (lat, lon)
    assert locator.locate_many(list(points)) == list(points.values())


def test_locate_refuses_nothing_and_crashes_on_nothing() -> None:
    locator = Locator(FOUR)
    for lat, lon in [
        (math.nan, 0.5),
        (0.5, math.nan),
        (math.inf, 0.5),
        (0.5, -math.inf),
        (1e308, 1e308),
        (10**400, 0),
    ]:
        assert locator.locate(lat, lon) is None
    assert locator.locate_many([(math.nan, 0.5), (0.5, 0.5), (0.5, math.inf)]) == [None, "g-a", None]
    assert locator.locate_many([]) == []
    empty = Locator([])
    assert len(empty) == 0
    assert empty.locate(0.5, 0.5) is None
    assert empty.locate_many([(0.5, 0.5)]) == [None]


def test_locator_refuses_what_is_not_a_polygon() -> None:
    with pytest.raises(ValueError, match="Polygon or a MultiPolygon"):
        Locator([("P", {"type": "Point", "coordinates": [0, 0]})])


# Coordinates on a 1/8-degree lattice hit edges and vertices often.
_LATTICE = st.integers(min_value=-2, max_value=18).map(lambda n: n / 8)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(_LATTICE, _LATTICE), max_size=40))
def test_locate_many_answers_as_locate_does(points: list[tuple[float, float]]) -> None:
    locator = _MIXED
    expected = [locator.locate(lat, lon) for lat, lon in points]
    assert locator.locate_many(points) == expected
    # ...and as the definition says: the smallest code among the grids covering the point.
    for (lat, lon), code in zip(points, expected, strict=True):
        point = shapely.Point(lon, lat)
        covering = sorted(c for c, g in _MIXED_GRIDS if shapely.geometry.shape(g).covers(point))
        assert code == (covering[0] if covering else None)


_MIXED_GRIDS = [
    *FOUR,
    ("g-0", polygon(box(0.5, 0.5, 1.5, 1.5))),  # overlapping all four: not a valid layer, a hard case
    ("g-z", multipolygon([box(0, 0, 0.25, 0.25)], [box(1.75, 1.75, 2, 2)])),
    ("g-ring", polygon(box(0, 0, 2, 2), box(0.25, 0.25, 0.75, 0.75)[::-1])),
]
_MIXED = Locator(_MIXED_GRIDS)


# --- parse: a valid file --------------------------------------------------------------------------


def test_parse_normalises_orientation_numbers_and_altitude() -> None:
    clockwise = box(0, 0, 2, 2)[::-1]
    counter_clockwise_hole = box(0.5, 0.5, 1, 1)
    with_altitude = [[x, y, 12.5] for x, y in box(3, 0, 4, 1)]
    doc = collection(
        feature("G-01", polygon(clockwise, counter_clockwise_hole), households=0),
        feature("G-02", multipolygon([with_altitude]), community="C2"),
        {"type": "Feature", "id": 7, "properties": {**feature("G-03", None)["properties"], "extra": 1},
         "geometry": {"type": "Polygon", "coordinates": [box(5, 0, 6, 1)], "bbox": [5, 0, 6, 1]}},
        feature("G-04", polygon(box(0.5, 0.5, 1, 1))),  # fills G-01's hole
    )  # fmt: skip
    grids = parse_grids(doc)
    assert [grid.code for grid in grids] == ["G-01", "G-02", "G-03", "G-04"]
    first = grids[0]
    assert first == GridFeature(
        code="G-01",
        name="Grid G-01",
        community="C1",
        street="S1",
        district="D1",
        households=0,
        geometry={"type": "Polygon", "coordinates": [box(0, 0, 2, 2), box(0.5, 0.5, 1, 1)[::-1]]},
    )
    exterior, hole = (shapely.LinearRing(ring) for ring in first.geometry["coordinates"])
    assert exterior.is_ccw
    assert not hole.is_ccw
    assert all(
        type(value) is float for ring in first.geometry["coordinates"] for pos in ring for value in pos
    )
    assert grids[1].geometry == {"type": "MultiPolygon", "coordinates": [[box(3, 0, 4, 1)]]}
    assert grids[2].geometry == {"type": "Polygon", "coordinates": [box(5, 0, 6, 1)]}


def test_export_parses_back_to_the_same_grids() -> None:
    doc = collection(
        feature("G-01", polygon(box(0, 0, 1, 1))),
        feature("G-02", polygon(box(1, 0, 2, 1), box(1.2, 0.2, 1.4, 0.4)), households=17),
        feature("G-03", polygon(box(1.2, 0.2, 1.4, 0.4))),
        feature("G-04", multipolygon([box(5, 5, 6, 6)], [box(7, 7, 8, 8)]), community="C2", name="Ω market"),
    )
    grids = parse_grids(doc)
    exported = feature_collection(grids)
    assert exported["type"] == "FeatureCollection"
    assert exported["features"][1] == {
        "type": "Feature",
        "properties": {
            "code": "G-02",
            "name": "Grid G-02",
            "community": "C1",
            "street": "S1",
            "district": "D1",
            "households": 17,
        },
        "geometry": grids[1].geometry,
    }
    assert parse_grids(exported) == grids
    # ...and through JSON, as the file would travel.
    assert parse_grids(json.loads(msgspec.json.encode(exported))) == grids


# --- parse: refused files -------------------------------------------------------------------------


def test_every_defect_of_one_file_is_reported_at_once() -> None:
    bowtie = [[20, 0], [21, 1], [21, 0], [20, 1], [20, 0]]
    doc = collection(
        # 0: fine, and the first user of code DUP
        feature("DUP", polygon(box(0, 0, 1, 1))),
        # 1: the code again
        feature("DUP", polygon(box(1, 0, 2, 1))),
        # 2: no households, code not a unit code
        {"type": "Feature", "properties": {"code": "bad code!", "name": "x", "community": "C1",
                                          "street": "S1", "district": "D1"},
         "geometry": polygon(box(2, 0, 3, 1))},
        # 3: households is a bool, name too long, community not a code
        feature("G-03", polygon(box(3, 0, 4, 1)), households=True, name="n" * 201, community="has space"),
        # 4: a Point
        feature("G-04", {"type": "Point", "coordinates": [4.5, 0.5]}),
        # 5: [lat, lon] order: the third position is out of range
        feature("G-05", multipolygon([box(5, 0, 6, 1)], [[[30, 10], [31, 10], [31, 100], [30, 10]]])),
        # 6: three positions only
        feature("G-06", polygon([[6, 0], [7, 0], [6, 0]])),
        # 7: an unclosed ring
        feature("G-07", polygon(box(7, 0, 8, 1)[:-1])),
        # 8: a bow tie
        feature("G-08", polygon(bowtie)),
        # 9: a hole outside its shell
        feature("G-09", polygon(box(9, 0, 10, 1), box(9, 2, 10, 3)[::-1])),
        # 10 and 11: overlap by a quarter of 10
        feature("G-10", polygon(box(10, 0, 11, 1))),
        feature("G-11", polygon(box(10.5, 0.5, 11.5, 1.5))),
        # 12: not a Feature at all
        {"type": "Polygon", "coordinates": [box(12, 0, 13, 1)]},
        # 13: no properties
        {"type": "Feature", "properties": None, "geometry": polygon(box(13, 0, 14, 1))},
        # 14-17: community GAP is a frame of four grids around an empty square
        feature("GAP-S", polygon(box(14, 0, 17, 1)), community="GAP"),
        feature("GAP-N", polygon(box(14, 2, 17, 3)), community="GAP"),
        feature("GAP-W", polygon(box(14, 1, 15, 2)), community="GAP"),
        feature("GAP-E", polygon(box(16, 1, 17, 2)), community="GAP"),
        # 18: a coordinate that is text
        feature("G-18", polygon([[18, 0], [19, "0"], [19, 1], [18, 0]])),
    )  # fmt: skip
    problems = problems_of(doc)
    assert summary(problems) == {
        ("duplicate_code", "/features/1/properties/code", ("DUP",)),
        ("missing_property", "/features/2/properties/households", ()),
        ("bad_property", "/features/2/properties/code", ()),
        ("bad_property", "/features/3/properties/households", ("G-03",)),
        ("bad_property", "/features/3/properties/name", ("G-03",)),
        ("bad_property", "/features/3/properties/community", ("G-03",)),
        ("unsupported_geometry", "/features/4/geometry/type", ("G-04",)),
        ("out_of_range", "/features/5/geometry/coordinates/1/0/2", ("G-05",)),
        ("invalid_geometry", "/features/6/geometry/coordinates/0", ("G-06",)),
        ("invalid_geometry", "/features/7/geometry/coordinates/0", ("G-07",)),
        ("self_intersection", "/features/8/geometry", ("G-08",)),
        ("invalid_geometry", "/features/9/geometry", ("G-09",)),
        ("overlap", "/features/11/geometry", ("G-10", "G-11")),
        ("not_a_feature_collection", "/features/12/type", ()),
        ("missing_property", "/features/13/properties", ()),
        ("gap", "/features/14/geometry", ("GAP-E", "GAP-N", "GAP-S", "GAP-W")),
        ("invalid_geometry", "/features/18/geometry/coordinates/0/1", ("G-18",)),
    }
    assert len(problems) == 17  # each once
    detail = {problem.pointer: problem.detail for problem in problems}
    assert "also used by feature 0" in detail["/features/1/properties/code"]
    assert "looks like [latitude, longitude]" in detail["/features/5/geometry/coordinates/1/0/2"]
    assert "not closed" in detail["/features/7/geometry/coordinates/0"]
    assert "at least 4 positions" in detail["/features/6/geometry/coordinates/0"]
    assert "crosses itself near lon 20.5, lat 0.5" in detail["/features/8/geometry"]
    assert "Hole lies outside shell" in detail["/features/9/geometry"]
    # A quarter of a 1° square at the equator: 111.2 km x 111.2 km / 4 ≈ 3,091 km², to a
    # few per cent (the area is taken at the overlap's latitude).
    overlap = re.search(
        r"grid G-10 and grid G-11 overlap \(area ([\d,]+) m²", detail["/features/11/geometry"]
    )
    assert overlap
    assert int(overlap[1].replace(",", "")) == pytest.approx(111_195**2 / 4, rel=0.01)
    assert "inside community GAP" in detail["/features/14/geometry"]
    assert "around it: GAP-E, GAP-N, GAP-S, GAP-W" in detail["/features/14/geometry"]

    with pytest.raises(GridsInvalid) as raised:
        parse_grids(doc)
    assert isinstance(raised.value, ValidationFailed)
    assert raised.value.status == 400
    assert raised.value.detail == "17 problems in the grid file"
    assert raised.value.errors == tuple(FieldError(p.pointer, p.detail) for p in raised.value.problems)


@pytest.mark.parametrize(
    ("doc", "pointer"),
    [
        ([], ""),
        ("FeatureCollection", ""),
        ({"type": "Feature", "geometry": None, "properties": {}}, "/type"),
        ({"type": "FeatureCollection"}, "/features"),
        ({"type": "FeatureCollection", "features": {}}, "/features"),
    ],
)
def test_not_a_feature_collection_stops_at_once(doc: object, pointer: str) -> None:
    assert summary(problems_of(doc)) == {("not_a_feature_collection", pointer, ())}


def test_too_many_features_stops_before_looking_at_them() -> None:
    doc = collection(*(["not even a feature"] * 4))
    assert summary(problems_of(doc, max_features=3)) == {("too_many_features", "/features", ())}
    detail = problems_of(doc, max_features=3)[0].detail
    assert "4 features" in detail
    assert "at most 3" in detail
    assert len(problems_of(doc, max_features=4)) == 4  # each "not a feature"


def test_an_empty_collection_is_an_empty_layer() -> None:
    assert parse_grids(collection()) == []


def test_one_problem_in_the_singular() -> None:
    with pytest.raises(GridsInvalid, match=r"^1 problem in the grid file$"):
        parse_grids(collection(feature("G 1", polygon(box(0, 0, 1, 1)))))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("code", ""),
        ("code", "-lead"),
        ("code", "x" * 64),
        ("code", "abc\n"),
        ("code", 17),
        ("street", "a/b"),
        ("district", ""),
        ("name", "   "),
        ("name", 5),
        ("households", -1),
        ("households", 2.0),
        ("households", "200"),
        ("households", 2**31),
    ],
)
def test_bad_properties(key: str, value: object) -> None:
    grid = feature("G-1", polygon(box(0, 0, 1, 1)))
    grid["properties"][key] = value
    doc = collection(grid)
    problems = problems_of(doc)
    assert [(p.kind, p.pointer) for p in problems] == [("bad_property", f"/features/0/properties/{key}")]


def test_codes_at_the_limits_are_fine() -> None:
    grids = parse_grids(
        collection(
            feature("x" * 63, polygon(box(0, 0, 1, 1)), name="n" * 200, households=2**31 - 1),
            feature("0.a_b-c", polygon(box(1, 0, 2, 1))),
        )
    )
    assert [grid.code for grid in grids] == ["x" * 63, "0.a_b-c"]


def test_the_unit_hierarchy_is_one_tree() -> None:
    doc = collection(
        feature("G-1", polygon(box(0, 0, 1, 1))),
        # community C1 again, in another street
        feature("G-2", polygon(box(1, 0, 2, 1)), street="S2"),
        # street S1 again, in another district
        feature("G-3", polygon(box(2, 0, 3, 1)), community="C3", district="D2"),
        # a grid code that is the code of a community
        feature("C1", polygon(box(3, 0, 4, 1)), community="C4"),
    )
    assert summary(problems_of(doc)) == {
        ("bad_property", "/features/1/properties/street", ("G-2",)),
        ("bad_property", "/features/2/properties/district", ("G-3",)),
        ("bad_property", "/features/3/properties/code", ("C1",)),
    }


def test_a_grid_needs_an_area_above_the_tolerance() -> None:
    speck = polygon(box(0, 0, 1e-7, 1e-7))  # valid, 1e-14 deg²
    assert summary(problems_of(collection(feature("G-1", speck)))) == {
        ("invalid_geometry", "/features/0/geometry", ("G-1",))
    }


@pytest.mark.parametrize("value", [10**400, -(10**400)])
def test_an_integer_too_large_for_a_float_is_out_of_range(value: int) -> None:
    doc = collection(feature("G-1", polygon([[0, 0], [value, 0], [1, 1], [0, 0]])))
    assert summary(problems_of(doc)) == {("out_of_range", "/features/0/geometry/coordinates/0/1", ("G-1",))}


def test_out_of_range_without_the_swap_hint() -> None:
    doc = collection(feature("G-1", polygon([[200, 0], [201, 0], [201, 1], [200, 0]])))
    (problem,) = problems_of(doc)
    assert (problem.kind, problem.pointer) == ("out_of_range", "/features/0/geometry/coordinates/0/0")
    assert "looks like" not in problem.detail


@pytest.mark.parametrize(
    ("geometry", "pointer"),
    [
        (None, "/features/0/geometry"),
        ([], "/features/0/geometry"),
        ({"type": "GeometryCollection", "geometries": []}, "/features/0/geometry/type"),
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "/features/0/geometry/type"),
    ],
)
def test_unsupported_geometries(geometry: object, pointer: str) -> None:
    assert summary(problems_of(collection(feature("G-1", geometry)))) == {
        ("unsupported_geometry", pointer, ("G-1",))
    }


@pytest.mark.parametrize(
    ("geometry", "pointer"),
    [
        ({"type": "Polygon", "coordinates": []}, "/features/0/geometry/coordinates"),
        ({"type": "Polygon"}, "/features/0/geometry/coordinates"),
        ({"type": "MultiPolygon", "coordinates": []}, "/features/0/geometry/coordinates"),
        ({"type": "MultiPolygon", "coordinates": [[]]}, "/features/0/geometry/coordinates/0"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], 5]},
         "/features/0/geometry/coordinates/1"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1], [1, 1], [0, 0]]]}, "/features/0/geometry/coordinates/0/1"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0, 0, 0], [1, 1], [0, 0]]]},
         "/features/0/geometry/coordinates/0/1"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, True], [1, 1], [0, 0]]]},
         "/features/0/geometry/coordinates/0/1"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0, "up"], [1, 1], [0, 0]]]},
         "/features/0/geometry/coordinates/0/1"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, math.nan], [1, 1], [0, 0]]]},
         "/features/0/geometry/coordinates/0/1"),
        # parts of a MultiPolygon side by side are fine; nested ones are not
        ({"type": "MultiPolygon", "coordinates": [[box(0, 0, 3, 3)], [box(1, 1, 2, 2)]]}, "/features/0/geometry"),
    ],
)  # fmt: skip
def test_invalid_geometries(geometry: object, pointer: str) -> None:
    problems = problems_of(collection(feature("G-1", geometry)))
    assert [(p.kind, p.pointer, p.codes) for p in problems] == [("invalid_geometry", pointer, ("G-1",))]


@pytest.mark.parametrize(
    ("ring", "where"),
    [
        # a figure of eight through one vertex (GEOS: "Ring Self-intersection")
        ([[0, 0], [2, 0], [1, 1], [2, 2], [0, 2], [1, 1], [0, 0]], "near lon 1, lat 1"),
        # there and back along a line: no area, and GEOS calls it a self-intersection
        ([[0, 0], [1, 0], [2, 0], [0, 0]], "near lon 1, lat 0"),
    ],
)
def test_a_ring_touching_itself_is_a_self_intersection(ring: Ring, where: str) -> None:
    (problem,) = problems_of(collection(feature("G-1", polygon(ring))))
    assert (problem.kind, problem.pointer) == ("self_intersection", "/features/0/geometry")
    assert where in problem.detail


# --- overlaps and gaps ---------------------------------------------------------------------------


def test_grids_touching_along_edges_and_at_corners_do_not_overlap() -> None:
    parse_grids(collection(*(feature(code, geometry) for code, geometry in FOUR)))


def test_overlaps() -> None:
    sliver = 1e-7  # 1e-7 deg x 1 deg = 1e-7 deg² ≈ 1,200 m²: reported
    doc = collection(
        feature("A", polygon(box(0, 0, 1, 1))),
        feature("B", polygon(box(1 - sliver, 0, 2, 1))),
        feature("INNER", polygon(box(0.25, 0.25, 0.5, 0.5))),  # inside A
        feature("SAME", polygon(box(0, 0, 1, 1)), community="C2"),  # A again, other community
        feature("FAR", polygon(box(5, 5, 6, 6))),
    )
    problems = problems_of(doc)
    assert summary(problems) == {
        ("overlap", "/features/1/geometry", ("A", "B")),
        ("overlap", "/features/2/geometry", ("A", "INNER")),
        ("overlap", "/features/3/geometry", ("A", "SAME")),
        ("overlap", "/features/3/geometry", ("B", "SAME")),
        ("overlap", "/features/3/geometry", ("INNER", "SAME")),
    }
    a_b = next(p for p in problems if p.codes == ("A", "B"))
    assert "(area 1,2" in a_b.detail


def test_overlaps_within_the_tolerance_are_digitisation_noise() -> None:
    # 1e-13 deg x 1 deg = 1e-13 deg² < AREA_TOLERANCE
    assert AREA_TOLERANCE == 1e-12
    parse_grids(
        collection(feature("A", polygon(box(0, 0, 1, 1))), feature("B", polygon(box(1 - 1e-13, 0, 2, 1))))
    )


def test_overlap_without_codes_still_reported() -> None:
    doc = collection(feature("A", polygon(box(0, 0, 1, 1))), feature("no good", polygon(box(0.5, 0, 2, 1))))
    assert summary(problems_of(doc)) == {
        ("bad_property", "/features/1/properties/code", ()),
        ("overlap", "/features/1/geometry", ("A",)),
    }


def test_a_grid_with_an_unfilled_hole_is_a_gap() -> None:
    ring = polygon(box(0, 0, 3, 3), box(1, 1, 2, 2)[::-1])
    problems = problems_of(collection(feature("RING", ring)))
    assert summary(problems) == {("gap", "/features/0/geometry", ("RING",))}
    assert "inside community C1 near lon 1.5" in problems[0].detail

    # Filled by a grid of the same community: no gap.
    parse_grids(collection(feature("RING", ring), feature("PLUG", polygon(box(1, 1, 2, 2)))))

    # Filled by a grid of another community: an enclave, which belongs to somebody: no gap.
    parse_grids(collection(feature("RING", ring), feature("PLUG", polygon(box(1, 1, 2, 2)), community="C2")))
    # Half filled by another community: the other half is the gap.
    half = collection(feature("RING", ring), feature("PLUG", polygon(box(1, 1, 1.5, 2)), community="C2"))
    problems = problems_of(half)
    assert summary(problems) == {("gap", "/features/0/geometry", ("RING",))}
    assert "near lon 1.75" in problems[0].detail


def test_gaps_are_holes_inside_a_community_not_space_between_communities() -> None:
    frame = [
        feature("S", polygon(box(0, 0, 3, 1))),
        feature("N", polygon(box(0, 2, 3, 3))),
        feature("W", polygon(box(0, 1, 1, 2))),
    ]
    # Open on the east: a bay, not a hole.
    parse_grids(collection(*frame))
    # The east side in another community: C1's union is still open on the east.
    parse_grids(collection(*frame, feature("E", polygon(box(2, 1, 3, 2)), community="C2")))
    # Closed by a grid of C1: a gap.
    (problem,) = problems_of(collection(*frame, feature("E", polygon(box(2, 1, 3, 2)))))
    assert (problem.kind, problem.codes) == ("gap", ("E", "N", "S", "W"))
    # L and R meet at the hole's corners; X touches it at one corner only and is around it too.
    corners = collection(
        feature("L", polygon([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2], [0, 0]])),
        feature("R", polygon([[2, 1], [3, 1], [3, 3], [1, 3], [1, 2], [2, 2], [2, 1]])),
        feature("X", polygon(box(2, 0, 3, 1))),
    )
    (problem,) = problems_of(corners)
    assert (problem.kind, problem.pointer, problem.codes) == ("gap", "/features/0/geometry", ("L", "R", "X"))


def test_a_gap_is_measured_without_the_islands_in_it() -> None:
    # A 5x5 frame around a 3x3 hole, and a 1x1 grid standing alone in the middle of the hole.
    frame = polygon(box(0, 0, 5, 5), box(1, 1, 4, 4)[::-1])
    doc = collection(feature("FRAME", frame), feature("ISLAND", polygon(box(2, 2, 3, 3))))
    (problem,) = problems_of(doc)
    assert (problem.kind, problem.pointer, problem.codes) == (
        "gap",
        "/features/0/geometry",
        ("FRAME", "ISLAND"),
    )
    # 9 - 1 = 8 deg² around lat 1..4, not 9.
    found = re.search(r"gap of ([\d,]+) m²", problem.detail)
    assert found
    assert int(found[1].replace(",", "")) == pytest.approx(8 * 111_195**2, rel=0.01)
    near = re.search(r"near lon ([\d.]+), lat ([\d.]+)", problem.detail)
    assert near
    spot = shapely.Point(float(near[1]), float(near[2]))
    assert shapely.box(1, 1, 4, 4).contains(spot)
    assert not shapely.box(2, 2, 3, 3).covers(spot)  # a point of the gap, not of the island


def test_gaps_within_the_tolerance_are_digitisation_noise() -> None:
    tiny = 1e-7  # a hole of 1e-14 deg²
    ring = polygon(box(0, 0, 3, 3), box(1, 1, 1 + tiny, 1 + tiny)[::-1])
    (grid,) = parse_grids(collection(feature("RING", ring)))
    assert grid.code == "RING"


# --- Chennai -------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


@pytest.fixture(scope="module")
def wards() -> dict[str, Any]:
    """Chennai's wards as a grid file: code W001..W201, one community and one street per zone."""
    source = json.loads(CHENNAI.read_text())
    features = []
    for ward in source["features"]:
        properties = ward["properties"]
        zone = _slug(properties["Zone_Name"])
        features.append(
            {
                "type": "Feature",
                "properties": {
                    "code": f"W{properties['Ward_No']:03d}",
                    "name": f"Ward {properties['Ward_No']}",
                    "community": f"C-{zone}",
                    "street": f"S-{zone}",
                    "district": "chennai",
                    "households": 200,
                },
                "geometry": ward["geometry"],
            }
        )
    return collection(*features)


def test_chennai_wards_are_a_valid_layer(wards: dict[str, Any]) -> None:
    grids = parse_grids(wards)
    assert len(grids) == 201
    assert len({grid.code for grid in grids}) == 201
    assert {grid.geometry["type"] for grid in grids} == {"Polygon"}
    assert parse_grids(feature_collection(grids)) == grids


def test_chennai_wards_overlap_and_part_only_by_digitisation_noise(wards: dict[str, Any]) -> None:
    """What is actually true of the data: neighbouring wards do share area and leave holes, by
    slivers of at most about 1e-15 deg² (a few hundredths of a mm²), far under AREA_TOLERANCE.
    Without the tolerance the real city would be refused."""
    shapes = [shapely.geometry.shape(feature["geometry"]) for feature in wards["features"]]
    left, right = shapely.STRtree(shapes).query(shapes, predicate="intersects")
    pairs = [(a, b) for a, b in zip(left.tolist(), right.tolist(), strict=True) if a < b]
    areas = [shapes[a].intersection(shapes[b]).area for a, b in pairs]
    assert sum(area > 0 for area in areas) > 100
    assert 0 < max(areas) < AREA_TOLERANCE / 100
    union = shapely.union_all(shapes)
    holes = [shapely.Polygon(ring).area for ring in union.interiors]
    assert holes
    assert max(holes) < AREA_TOLERANCE / 100


def test_each_chennai_ward_locates_its_own_representative_point(wards: dict[str, Any]) -> None:
    grids = parse_grids(wards)
    locator = Locator((grid.code, grid.geometry) for grid in grids)
    assert len(locator) == 201
    points = []
    for grid in grids:
        point = shapely.geometry.shape(grid.geometry).representative_point()
        points.append((point.y, point.x))
        assert locator.locate(point.y, point.x) == grid.code
    assert locator.locate_many(points) == [grid.code for grid in grids]
    # The Bay of Bengal, east of the Marina, and Bangalore: in no ward.
    assert locator.locate(13.05, 80.35) is None
    assert locator.locate(12.97, 77.59) is None


def test_chennai_ward_vertices_go_to_the_smallest_code(wards: dict[str, Any]) -> None:
    """On real borders: a vertex of a ward is covered by that ward and perhaps its neighbours;
    locate answers the smallest code among those that cover it."""
    grids = parse_grids(wards)
    locator = Locator((grid.code, grid.geometry) for grid in grids)
    shapes = {grid.code: shapely.geometry.shape(grid.geometry) for grid in grids}
    checked = 0
    for grid in grids[:40]:
        for lon, lat in grid.geometry["coordinates"][0][:-1:25]:
            point = shapely.Point(lon, lat)
            covering = sorted(code for code, shape in shapes.items() if shape.covers(point))
            assert grid.code in covering
            assert locator.locate(lat, lon) == covering[0]
            checked += 1
    assert checked > 40
