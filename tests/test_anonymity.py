"""The privacy engine finds the least-loss level vector that reaches k, exactly."""

import itertools

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import metrics
from transforms.anonymity import Unreachable, class_keys, class_sizes, entity_codes, search
from transforms.hierarchy import TableHierarchy, encode

AGE = TableHierarchy([[str(a), f"{a // 10 * 10}s", "<30" if a < 30 else ">=30", "*"] for a in range(10, 60)])
CITY = TableHierarchy([[c, r, "*"] for c, r in [("SH", "east"), ("HZ", "east"), ("NJ", "east"), ("BJ", "north"),
                                               ("TJ", "north"), ("GZ", "south")]])
SEX = TableHierarchy([["F", "*"], ["M", "*"]])


def _table(rows):
    ages, cities, sexes = zip(*rows)
    return [encode("age", pa.array([str(a) for a in ages]), AGE), encode("city", pa.array(cities), CITY),
            encode("sex", pa.array(sexes), SEX)]


def _brute_force(qis, k, limit, entity=None, weights=None):
    """Evaluate every node of the lattice: the reference the search must match."""
    n = len(qis[0].codes)
    w = np.array([(weights or {}).get(q.name, 1.0) for q in qis])
    w = w / w.sum()
    best = None
    for node in itertools.product(*(range(q.hierarchy.top + 1) for q in qis)):
        inverse, sizes = class_sizes(class_keys(qis, node), entity_codes(entity, n))
        small = sizes[inverse] < k
        if small.sum() > int(np.floor(limit * n)):
            continue
        loss = sum(wi * (q.loss[lv][q.codes[~small]].sum() + small.sum()) / n for wi, q, lv in zip(w, qis, node))
        best = loss if best is None else min(best, loss)
    return best


rows = st.lists(st.tuples(st.integers(10, 59), st.sampled_from(["SH", "HZ", "NJ", "BJ", "TJ", "GZ"]),
                          st.sampled_from("FM")), min_size=8, max_size=60)


@settings(max_examples=60, deadline=None)
@given(rows, st.integers(2, 5), st.sampled_from([0.0, 0.05, 0.2]), st.sampled_from([None, {"age": 3.0}]))
def test_search_is_exact(data, k, limit, weights):
    qis = _table(data)
    ranges = {q.name: (0, q.hierarchy.top) for q in qis}
    reference = _brute_force(qis, k, limit, weights=weights)
    try:
        found = search(qis, ranges, k, limit, weights=weights)
    except Unreachable:
        assert reference is None
        return
    assert found.loss == pytest.approx(reference)
    assert found.suppressed.sum() <= int(np.floor(limit * len(data)))
    kept = pd.DataFrame({q.name: q.column(found.levels[q.name]).to_pylist() for q in qis})[~found.suppressed]
    assert metrics.k_anonymity(kept, ["age", "city", "sex"]) >= k
    assert found.nodes_evaluated <= found.nodes_total


def test_entity_level_counts_people_not_rows():
    # Ten purchases by one customer in Shanghai are ten rows but one person: with k=2 the rows
    # pass at city level, the people only once Shanghai is merged with Beijing's two customers.
    qis = [encode("city", pa.array(["SH"] * 10 + ["BJ"] * 2), CITY)]
    entity = np.array([0] * 10 + [1, 2])
    assert search(qis, {"city": (0, 2)}, 2, 0.0).levels == {"city": 0}
    by_people = search(qis, {"city": (0, 2)}, 2, 0.0, entity)
    assert by_people.levels == {"city": 2} and by_people.k == 3


def test_rows_without_entity_count_as_separate_people():
    assert list(entity_codes(np.array([5, -1, -1, 5]), 4)) == [5, 6, 7, 5]


def test_unreachable_k_is_an_error_that_names_the_limits():
    qis = [encode("city", pa.array(["SH", "BJ"]), CITY)]
    with pytest.raises(Unreachable, match="k=5 cannot be reached"):
        search(qis, {"city": (0, 0)}, 5, 0.0)


def test_level_ranges_are_respected():
    qis = _table([(20 + i % 30, "SH", "F") for i in range(40)])
    found = search(qis, {"age": (2, 3), "city": (0, 0), "sex": (0, 1)}, 3, 0.0)
    assert 2 <= found.levels["age"] <= 3 and found.levels["city"] == 0
