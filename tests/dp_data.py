"""What the DP guarantee tests share (tests/transforms/test_dp_guarantee.py, tests/transforms/test_dp_neighbours.py):
raw rows of a crowd and of one customer with a thousand lines, the shipped tables' mechanisms
resolved once and run on data many times, and the exact tables and noise law to compare with."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
from scipy import stats

from flows.runtime.paths import POLICIES
from transforms import dp_policy, dp_tables

LEVEL = 1e-6
DAY = dt.date(2026, 5, 31)  # a Sunday: the next day is in another ISO week and another month
DAYS = [DAY, DAY + dt.timedelta(days=1)]
CALENDAR = dp_tables.Calendar(DAYS, POLICIES / "hierarchies")
SHIPPED = dp_policy.load(POLICIES / "dp" / "tables.yaml")
STORES = CALENDAR.column("store.csv", 0)
ABROAD = ["FRA", "DEU", "ITA", "ESP", "GBR", "NLD", "BEL", "CHE", "AUT", "SWE"]
CATEGORIES = CALENDAR.column("product.csv", 2)
HEAVY = 10**6  # the customer with a thousand lines


def crowd_rows(people: int = 300, seed: int = 1) -> dict[str, pl.DataFrame]:
    """Raw rows of a day (after linking: each with its `person`): a few lines per customer, a few
    cases; no one beyond any shipped table's bounds."""
    rng = np.random.default_rng(seed)
    lines = rng.integers(1, 4, people)
    person = np.repeat(np.arange(people), lines)
    pos = pl.DataFrame(
        {
            "person": person,
            "txn_time": [
                f"{DAY} {h:02d}:{m:02d}:00" for h, m in zip(rng.integers(9, 22, len(person)), rng.integers(0, 60, len(person)))
            ],
            "store_code": rng.choice(STORES, len(person)),
            "nationality": rng.choice(["CHN", "JPN", "KOR", "USA"], people)[person],  # one a customer
            "category": rng.choice(CATEGORIES, len(person)),
            "amount": [f"{a:.2f}" for a in rng.uniform(50, 2500, len(person))],
        }
    )
    cases = pl.DataFrame(
        {
            "person": rng.choice(people, 60, replace=False),  # one case each: no one truncated
            "created_at": [f"{DAY} 12:00:00"] * 60,
            "case_type": rng.choice(CALENDAR.column("case_type.csv", 0), 60),
        }
    )
    return {"pos": pos, "after_sales": cases}


def heavy_rows(cells: int, ids: list[int] | None = None) -> dict[str, pl.DataFrame]:
    """A thousand POS lines of 9,000 CNY and a thousand cases, spread so that they fall in `cells`
    cells of every table (cell c: day c // 5, so week and month too, store and category c % 5,
    hour 10 + c, the c-th nationality of a customer with many passports, case type c % 5), or in
    min(cells, 5) of a table by month and category; under one person id, or spread
    over `ids` (a customer the linking failed to join)."""
    assert cells <= 10
    ids = ids or [HEAVY]
    n = 1000
    which = np.arange(n) % cells
    types = CALENDAR.column("case_type.csv", 0)
    who = np.array(ids)[np.arange(n) % len(ids)]
    day = [DAYS[c // 5] for c in which]
    pos = pl.DataFrame(
        {
            "person": who,
            "txn_time": [f"{d} {10 + c:02d}:30:00" for d, c in zip(day, which)],
            "store_code": [STORES[c % 5] for c in which],
            "nationality": [ABROAD[c] for c in which],
            "category": [CATEGORIES[c % 5] for c in which],
            "amount": ["9000.00"] * n,
        }
    )
    cases = pl.DataFrame(
        {"person": who, "created_at": [f"{d} 15:00:00" for d in day], "case_type": [types[c % 5] for c in which]}
    )
    return {"pos": pos, "after_sales": cases}


def joined(*parts: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    return {source: pl.concat([p[source] for p in parts], how="vertical_relaxed") for source in ("pos", "after_sales")}


def frame_of(policy: dp_policy.DPPolicy, rows: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return pl.concat([dp_tables.contributions(name, t, rows[t.source], CALENDAR) for name, t in policy.tables.items()])


class Mechanisms:
    """Each table's mechanism, resolved once, run on any contributions frame of the same shape."""

    def __init__(self, policy: dp_policy.DPPolicy, frame: pl.DataFrame):
        context = dp_tables.context(policy, frame)
        self.policy = policy
        self.found = {name: dp_tables.measurement(context, policy, name, CALENDAR) for name in policy.tables}
        self.lost = {name: dp_tables.lost_measurement(context, policy, name) for name in policy.tables}
        self.keys = {name: dp_tables.keys(t, CALENDAR).select("cell") for name, t in policy.tables.items()}

    def scale(self, name: str) -> np.ndarray:
        """The declared noise scale of each cell, in published units (a sum's is its clip's)."""
        return float(self.found[name][1]["scale"]) * dp_tables.factors(self.policy.tables[name], CALENDAR)

    def draw(self, name: str, frame: pl.DataFrame) -> np.ndarray:
        """One release of the table from `frame`: its cells' values as the mechanism draws them, in
        published units and the keys' order, before post-processing (which can only help: tests
        of the guarantee hold for what it is applied to)."""
        out = self.found[name][0](dp_tables.shuffled(frame).lazy()).collect()
        return dp_tables.scaled(out, self.policy.tables[name], CALENDAR)["value"].to_numpy()

    def lost_in_scales(self, name: str, frame: pl.DataFrame) -> float:
        """One release of the table's estimate of what bounding took (published in its metadata),
        in units of its noise scale."""
        mechanism, summary = self.lost[name]
        return float(mechanism(dp_tables.shuffled(frame).lazy()).collect()["value"][0]) / float(summary["scale"])


def exact_table(policy: dp_policy.DPPolicy, name: str, frame: pl.DataFrame) -> np.ndarray:
    """The table without noise, for data in which no one needs truncating."""
    table = policy.tables[name]
    mine = frame.filter(pl.col("table") == name)
    if table.measure.kind == "sum":  # contributions are clipped already, in UNITS of each cell's clip
        found = mine.group_by("cell").agg(pl.col("value").sum())
    else:
        found = mine.group_by("cell").agg(pl.len().cast(pl.Int64).alias("value"))
    keys = dp_tables.keys(table, CALENDAR).select("cell")
    units = keys.join(found, on="cell", how="left", maintain_order="left")["value"].fill_null(0).to_numpy()
    return np.round(units * dp_tables.factors(table, CALENDAR))


def discrete_laplace(scale: float) -> tuple[float, float]:
    """(p, variance): P(X = x) = (1 - p) / (1 + p) * p^|x|, p = exp(-1 / scale)."""
    p = math.exp(-1 / scale)
    return p, 2 * p / (1 - p) ** 2


def statistic(mechanisms: Mechanisms, frame: pl.DataFrame, heavy_cells: dict[str, np.ndarray]) -> float:
    """The customer's cells in every table and each table's estimate of what bounding took, each
    in units of its noise scale, summed: the whole release where their presence shows most (all
    of it moves by at most epsilon in these units)."""
    return sum(
        (mechanisms.draw(name, frame)[cells] / mechanisms.scale(name)[cells]).sum() + mechanisms.lost_in_scales(name, frame)
        for name, cells in heavy_cells.items()
        if len(cells)
    )


def within(d: tuple[int, int], other: tuple[int, int], epsilon: float) -> bool:
    """Whether P_D(E) <= e^epsilon P_D'(E) is consistent with (hits, draws) on each (Clopper-Pearson,
    LEVEL)."""
    (hits_d, n_d), (hits_other, n_other) = d, other
    low = stats.beta.ppf(LEVEL, hits_d, n_d - hits_d + 1) if hits_d else 0.0
    high = stats.beta.ppf(1 - LEVEL, hits_other + 1, n_other - hits_other) if hits_other < n_other else 1.0
    return low <= math.exp(epsilon) * high
