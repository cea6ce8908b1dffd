#!/usr/bin/env python3
"""bench/grid_locate.py: the grid layer's geometry on a realistic city of about 20,000 grids.

Usage: .venv/bin/python bench/grid_locate.py [--grids 20000] [--points 100000] [--seed 7]

The city is built at run time (nothing is stored) from Chennai's 201 real ward boundaries, each
cut into about grids/201 cells: the ward is intersected with a regular lon/lat grid sized from its
bounding box, and the Polygon/MultiPolygon pieces are kept. District `chennai`, streets are the
zones, communities the wards, grids `W119-0042`. Ward data: datameet/Municipal_Spatial_Data
(Chennai), from the Transparent Chennai team, licence Creative Commons Attribution-ShareAlike 2.5
India (http://creativecommons.org/licenses/by-sa/2.5/in/).

Measured, in this process (no database, no HTTP):
- parse_grids on the whole city as a decoded GeoJSON document: every check, overlaps and gaps;
- Locator build time;
- locate: one call at a time, latency p50/p95/p99/max over `--points` random points within the
  city's bounds (time.perf_counter_ns around each call);
- locate_many: the same points in one call, points per second; and both agree.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from grid.geo import Locator, feature_collection, parse_grids

WARDS = Path("/work/shared/data/chennai/wards.geojson")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "zone"


def _geojson(shape: Any) -> dict[str, Any]:
    mapped = shapely.geometry.mapping(shape)
    return {
        "type": mapped["type"],
        "coordinates": json.loads(json.dumps(mapped["coordinates"])),  # tuples to lists
    }


def _cells(bounds: tuple[float, float, float, float], side: float) -> Any:
    """Boxes of about `side` degrees covering `bounds`."""
    west, south, east, north = bounds
    columns, rows = max(1, math.ceil((east - west) / side)), max(1, math.ceil((north - south) / side))
    xs = np.linspace(west, east, columns + 1)
    ys = np.linspace(south, north, rows + 1)
    x0, y0 = np.meshgrid(xs[:-1], ys[:-1])
    x1, y1 = np.meshgrid(xs[1:], ys[1:])
    return shapely.box(x0.ravel(), y0.ravel(), x1.ravel(), y1.ravel())


def build_city(wards_path: Path, grids: int, seed: int) -> dict[str, Any]:
    """A FeatureCollection of about `grids` cells cut from the wards."""
    rng = np.random.default_rng(seed)
    wards = json.loads(wards_path.read_text())["features"]
    per_ward = max(1, round(grids / len(wards)))
    features: list[dict[str, Any]] = []
    for ward in wards:
        properties = ward["properties"]
        outline = shapely.geometry.shape(ward["geometry"])
        # Square cells of the ward's area / per_ward would give more than per_ward pieces (the
        # cells cut by the border count too): one correction from a first count gets close.
        side = math.sqrt(outline.area / per_ward)
        cells = _cells(outline.bounds, side)
        side *= math.sqrt(int(shapely.intersects(outline, cells).sum()) / per_ward)
        cells = _cells(outline.bounds, side)
        pieces = shapely.intersection(outline, cells)
        ward_code = f"W{properties['Ward_No']:03d}"
        street = _slug(properties["Zone_Name"])
        number = 0
        for piece in pieces:
            polygons = [part for part in shapely.get_parts(piece) if part.geom_type == "Polygon"]
            polygons = [part for part in polygons if part.area > 1e-12]
            if not polygons:
                continue
            shape = polygons[0] if len(polygons) == 1 else shapely.MultiPolygon(polygons)
            number += 1
            features.append(
                {
                    "type": "Feature",
                    "properties": {
                        "code": f"{ward_code}-{number:04d}",
                        "name": f"Ward {properties['Ward_No']} grid {number}",
                        "community": ward_code,
                        "street": street,
                        "district": "chennai",
                        "households": int(rng.integers(150, 251)),
                    },
                    "geometry": _geojson(shape),
                }
            )
    return {"type": "FeatureCollection", "features": features}


_PERCENTILES = (("p50", 50), ("p95", 95), ("p99", 99))


def _shapes(doc: dict[str, Any]) -> Any:
    return [shapely.geometry.shape(feature["geometry"]) for feature in doc["features"]]


def _ms(nanoseconds: float) -> str:
    return f"{nanoseconds / 1e6:,.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grids", type=int, default=20_000, help="about how many grids (default 20000)")
    parser.add_argument("--points", type=int, default=100_000, help="random points located (default 100000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--wards", type=Path, default=WARDS, help=f"the ward GeoJSON (default {WARDS})")
    args = parser.parse_args()

    started = time.perf_counter()
    doc = build_city(args.wards, args.grids, args.seed)
    multi = sum(1 for f in doc["features"] if f["geometry"]["type"] == "MultiPolygon")
    vertices = sum(
        len(ring)
        for f in doc["features"]
        for polygon in (
            [f["geometry"]["coordinates"]]
            if f["geometry"]["type"] == "Polygon"
            else f["geometry"]["coordinates"]
        )
        for ring in polygon
    )
    print(
        f"city: {len(doc['features']):,} grids ({multi:,} MultiPolygons, {vertices:,} positions) "
        f"cut from {args.wards.name} in {time.perf_counter() - started:.2f} s"
    )

    started = time.perf_counter()
    grids = parse_grids(doc)
    parse_seconds = time.perf_counter() - started
    print(f"parse_grids (all checks, overlaps and gaps): {parse_seconds:.2f} s")
    started = time.perf_counter()
    if parse_grids(feature_collection(grids)) != grids:
        raise SystemExit("the exported city does not parse back to the same grids")
    print(f"feature_collection and parse_grids again (round trip): {time.perf_counter() - started:.2f} s")

    started = time.perf_counter()
    locator = Locator((grid.code, grid.geometry) for grid in grids)
    print(f"Locator build ({len(locator):,} grids): {time.perf_counter() - started:.2f} s")

    rng = np.random.default_rng(args.seed)
    west, south, east, north = (float(b) for b in shapely.total_bounds(_shapes(doc)))
    points = list(
        zip(
            rng.uniform(south, north, args.points).tolist(),
            rng.uniform(west, east, args.points).tolist(),
            strict=True,
        )
    )
    # A server holds the locator, not the uploaded file: drop the half a million lists of the
    # document and the parsed grids, or every full garbage collection walks them (0.2 s each,
    # set off by the allocations of locate_many's points).
    del doc, grids
    gc.collect()

    for lat, lon in points[:1000]:  # warm up
        locator.locate(lat, lon)
    latencies = []
    answers: list[str | None] = []
    clock = time.perf_counter_ns
    for lat, lon in points:
        before = clock()
        answer = locator.locate(lat, lon)
        latencies.append(clock() - before)
        answers.append(answer)
    timed = np.array(latencies)
    hit = np.array([answer is not None for answer in answers])
    print(
        f"locate, one point at a time ({len(points):,} random points in the city's bounds, "
        f"{hit.mean():.0%} inside a grid):"
    )
    for label, chosen in (("all points", timed), ("inside a grid", timed[hit]), ("outside", timed[~hit])):
        if len(chosen):
            figures = "  ".join(f"{name} {_ms(float(np.percentile(chosen, q)))}" for name, q in _PERCENTILES)
            print(f"  {label:14} {figures}  max {_ms(float(chosen.max()))}")

    rounds = []
    for _ in range(3):
        started = time.perf_counter()
        many = locator.locate_many(points)
        rounds.append(time.perf_counter() - started)
        if many != answers:
            differ = sum(1 for a, b in zip(many, answers, strict=True) if a != b)
            raise SystemExit(f"locate_many and locate disagree on {differ} points")
    best = min(rounds)
    print(
        f"locate_many, {len(points):,} points in one call: best of 3 {best:.3f} s "
        f"({len(points) / best:,.0f} points/s), worst {max(rounds):.3f} s; agrees with locate"
    )
    batch = 1000
    started = time.perf_counter()
    for first in range(0, len(points), batch):
        locator.locate_many(points[first : first + batch])
    seconds = time.perf_counter() - started
    print(f"locate_many, batches of {batch:,}: {len(points) / seconds:,.0f} points/s")


if __name__ == "__main__":
    main()
