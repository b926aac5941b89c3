"""The privacy criteria (transforms/criteria.py) judge a class the same in numpy and in SQL, and
a class exactly at the bound holds."""

from __future__ import annotations

import math

import duckdb
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.criteria import PEOPLE, KAnonymity, LDiversity, PrivacyModel


@settings(max_examples=80)
@given(
    st.integers(2, 12),
    st.floats(1.0, 6.0),
    st.sampled_from(["distinct", "entropy"]),
    st.lists(st.tuples(st.integers(0, 15), st.integers(1, 8), st.floats(0.0, 3.0)), min_size=1, max_size=30),
)
def test_numpy_and_sql_judge_every_class_alike(k, l, measure, classes):
    people, distinct, entropy = (np.array(c, float) for c in zip(*classes))
    entropy = np.minimum(entropy, np.log(distinct))  # entropy never exceeds log(distinct values)
    model = PrivacyModel(k, (LDiversity("s", l, measure),))
    expected = model.fails({PEOPLE: people, ("distinct", "s"): distinct, ("entropy", "s"): entropy})
    con = duckdb.connect()
    con.execute("CREATE TABLE c (people DOUBLE, d DOUBLE, h DOUBLE)")
    con.executemany("INSERT INTO c VALUES (?, ?, ?)", list(zip(people.tolist(), distinct.tolist(), entropy.tolist())))
    sql = model.sql_fails({PEOPLE: "people", ("distinct", "s"): "d", ("entropy", "s"): "h"})
    found = [row[0] for row in con.execute(f"SELECT {sql} FROM c ORDER BY rowid").fetchall()]
    assert found == expected.tolist()


def test_a_class_exactly_at_the_bound_holds_and_one_below_fails():
    assert not KAnonymity(5).fails({PEOPLE: 5}) and KAnonymity(5).fails({PEOPLE: 4})
    assert not LDiversity("s", 2).fails({("distinct", "s"): 2}) and LDiversity("s", 2).fails({("distinct", "s"): 1})
    even = -sum(p * math.log(p) for p in [1 / 3] * 3)  # three values, evenly: entropy log(3), computed as a sum
    entropy = {("entropy", "s"): even}
    assert not LDiversity("s", 3, "entropy").fails(entropy) and LDiversity("s", 3.01, "entropy").fails(entropy)
    assert not LDiversity("s", 3, "entropy").fails_effective(math.exp(even))
    assert LDiversity("s", 2, "distinct").fails_effective(1)


def test_a_model_asks_for_each_statistic_once_and_judges_with_every_criterion():
    """The model's needs are the union of its criteria's, in order, each once; a class fails when
    any criterion fails it."""
    model = PrivacyModel(5, (LDiversity("a", 2), LDiversity("a", 2, "entropy"), LDiversity("b", 3)), m=3)
    assert model.needs == (PEOPLE, ("distinct", "a"), ("entropy", "a"), ("distinct", "b"))
    assert model.sensitive == ("a", "b") and len(model.criteria) == 4
    stats = {PEOPLE: np.array([5, 5, 4]), ("distinct", "a"): np.array([2, 1, 2]), ("entropy", "a"): np.log([2, 2, 2])}
    stats[("distinct", "b")] = np.array([3, 3, 3])
    assert model.fails(stats).tolist() == [False, True, True]
