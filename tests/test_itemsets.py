"""k^m suppression (transforms/itemsets.py): what it leaves is (k, k^m)-anonymous, checked by the
intruder's own counting; and stopping at the suppression limit changes no decision."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.itemsets import suppress
from transforms.risk import Adversary, smallest_support

rows = st.lists(st.tuples(st.integers(0, 14), st.integers(0, 1), st.integers(0, 5), st.integers(1, 3)), min_size=1, max_size=70)


def _relation(found: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    """(person, class, item, rows) as combinations: one class per person, each (person, item) once."""
    frame = pd.DataFrame(found, columns=["e", "cls", "item", "w"]).drop_duplicates(["e", "item"])
    frame["cls"] = frame.groupby("e")["cls"].transform("first")
    return frame.reset_index(drop=True).assign(i=lambda f: np.arange(len(f)))


def _suppress(frame: pd.DataFrame, k: int, m: int, limit: int | None = None):
    con = duckdb.connect()
    con.register("combos", frame[["i", "cls", "item", "e", "w"]])
    return suppress(con, "combos", len(frame), k, m, limit)


@settings(deadline=None, max_examples=60)
@given(rows, st.integers(2, 4), st.integers(1, 3))
def test_what_is_left_is_k_km_anonymous(found, k, m):
    frame = _relation(found)
    rare, taken, suppressed = _suppress(frame, k, m)
    gone = set(map(tuple, taken.tolist()))
    left = frame[~rare & ~np.array([(e, item) in gone for e, item in zip(frame["e"], frame["item"])], bool)]
    assert suppressed == frame["w"].sum() - left["w"].sum()
    if len(left):
        held = left.rename(columns={"e": "person"}).assign(kind=0)[["person", "cls", "item", "kind"]]
        minima = smallest_support(held, Adversary(k, m, 0), threshold=k)
        assert (minima[[f"min_{level}" for level in range(1, m + 1)]] >= k).all().all()


@settings(deadline=None, max_examples=60)
@given(rows, st.integers(2, 4), st.integers(1, 3), st.integers(0, 40))
def test_stopping_at_the_limit_changes_no_decision(found, k, m, limit):
    frame = _relation(found)
    whole = _suppress(frame, k, m)
    stopped = _suppress(frame, k, m, limit)
    assert (stopped[2] > limit) == (whole[2] > limit)
    if whole[2] <= limit:
        assert np.array_equal(stopped[0], whole[0]) and stopped[2] == whole[2]
        assert set(map(tuple, stopped[1].tolist())) == set(map(tuple, whole[1].tolist()))  # pairs, in no set order
