"""The privacy criteria (transforms/criteria.py) judge a class the same in numpy and in SQL, and
a class exactly at the bound holds."""

from __future__ import annotations

import math

import duckdb
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.criteria import KAnonymity, LDiversity


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
    criteria = (KAnonymity(k), LDiversity(l, measure))
    expected = criteria[0].fails(people) | criteria[1].fails(distinct, entropy)
    con = duckdb.connect()
    con.execute("CREATE TABLE c (people DOUBLE, d DOUBLE, h DOUBLE)")
    con.executemany("INSERT INTO c VALUES (?, ?, ?)", list(zip(people.tolist(), distinct.tolist(), entropy.tolist())))
    found = [
        row[0]
        for row in con.execute(
            f"SELECT {criteria[0].sql_fails('people')} OR {criteria[1].sql_fails('d', 'h')} FROM c ORDER BY rowid"
        ).fetchall()
    ]
    assert found == expected.tolist()


def test_a_class_exactly_at_the_bound_holds_and_one_below_fails():
    assert not KAnonymity(5).fails(5) and KAnonymity(5).fails(4)
    assert not LDiversity(2).fails(2, None) and LDiversity(2).fails(1, None)
    even = -sum(p * math.log(p) for p in [1 / 3] * 3)  # three values, evenly: entropy log(3), computed as a sum
    assert not LDiversity(3, "entropy").fails(None, even) and LDiversity(3.01, "entropy").fails(None, even)
    assert not LDiversity(3, "entropy").fails_effective(math.exp(even)) and LDiversity(2, "distinct").fails_effective(1)
