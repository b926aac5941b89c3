"""Generalization hierarchies: each maps a column to coarser levels, 0 = original … top = '*'.

A hierarchy only knows how to generalize values to a level; `encode` turns a column into the
integer form the privacy engine searches over (codes per row, and for every level an array
mapping level-0 codes to level-L codes). Encoding also proves the hierarchy is one: each level
must be a function of the level below, or a coarser level could split a class.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.gb2260 import divisions, locate, qualified_prefecture
from transforms.text import Column

TOP = "*"


class Hierarchy(ABC):
    top: int  # the level at which every value is '*' (or null for dates)

    def generalize(self, values: pa.Array | pa.ChunkedArray, level: int) -> pa.Array:
        """The values at `level`: 0 is the original, `top` is one value for all."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if level == 0:
            return values
        if level >= self.top:
            return self._top(values)
        return self._level(values, level)

    @abstractmethod
    def _level(self, values: pa.Array, level: int) -> pa.Array:
        """The values at an intermediate level, 0 < level < top."""

    def _top(self, values: pa.Array) -> pa.Array:
        return pa.repeat(pa.scalar(TOP, pa.string()), len(values))


class UnitHierarchy(Hierarchy):
    """The unit a record lives in (transforms/units.py), as the engine sees it: a key of every
    class that is never generalized (one level, its label)."""

    top = 0

    def _level(self, values: pa.Array, level: int) -> pa.Array:
        raise ValueError("a unit has one level")


class TableHierarchy(Hierarchy):
    """ARX format: one CSV row per value, column j = level j. Values not in the table keep their
    own branch (themselves at level 0, '*' above) so nothing unknown is ever published finer
    than the table allows."""

    def __init__(self, rows: list[list[str]], source: str = "table"):
        widths = {len(r) for r in rows}
        if len(widths) != 1:
            raise ValueError(f"{source}: every row needs the same number of levels, found {sorted(widths)}")
        self.top = widths.pop() - 1
        self._keys = pa.array([r[0] for r in rows], pa.string())
        self._levels = [pa.array([r[j] for r in rows], pa.string()) for j in range(self.top + 1)]

    @classmethod
    def from_csv(cls, path: Path) -> TableHierarchy:
        """The table in `path`, read once per process while the file is unchanged (pass 1 builds
        its hierarchies per file, and a history is hundreds of files; a table is never changed
        once built)."""
        stat = path.stat()
        return _table_from_csv(str(path), stat.st_mtime_ns, stat.st_size)

    def _level(self, values: pa.Array, level: int) -> pa.Array:
        found = pc.index_in(values.cast(pa.string()), self._keys)
        return pc.fill_null(self._levels[level].take(found), TOP)


@functools.lru_cache(maxsize=16)
def _table_from_csv(path: str, mtime_ns: int, size: int) -> TableHierarchy:
    with open(path, encoding="utf-8", newline="") as fh:
        return TableHierarchy([row for row in csv.reader(fh) if row], source=path)


class DatetimeHierarchy(Hierarchy):
    """Truncation to the given units in order (e.g. hour, day, month); top = null. Seconds to
    weeks are one Arrow kernel (weeks start on Monday, as ISO weeks do); months, quarters and
    years are truncated once per day of the column's span and looked up (a column spans few
    days however many rows it has, and per-row calendar arithmetic is slow).

    Each level is published in a type that says what it is, so that it cannot be misread as a
    finer one: seconds to hours a timestamp, a day a DATE, a week '2026-W10' (ISO), a month
    '2026-03', a quarter '2026-Q1' (text that sorts in time order), a year an integer."""

    UNITS = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")

    def __init__(self, units: list[str]):
        unknown = [u for u in units if u not in self.UNITS]
        if unknown:
            raise ValueError(f"unknown datetime units {unknown}; use {list(self.UNITS)}")
        self.units = units
        self.top = len(units) + 1

    def _top(self, values: pa.Array) -> pa.Array:
        return pa.nulls(len(values), values.type)

    def _level(self, values: pa.Array, level: int) -> pa.Array:
        unit = self.units[level - 1]
        if unit not in ("month", "quarter", "year"):
            return _as_period(pc.floor_temporal(values, unit=unit, week_starts_monday=True), unit)
        days = values.cast(pa.date32()).view(pa.int32())
        valid = pc.drop_null(days)
        if len(valid) == 0:
            return _as_period(values.cast(pa.date32()), unit)
        first, last = (v.as_py() for v in pc.min_max(valid).values())
        span = pa.array(np.arange(first, last + 1, dtype=np.int32)).view(pa.date32())
        starts = pc.floor_temporal(span, unit=unit).take(pc.subtract(days, first))
        return _as_period(starts, unit)


def _as_period(starts: pa.Array, unit: str) -> pa.Array:
    """Truncated instants (the first of each period) in the type their unit publishes as."""
    if unit in ("second", "minute", "hour"):
        return starts
    day = starts.cast(pa.date32())
    if unit == "day":
        return day
    if unit == "year":
        return pc.year(day).cast(pa.int32())
    if unit == "quarter":
        return pc.binary_join_element_wise(pc.year(day).cast(pa.string()), pc.quarter(day).cast(pa.string()), "-Q")
    return pc.strftime(day.cast(pa.timestamp("s")), format={"week": "%G-W%V", "month": "%Y-%m"}[unit])


class AgeHierarchy(Hierarchy):
    """Birth date -> age in whole years at a reference date -> bands of the given widths -> '*'.
    Level 0 is the birth date; level 1 the age with bands[0] (usually 1 year), and so on. The
    age is computed once per distinct day and looked up, not recomputed per row."""

    def __init__(self, bands: list[int], reference: dt.date):
        self.bands = bands
        self.reference = reference
        self.top = len(bands) + 1

    def _level(self, values: pa.Array, level: int) -> pa.Array:
        missing = values.is_null().to_numpy(zero_copy_only=False)
        days = pc.fill_null(values.cast(pa.date32()).cast(pa.int32()), 0).to_numpy().astype(np.int64)
        if len(days) == 0:
            return pa.array([], pa.string())
        # Per day of the column's range: age, band, label index; rows only look their day up.
        first = int(days.min())
        span = pa.array(np.arange(first, int(days.max()) + 1, dtype=np.int32), pa.int32()).cast(pa.date32())
        width = self.bands[level - 1]
        low = self._ages(span) // width * width
        bands, index = np.unique(low, return_inverse=True)
        labels = pa.array([str(lo) if width == 1 else f"{lo}-{lo + width - 1}" for lo in bands.tolist()], pa.string())
        return labels.take(pa.array(index[days - first], mask=missing))

    def _ages(self, dates: pa.Array) -> np.ndarray:
        ref = self.reference
        month, day = pc.month(dates), pc.day(dates)
        before_birthday = pc.or_(pc.greater(month, ref.month), pc.and_(pc.equal(month, ref.month), pc.greater(day, ref.day)))
        return (ref.year - pc.year(dates).to_numpy()) - before_birthday.to_numpy(zero_copy_only=False).astype(np.int64)


class DaysHierarchy(Hierarchy):
    """Whole days after the row's own business date (a departure's lead time; the staged value,
    transforms/units.days_after), in bands with the given lower edges, coarser level by level ->
    '*'. A value below the first edge is coded below it."""

    def __init__(self, edges: list[list[int]]):
        for a, b in zip(edges, edges[1:]):
            if not set(b) <= set(a):
                raise ValueError(f"day bands {b} are not a coarsening of {a}")
        self.edges = edges
        self.top = len(edges) + 1

    def _level(self, values: pa.Array, level: int) -> pa.Array:
        days = values.cast(pa.int32())
        edges = self.edges[level - 1]
        position = pc.cast(pc.greater_equal(days, edges[0]), pa.int8())
        for edge in edges[1:]:
            position = pc.add(position, pc.cast(pc.greater_equal(days, edge), pa.int8()))
        names = (
            [f"<{edges[0]}"] + [str(a) if b == a + 1 else f"{a}-{b - 1}" for a, b in zip(edges, edges[1:])] + [f">={edges[-1]}"]
        )
        return pa.array(names, pa.string()).take(position)


class TopicHierarchy(Hierarchy):
    """Free text -> a coded topic (the first rule whose keyword the text contains, in the order of
    a reviewed CSV: keyword,topic; '其他' when none does) -> '*'. The text itself is level 0 and is
    never published; coding happens in the restricted pass, on the raw text."""

    OTHER = "其他"

    def __init__(self, rules: list[tuple[str, str]]):
        self.rules = rules
        self.top = 2

    @classmethod
    def from_csv(cls, path: Path) -> TopicHierarchy:
        with path.open(encoding="utf-8", newline="") as fh:
            return cls([(row[0], row[1]) for row in csv.reader(fh) if row and not row[0].startswith("#")])

    def _level(self, values: pa.Array, level: int) -> pa.Array:
        topic = pa.nulls(len(values), pa.string())
        for keyword, label in self.rules:
            hit = pc.and_(pc.is_null(topic), pc.fill_null(pc.match_substring(values, keyword), False))
            topic = pc.if_else(hit, label, topic)
        return pc.fill_null(topic, self.OTHER)


class PrefixHierarchy(Hierarchy):
    """Keep the first n characters, padding the rest with `pad` (200120 -> 2001** -> 20****)."""

    def __init__(self, lengths: list[int], pad: str = "*"):
        if lengths != sorted(lengths, reverse=True):
            raise ValueError(f"prefix lengths must shrink level by level, got {lengths}")
        self.lengths = lengths
        self.pad = pad
        self.top = len(lengths) + 1

    def _level(self, values: pa.Array, level: int) -> pa.Array:
        n = self.lengths[level - 1]
        head = pc.utf8_slice_codeunits(values, 0, n)
        if not self.pad:
            return head
        return pc.utf8_rpad(head, pc.max(pc.utf8_length(values)).as_py() or n, self.pad)


class BandHierarchy(Hierarchy):
    """Numeric values (amounts, points) -> intervals, each level with its own edges, coarser level
    by level. Values below the first edge or at/above the last are bottom- and top-coded (<0,
    >=50000). With `clip`, level 1 is top/bottom coding alone: exact values inside [lo, hi),
    coded outside; the band levels follow."""

    def __init__(self, edges: list[list[float]], clip: tuple[float, float] | None = None):
        levels = ([list(clip)] if clip else []) + edges
        for a, b in zip(levels, levels[1:]):
            if not set(b) <= set(a) and not (set(a) <= set(b) and a == levels[0] and clip):
                raise ValueError(f"band edges {b} are not a coarsening of {a}")
        self.edges, self.clip = edges, clip
        self.top = len(edges) + 1 + (1 if clip else 0)

    def _level(self, values: pa.Array, level: int) -> pa.Array:
        x = pc.cast(values, pa.float64())
        if self.clip and level == 1:
            lo, hi = self.clip
            coded = pc.if_else(pc.less(x, lo), f"<{lo:g}", pc.if_else(pc.greater_equal(x, hi), f">={hi:g}", None))
            return pc.coalesce(coded, pc.cast(x, pa.string()))
        edges = self.edges[level - 1 - (1 if self.clip else 0)]
        position = pc.cast(pc.greater_equal(x, edges[0]), pa.int8())  # which interval: one comparison per edge
        for edge in edges[1:]:
            position = pc.add(position, pc.cast(pc.greater_equal(x, edge), pa.int8()))
        fmt = lambda v: f"{v:g}"  # noqa: E731
        names = [f"<{fmt(edges[0])}"] + [f"[{fmt(a)}, {fmt(b)})" for a, b in zip(edges, edges[1:])] + [f">={fmt(edges[-1])}"]
        return pa.array(names, pa.string()).take(position)


class AreaHierarchy(Hierarchy):
    """PRC resident ID numbers (or six-digit GB/T 2260 codes) -> where they were issued, at the
    given levels of county, prefecture, province. Labels are qualified (北京市朝阳区, 吉林省长春市)
    so that coarser levels never split a group. Values with no known area code are '*'."""

    LEVELS = ("county", "prefecture", "province")

    def __init__(self, levels: Sequence[str]):
        self.levels = _ordered(levels, self.LEVELS, "area")
        self.top = len(levels) + 1

    def _level(self, values: pa.Array, level: int) -> pa.Array:
        table = divisions()
        kind = self.levels[level - 1]

        def label(code: str | None) -> str:
            div = table.get((code or "")[:6])
            if div is None:
                return TOP
            if kind == "province":
                return div.province
            if kind == "prefecture":
                return qualified_prefecture(div)
            return qualified_prefecture(div) + (div.county if div.code[4:] != "00" else "")

        return _by_distinct(values, label)


class AddressHierarchy(Hierarchy):
    """Street address text -> the prefecture (city) and province it names (上海市, 江苏省苏州市).
    Addresses that do not say, or name an ambiguous county only, become '*'."""

    LEVELS = ("prefecture", "province")

    def __init__(self, levels: Sequence[str]):
        self.levels = _ordered(levels, self.LEVELS, "address")
        self.top = len(levels) + 1

    def _level(self, values: pa.Array, level: int) -> pa.Array:
        index = 1 if self.levels[level - 1] == "prefecture" else 0

        def label(text: str | None) -> str:
            place = locate(text) if text else None
            return place[index] if place else TOP

        return _by_distinct(values, label)


def _ordered(levels: Sequence[str], allowed: tuple[str, ...], what: str) -> list[str]:
    """Geographic levels must run from fine to coarse (a county inside its prefecture …)."""
    if not levels or [lv for lv in allowed if lv in levels] != levels:
        raise ValueError(f"{what} levels must be an ordered subset of {list(allowed)}, got {levels}")
    return list(levels)


def _by_distinct(values: pa.Array, label) -> pa.Array:
    """Apply a Python labelling function once per distinct value (there is no vectorized form of
    a name lookup with fallbacks), then map back through the dictionary indices."""
    encoded = pc.dictionary_encode(values, null_encoding="encode")
    labels = pa.array([label(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return labels.take(encoded.indices)


@dataclass
class Encoded:
    """A quasi-identifier in the engine's integer form."""

    name: str
    hierarchy: Hierarchy
    codes: np.ndarray  # level-0 code per row
    maps: list[np.ndarray]  # maps[L][code0] = level-L code
    sizes: list[int]  # number of level-L codes
    labels: list[pa.Array]  # labels[L][codeL] = the published value
    loss: list[np.ndarray]  # loss[L][code0]: ARX loss of that value's level-L group, 0 … 1

    def column(self, level: int, rows: pa.Array | None = None) -> pa.Array:
        """The published values at `level`, for all rows or the given row indices."""
        codes = self.maps[level][self.codes if rows is None else self.codes[rows.to_numpy()]]
        return self.labels[level].take(pa.array(codes))


def encode(name: str, column: Column, hierarchy: Hierarchy) -> Encoded:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    uniques = pc.unique(column)
    codes = pc.index_in(column, uniques, skip_nulls=False).to_numpy(zero_copy_only=False).astype(np.int64)
    maps, sizes, labels = [], [], []
    for level in range(hierarchy.top + 1):
        encoded = pc.dictionary_encode(hierarchy.generalize(uniques, level), null_encoding="encode")
        maps.append(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64))
        labels.append(encoded.dictionary)
        sizes.append(len(encoded.dictionary))
    for level in range(1, len(maps)):
        pairs = np.unique(np.stack([maps[level - 1], maps[level]]), axis=1).shape[1]
        if pairs != len(np.unique(maps[level - 1])):
            raise ValueError(
                f"{name}: level {level} is not a coarsening of level {level - 1} "
                "(a value group at the finer level is split); check the hierarchy"
            )
    domain = max(len(uniques) - 1, 1)
    loss = [(np.bincount(m, minlength=s)[m] - 1) / domain for m, s in zip(maps, sizes)]
    return Encoded(name, hierarchy, codes, maps, sizes, labels, loss)
