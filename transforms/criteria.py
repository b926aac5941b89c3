"""The privacy model: the criteria a partition is held to, built once (from the policy,
`SourcePolicy.model`, or from what a published file records, `PartitionRecord.model`), each one
small object (as ARX's `criteria/`): the statistics of an equivalence class it needs, and its
verdict on them, in numpy (the in-memory engine, the measurements, the GX expectations) and in SQL
(the out-of-core engine), with one tolerance. The rooms compute the statistics a model asks for
and let the model judge; a criterion is written here once.

    KAnonymity(k)                       the class holds at least k people          needs PEOPLE
    LDiversity(column, l, "distinct")   the column takes at least l values in it    needs (distinct, column)
    LDiversity(column, l, "entropy")    its entropy is at least log(l)              needs (entropy, column)
    RecursiveDiversity(column, c, l)    r1 < c (r_l + ... + r_n), r_i the i-th      needs (histogram, column)
                                        most frequent value's rows

A statistic is (what, column): ("people", None), or one of a sensitive column's, all of which
follow from its rows per (class, value): `of_counts` (numpy) and `SQL_OF_COUNTS` (SQL) derive
them, so every room computes those counts and nothing else per column:

    distinct    the values in the class (a null is a value)
    entropy     of the values' shares of the class's rows (natural log)
    histogram   the values' rows, largest first (numpy: one row per class, zero-padded; SQL: a LIST)

A criterion on a sensitive column (ColumnCriterion) is declared in a policy's `privacy` section
under its `kind`, one entry per attribute, and recorded under the same key in the footer of
every partition published under it; COLUMN_CRITERIA lists them. Adding one is a class here.
The person-level criteria of a release (k^m with the model's m against each person's own k, l
with everything beside it, one unit) are judged on the person frame: expectations/release.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

# Entropy is a sum of floats: a class at exactly log(l), or l distinct values counted as floats,
# must hold whichever order the sum ran in.
TOLERANCE = 1e-9


def people_sql(entity: str, rows: str) -> str:
    """A class's size in people, in SQL: its distinct entities, and each row without one a person
    of its own (the rule metrics.sizes applies in numpy)."""
    return f"count(DISTINCT {entity}) + coalesce(sum({rows}) FILTER (WHERE {entity} IS NULL), 0)"


Statistic = tuple[str, str | None]  # (what, column): what a criterion reads of a class
PEOPLE: Statistic = ("people", None)


def of_counts(what: str, counts: np.ndarray) -> np.ndarray:
    """A sensitive column's statistic per class from its rows per (class, value): one row per
    class, one cell per value (in any order, zero where the class lacks it)."""
    if what == "distinct":
        return (counts > 0).sum(axis=1)
    if what == "entropy":
        p = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    if what == "histogram":
        return -np.sort(-counts, axis=1)
    raise ValueError(f"no statistic {what!r} of a sensitive column")


# The same, as aggregates over a class's (value, c, p) rows: c the value's rows, p its share.
SQL_OF_COUNTS = {"distinct": "count(*)", "entropy": "-sum(p * ln(p))", "histogram": "list(c ORDER BY c DESC)"}


class Criterion(ABC):
    """One privacy criterion: the statistics of a class it needs, and its verdict per class."""

    @property
    @abstractmethod
    def needs(self) -> tuple[Statistic, ...]:
        """The statistics `fails` reads."""

    @abstractmethod
    def fails(self, stats: Mapping[Statistic, Any]) -> np.ndarray:
        """Per class, from its statistics (arrays, one value per class, or one value)."""

    @abstractmethod
    def sql_fails(self, stats: Mapping[Statistic, str]) -> str:
        """The same verdict in SQL, each statistic an expression over a class."""


@dataclass(frozen=True)
class KAnonymity(Criterion):
    k: int

    @property
    def needs(self) -> tuple[Statistic, ...]:
        return (PEOPLE,)

    def fails(self, stats: Mapping[Statistic, Any]) -> np.ndarray:
        return np.asarray(stats[PEOPLE]) < self.k

    def sql_fails(self, stats: Mapping[Statistic, str]) -> str:
        return f"({stats[PEOPLE]}) < {int(self.k)}"


class ColumnCriterion(Criterion):
    """A criterion on one sensitive column (published name `column`): what a policy declares
    under its `kind`, with the column's policy name as `attribute` (COLUMN_CRITERIA)."""

    kind: ClassVar[str]
    always_recorded: ClassVar[bool] = False  # in every footer, if only as [] (files have always said it)
    column: str
    # Parameters are checked as a policy's are: unknown keys, wrong types and bounds refused.
    __pydantic_config__ = ConfigDict(extra="forbid")

    def parameters(self) -> dict[str, Any]:
        """What the criterion holds besides its column (a footer records it)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "column"}  # type: ignore[arg-type]

    @abstractmethod
    def figure(self, stats: Mapping[Statistic, Any]) -> float | None:
        """The figure of the worst class (the gate's observed value), from the statistics per class."""

    @abstractmethod
    def sentence(self) -> str:
        """What it requires, in words (the gate, the data dictionary, the evidence pack)."""

    @property
    @abstractmethod
    def values_at_least(self) -> int:
        """The distinct values it implies in every class: what the release's person-level check
        (expectations/release.ExpectPeopleToBeLDiverse) holds the column to. A criterion that reads
        distinct values reads them no further: a class with more is judged as one with this many
        (the in-memory table counts them only that far)."""


@dataclass(frozen=True)
class LDiversity(ColumnCriterion):
    kind: ClassVar[str] = "l_diversity"
    always_recorded: ClassVar[bool] = True
    column: str
    l: Annotated[float, Field(ge=1)]
    measure: Literal["distinct", "entropy"] = "distinct"

    @property
    def needs(self) -> tuple[Statistic, ...]:
        return ((self.measure, self.column),)

    def fails(self, stats: Mapping[Statistic, Any]) -> np.ndarray:
        value = np.asarray(stats[(self.measure, self.column)])
        bound = self.l if self.measure == "distinct" else np.log(self.l)
        return value < bound - TOLERANCE

    def sql_fails(self, stats: Mapping[Statistic, str]) -> str:
        value = stats[(self.measure, self.column)]
        bound = f"{float(self.l) - TOLERANCE!r}" if self.measure == "distinct" else f"ln({float(self.l)!r}) - {TOLERANCE!r}"
        return f"({value}) < {bound}"

    def figure(self, stats: Mapping[Statistic, Any]) -> float | None:
        """The least effective l of a class: its distinct values, or exp(entropy)."""
        value = np.asarray(stats[(self.measure, self.column)], float)
        if not value.size:
            return None
        least = float(value.min())
        return int(least) if self.measure == "distinct" else float(np.exp(least))

    @property
    def values_at_least(self) -> int:
        return int(np.ceil(self.l - TOLERANCE))  # entropy log(l) needs l values at least

    def sentence(self) -> str:
        how = "an entropy of at least log(l)" if self.measure == "entropy" else "at least l distinct values"
        return f"{self.column} takes {how} in every group, l = {self.l:g} (l-diversity)"


@dataclass(frozen=True)
class RecursiveDiversity(ColumnCriterion):
    """Recursive (c, l)-diversity (Machanavajjhala et al. 2007): with r_1 >= r_2 >= ... the rows
    of each value in a class, r_1 < c (r_l + r_{l+1} + ... + r_n): the most frequent value is
    not frequent against the less frequent ones, even once the intruder rules out l - 2 of them."""

    kind: ClassVar[str] = "recursive_diversity"
    column: str
    c: Annotated[float, Field(gt=0)]
    l: Annotated[int, Field(ge=2)]

    @property
    def needs(self) -> tuple[Statistic, ...]:
        return (("histogram", self.column),)

    def _parts(self, stats: Mapping[Statistic, Any]) -> tuple[np.ndarray, np.ndarray]:
        histogram = np.atleast_2d(np.asarray(stats[("histogram", self.column)], float))
        return histogram[:, 0] if histogram.shape[1] else np.zeros(len(histogram)), histogram[:, self.l - 1 :].sum(axis=1)

    def fails(self, stats: Mapping[Statistic, Any]) -> np.ndarray:
        top, tail = self._parts(stats)
        return top >= self.c * tail - TOLERANCE

    def sql_fails(self, stats: Mapping[Statistic, str]) -> str:
        h = stats[("histogram", self.column)]
        tail = f"coalesce(list_sum(list_slice({h}, {int(self.l)}, len({h}))), 0)"
        return f"({h})[1] >= {float(self.c)!r} * {tail} - {TOLERANCE!r}"

    def figure(self, stats: Mapping[Statistic, Any]) -> float | None:
        """The largest r_1 / (r_l + ... + r_n) of a class: it holds below c; None where a class
        has fewer than l values (no c is enough)."""
        top, tail = self._parts(stats)
        if not top.size or not (tail > 0).all():
            return None
        return float((top / tail).max())

    @property
    def values_at_least(self) -> int:
        return self.l  # r_l + ... + r_n > 0

    def sentence(self) -> str:
        return (
            f"in every group, the most frequent value of {self.column} has fewer than c = {self.c:g} times the rows "
            f"of its values from the {_ordinal(self.l)} most frequent on (recursive (c, l)-diversity, l = {self.l})"
        )


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 < 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


# Each criterion on a sensitive column by its kind: the key a policy declares it under and a
# footer records it under.
COLUMN_CRITERIA: dict[str, type[ColumnCriterion]] = {c.kind: c for c in (LDiversity, RecursiveDiversity)}


def column_criterion(kind: str, column: str, parameters: Mapping[str, Any]) -> ColumnCriterion:
    """A criterion of `kind` on `column`, its parameters checked (a ValueError says what is wrong)."""
    if kind not in COLUMN_CRITERIA:
        raise ValueError(f"no privacy criterion {kind!r} (known: {', '.join(COLUMN_CRITERIA)})")
    try:
        return TypeAdapter(COLUMN_CRITERIA[kind]).validate_python({**parameters, "column": column})
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or kind}: {err['msg']}" for err in e.errors())
        raise ValueError(f"{kind} on {column!r}: {problems}") from None


@dataclass(frozen=True)
class PrivacyModel:
    """The criteria a partition is held to (see the module's docstring): k people per class, the
    criteria on sensitive columns, and m, the items (purchases, contacts) an intruder knows
    besides, judged per person by k^m."""

    k: int
    columns: tuple[ColumnCriterion, ...] = ()
    m: int = 0

    @property
    def criteria(self) -> tuple[Criterion, ...]:
        """What every class must hold."""
        return (KAnonymity(self.k), *self.columns)

    @property
    def needs(self) -> tuple[Statistic, ...]:
        """The statistics of a class the criteria read, each once, in order."""
        return tuple(dict.fromkeys(s for c in self.criteria for s in c.needs))

    @property
    def sensitive(self) -> tuple[str, ...]:
        """The columns the criteria on sensitive columns read, each once."""
        return tuple(dict.fromkeys(c.column for c in self.columns))

    def fails(self, stats: Mapping[Statistic, Any]) -> np.ndarray:
        """Per class: whether any criterion fails it."""
        verdicts = [c.fails(stats) for c in self.criteria]
        return np.logical_or.reduce(verdicts) if len(verdicts) > 1 else verdicts[0]

    def sql_fails(self, stats: Mapping[Statistic, str]) -> str:
        return " OR ".join(f"({c.sql_fails(stats)})" for c in self.criteria)
