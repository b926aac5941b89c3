"""The privacy criteria (transforms/criteria.py) judge a class the same in numpy and in SQL, and
a class exactly at the bound holds."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.examples import examples
from transforms.criteria import (
    COLUMN_CRITERIA,
    PEOPLE,
    SQL_OF_COUNTS,
    TOLERANCE,
    KAnonymity,
    LDiversity,
    PrivacyModel,
    RecursiveDiversity,
    column_criterion,
    of_counts,
)


@examples(80)
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
    assert LDiversity("s", 3, "entropy").figure(entropy) == pytest.approx(3)
    histogram = {("histogram", "s"): np.array([[4.0, 1.0, 1.0]])}  # r1 = 4 against r2 + r3 = 2
    assert not RecursiveDiversity("s", 2.01, 2).fails(histogram) and RecursiveDiversity("s", 2, 2).fails(histogram)


def test_a_model_asks_for_each_statistic_once_and_judges_with_every_criterion():
    """The model's needs are the union of its criteria's, in order, each once; a class fails when
    any criterion fails it."""
    model = PrivacyModel(5, (LDiversity("a", 2), LDiversity("a", 2, "entropy"), LDiversity("b", 3)), m=3)
    assert model.needs == (PEOPLE, ("distinct", "a"), ("entropy", "a"), ("distinct", "b"))
    assert model.sensitive == ("a", "b") and len(model.criteria) == 4
    stats = {PEOPLE: np.array([5, 5, 4]), ("distinct", "a"): np.array([2, 1, 2]), ("entropy", "a"): np.log([2, 2, 2])}
    stats[("distinct", "b")] = np.array([3, 3, 3])
    assert model.fails(stats).tolist() == [False, True, True]


def _recursive_by_definition(rows: list[int], c: float, l: int) -> bool:
    """Machanavajjhala et al.'s recursive (c, l)-diversity of one class, from its values' rows; a
    class within floating-point TOLERANCE of the bound fails, as the criterion fails closed there
    (c = 0.5000000000000001 over rows [1, 1, 1] puts c (r_2 + r_3) at 1.0000000000000002)."""
    r = sorted((n for n in rows if n), reverse=True)
    return r[0] < c * sum(r[l - 1 :]) - TOLERANCE


@examples(80)
@given(
    st.floats(0.5, 4.0),
    st.integers(2, 4),
    st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=6).filter(any), min_size=1, max_size=12),
)
def test_recursive_diversity_judges_as_defined_in_numpy_and_in_sql(c, l, classes):
    """Each class's rows per value (any order, zeros for values it lacks): the statistics derived
    from them (of_counts in numpy, SQL_OF_COUNTS in DuckDB) give the verdict of the definition."""
    criterion = RecursiveDiversity("s", c, l)
    width = max(map(len, classes))
    counts = np.array([row + [0] * (width - len(row)) for row in classes], float)
    stats = {("histogram", "s"): of_counts("histogram", counts)}
    expected = [not _recursive_by_definition(row, c, l) for row in classes]
    assert criterion.fails(stats).tolist() == expected
    con = duckdb.connect()
    pairs = [(i, n) for i, row in enumerate(classes) for n in row if n]
    con.execute("CREATE TABLE v (cls INT, c BIGINT)")
    con.executemany("INSERT INTO v VALUES (?, ?)", pairs)
    histogram = SQL_OF_COUNTS["histogram"]
    sql = criterion.sql_fails({("histogram", "s"): "h"})
    found = con.execute(f"SELECT {sql} FROM (SELECT cls, {histogram} AS h FROM v GROUP BY cls) ORDER BY cls").fetchall()
    assert [row[0] for row in found] == expected


def test_statistics_of_a_column_follow_from_its_counts_alike_in_numpy_and_sql():
    counts = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    con = duckdb.connect()
    con.execute("CREATE TABLE v AS SELECT * FROM (VALUES (0, 3), (0, 1), (1, 2), (1, 2)) t(cls, c)")
    shares = "SELECT cls, c, c / sum(c) OVER (PARTITION BY cls) AS p FROM v"
    for what in ("distinct", "entropy", "histogram"):
        expected = of_counts(what, counts)
        sql = con.execute(f"SELECT {SQL_OF_COUNTS[what]} FROM ({shares}) GROUP BY cls ORDER BY cls").fetchall()
        found = [row[0] for row in sql]
        if what == "histogram":
            assert [list(h) for h in found] == [[n for n in row if n] for row in expected.tolist()]
        else:
            assert found == pytest.approx(expected.tolist())


def test_a_criterion_is_read_from_its_kind_and_parameters_and_refused_when_they_are_wrong():
    assert column_criterion("recursive_diversity", "points", {"c": 3, "l": 2}) == RecursiveDiversity("points", 3.0, 2)
    assert set(COLUMN_CRITERIA) == {"l_diversity", "recursive_diversity"}
    for kind, parameters, said in [
        ("recursive_diversity", {"c": 3, "l": 1}, "greater than or equal to 2"),
        ("recursive_diversity", {"c": 3}, "Field required"),
        ("l_diversity", {"l": 2, "t": 0.2}, "Unexpected keyword argument"),
        ("t_closeness", {"t": 0.2}, "no privacy criterion 't_closeness'"),
    ]:
        with pytest.raises(ValueError, match=said):
            column_criterion(kind, "points", parameters)
    assert RecursiveDiversity("s", 3, 2).parameters() == {"c": 3, "l": 2}
    assert RecursiveDiversity("s", 3, 3).values_at_least == 3 and LDiversity("s", 2.5, "entropy").values_at_least == 3
