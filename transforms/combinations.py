"""What the privacy engine's search asks of a table, and the table held in memory.

The search (transforms/anonymity.py) never touches a row: it asks a table of distinct
combinations (quasi-identifier codes, entity, sensitive codes, with row counts) a few questions
per lattice node (Combinations). Two tables answer them: InMemory here (numpy: a node's class key
by mixed radix, sizes by bincount, never sorting), and OutOfCore (transforms/outofcore.py,
DuckDB), which answers as this one does (this one is the tests' oracle). Each class is judged by
the privacy criteria (transforms/criteria.py) on the statistics they need.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod

import numpy as np
import pandas as pd

from transforms.criteria import PEOPLE, PrivacyModel, Statistic, of_counts
from transforms.hierarchy import Encoded


class Combinations(ABC):
    """What the search asks of a table of distinct combinations (QI codes, entity, sensitive
    values) with row counts: two implementations, in memory (InMemory, numpy) and out of core
    (transforms.outofcore, DuckDB); the search itself never touches a combination."""

    rows: int  # rows the combinations stand for
    size: int  # number of combinations
    model: PrivacyModel  # what every class is judged by (transforms/criteria.py)

    @abstractmethod
    def rows_per_code(self, among: np.ndarray | None = None) -> list[np.ndarray]:
        """Per quasi-identifier, rows per lowest-level code, over all combinations or `among` (a mask)."""

    @abstractmethod
    def failing(self, node: tuple[int, ...], allowed: int) -> tuple[int, np.ndarray | None]:
        """Rows in the classes the privacy model fails at `node`; and, when those are at most
        `allowed`, which combinations they are (a mask)."""

    @abstractmethod
    def published(self, node: tuple[int, ...]) -> np.ndarray:
        """The size of every class that passes at `node` (rows, or entities)."""

    @abstractmethod
    def codes(self, among: np.ndarray) -> tuple[list[np.ndarray], int]:
        """The lowest-level codes of the combinations `among` (a mask), per quasi-identifier, and their rows."""

    @abstractmethod
    def itemsets(self, node: tuple[int, ...], items: list[bool], limit: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """What to suppress at `node` for the model's (k, k^m) (transforms/itemsets.py), the quasi-identifiers
        flagged in `items` making the item and the others the class: the combinations of row
        classes too rare (a mask), the items taken from people ((entity id as the tallies hold
        it, item key, rows of it kept) triples), and the rows that is; past `limit` rows, only
        that it is more."""

    @abstractmethod
    def people(self, share: float, model: PrivacyModel) -> InMemory:
        """The combinations of a sample of about `share` of the people (drawn), in memory, judged
        by `model` (the search's k scaled to the sample: transforms/anonymity.sampled)."""

    def close(self) -> None:  # noqa: B027  (a table held in memory has nothing to let go of)
        """Let go of what the table holds outside memory."""


def drawn(ids: np.ndarray, share: float) -> np.ndarray:
    """Whether each id (an integer) is in a sample of about `share` of them: a fixed mix of the id
    (splitmix64's finalizer), so that the same ids are always drawn, whatever else the table holds."""
    z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z % np.uint64(1 << 20)) < np.uint64(round(share * (1 << 20)))


class InMemory(Combinations):
    """The table reduced to its distinct (QI codes, entity, sensitive codes) with row counts;
    `sensitive` holds the codes per row of each column the model's criteria read.

    An element without an entity (-1) stands for as many people as rows: a row nobody can be
    linked to is a person of its own."""

    entity_ids: np.ndarray | None = None  # entity code -> the tallies' entity id (set when loaded from them)

    def __init__(
        self,
        qis: list[Encoded],
        entity: np.ndarray | None,
        sensitive: dict[str, np.ndarray],
        counts: np.ndarray,
        bounds: list[tuple[int, int]],
        model: PrivacyModel,
    ):
        self.model = model
        self.bounds = bounds
        self.qis = [dataclasses.replace(q, codes=np.zeros(0, np.int64)) for q in qis]  # hierarchies, not codes
        if missing := [c for c in model.sensitive if c not in sensitive]:
            raise ValueError(f"the privacy model reads {', '.join(missing)}, which the table does not hold")
        values = [sensitive[c] for c in model.sensitive]
        columns = [q.codes for q in qis] + ([entity + 1] if entity is not None else []) + values
        key, radix = np.zeros(len(qis[0].codes), np.int64), 1
        for column in columns:
            size = int(column.max(initial=0)) + 1
            if radix * size >= 2**62:
                key, uniques = pd.factorize(key)
                radix = len(uniques)
            key, radix = key * size + column, radix * size
        inverse, uniques = pd.factorize(key)
        del key
        first: slice | np.ndarray
        if len(uniques) == len(inverse):  # already distinct (a merged tally): elements are combinations
            first, self.inverse = slice(None), None
        else:
            first = np.zeros(len(uniques), np.int64)
            first[inverse[::-1]] = np.arange(len(inverse))[::-1]  # an element of each distinct combination
            self.inverse = _compact(inverse, len(uniques))  # combination of each input element
        self.weight = np.bincount(inverse, weights=counts, minlength=len(uniques)).astype(np.int64)
        self.rows, self.size = int(self.weight.sum()), len(self.weight)
        self.sizes = [q.sizes for q in qis]
        # Arrays per combination are held in the smallest integer type that fits: with millions
        # of combinations they are most of the engine's memory.
        self.lowest = [_compact(q.codes[first], q.sizes[0]) for q in qis]
        self.entity = entity[first].astype(np.int32) if entity is not None else None
        self.entities = int(entity.max(initial=0)) + 1 if entity is not None else 0
        if self.entity is not None:
            # A person found in one combination only adds exactly 1 to its class at any node:
            # only people with several combinations need the distinct count.
            known = self.entity >= 0
            shared = np.zeros(len(self.entity), bool)
            shared[known] = np.bincount(self.entity[known], minlength=self.entities)[self.entity[known]] > 1
            self.alone, self.shared, self.unknown = (
                _compact(np.flatnonzero(mask), len(mask)) for mask in (known & ~shared, shared, ~known)
            )
        self.sensitive = [(c, v[first], int(v.max(initial=0)) + 1) for c, v in zip(model.sensitive, values)]
        self._distinct_up_to = {
            c: max((x.values_at_least for x in model.columns if x.column == c), default=0) for c in model.sensitive
        }
        # Every combination's code at every level the search may choose, mapped once (a node then
        # only combines them); a level that maps codes to themselves (level 0) shares `codes`.
        self.at_level = [
            {
                level: codes if identity(q.maps[level]) else _compact(q.maps[level][codes], q.sizes[level])
                for level in range(lo, hi + 1)
            }
            for q, codes, (lo, hi) in zip(qis, self.lowest, bounds)
        ]

    def rows_per_code(self, among: np.ndarray | None = None) -> list[np.ndarray]:
        if among is None:
            return [np.bincount(codes, weights=self.weight, minlength=sizes[0]) for codes, sizes in zip(self.lowest, self.sizes)]
        chosen = np.flatnonzero(among)  # a few combinations (the suppressed): count only them
        weight = self.weight[chosen]
        return [np.bincount(codes[chosen], weights=weight, minlength=sizes[0]) for codes, sizes in zip(self.lowest, self.sizes)]

    def failing(self, node: tuple[int, ...], allowed: int) -> tuple[int, np.ndarray | None]:
        fails, _, _ = self._classes(node)
        rows = int(self.weight @ fails)
        return rows, fails if rows <= allowed else None

    def published(self, node: tuple[int, ...]) -> np.ndarray:
        fails, classes, sizes = self._classes(node)
        return sizes[np.unique(classes[~fails])]

    def codes(self, among: np.ndarray) -> tuple[list[np.ndarray], int]:
        return [codes[among] for codes in self.lowest], int(self.weight[among].sum())

    def people(self, share: float, model: PrivacyModel) -> InMemory:
        """A person is drawn by its entity id (as the tallies hold it); a combination without an
        entity, whose rows are people of their own, by its position."""
        keep = drawn(np.arange(self.size), share)
        if self.entity is not None:
            ids = np.maximum(self.entity, 0).astype(np.int64)
            if self.entity_ids is not None and len(self.entity_ids):
                ids = self.entity_ids[ids]
            keep = np.where(self.entity >= 0, drawn(ids, share), keep)
        table = InMemory(
            [dataclasses.replace(q, codes=codes[keep]) for q, codes in zip(self.qis, self.lowest)],
            self.entity[keep] if self.entity is not None else None,
            {c: values[keep] for c, values, _ in self.sensitive},
            self.weight[keep],
            self.bounds,
            model,
        )
        table.entity_ids = self.entity_ids
        return table

    def itemsets(self, node: tuple[int, ...], items: list[bool], limit: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        import pyarrow as pa

        from transforms import scratch
        from transforms.itemsets import suppress

        keys = {}
        for part in (False, True):
            chosen = [
                (at_level[level], sizes[level])
                for at_level, sizes, level, flag in zip(self.at_level, self.sizes, node, items)
                if flag == part
            ]
            keys[part] = (
                class_keys([codes for codes, _ in chosen], [size for _, size in chosen])
                if chosen
                else np.zeros(self.size, np.int64)
            )
        entity = (
            pa.array(self.entity.astype(np.int64), mask=self.entity < 0)
            if self.entity is not None
            else pa.nulls(self.size, pa.int64())
        )
        con = scratch.connection()
        try:
            con.register(
                "combos",
                pa.table({"i": np.arange(self.size), "cls": keys[False], "item": keys[True], "e": entity, "w": self.weight}),
            )
            mask, taken, rows = suppress(con, "combos", self.size, self.model.k, self.model.m, limit)
        finally:
            con.close()
        if self.entity_ids is not None and len(taken):
            taken = np.stack([self.entity_ids[taken[:, 0]], taken[:, 1], taken[:, 2]], axis=1)
        return mask, taken, rows

    def _classes(self, node: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per distinct combination: does the privacy model fail its class? Also each combination's
        class and each class's size (rows, or entities)."""
        key: np.ndarray | None = None
        radix = 1
        for sizes, level, at_level in zip(self.sizes, node, self.at_level):
            mapped, width = at_level[level], sizes[level]
            if key is None:
                key, radix = mapped.astype(np.int64), width
            else:
                if radix * width >= 2**62:
                    key, uniques = pd.factorize(key)
                    radix = len(uniques)
                key *= width  # in place: no temporaries the size of the table
                key += mapped
                radix *= width
        if key is None:
            raise ValueError("a table of combinations has at least one quasi-identifier")
        if radix > len(key):  # sparse key space: hash to dense class ids (per-class arrays stay <= n)
            key, uniques = pd.factorize(key)
            radix = len(uniques)
        if self.entity is None:
            size = np.bincount(key, weights=self.weight, minlength=radix)
        else:
            size = np.bincount(key if len(self.alone) == len(key) else key[self.alone], minlength=radix)
            if len(self.shared):
                pairs = pd.unique(key[self.shared] * self.entities + self.entity[self.shared])
                size += np.bincount(pairs // self.entities, minlength=radix)
            if len(self.unknown):
                size = size + np.bincount(key[self.unknown], weights=self.weight[self.unknown], minlength=radix)
        stats: dict[Statistic, np.ndarray] = {PEOPLE: size}
        for column, codes, m in self.sensitive:  # each column's statistics from its rows per (class, value)
            wanted = [what for what, on in self.model.needs if on == column]
            if wanted == ["distinct"] and self._distinct_up_to[column] <= 2:
                # A criterion on distinct values judges them only up to the values it implies
                # (values_at_least): where that is 2, a class's least and greatest code tell one
                # value from several, without hashing every (class, value) pair.
                least, most = np.full(radix, np.iinfo(codes.dtype).max, codes.dtype), np.full(radix, -1, codes.dtype)
                np.minimum.at(least, key, codes)
                np.maximum.at(most, key, codes)
                stats[("distinct", column)] = np.where(most < 0, 0, np.where(least == most, 1, 2))
                continue
            if wanted == ["distinct"]:  # values present only: no (class x value) matrix
                stats[("distinct", column)] = np.bincount(pd.unique(key * m + codes) // m, minlength=radix)
                continue
            counts = np.bincount(key * m + codes, weights=self.weight, minlength=radix * m).reshape(radix, m)
            stats.update({(what, column): of_counts(what, counts) for what in wanted})
        fails = self.model.fails(stats)
        return fails[key], key, size


def _compact(values: np.ndarray, top: int) -> np.ndarray:
    """Non-negative integers below `top` in the smallest signed type that holds them."""
    return values.astype(np.int16 if top < 2**15 else np.int32 if top < 2**31 else np.int64, copy=False)


def identity(mapping: np.ndarray) -> bool:
    return bool(np.array_equal(mapping, np.arange(len(mapping))))


def class_keys(codes: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """One int64 key per element from its level codes (one array per quasi-identifier): exact
    (mixed radix) while the key space fits, else a 64-bit hash of the tuple, whose rare collisions
    can only merge a passing class into a failing one, i.e. suppress more, never less."""
    key, radix = np.zeros(len(codes[0]) if codes else 0, np.int64), 1
    for column, size in zip(codes, sizes):
        if radix * size >= 2**62:
            frame = pd.DataFrame({i: c for i, c in enumerate(codes)})
            return pd.util.hash_pandas_object(frame, index=False).to_numpy().view(np.int64)
        key, radix = key * size + column, radix * size
    return key
