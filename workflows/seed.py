"""The demo city's calendar: the public holidays whose dates the law fixes.

China's statutory holidays on fixed dates (New Year's Day, Labour Day 1-2 May, National Day
1-3 October) for this year and the next. The lunar-calendar holidays and the make-up working
days change every year with the State Council's notice: an administrator enters them through
the calendar API (`PUT /api/v1/calendar/days/{day}`), as a real city would each December.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from onewindow.db import Connection
from onewindow.settings import Settings
from workflows import store

_FIXED = ((1, 1, "元旦 New Year's Day"), (5, 1, "劳动节 Labour Day"), (5, 2, "劳动节 Labour Day"))
_NATIONAL_DAY = tuple((10, day, "国庆节 National Day") for day in (1, 2, 3))


async def seed_demo(conn: Connection, settings: Settings) -> None:
    year = datetime.now(ZoneInfo(settings.timezone)).year
    for which in (year, year + 1):
        for month, day, name in (*_FIXED, *_NATIONAL_DAY):
            holiday = date(which, month, day)
            if holiday.isoweekday() not in settings.weekend:
                await store.add_calendar_day(conn, day=holiday, working=False, name=name, by="demo")
