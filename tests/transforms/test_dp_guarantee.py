"""The DP tables tested as the guarantee they claim (issue 22), on the mechanisms the release runs
(transforms/dp_tables.py: OpenDP resolved once per table, then run on data many times):

- the noise follows its declared distribution and scale (goodness of fit over many draws);
- a customer with a thousand lines moves each table by at most its declared bound;
- the accounting: one context refuses to spend beyond the release's epsilon.

The distinguishing test on neighbouring datasets is tests/transforms/test_dp_neighbours.py (a file of its own
so that the test runner gives it a worker of its own). Noise is random (OpenDP draws it from the
OS; it takes no seed), so each statistical assertion is made at a level (1e-6) where a correct
mechanism fails it about once in a million runs, and each is paired with a wrong alternative it
must reject, so that the test can fail.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from tests.dp_data import (
    CALENDAR,
    HEAVY,
    LEVEL,
    SHIPPED,
    Mechanisms,
    crowd_rows,
    discrete_laplace,
    exact_table,
    frame_of,
    heavy_rows,
    joined,
)
from transforms import dp_policy, dp_tables


def _gof_pvalue(noise: np.ndarray, scale: float) -> float:
    """Chi-squared test of integer noise against the discrete Laplace of `scale`, bins of at least
    20 expected draws (tails pooled)."""
    p, _ = discrete_laplace(scale)
    bound = int(scale * math.log(len(noise) / 40)) + 1  # beyond it, fewer than ~20 draws expected
    edges = np.arange(-bound, bound + 1)
    probs = (1 - p) / (1 + p) * p ** np.abs(edges)
    tail = p ** (bound + 1) / (1 + p)  # P(X > bound) = P(X < -bound)
    observed = np.concatenate([[np.sum(noise < -bound)], [np.sum(noise == e) for e in edges], [np.sum(noise > bound)]])
    expected = np.concatenate([[tail], probs, [tail]]) * len(noise)
    return float(stats.chisquare(observed, expected).pvalue)


@pytest.mark.slow
def test_the_noise_follows_its_declared_distribution_and_scale():
    """2,000 releases of the cases table on fixed data in which no one is truncated: value minus
    the exact count is integer Laplace of the scale OpenDP declared (and that the file records);
    the same draws reject a scale 15% off either way, and at least 95% fall within the margin."""
    policy = dp_policy.DPPolicy.model_validate(
        {
            "release": {"epsilon": 1.0},
            "review": SHIPPED.review,
            "tables": {"cases": {**SHIPPED.tables["cases_by_week_type"].model_dump(), "share": 1.0}},
        }
    )
    frame = frame_of(policy, crowd_rows())
    mechanisms = Mechanisms(policy, frame)
    exact = exact_table(policy, "cases", frame)
    noise = np.concatenate([mechanisms.draw("cases", frame) - exact for _ in range(2000)])
    scale = float(mechanisms.scale("cases")[0])  # a count: the same for every cell
    # sensitivity / the cells' epsilon (the rest of the table's estimates what bounding took)
    assert scale == pytest.approx(policy.tables["cases"].cells_per_person / (1.0 * (1 - dp_tables.BIAS_SHARE)))
    assert _gof_pvalue(noise, scale) > LEVEL
    assert _gof_pvalue(noise, scale * 0.85) < LEVEL and _gof_pvalue(noise, scale * 1.15) < LEVEL
    margin = float(mechanisms.found["cases"][1]["accuracy"])
    p, _ = discrete_laplace(scale)
    within = 1 - 2 * p ** (math.floor(margin) + 1) / (1 + p)  # P(|X| <= margin): at least 95% (integers)
    assert within >= 0.95 and np.mean(np.abs(noise) <= margin) == pytest.approx(within, abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHIPPED.tables))
def test_a_customer_with_a_thousand_lines_moves_a_table_by_at_most_its_bound(name):
    """Each shipped table alone at epsilon 10 (little noise): a thousand-line customer in one cell
    more than allowed moves each of their cells by at most its bound (one person; a sum's clip for
    the cell's category), and the table by a random choice of cells_per_person of them, within six
    standard errors of the declared noise; clipping and the cell limit are both needed for that."""
    table = SHIPPED.tables[name]
    policy = dp_policy.DPPolicy.model_validate(
        {
            "release": {"epsilon": 10.0, "lifetime_epsilon": 10.0},
            "review": SHIPPED.review,
            "tables": {name: {**table.model_dump(), "share": 1.0}},
        }
    )
    spread = table.cells_per_person + 1  # one cell more than the table keeps
    crowd, heavy = frame_of(policy, crowd_rows()), frame_of(policy, joined(crowd_rows(), heavy_rows(spread)))
    mechanisms = Mechanisms(policy, crowd)
    draws = 1500 if table.measure.kind == "sum" else 300  # a sum's noise is in CNY: more draws to tell a cell apart
    moved = np.mean([mechanisms.draw(name, heavy) - mechanisms.draw(name, crowd) for _ in range(draws)], axis=0)
    variance = np.array([discrete_laplace(s)[1] for s in mechanisms.scale(name)])
    error = 6 * np.sqrt(2 * variance / draws)  # six standard errors of each cell's mean change
    theirs = exact_table(policy, name, heavy.filter(pl.col("person") == HEAVY)) > 0
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


def test_one_context_spends_the_release_epsilon_and_refuses_more():
    """The shipped tables resolve at their shares, which add up to the release's epsilon; a query
    beyond that is refused by OpenDP itself."""
    frame = frame_of(SHIPPED, crowd_rows())
    context = dp_tables.context(SHIPPED, frame)
    for name in SHIPPED.tables:  # each table's cells, and its estimate of what bounding took
        mechanism, _ = dp_tables.measurement(context, SHIPPED, name, CALENDAR)
        context(mechanism)
        estimate, _ = dp_tables.lost_measurement(context, SHIPPED, name)
        context(estimate)
    assert sum(SHIPPED.epsilon(n) for n in SHIPPED.tables) == pytest.approx(SHIPPED.release.epsilon)
    with pytest.raises(Exception, match="insufficient budget|privacy loss"):
        mechanism, _ = dp_tables.measurement(context, SHIPPED, "cases_by_week_type", CALENDAR)
        context(mechanism)
