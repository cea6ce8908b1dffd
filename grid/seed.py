"""The demo city's grid management: 16 grids in 4 communities of 2 streets (a lattice with
irregular shared borders, so the polygons look like a town and still tile it without gaps or
overlaps), case categories, and cases in every state of the loop.

Idempotent: the layer import changes nothing when the grids are as they were, categories are
upserted, and the demo cases are made only while the city has no case at all.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, Final

from grid import api as grid_api
from grid import cases, layer, store
from identity.api import RoleGrant, unit_path
from onewindow.db import Connection
from onewindow.settings import Settings
from workflows import api as workflows

# The town centre (Yinchuan's old town), the size of a grid cell in degrees (about 260 x 330 m:
# some 200 households in six-storey blocks).
_ORIGIN: Final = (106.2700, 38.4660)
_CELL: Final = (0.0030, 0.0030)
_STREETS: Final = (("riverside", ("riverside-1", "riverside-2")), ("hillside", ("hillside-1", "hillside-2")))
# Grid codes by community, in lattice order (row-major within the community's 2 x 2 block).
_GRID_CODES: Final = {
    "riverside-1": ("G-0105", "G-0106", "G-0107", "G-0108"),
    "riverside-2": ("G-0201", "G-0202", "G-0203", "G-0204"),
    "hillside-1": ("G-0301", "G-0302", "G-0303", "G-0304"),
    "hillside-2": ("G-0401", "G-0402", "G-0403", "G-0404"),
}

# (code, kind, name_zh, name_en, department, register limit, handle limit, severity, citizens report it)
CATEGORIES: Final[tuple[tuple[str, str, str, str, str, str, str, str, bool], ...]] = (
    (
        "manhole_cover",
        "component",
        "井盖缺失或破损",
        "Missing or broken manhole cover",
        "water",
        "PT1H",
        "PT4H",
        "urgent",
        True,
    ),
    ("street_light", "component", "路灯不亮", "Street light out", "urban", "PT2H", "P2D", "normal", True),
    ("stair_light", "component", "楼道灯损坏", "Broken stair light", "urban", "PT4H", "P2D", "low", True),
    ("road_damage", "component", "道路破损", "Damaged road surface", "urban", "PT4H", "P3D", "high", True),
    ("illegal_dumping", "event", "乱倒垃圾", "Illegal dumping", "urban", "PT2H", "P1D", "normal", True),
    ("blocked_drain", "event", "排水堵塞", "Blocked drain", "water", "PT1H", "PT8H", "high", True),
    (
        "street_vending",
        "event",
        "占道经营",
        "Street vending on the pavement",
        "market",
        "PT2H",
        "P1D",
        "low",
        True,
    ),
    (
        "fire_hazard",
        "event",
        "消防隐患",
        "Fire hazard (blocked exit, stored fuel)",
        "fire",
        "PT30M",
        "PT4H",
        "urgent",
        True,
    ),
    ("fallen_tree", "event", "树木倒伏", "Fallen tree", "urban", "PT1H", "PT6H", "high", True),
    ("graffiti", "event", "乱涂乱画", "Graffiti", "urban", "P1D", "P5D", "low", False),
)


def _values(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "name": name} for key, name in pairs]


# What a citizen's report of a category asks besides the location and description (Open311
# service attributes, GeoReport v2 shape: every datatype appears), and whether it takes reports
# from people who are not signed in.
REPORTING: Final[dict[str, tuple[list[dict[str, Any]], bool]]] = {
    "manhole_cover": (
        [
            {
                "code": "cover_state",
                "datatype": "singlevaluelist",
                "required": True,
                "variable": True,
                "order": 1,
                "description": "What is wrong with the cover?",
                "values": _values(
                    ("missing", "Missing"), ("broken", "Broken"), ("loose", "Loose or rocking")
                ),
            },
        ],
        True,
    ),
    "street_light": (
        [
            {
                "code": "pole_number",
                "datatype": "string",
                "required": False,
                "variable": True,
                "order": 1,
                "description": "The number painted on the pole, if you can read it.",
                "datatype_description": "e.g. RL-0412",
            },
            {
                "code": "lights_out",
                "datatype": "number",
                "required": True,
                "variable": True,
                "order": 2,
                "description": "How many lights are out?",
                "datatype_description": "a number",
            },
            {
                "code": "pattern",
                "datatype": "singlevaluelist",
                "required": True,
                "variable": True,
                "order": 3,
                "description": "What does the light do?",
                "values": _values(
                    ("off", "Off all night"), ("flickering", "Flickering"), ("day", "On during the day")
                ),
            },
        ],
        True,
    ),
    "road_damage": (
        [
            {
                "code": "hazards",
                "datatype": "multivaluelist",
                "required": True,
                "variable": True,
                "order": 1,
                "description": "What do you see? (one or more)",
                "values": _values(
                    ("pothole", "Pothole"),
                    ("cracks", "Cracks"),
                    ("subsidence", "Sunken surface"),
                    ("debris", "Loose debris"),
                ),
            },
            {
                "code": "width_cm",
                "datatype": "number",
                "required": False,
                "variable": True,
                "order": 2,
                "description": "About how wide is it, in centimetres?",
            },
        ],
        True,
    ),
    "illegal_dumping": (
        [
            {
                "code": "waste_type",
                "datatype": "singlevaluelist",
                "required": True,
                "variable": True,
                "order": 1,
                "description": "What was dumped?",
                "values": _values(
                    ("household", "Household rubbish"),
                    ("construction", "Construction waste"),
                    ("bulky", "Furniture or appliances"),
                    ("hazardous", "Chemicals or oil"),
                ),
            },
            {
                "code": "seen_at",
                "datatype": "datetime",
                "required": False,
                "variable": True,
                "order": 2,
                "description": "When was it dumped, if you saw it?",
                "datatype_description": "date and time with its offset, e.g. 2026-09-28T08:30:00+08:00",
            },
            {
                "code": "details",
                "datatype": "text",
                "required": False,
                "variable": True,
                "order": 3,
                "description": "Anything else that helps (a vehicle, how much).",
            },
        ],
        True,
    ),
    "blocked_drain": (
        [
            {
                "code": "water_on_road",
                "datatype": "singlevaluelist",
                "required": True,
                "variable": True,
                "order": 1,
                "description": "Is water standing on the road?",
                "values": _values(("yes", "Yes"), ("no", "No")),
            },
        ],
        True,
    ),
    "fire_hazard": (
        [
            {
                "code": "emergency",
                "datatype": "text",
                "required": False,
                "variable": False,
                "order": 1,
                "description": "A fire or someone in danger: call 119 now. This form is for hazards.",
            },
            {
                "code": "hazard",
                "datatype": "singlevaluelist",
                "required": True,
                "variable": True,
                "order": 2,
                "description": "What kind of hazard?",
                "values": _values(
                    ("blocked_exit", "Blocked fire exit"),
                    ("stored_fuel", "Stored fuel or gas"),
                    ("wiring", "Dangerous wiring"),
                    ("other", "Something else"),
                ),
            },
        ],
        True,
    ),
    # Vending complaints are often neighbour quarrels: only signed-in citizens report them.
    "street_vending": ([], False),
}


def _jitter(i: int, j: int) -> tuple[float, float]:
    """Interior lattice points move a little (deterministically); the rim stays straight."""
    if i in (0, 4) or j in (0, 4):
        return 0.0, 0.0
    return 0.22 * math.sin(i * 2.1 + j * 1.3), 0.22 * math.cos(i * 1.7 - j * 0.9)


def _point(i: int, j: int) -> list[float]:
    dx, dy = _jitter(i, j)
    return [round(_ORIGIN[0] + (i + dx) * _CELL[0], 6), round(_ORIGIN[1] + (j + dy) * _CELL[1], 6)]


def layer_document() -> dict[str, Any]:
    """The demo layer as the GeoJSON an administrator would upload."""
    features = []
    for street_index, (street, communities) in enumerate(_STREETS):
        for community_index, community in enumerate(communities):
            for n, code in enumerate(_GRID_CODES[community]):
                i = community_index * 2 + n % 2
                j = street_index * 2 + n // 2
                # The edges are split at their midpoints, so shared borders bend like streets.
                ring = [_point(i, j), _point(i + 1, j), _point(i + 1, j + 1), _point(i, j + 1), _point(i, j)]
                features.append(
                    {
                        "type": "Feature",
                        "geometry": {"type": "Polygon", "coordinates": [ring]},
                        "properties": {
                            "code": code,
                            "name": f"Grid {code}",
                            "community": community,
                            "street": street,
                            "district": "central",
                            "households": 160 + (i * 37 + j * 53) % 90,
                        },
                    }
                )
    return {"type": "FeatureCollection", "features": features}


def grid_centre(code: str) -> tuple[float, float]:
    """(lat, lon) of a point well inside the demo grid `code`."""
    for feature in layer_document()["features"]:
        if feature["properties"]["code"] == code:
            ring = feature["geometry"]["coordinates"][0][:-1]
            return sum(p[1] for p in ring) / 4, sum(p[0] for p in ring) / 4
    raise KeyError(code)


async def seed_categories(conn: Connection) -> None:
    for code, kind, name_zh, name_en, department, register, handle, severity, citizens in CATEGORIES:
        fields = {
            "kind": kind,
            "name_zh": name_zh,
            "name_en": name_en,
            "department": department,
            "register_limit": register,
            "handle_limit": handle,
            "severity": severity,
            "citizen_reportable": citizens,
            "active": True,
        }
        current = await store.category(conn, code)
        if current is None:
            await store.insert_category(conn, code=code, fields=fields, by="demo")
        attributes, anonymous = REPORTING.get(code, ([], True))
        await store.set_category_reporting(conn, code, attributes=attributes, anonymous_reports=anonymous)


async def _actor(conn: Connection, subject: str, role: str, *units: str) -> workflows.Actor:
    grants = []
    for unit in units:
        path = await unit_path(conn, unit)
        if path is None:
            raise RuntimeError(f"the demo unit {unit} is missing: seed identity first")
        grants.append(RoleGrant(role=role, unit=unit, path=path))
    return workflows.Actor(subject=subject, kind="person", roles=tuple(grants), name=subject)


async def _step(conn: Connection, case_id: Any, action: str, actor: workflows.Actor, **data: Any) -> None:
    loop = await workflows.instance_for_subject(conn, cases.KIND, str(case_id))
    if loop is None:
        raise RuntimeError("the demo case has no loop")
    task = next(t for t in loop.open_tasks if any(a.name == action for a in t.actions))
    comment = data.pop("comment", None) or f"demo: {action}"
    await workflows.act(conn, task.id, action=action, actor=actor, comment=comment, data=data)


async def seed_cases(conn: Connection) -> None:
    """One case in every state of the loop, and a few closed ones with history."""
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM grid.cases)"):
        return
    worker = await _actor(conn, "demo-worker1", "grid_worker", *_GRID_CODES["riverside-1"])
    centre = await _actor(conn, "demo-command1", "command_centre", "riverside")
    urban = await _actor(conn, "demo-officer3", "officer", "urban")
    water = await _actor(conn, "demo-officer4", "officer", "water")
    now = workflows.now()

    async def report(category: str, grid: str, text: str, *, hours_ago: float, dx: float = 0.0) -> Any:
        lat, lon = grid_centre(grid)
        new = cases.NewCase(
            category=category,
            description=text,
            lat=lat + dx,
            lon=lon + dx,
            reported_at=now - timedelta(hours=hours_ago),
        )
        return (
            await cases.report(conn, new, source="worker", reporter=worker.subject, actor=worker, now=now)
        ).id

    await report("stair_light", "G-0107", "Stair light out in block 3, unit 2.", hours_ago=0.5)
    dispatching = await report(
        "street_light", "G-0108", "Two street lights out on Riverside Road.", hours_ago=2
    )
    await _step(conn, dispatching, "register", centre)
    by_department = await report(
        "blocked_drain", "G-0107", "Drain blocked at the market gate; water on the road.", hours_ago=5
    )
    await _step(conn, by_department, "register", centre)
    await _step(conn, by_department, "to_department", centre)
    by_worker = await report(
        "illegal_dumping", "G-0107", "Construction waste dumped behind block 7.", hours_ago=6
    )
    await _step(conn, by_worker, "register", centre)
    await _step(conn, by_worker, "to_worker", centre)
    verifying = await report("road_damage", "G-0105", "Pothole 40 cm wide at the crossing.", hours_ago=30)
    await _step(conn, verifying, "register", centre)
    await _step(conn, verifying, "to_department", centre)
    await _step(conn, verifying, "handled", urban, comment="Pothole filled with cold asphalt.")
    closing = await report("fallen_tree", "G-0106", "Branch fallen across the footpath.", hours_ago=20)
    await _step(conn, closing, "register", centre)
    await _step(conn, closing, "to_worker", centre)
    await _step(conn, closing, "handled", worker, comment="Branch cut and removed.")
    await _step(conn, closing, "passed", worker)
    evaluating = await report(
        "manhole_cover", "G-0108", "Manhole cover missing outside no. 12.", hours_ago=26
    )
    await _step(conn, evaluating, "register", centre)
    await _step(conn, evaluating, "to_department", centre)
    await _step(conn, evaluating, "handled", water, comment="Cover replaced.")
    await _step(conn, evaluating, "passed", centre)
    await _step(conn, evaluating, "close", centre)
    reworked = await report("blocked_drain", "G-0105", "Drain overflowing after rain.", hours_ago=50)
    await _step(conn, reworked, "register", centre)
    await _step(conn, reworked, "to_department", centre)
    await _step(conn, reworked, "handled", water, comment="Drain cleared.")
    await _step(conn, reworked, "failed", worker, comment="Still overflowing at the second grate.")
    await _step(conn, reworked, "handled", water, comment="Second grate cleared, pipe flushed.")
    await _step(conn, reworked, "passed", worker)
    await _step(conn, reworked, "close", centre)
    await _step(conn, reworked, "evaluate", centre, rating=4)
    rejected = await report("graffiti", "G-0106", "Poster on the notice board.", hours_ago=10)
    await _step(conn, rejected, "reject", centre, comment="A notice board is for posters.")
    primary = await report("street_light", "G-0107", "Street light flickering at the bus stop.", hours_ago=8)
    await _step(conn, primary, "register", centre)
    duplicate = await report("street_light", "G-0107", "Bus stop light broken.", hours_ago=7, dx=0.0001)
    await _step(conn, duplicate, "duplicate", centre, duplicate_of=str(primary))


async def seed_demo(conn: Connection, settings: Settings) -> None:
    await grid_api.install(conn)
    await layer.import_layer(conn, layer_document(), by="demo", at=workflows.now())
    await seed_categories(conn)
    await seed_cases(conn)
