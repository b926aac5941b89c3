"""`tuomin assess` and the metrics behind it, checked against pycanon's own figures."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from flows.cli import app
from flows.cli.measure import ASSESS_KEYS
from tests.examples import examples
from transforms import metrics
from transforms.criteria import LDiversity, PrivacyModel

ORACLE = Path(__file__).parents[1] / "data" / "oracle"
STUDENTS = ["Teacher", "Gender", "Ethnic", "Freeredu", "wesson"]
ADULT = ["age", "education", "occupation", "relationship", "sex", "native-country"]
EXPECTED = json.loads((ORACLE / "pycanon.json").read_text())


def _case(name):
    return (STUDENTS, ["Score"]) if name.startswith("Students") else (ADULT, ["salary-class"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_agrees_with_pycanon_on_its_own_data(name):
    qi, sensitive = _case(name)
    got = metrics.assess(pd.read_csv(ORACLE / name), qi, sensitive)
    want = EXPECTED[name]
    assert got["k"] == want["k"] and got["l_distinct"] == want["l_distinct"]
    assert math.floor(got["l_entropy"] + 1e-9) == want["l_entropy"]  # pycanon reports the integer part
    assert got["t_closeness"] == pytest.approx(want["t_closeness"], rel=1e-9)


@pytest.mark.parametrize("name", ["StudentsMath_Score_k5.csv", "adult_k3_anonymized_l2.csv"])
def test_sparse_and_dense_counting_agree(name, monkeypatch):
    qi, sensitive = _case(name)
    frame = pd.read_csv(ORACLE / name)
    dense = metrics.assess(frame, qi, sensitive)
    monkeypatch.setattr(metrics, "_DENSE_CELLS", 0)
    sparse = metrics.assess(frame, qi, sensitive)
    assert sparse["l_distinct"] == dense["l_distinct"]
    assert sparse["l_entropy"] == pytest.approx(dense["l_entropy"])
    assert sparse["t_closeness"] == pytest.approx(dense["t_closeness"])


def test_entity_level_figures():
    frame = pd.DataFrame({"city": ["SH"] * 4 + ["BJ"] * 3 + [None] * 2, "who": ["a", "a", "a", "b", "c", "d", "e", None, None]})
    by_rows = metrics.assess(frame, ["city"])
    by_people = metrics.assess(frame, ["city"], entity="who")
    assert (by_rows["k"], by_rows["classes"]) == (2, 3)  # the null city is a class of its own
    assert by_people["k"] == 2 and by_people["prosecutor_risk_max"] == 0.5  # SH: a and b; null: two unknowns
    assert by_people["discernibility"] == 2**2 + 3**2 + 2**2
    assert by_people["prosecutor_risk_avg"] == pytest.approx(3 / 7)


def test_population_risk():
    sample = pd.DataFrame({"age": ["30-39"] * 3 + ["40-49"] * 2})
    population = pd.DataFrame({"age": ["30-39", "40-49"], "count": [300, 4]})
    risk = metrics.population_risk(sample, ["age"], population)
    assert risk["journalist_risk_max"] == pytest.approx(1 / 4)
    assert risk["marketer_risk"] == pytest.approx((3 / 300 + 2 / 4) / 5)


def test_cli_json_has_exactly_the_documented_keys():
    result = CliRunner().invoke(
        app,
        [
            "assess",
            str(ORACLE / "adult_k10_anonymized_l2.csv"),
            "--qi",
            ",".join(ADULT),
            "--sensitive",
            "salary-class",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert tuple(out) == ASSESS_KEYS
    assert (out["k"], out["l_distinct"]) == (10, 2)
    assert out["t_closeness"] == pytest.approx(EXPECTED["adult_k10_anonymized_l2.csv"]["t_closeness"])


def test_cli_names_missing_columns():
    result = CliRunner().invoke(app, ["assess", str(ORACLE / "StudentsMath_Score.csv"), "--qi", "Teacher,Nope"])
    assert result.exit_code == 2 and "Nope" in result.output


def test_cli_reads_a_warehouse_dataset_with_its_own_metadata(published):
    result = CliRunner().invoke(
        app,
        [
            "assess",
            "dataset=membership",
            "--warehouse",
            str(published.warehouse),
            "--sensitive",
            "lifetime_spend",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["k"] >= 1 and out["l_distinct"] >= 1  # the union of partitions: issue 7's review asks more of it
    one = next(published.warehouse.glob("dataset=membership/*/*.parquet"))
    single = json.loads(CliRunner().invoke(app, ["assess", str(one), "--sensitive", "lifetime_spend", "--format", "json"]).output)
    assert single["k"] >= 5 and single["l_distinct"] >= 2  # what the policy requires of each file


def test_class_ids_on_wide_tables_do_not_overflow():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"c{i}": rng.integers(0, 50_000, 2000) for i in range(6)})
    ids = metrics.class_ids(frame, list(frame.columns))
    assert len(np.unique(ids)) == len(frame.drop_duplicates())


def test_profile_uniqueness_counts_customers_by_their_set_of_classes():
    frame = pd.DataFrame({"store": ["A", "B", "A", "B", "A", "C"], "who": ["x", "x", "y", "y", "z", "w"]})
    linked = metrics.profile_uniqueness(frame, ["store"], "who")
    # x and y share {A, B}; z alone has {A}; w alone has {C}. Every class has >= 1 row, k is no help here.
    assert linked == {"entities": 4, "profile_unique": 2, "profile_unique_share": 0.5}


@given(st.lists(st.tuples(st.sampled_from("ABC"), st.integers(0, 6)), min_size=1, max_size=60))
@examples(80)
def test_profile_uniqueness_bounds(rows):
    frame = pd.DataFrame(rows, columns=["store", "who"])
    linked = metrics.profile_uniqueness(frame, ["store"], "who")
    assert linked["entities"] == frame["who"].nunique()
    assert 0 <= linked["profile_unique_share"] <= 1
    one_class = metrics.profile_uniqueness(frame.assign(store="A"), ["store"], "who")
    assert one_class["profile_unique"] == (1 if one_class["entities"] == 1 else 0)  # nothing distinguishes anyone


@given(
    st.lists(
        st.tuples(st.sampled_from("AB"), st.sampled_from(["x", "y", None]), st.integers(0, 9), st.sampled_from("pqr")),
        min_size=1,
        max_size=80,
    ),
    st.integers(1, 4),
    st.sampled_from(["distinct", "entropy"]),
)
@examples(200)
def test_failing_marks_exactly_the_classes_below_k_or_l(rows, k, measure):
    """What erasure suppresses after removing a person: whole classes, exactly those with fewer
    than k people or below l; what stays is k-anonymous and l-diverse."""
    df = pd.DataFrame(rows, columns=["a", "b", "person", "s"])
    fails = metrics.failing(df, ["a", "b"], PrivacyModel(k, (LDiversity("s", 2.0, measure),)), "person")
    for _, group in df.groupby(["a", "b"], dropna=False):
        shares = group["s"].value_counts(normalize=True)
        l = len(shares) if measure == "distinct" else math.exp(-(shares * np.log(shares)).sum())
        expected = group["person"].nunique() < k or l < 2.0 - 1e-9
        assert (fails[group.index] == expected).all()
    kept = df[~fails]
    if len(kept):
        assert metrics.k_anonymity(kept, ["a", "b"], "person") >= k
        figures = metrics.sensitive_figures(metrics.class_ids(kept, ["a", "b"]), kept["s"])
        assert figures["l_distinct" if measure == "distinct" else "l_entropy"] >= 2.0 - 1e-9
