"""The demo calendar: statutory fixed-date holidays, seeded once, never over an admin's entry."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from onewindow.db import Connection
from onewindow.settings import Settings
from workflows import store
from workflows.seed import seed_demo


async def test_seeds_fixed_holidays_and_keeps_admin_entries(conn: Connection, settings: Settings) -> None:
    year = datetime.now(ZoneInfo(settings.timezone)).year
    national_day = date(year, 10, 2)
    await store.put_calendar_day(conn, day=national_day, working=True, name="Moved by the city", by="admin")
    await seed_demo(conn, settings)
    await seed_demo(conn, settings)
    days = {d.day: d for d in await store.calendar_days(conn, date(year, 1, 1), date(year + 1, 12, 31))}
    assert days[national_day].name == "Moved by the city"
    weekdays = [
        d
        for d in (date(y, m, n) for y in (year, year + 1) for m, n in ((1, 1), (5, 1), (10, 3)))
        if d.isoweekday() < 6
    ]
    assert weekdays
    assert all(d in days and not days[d].working for d in weekdays)
    assert all(d.isoweekday() < 6 for d in days if days[d].updated_by == "demo")
