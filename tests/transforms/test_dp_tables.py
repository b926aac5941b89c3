"""What the DP tables publish from a mechanism's draw (transforms/dp_tables.cells): post-processing
that costs no privacy and can only help. At 874540f, 5 of the sample's 15 revenue cells were
negative (精品 on 2026-03-01: -624,536 CNY) and nothing marked a cell that was mostly noise."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from tests.dp_data import CALENDAR, SHIPPED
from transforms import dp_tables

TABLES = list(SHIPPED.tables)


@given(
    name=st.sampled_from(TABLES),
    seed=st.integers(0, 2**32 - 1),
    spread=st.sampled_from([1, 50, 5_000, 500_000]),
    margin=st.floats(0, 100, allow_nan=False),
)
def test_a_published_cell_is_never_further_from_any_true_value_than_the_draw_and_says_when_it_is_mostly_noise(
    name, seed, spread, margin
):
    """For every cell and every possible true value of a measure that cannot be negative (>= 0):
    the published value is >= 0 and no further from it than the mechanism's draw; `uncertain`
    is exactly `margin_95 >= |value|`."""
    table = SHIPPED.tables[name]
    keys = dp_tables.keys(table, CALENDAR)
    rng = np.random.default_rng(seed)
    noisy = pl.DataFrame({"cell": keys["cell"], "value": rng.integers(-spread, spread, keys.height)})
    drawn = dp_tables.scaled(noisy, table, CALENDAR)["value"].to_numpy()
    published = dp_tables.cells(noisy, table, CALENDAR, margin)
    value, bars = published["value"].to_numpy(), published["margin_95"].to_numpy()
    assert dp_tables.non_negative(table)
    assert published.column_names[-5:] == ["value", "margin_95", "low_95", "high_95", "uncertain"]
    assert (value >= 0).all() and (value == np.maximum(drawn, 0)).all()
    for truth in (np.zeros(len(value)), np.abs(drawn), rng.integers(0, spread, len(value)).astype(float)):
        assert (np.abs(value - truth) <= np.abs(drawn - truth)).all()
    assert published["uncertain"].to_pylist() == list(bars >= np.abs(value))


def test_a_sum_that_may_be_negative_keeps_its_negative_cells():
    """A sum clipped below 0 (refunds counted) can be negative in truth: its cells are not raised."""
    declared = SHIPPED.tables["revenue_by_month_category"]
    measure = declared.measure.model_copy(update={"clip": (-1000.0, 20000.0)})
    table = declared.model_copy(update={"measure": measure})
    keys = dp_tables.keys(table, CALENDAR)
    noisy = pl.DataFrame({"cell": keys["cell"], "value": [-3] * keys.height})
    assert not dp_tables.non_negative(table)
    assert (dp_tables.cells(noisy, table, CALENDAR, 1.0)["value"].to_numpy() < 0).any()


def test_what_bounding_takes_is_counted_per_customer_beyond_their_limit_only():
    """A customer with a thousand lines in five cells of each table and a crowd of a few lines
    each: only that customer loses to the limits (three cells beyond 2, four beyond 1), and the
    crowd nothing. At the first build a customer below the limit counted the cap (an unsigned count minus
    the limit wrapped around), and the intervals were wider than they needed to be."""
    from tests.dp_data import crowd_rows, frame_of, heavy_rows, joined

    frame = frame_of(SHIPPED, joined(crowd_rows(), heavy_rows(5)))
    lost = dict(frame.filter(pl.col("table").str.ends_with(dp_tables.LOST)).group_by("table").agg(pl.col("value").sum()).rows())
    assert lost["buyers_by_month_country" + dp_tables.LOST] == 5 - SHIPPED.tables["buyers_by_month_country"].cells_per_person
    # a row count: every row beyond rows_per_cell in a cell, and beyond cells_per_person cells (capped)
    assert lost["cases_by_week_type" + dp_tables.LOST] == dp_tables.lost_cap(SHIPPED.tables["cases_by_week_type"])
    assert all(0 <= v for v in lost.values())


def test_a_tables_lost_cap_bounds_what_one_customer_adds_to_the_estimate():
    """The loss estimate's sensitivity is the cap: a customer far beyond the bounds counts up to
    lost_cap x what they may give the table, no more (the shipped lines table: 10 x 12 lines)."""
    from tests.dp_data import crowd_rows, frame_of, heavy_rows, joined

    lines = SHIPPED.tables["lines_by_week_category_channel"]
    assert dp_tables.lost_cap(lines) == lines.lost_cap * lines.cells_per_person * lines.rows_per_cell == 120
    frame = frame_of(SHIPPED, joined(crowd_rows(), heavy_rows(5)))  # a thousand lines in five cells
    lost = frame.filter(pl.col("table") == "lines_by_week_category_channel" + dp_tables.LOST)
    assert lost["value"].max() == 120 and lost.filter(pl.col("value") > 0).height == 1
    lower = lines.model_copy(update={"lost_cap": 3})
    rows = joined(crowd_rows(), heavy_rows(5))["pos"]
    again = dp_tables.contributions("t", lower, rows, CALENDAR)
    assert again.filter(pl.col("table") == "t" + dp_tables.LOST)["value"].max() == 36
