"""The shop's calendar: export dates, schedules, deadlines and retention all count in Shanghai time."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

TIMEZONE = ZoneInfo("Asia/Shanghai")


def today() -> dt.date:
    return dt.datetime.now(TIMEZONE).date()
