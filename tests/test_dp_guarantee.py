"""The DP tables tested as the guarantee they claim (issue 22), on the mechanisms the release runs
(transforms/dp_tables.py: OpenDP resolved once per table, then run on data many times):

- the noise follows its declared distribution and scale (goodness of fit over many draws);
- a customer with a thousand lines moves each table by at most its declared bound;
- on two neighbouring datasets (one customer removed), no event of the whole release's output is
  more than e^epsilon times likelier on one than on the other, while the same check catches a
  customer who was not linked as one (their lines counted as fifty people's);
- the accounting: one context refuses to spend beyond the release's epsilon.

Noise is random (OpenDP draws it from the OS; it takes no seed), so each statistical assertion is
made at a level (1e-6) where a correct mechanism fails it about once in a million runs, and each
is paired with a wrong alternative it must reject, so that the test can fail.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from flows.runtime.paths import POLICIES
from transforms import dp_policy, dp_tables

LEVEL = 1e-6
DAY = dt.date(2026, 3, 1)  # a Sunday: the next day is in another ISO week
DAYS = [DAY, DAY + dt.timedelta(days=1)]
CALENDAR = dp_tables.Calendar(DAYS, POLICIES / "hierarchies")
SHIPPED = dp_policy.load(POLICIES / "dp" / "tables.yaml")
STORES = CALENDAR.column("store.csv", 0)
ABROAD = ["FRA", "DEU", "ITA", "ESP", "GBR", "NLD", "BEL", "CHE", "AUT", "SWE"]
CATEGORIES = CALENDAR.column("product.csv", 2)
HEAVY = 10**6  # the customer with a thousand lines


def _crowd(people: int = 300, seed: int = 1) -> dict[str, pl.DataFrame]:
    """Raw rows of a day (after linking: each with its `person`): a few lines per customer, a few cases."""
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
            "nationality": rng.choice(["CHN", "JPN", "KOR", "USA"], len(person)),
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


def _heavy(cells: int, ids: list[int] | None = None) -> dict[str, pl.DataFrame]:
    """A thousand POS lines of 9,000 CNY and a thousand cases, spread so that they fall in `cells`
    cells of every table (cell c: day c // 5, store and category c % 5, hour 10 + c, the c-th
    nationality of a customer with many passports, case type c % 5); under one person id, or spread
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


def _with(*parts: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    return {source: pl.concat([p[source] for p in parts], how="vertical_relaxed") for source in ("pos", "after_sales")}


def _frame(policy: dp_policy.DPPolicy, rows: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return pl.concat([dp_tables.contributions(name, t, rows[t.source], CALENDAR) for name, t in policy.tables.items()])


class Mechanisms:
    """Each table's mechanism, resolved once, run on any contributions frame of the same shape."""

    def __init__(self, policy: dp_policy.DPPolicy, frame: pl.DataFrame):
        context = dp_tables.context(policy, frame)
        self.policy = policy
        self.found = {name: dp_tables.measurement(context, policy, name, CALENDAR) for name in policy.tables}
        self.keys = {name: dp_tables.keys(t, CALENDAR).select("cell") for name, t in policy.tables.items()}

    def scale(self, name: str) -> np.ndarray:
        """The declared noise scale of each cell, in published units (a sum's is its clip's)."""
        return float(self.found[name][1]["scale"]) * dp_tables.factors(self.policy.tables[name], CALENDAR)

    def draw(self, name: str, frame: pl.DataFrame) -> np.ndarray:
        """One release of the table from `frame`: its cells' values as published, in the keys' order."""
        out = self.found[name][0](dp_tables.shuffled(frame).lazy()).collect()
        return dp_tables.cells(out, self.policy.tables[name], CALENDAR, 0.0)["value"].to_numpy()


def _exact(policy: dp_policy.DPPolicy, name: str, frame: pl.DataFrame) -> np.ndarray:
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


def _discrete_laplace(scale: float) -> tuple[float, float]:
    """(p, variance): P(X = x) = (1 - p) / (1 + p) * p^|x|, p = exp(-1 / scale)."""
    p = math.exp(-1 / scale)
    return p, 2 * p / (1 - p) ** 2


def _gof_pvalue(noise: np.ndarray, scale: float) -> float:
    """Chi-squared test of integer noise against the discrete Laplace of `scale`, bins of at least
    20 expected draws (tails pooled)."""
    p, _ = _discrete_laplace(scale)
    bound = int(scale * math.log(len(noise) / 40)) + 1  # beyond it, fewer than ~20 draws expected
    edges = np.arange(-bound, bound + 1)
    probs = (1 - p) / (1 + p) * p ** np.abs(edges)
    tail = p ** (bound + 1) / (1 + p)  # P(X > bound) = P(X < -bound)
    observed = np.concatenate([[np.sum(noise < -bound)], [np.sum(noise == e) for e in edges], [np.sum(noise > bound)]])
    expected = np.concatenate([[tail], probs, [tail]]) * len(noise)
    return float(stats.chisquare(observed, expected).pvalue)


def test_the_noise_follows_its_declared_distribution_and_scale():
    """2,000 releases of the cases table on fixed data in which no one is truncated: value minus
    the exact count is integer Laplace of the scale OpenDP declared (and that the file records);
    the same draws reject a scale 15% off either way, and at least 95% fall within the margin."""
    policy = dp_policy.DPPolicy.model_validate(
        {"release": {"epsilon": 1.0}, "tables": {"cases": {**SHIPPED.tables["cases_by_week_type"].model_dump(), "share": 1.0}}}
    )
    frame = _frame(policy, _crowd())
    mechanisms = Mechanisms(policy, frame)
    exact = _exact(policy, "cases", frame)
    noise = np.concatenate([mechanisms.draw("cases", frame) - exact for _ in range(2000)])
    scale = float(mechanisms.scale("cases")[0])  # a count: the same for every cell
    assert scale == pytest.approx(policy.tables["cases"].cells_per_person / 1.0)  # sensitivity / epsilon
    assert _gof_pvalue(noise, scale) > LEVEL
    assert _gof_pvalue(noise, scale * 0.85) < LEVEL and _gof_pvalue(noise, scale * 1.15) < LEVEL
    margin = float(mechanisms.found["cases"][1]["accuracy"])
    p, _ = _discrete_laplace(scale)
    within = 1 - 2 * p ** (math.floor(margin) + 1) / (1 + p)  # P(|X| <= margin): at least 95% (integers)
    assert within >= 0.95 and np.mean(np.abs(noise) <= margin) == pytest.approx(within, abs=0.01)


@pytest.mark.parametrize("name", list(SHIPPED.tables))
def test_a_customer_with_a_thousand_lines_moves_a_table_by_at_most_its_bound(name):
    """Each shipped table alone at epsilon 10 (little noise): a thousand-line customer in one cell
    more than allowed moves each of their cells by at most its bound (one person; a sum's clip for
    the cell's category), and the table by a random choice of cells_per_person of them, within six
    standard errors of the declared noise; clipping and the cell limit are both needed for that."""
    table = SHIPPED.tables[name]
    policy = dp_policy.DPPolicy.model_validate(
        {"release": {"epsilon": 10.0}, "tables": {name: {**table.model_dump(), "share": 1.0}}}
    )
    spread = table.cells_per_person + 1  # one cell more than the table keeps
    crowd, heavy = _frame(policy, _crowd()), _frame(policy, _with(_crowd(), _heavy(spread)))
    mechanisms = Mechanisms(policy, crowd)
    draws = 1500 if table.measure.kind == "sum" else 300  # a sum's noise is in CNY: more draws to tell a cell apart
    moved = np.mean([mechanisms.draw(name, heavy) - mechanisms.draw(name, crowd) for _ in range(draws)], axis=0)
    variance = np.array([_discrete_laplace(s)[1] for s in mechanisms.scale(name)])
    error = 6 * np.sqrt(2 * variance / draws)  # six standard errors of each cell's mean change
    theirs = _exact(policy, name, heavy.filter(pl.col("person") == HEAVY)) > 0
    assert theirs.sum() == spread
    bounds = dp_tables.cell_bounds(table, CALENDAR)  # what one person gives each cell, at most
    assert np.all(np.abs(moved[~theirs]) <= error[~theirs])  # no one else's cell moves
    assert np.all(moved[theirs] <= bounds[theirs] + error[theirs])
    # a random choice of cells_per_person of their cells, each moved by its bound
    expected = bounds[theirs].sum() * table.cells_per_person / spread
    total_error = 6 * math.sqrt(np.sum(2 * variance[theirs] / draws))
    assert moved[theirs].sum() == pytest.approx(expected, abs=total_error)
    # without the cell limit it would have moved by all their cells' bounds (unclipped, by far more)
    assert abs(moved[theirs].sum() - bounds[theirs].sum()) > total_error


def _statistic(mechanisms: Mechanisms, frame: pl.DataFrame, heavy_cells: dict[str, np.ndarray]) -> float:
    """The customer's cells in every table, each in units of its noise scale, summed: where their
    presence shows most (their cells move by at most epsilon in these units in all)."""
    return sum(
        (mechanisms.draw(name, frame)[cells] / mechanisms.scale(name)[cells]).sum()
        for name, cells in heavy_cells.items()
        if len(cells)
    )


def _within(hits_d: int, hits_other: int, n: int, epsilon: float) -> bool:
    """Whether P_D(E) <= e^epsilon P_D'(E) is consistent with the counts (Clopper-Pearson, LEVEL)."""
    low = stats.beta.ppf(LEVEL, hits_d, n - hits_d + 1) if hits_d else 0.0
    high = stats.beta.ppf(1 - LEVEL, hits_other + 1, n - hits_other) if hits_other < n else 1.0
    return low <= math.exp(epsilon) * high


def test_two_neighbouring_datasets_stay_within_e_to_the_epsilon_and_an_unlinked_customer_does_not():
    """D: a crowd and one customer with a thousand lines in as many cells as each table keeps, and
    500 cases. D': the crowd. The event: the whole release's value in that customer's cells above
    the 95th percentile it has on D' (fixed on a separate calibration batch). Its probability on D
    is at most e^epsilon (epsilon 1, the release's) times its probability on D'. The same customer
    counted as fifty people (their documents not linked) breaks the bound, and the check says so."""
    policy = SHIPPED
    crowd = _with(_crowd())
    neighbour, dataset = _frame(policy, crowd), _frame(policy, _with(crowd, _heavy(4)))
    unlinked = _frame(policy, _with(crowd, _heavy(4, ids=list(range(HEAVY, HEAVY + 50)))))
    mechanisms = Mechanisms(policy, neighbour)
    cells = {name: np.flatnonzero(_exact(policy, name, dataset.filter(pl.col("person") == HEAVY)) > 0) for name in policy.tables}
    assert all(len(found) == 4 for found in cells.values())
    threshold = np.quantile([_statistic(mechanisms, neighbour, cells) for _ in range(300)], 0.95)
    n = 600
    hits = {
        label: sum(_statistic(mechanisms, frame, cells) > threshold for _ in range(n))
        for label, frame in (("D", dataset), ("D'", neighbour), ("unlinked", unlinked))
    }
    epsilon = policy.release.epsilon
    assert _within(hits["D"], hits["D'"], n, epsilon)
    assert not _within(hits["unlinked"], hits["D'"], n, epsilon)


def test_one_context_spends_the_release_epsilon_and_refuses_more():
    """The shipped tables resolve at their shares, which add up to the release's epsilon; a query
    beyond that is refused by OpenDP itself."""
    frame = _frame(SHIPPED, _crowd())
    context = dp_tables.context(SHIPPED, frame)
    for name in SHIPPED.tables:
        mechanism, _ = dp_tables.measurement(context, SHIPPED, name, CALENDAR)
        context(mechanism)
    assert sum(SHIPPED.epsilon(n) for n in SHIPPED.tables) == pytest.approx(SHIPPED.release.epsilon)
    with pytest.raises(Exception, match="insufficient budget|privacy loss"):
        mechanism, _ = dp_tables.measurement(context, SHIPPED, "cases_by_week_type", CALENDAR)
        context(mechanism)
