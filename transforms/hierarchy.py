"""Generalization hierarchies: each maps a column to coarser levels, 0 = original … top = '*'.

A hierarchy only knows how to generalize values to a level; `encode` turns a column into the
integer form the privacy engine searches over (codes per row, and for every level an array
mapping level-0 codes to level-L codes). Encoding also proves the hierarchy is one: each level
must be a function of the level below, or a coarser level could split a class.
"""

from __future__ import annotations

import csv
import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.text import Column

TOP = "*"


class Hierarchy(ABC):
    top: int  # the level at which every value is '*' (or null for dates)

    def generalize(self, values: pa.Array, level: int) -> pa.Array:
        """The values at `level`: 0 is the original, `top` is one value for all."""
        if level == 0:
            return values
        if level >= self.top:
            return self._top(values)
        return self._level(values, level)

    @abstractmethod
    def _level(self, values: pa.Array, level: int) -> pa.Array:
        """The values at an intermediate level, 0 < level < top."""

    def _top(self, values: pa.Array) -> pa.Array:
        return pa.array([TOP] * len(values), pa.string())


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
        with path.open(encoding="utf-8", newline="") as fh:
            return cls([row for row in csv.reader(fh) if row], source=str(path))

    def _level(self, values: pa.Array, level: int) -> pa.Array:
        found = pc.index_in(values.cast(pa.string()), self._keys)
        return pc.fill_null(self._levels[level].take(found), TOP)


class DatetimeHierarchy(Hierarchy):
    """Truncation to the given units in order (e.g. hour, day, month); top = null."""

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
        return pc.floor_temporal(values, unit=unit, week_starts_monday=True)


class AgeHierarchy(Hierarchy):
    """Birth date -> age in whole years at a reference date -> bands of the given widths -> '*'.
    Level 0 is the birth date; level 1 the age with bands[0] (usually 1 year), and so on."""

    def __init__(self, bands: list[int], reference: dt.date):
        self.bands = bands
        self.reference = reference
        self.top = len(bands) + 1

    def _level(self, values: pa.Array, level: int) -> pa.Array:
        ref = self.reference
        years = pc.subtract(pa.scalar(ref.year, pa.int64()), pc.year(values))
        month, day = pc.month(values), pc.day(values)
        before_birthday = pc.or_(pc.greater(month, ref.month), pc.and_(pc.equal(month, ref.month), pc.greater(day, ref.day)))
        age = pc.subtract(years, pc.cast(before_birthday, pa.int64())).to_numpy(zero_copy_only=False)
        width = self.bands[level - 1]
        lo = (np.floor_divide(np.nan_to_num(age, nan=-1), width) * width).astype(np.int64)
        labels = lo.astype(str) if width == 1 else lo.astype(str) + "-" + (lo + width - 1).astype(str)
        return pa.array(labels, pa.string(), mask=pc.is_null(values).to_numpy(zero_copy_only=False))


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
    """Numeric values -> intervals; each level has its own edges, coarser level by level."""

    def __init__(self, edges: list[list[float]]):
        for a, b in zip(edges, edges[1:]):
            if not set(b) <= set(a):
                raise ValueError(f"band edges {b} are not a coarsening of {a}")
        self.edges = edges
        self.top = len(edges) + 1

    def _level(self, values: pa.Array, level: int) -> pa.Array:
        edges = np.array(self.edges[level - 1], float)
        x = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        pos = np.searchsorted(edges, np.nan_to_num(x, nan=edges[0]), side="right")
        fmt = lambda v: f"{v:g}"  # noqa: E731
        names = [f"<{fmt(edges[0])}"] + [f"[{fmt(a)}, {fmt(b)})" for a, b in zip(edges, edges[1:])] + [f">={fmt(edges[-1])}"]
        return pa.array(np.array(names)[pos], pa.string(), mask=np.isnan(x))


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
            raise ValueError(f"{name}: level {level} is not a coarsening of level {level - 1} "
                             "(a value group at the finer level is split); check the hierarchy")
    domain = max(len(uniques) - 1, 1)
    loss = [(np.bincount(m, minlength=s)[m] - 1) / domain for m, s in zip(maps, sizes)]
    return Encoded(name, hierarchy, codes, maps, sizes, labels, loss)
