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


@cache
def names() -> dict[str, dict[str, tuple[str, str]]]:
    """Place names as written in addresses -> (province, qualified prefecture), by level:
    provinces and prefectures with and without their suffix (上海市/上海, 苏州市/苏州), and
    counties that only one prefecture has (浦东新区; a 朝阳区 is in Beijing and in Changchun)."""
    out: dict[str, dict[str, tuple[str, str]]] = {"province": {}, "prefecture": {}, "county": {}}
    counties: dict[str, set[tuple[str, str]]] = {}
    for div in divisions().values():
        if not div.current:
            continue
        place = (div.province, qualified_prefecture(div))
        for name in _forms(div.province):
            out["province"].setdefault(name, (div.province, div.province))
        if div.code[2:] != "0000":
            for name in _forms(div.prefecture):
                out["prefecture"].setdefault(name, place)
        if div.code[4:] != "00":
            counties.setdefault(div.county, set()).add(place)
    out["county"] = {name: next(iter(places)) for name, places in counties.items() if len(places) == 1}
    return out


def qualified_prefecture(div: Division) -> str:
    """A prefecture's unambiguous label: 上海市 for a municipality, 江苏省苏州市 otherwise."""
    return div.province if div.prefecture == div.province else div.province + div.prefecture


_SUFFIXES = ("特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "自治州", "地区", "省", "市", "盟")


def _forms(name: str) -> set[str]:
    """A name and its short form without the administrative suffix (广西壮族自治区 -> 广西)."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            return {name, name[: -len(suffix)]}
    return {name}


# A short name followed by one of these is another unit's name: 朝阳区 is not 朝阳(市).
_UNIT = set("区县市旗镇乡州盟")


def locate(address: str) -> tuple[str, str] | None:
    """(province, qualified prefecture) an address text starts in, or None when it does not say."""
    table = names()
    for level in ("province", "prefecture", "county"):
        for size in range(min(len(address), 12), 1, -1):
            place = table[level].get(address[:size])
            if place and address[size - 1] not in _UNIT and address[size : size + 1] in _UNIT:
                continue  # a short form running into a unit suffix names something else
            if place:
                if level == "province":  # a prefecture may follow the province: 江苏省苏州市…
                    rest = address[size:]
                    for n in range(min(len(rest), 10), 1, -1):
                        sub = table["prefecture"].get(rest[:n]) or table["county"].get(rest[:n])
                        if sub and sub[0] == place[0]:
                            return sub
                return place
    return None
