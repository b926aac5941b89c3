"""The DP tables' policy (policies/dp/tables.yaml) is checked before anything runs: a release's
tables may not spend more than its epsilon, a sum is clipped, every table bounds a person's cells."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from flows.runtime.paths import POLICIES
from transforms.dp_policy import DPPolicyError, load

SHIPPED = POLICIES / "dp" / "tables.yaml"


def _with(tmp_path, change):
    document = yaml.safe_load(SHIPPED.read_text("utf-8"))
    change(document)
    path = tmp_path / "tables.yaml"
    path.write_text(yaml.safe_dump(document), "utf-8")
    return path


def test_the_shipped_policy_spends_the_release_budget_and_no_more():
    policy = load(SHIPPED)
    assert policy.release.epsilon == 1.0 and policy.release.privacy_unit == "customer"
    assert policy.release.lifetime_epsilon == 3.0  # "a few epsilon at most" (issue 35), signed with the policy
    assert sum(policy.epsilon(name) for name in policy.tables) == pytest.approx(policy.release.epsilon)


@given(st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=6))
def test_a_release_is_refused_exactly_when_its_tables_spend_more_than_its_epsilon(percents):
    """Shares in hundredths: the loader accepts them when they add up to at most 1, never above."""
    import tempfile
    from pathlib import Path

    def change(document):
        template = next(iter(document["tables"].values()))
        document["tables"] = {f"t{i}": {**template, "share": p / 100} for i, p in enumerate(percents)}

    with tempfile.TemporaryDirectory() as folder:
        path = _with(Path(folder), change)
        if sum(percents) <= 100:
            assert load(path).tables
        else:
            with pytest.raises(DPPolicyError, match="more than all of it"):
                load(path)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d["tables"]["revenue_by_month_category"]["measure"].pop("clip"), "clips it"),
        (lambda d: d["tables"]["buyers_by_month_country"].update(cells_per_person=0), "cells_per_person"),
        (lambda d: d["tables"]["buyers_by_month_country"].update(grain=["doc_no"]), "grain"),
        (lambda d: d["tables"]["buyers_by_month_country"].update(grain=["nationality"]), "time unit"),
        (lambda d: d.pop("review"), "review"),
        (lambda d: d["review"].update(max_expected_error=0), "review.max_expected_error"),
        (lambda d: d["release"].update(epsilon=0), "release.epsilon"),
        (lambda d: d["release"].update(delta=0.01), "release.delta"),
        (lambda d: d["release"].update(lifetime_epsilon=0.5), "more than the lifetime ceiling"),
        (lambda d: d["release"].update(lifetime_epsilon=50), "release.lifetime_epsilon"),
    ],
)
def test_a_table_without_its_bounds_is_refused_naming_it(tmp_path, change, says):
    with pytest.raises(DPPolicyError, match=says):
        load(_with(tmp_path, change))


def test_every_grain_and_measure_a_policy_may_name_is_explained_to_analysts():
    """The data dictionary and the views' comments take their words from MEANING: a grain or a
    measure added to the policy's vocabulary without one would publish a column nobody explains."""
    import typing

    from transforms.dp_policy import MEANING, Grain, Measure

    kinds = typing.get_args(Measure.model_fields["kind"].annotation)
    assert set(typing.get_args(Grain)) | set(kinds) == set(MEANING)
    assert all(MEANING[k].format(column="amount") for k in kinds)
