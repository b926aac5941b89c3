"""The analysts' declared questions (a policy's `questions`), scored on what a run read against what
it published: which questions the release answers, and at what error.

    declare   a question counts rows (lines, cases) or people (distinct tokens of a unit: buyer-days)
              by a period (day, week, month of the unit's dates) and by published columns, each at
              the hierarchy level the question needs (product 2: its category)
    tally     per unit, as pass 2 goes batch by batch (Answers.add): the rows read, their columns
              generalized to the question's levels (restricted side), and the rows published,
              their values mapped up the hierarchy from the level they were published at; a value
              published coarser than the question needs cannot be attributed to a cell
    score     per question over the run's units (Answers.scores): the share of what was read that
              the release attributes to a cell, and over the cells with at least MIN_CELL read, the
              median relative error and the share within 10%. Answered: attributed >= ATTRIBUTED
              and median error <= MEDIAN_ERROR (the thresholds of issue 32's targets)

What a score holds is aggregate: shares and errors over cells, never a cell's count (a count below
k can point at a person). Pure: pandas and pyarrow over the batches it is given.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from transforms.units import Grain, first_day, grain_of

ATTRIBUTED = 0.90  # of what was read, the share the release must attribute to a cell
MEDIAN_ERROR = 0.10  # the median relative error over the scored cells, at most
MIN_CELL = 20  # cells with fewer rows (or people) read are not scored: their relative error says little
_ORDER = {"day": 0, "week": 1, "month": 2}


class Question(BaseModel):
    """One declared question: `measure` by `period` and by each of `by`'s published columns at
    its level (the column's hierarchy levels, as the policy numbers them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    ask: str  # the question in words, as the run summary and the dictionary show it
    measure: Literal["rows", "people"]
    period: Grain
    by: dict[str, int] = Field(min_length=1)

    def words(self) -> str:
        levels = ", ".join(f"{c} at level {lv}" for c, lv in self.by.items())
        return f"{self.measure} by {self.period} and {levels}"


@dataclass(frozen=True)
class Score:
    """A question's answer on one run's release. `why`: what kept it from being answered."""

    ask: str
    answered: bool
    read: int  # rows (or people) the run read, summed over the question's cells
    attributed: float  # the share of `read` the release attributes to a cell
    cells: int  # cells scored (at least MIN_CELL read)
    median_error: float | None
    within_10pct: float | None
    why: str = ""

    def line(self) -> str:
        """The score in one line: what `tuomin run` prints and the dictionary shows."""
        found = f"{self.attributed:.0%} attributed"
        if self.median_error is not None:
            found += f", median error {self.median_error:.0%} over {self.cells} cell(s), {self.within_10pct:.0%} within 10%"
        verdict = "answered" if self.answered else "not answered"
        return f"{verdict}: {found}" + (f" ({self.why})" if self.why else "")


def period_of(label: str, grain: Grain) -> str | None:
    """The question's period of a unit (its first day), or None where the unit is coarser than the
    question's period or straddles it (a week unit and a month)."""
    unit = grain_of(label)
    if _ORDER[unit] > _ORDER[grain] or (unit == "week" and grain == "month"):
        return None
    day = first_day(label, unit)
    if grain == "week":
        day = day - dt.timedelta(days=day.weekday())
    elif grain == "month":
        day = day.replace(day=1)
    return day.isoformat()


@dataclass
class Answers:
    """One source's questions, tallied unit by unit as pass 2 goes and scored at the end. Each
    add() takes a batch twice: as read (the question's columns already at its levels, the
    person of each row, None for a row of its own) and as published (the question's columns
    mapped to its levels, None where they were published coarser)."""

    questions: list[Question]
    read: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    published: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    coarser: dict[str, str] = field(default_factory=dict)  # why a question cannot be attributed
    _unit: dict[tuple[str, str], tuple[list[pd.DataFrame], list[pd.DataFrame]]] = field(default_factory=dict)

    def add(
        self,
        question: Question,
        label: str,
        read: dict[str, pa.Array | np.ndarray],
        read_people: pa.Array | None,
        published: dict[str, pa.Array | np.ndarray] | None,
        published_people: pa.Array | None,
    ) -> None:
        """A batch of a unit (`label`). `published` None: a column is published coarser than the
        question needs (record why in `coarser`)."""
        period = period_of(label, question.period)
        if period is None:
            self.coarser.setdefault(question.name, f"its units are {grain_of(label)}s; it asks by {question.period}")
            return
        parts = self._unit.setdefault((question.name, label), ([], []))
        parts[0].append(_cells(read, read_people, question.measure))
        if published is not None:
            parts[1].append(_cells(published, published_people, question.measure))

    def close_unit(self, label: str) -> None:
        """A unit's batches are through: its people counted once each (a person's rows may span batches)."""
        for question in self.questions:
            parts = self._unit.pop((question.name, label), None)
            period = period_of(label, question.period)
            if parts is None or period is None:
                continue
            for side, frames in zip((self.read, self.published), parts):
                if frames:
                    side.setdefault(question.name, []).append(
                        _counted(frames, list(question.by), question.measure).assign(period=period)
                    )

    def scores(self) -> dict[str, Score]:
        return {q.name: self._score(q) for q in self.questions}

    def _score(self, question: Question) -> Score:
        keys = ["period", *question.by]
        read = _sum(self.read.get(question.name, []), keys)
        published = _sum(self.published.get(question.name, []), keys)
        total = int(read.sum())
        if not total:
            return Score(question.ask, False, 0, 0.0, 0, None, None, self.coarser.get(question.name, "nothing read"))
        attributed = min(float(published.sum()), total) / total
        joined = pd.concat([read.rename("read"), published.rename("published")], axis=1).fillna(0)
        scored = joined[joined["read"] >= MIN_CELL]
        error = (scored["published"] - scored["read"]).abs() / scored["read"]
        median = float(error.median()) if len(error) else None
        within = float((error <= 0.10).mean()) if len(error) else None
        why = self.coarser.get(question.name, "")
        if not why and median is None:
            why = f"no cell with {MIN_CELL} read"
        elif not why and attributed < ATTRIBUTED:
            why = f"under {ATTRIBUTED:.0%} attributed"
        elif not why and median is not None and median > MEDIAN_ERROR:
            why = f"median error over {MEDIAN_ERROR:.0%}"
        answered = not why
        return Score(question.ask, answered, total, round(attributed, 4), len(scored), _round(median), _round(within), why)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _cells(columns: dict[str, pa.Array | np.ndarray], people: pa.Array | None, measure: str) -> pd.DataFrame:
    frame = pd.DataFrame({name: _values(v) for name, v in columns.items()})
    if measure == "people":
        who = _values(people) if people is not None else np.full(len(frame), None, object)
        own = pd.isna(who)
        if own.any():  # a row without a person is a person of its own: an id no token equals
            who = who.copy()
            who[own] = [object() for _ in range(int(own.sum()))]
        frame["__person"] = who
        return frame.dropna(subset=list(columns)).drop_duplicates()
    return frame.dropna().value_counts().rename("n").reset_index() if len(frame.columns) else frame


def _values(v) -> np.ndarray:
    if isinstance(v, (pa.Array, pa.ChunkedArray)):
        return np.asarray(v.to_pandas(), dtype=object)
    return np.asarray(v, dtype=object)


def _counted(frames: list[pd.DataFrame], keys: list[str], measure: str) -> pd.DataFrame:
    frame = pd.concat(frames, ignore_index=True)
    if measure == "people":
        return frame.drop_duplicates().groupby(keys, dropna=True).size().rename("n").reset_index()
    return frame.groupby(keys, dropna=True)["n"].sum().reset_index()


def _sum(frames: list[pd.DataFrame], keys: list[str]) -> pd.Series:
    if not frames:
        return pd.Series(dtype=float)
    return pd.concat(frames, ignore_index=True).groupby(keys)["n"].sum()
