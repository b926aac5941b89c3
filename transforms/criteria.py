"""The privacy model: the criteria a partition is held to, built once (from the policy,
`SourcePolicy.model`, or from what a published file records, `PartitionRecord.model`), each one
small object (as ARX's `criteria/`): the statistics of an equivalence class it needs, and its
verdict on them, in numpy (the in-memory engine, the measurements, the GX expectations) and in SQL
(the out-of-core engine), with one tolerance. The rooms compute the statistics a model asks for
and let the model judge; a criterion is written here once.

    KAnonymity(k)                       the class holds at least k people          needs PEOPLE
    LDiversity(column, l, "distinct")   the column takes at least l values in it    needs (distinct, column)
    LDiversity(column, l, "entropy")    its entropy is at least log(l)              needs (entropy, column)

A statistic is (what, column): ("people", None), ("distinct", c), ("entropy", c) (natural log).
The person-level criteria of a release (k^m with the model's m against each person's own k, l
with everything beside it, one unit) are judged on the person frame: expectations/release.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

# Entropy is a sum of floats: a class at exactly log(l), or l distinct values counted as floats,
# must hold whichever order the sum ran in.
TOLERANCE = 1e-9


def people_sql(entity: str, rows: str) -> str:
    """A class's size in people, in SQL: its distinct entities, and each row without one a person
    of its own (the rule metrics.sizes applies in numpy)."""
    return f"count(DISTINCT {entity}) + coalesce(sum({rows}) FILTER (WHERE {entity} IS NULL), 0)"


Statistic = tuple[str, str | None]  # (what, column): what a criterion reads of a class
PEOPLE: Statistic = ("people", None)


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


@dataclass(frozen=True)
class LDiversity(Criterion):
    column: str  # the sensitive attribute, as published
    l: float
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

    def fails_effective(self, effective) -> bool:
        """From the class's effective l: its distinct values, or exp(entropy) (the figure
        metrics.sensitive_figures reports)."""
        with np.errstate(divide="ignore"):
            value = effective if self.measure == "distinct" else np.log(effective)
        return bool(self.fails({(self.measure, self.column): value}))


@dataclass(frozen=True)
class PrivacyModel:
    """The criteria a partition is held to (see the module's docstring): k people per class, the
    l-diversity of each sensitive column, and m, the items (purchases, contacts) an intruder
    knows besides, judged per person by k^m."""

    k: int
    diversity: tuple[LDiversity, ...] = ()
    m: int = 0

    @property
    def criteria(self) -> tuple[Criterion, ...]:
        """What every class must hold."""
        return (KAnonymity(self.k), *self.diversity)

    @property
    def needs(self) -> tuple[Statistic, ...]:
        """The statistics of a class the criteria read, each once, in order."""
        return tuple(dict.fromkeys(s for c in self.criteria for s in c.needs))

    @property
    def sensitive(self) -> tuple[str, ...]:
        """The columns l-diversity reads, each once."""
        return tuple(dict.fromkeys(d.column for d in self.diversity))

    def fails(self, stats: Mapping[Statistic, Any]) -> np.ndarray:
        """Per class: whether any criterion fails it."""
        verdicts = [c.fails(stats) for c in self.criteria]
        return np.logical_or.reduce(verdicts) if len(verdicts) > 1 else verdicts[0]

    def sql_fails(self, stats: Mapping[Statistic, str]) -> str:
        return " OR ".join(f"({c.sql_fails(stats)})" for c in self.criteria)
