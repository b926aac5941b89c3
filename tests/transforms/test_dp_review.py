"""The grain check at policy review (transforms/dp_review.py): a table whose typical cell, at the
shop's declared size, would be mostly noise is refused before anything is read, with the error
it would have; the check's margin is the one OpenDP calibrates for the release."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from flows.runtime.paths import POLICIES
from tests.dp_data import SHIPPED
from transforms import dp_policy, dp_review, dp_tables
from transforms.dp_policy import DPPolicyError

HIERARCHIES = POLICIES / "hierarchies"


def _policy(change) -> dp_policy.DPPolicy:
    document = yaml.safe_load((POLICIES / "dp" / "tables.yaml").read_text("utf-8"))
    change(document)
    return dp_policy.DPPolicy.model_validate(document)


def test_the_shipped_grains_pass_for_the_declared_shop():
    found = {e.table: e for e in dp_review.review(SHIPPED, HIERARCHIES)}
    assert set(found) == set(SHIPPED.tables)
    assert all(e.error <= SHIPPED.review.max_expected_error for e in found.values())
    country = found["buyers_by_month_country"]
    assert country.keys == 254 and country.cell == pytest.approx(15000 / 254)  # a month's buyers over the countries


@pytest.mark.parametrize(
    ("grain", "cells", "share", "cell", "error"),
    [
        # The grains shipped until issue 35's review: 5.6 buyers a store-hour against ±38, 2.6 a country against ±40.
        (["day", "store", "hour"], 4, 0.35, 670 / 120, 6.8),
        (["day", "nationality"], 3, 0.25, 670 / 254, 15.1),
    ],
)
def test_the_old_grains_are_refused_with_the_error_they_would_have(grain, cells, share, cell, error):
    def change(d):
        d["review"]["size"]["pos"]["people"]["day"] = 670  # the operator's buyers a day
        d["tables"] = {"buyers_by_month_country": {**d["tables"]["buyers_by_month_country"], "grain": grain}}
        d["tables"]["buyers_by_month_country"].update(cells_per_person=cells, share=share)  # as then

    policy = _policy(change)
    with pytest.raises(DPPolicyError, match=r"tables\.buyers_by_month_country: the grain is too fine") as refused:
        dp_review.review(policy, HIERARCHIES, "tables.yaml")
    message = str(refused.value)
    assert (
        "\n" not in message
        and f"expects {cell:,.1f} customers" in message
        and "more than review.max_expected_error 50%" in message
    )
    assert dp_review.expect(policy, "buyers_by_month_country", HIERARCHIES).error == pytest.approx(error, rel=0.05)


def test_a_size_the_table_needs_and_nobody_declared_is_refused_naming_it():
    policy = _policy(lambda d: d["review"]["size"]["pos"]["people"].pop("month"))
    with pytest.raises(DPPolicyError, match=r"buyers_by_month_country: review\.size\.pos\.people declares no month"):
        dp_review.review(policy, HIERARCHIES)
    policy = _policy(lambda d: d["review"]["size"]["pos"]["sums_per_day"].clear())
    with pytest.raises(DPPolicyError, match=r"revenue_by_month_category: .*sums_per_day declares no amount"):
        dp_review.review(policy, HIERARCHIES)


@given(st.floats(min_value=1, max_value=1e6), st.floats(min_value=0.05, max_value=1.0))
def test_a_table_is_refused_exactly_when_its_margin_exceeds_the_ceiling(rows_per_day, ceiling):
    def change(d):
        d["review"].update(max_expected_error=ceiling)
        d["review"]["size"]["after_sales"]["rows_per_day"] = rows_per_day
        d["tables"] = {"cases_by_week_type": d["tables"]["cases_by_week_type"]}

    policy = _policy(change)
    expected = dp_review.expect(policy, "cases_by_week_type", HIERARCHIES)
    assert expected.cell == pytest.approx(rows_per_day * 7 / 5)  # a week's cases over five types
    if expected.margin / expected.cell > ceiling:
        with pytest.raises(DPPolicyError, match="too fine"):
            dp_review.review(policy, HIERARCHIES)
    else:
        assert dp_review.review(policy, HIERARCHIES) == [expected]


@pytest.mark.parametrize("name", list(SHIPPED.tables))
def test_the_reviews_margin_is_the_one_opendp_calibrates(name):
    """The review computes the margin without data; the release's comes from OpenDP's own accuracy:
    the two agree."""
    import polars as pl

    calendar = dp_tables.Calendar(days=[dt.date(2026, 3, 2)], hierarchies=HIERARCHIES)
    frame = pl.DataFrame(schema={"table": pl.String, "person": pl.Int64, "cell": pl.String, "value": pl.Int64})
    context = dp_tables.context(SHIPPED, frame)
    _, summary = dp_tables.measurement(context, SHIPPED, name, calendar)
    bounds = dp_tables.factors(SHIPPED.tables[name], calendar)
    released = float(summary["accuracy"]) * float(bounds.mean())
    assert dp_review.expect(SHIPPED, name, HIERARCHIES).margin == pytest.approx(released, rel=1e-9)
