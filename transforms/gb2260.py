"""GB/T 2260 administrative division codes (the first six digits of a resident ID number).

The table is the one python-stdnum ships and keeps current (stdnum/cn/loc.dat, compiled from the
National Bureau of Statistics lists, with the years each code was in use). We read it once and
expose plain lookups; nothing here is hand-maintained.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import NamedTuple

# loc.dat keeps the Hong Kong and Macao names in traditional characters; the exports write them
# in simplified characters, as the rest of the table does.
_SIMPLIFIED = {"香港特別行政區": "香港特别行政区", "澳門特別行政區": "澳门特别行政区"}
_ENTRY = re.compile(r'^\s+(\d{4}) county="([^"]*)"')
_PROVINCE = re.compile(r'^(\d{2}) province="([^"]*)"')
_SPAN = re.compile(r"^\[(\d*)-(\d*)\](.*)$")
# Prefecture-level placeholders used for the districts of municipalities.
_PLACEHOLDERS = {"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"}


class Division(NamedTuple):
    code: str
    province: str
    prefecture: str  # the province itself for municipalities (上海市, 北京市 …)
    county: str
    current: bool  # still in use today (no end year)


@cache
def divisions() -> dict[str, Division]:
    """Every six-digit code ever listed, current or historical, mapped to its names."""
    text = resources.files("stdnum").joinpath("cn/loc.dat").read_text("utf-8")
    names: dict[str, tuple[str, bool]] = {}
    provinces: dict[str, str] = {}
    province = ""
    for line in text.splitlines():
        if m := _PROVINCE.match(line):
            province = m.group(1)
            provinces[province] = _SIMPLIFIED.get(m.group(2), m.group(2))
        elif m := _ENTRY.match(line):
            names[province + m.group(1)] = _latest_name(m.group(2))
    table = {}
    for code, (county, current) in names.items():
        province_name = provinces[code[:2]]
        prefecture, _ = names.get(code[:4] + "00", (province_name, True))
        if prefecture in _PLACEHOLDERS:
            prefecture = province_name
        table[code] = Division(code, province_name, prefecture, county, current)
    return table


def _latest_name(field: str) -> tuple[str, bool]:
    """A loc.dat name field may list several names with year spans; keep the latest one."""
    best, best_end, current = field, -1, True
    for part in field.split(","):
        m = _SPAN.match(part)
        if not m:
            return part, True
        end = int(m.group(2)) if m.group(2) else 9999
        if end > best_end:
            best, best_end, current = m.group(3), end, end == 9999
    return best, current


def county_codes(prefix: str = "") -> list[str]:
    """Current county-level codes (not the province or prefecture rows) under a prefix."""
    return sorted(
        code
        for code, div in divisions().items()
        if div.current and code.startswith(prefix) and code[4:] != "00" and code[2:4] != "00"
    )
