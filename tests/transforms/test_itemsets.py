"""k^m suppression (transforms/itemsets.py): what it leaves is (k, k^m)-anonymous, checked by the
intruder's own counting; stopping at the suppression limit changes no decision; and the search
over nodes (transforms/anonymity.with_itemsets) finds a node within the limit whenever one exists."""

from __future__ import annotations

import itertools
from unittest import mock

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.examples import examples
from tests.transforms.test_anonymity import AGE, CITY, SEX
from transforms.anonymity import (
    ITEMSET_EVALUATIONS,
    Unreachable,
    coarsening,
    first_passing,
    search_table,
    with_itemsets,
)
from transforms.combinations import InMemory
from transforms.criteria import PrivacyModel
from transforms.hierarchy import encode
from transforms.itemsets import suppress
from transforms.risk import Adversary, smallest_support

rows = st.lists(st.tuples(st.integers(0, 14), st.integers(0, 1), st.integers(0, 5), st.integers(1, 3)), min_size=1, max_size=70)


def _relation(found: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    """(person, class, item, rows) as combinations: one class per person; a (person, item) may be in
    several combinations (a node merges lowest-level values) and stands for all their rows."""
    frame = pd.DataFrame(found, columns=["e", "cls", "item", "w"])
    frame["cls"] = frame.groupby("e")["cls"].transform("first")
    return frame.reset_index(drop=True).assign(i=lambda f: np.arange(len(f)))


def _suppress(
    frame: pd.DataFrame, k: int, m: int, limit: int | None = None, recount_all: bool = False, budget: int | None = None
):
    con = duckdb.connect()
    con.register("combos", frame[["i", "cls", "item", "e", "w"]])
    extra = {} if budget is None else {"budget": budget}
    return suppress(con, "combos", len(frame), k, m, limit, recount_all=recount_all, **extra)


@examples(60)
@given(rows, st.integers(2, 4), st.integers(1, 3))
# Five people bought items 0 and 1, one of them item 0 twice (two rows): a bag, not a set.
@example(found=[(p, 0, item, 1) for p in range(5) for item in (0, 1)] + [(0, 0, 0, 1)], k=5, m=2)
def test_what_is_left_is_k_km_anonymous(found, k, m):
    frame = _relation(found)
    rare, taken, suppressed = _suppress(frame, k, m)
    # What is published: a person's rows of an item (a bag: two rows are two purchases), all of
    # them, or as many as the engine keeps where it took an occurrence.
    held = frame[~rare].groupby(["e", "cls", "item"], as_index=False)["w"].sum()
    keep = {(e, item): kept for e, item, kept in taken.tolist()}
    held["n"] = [min(w, keep.get((e, item), w)) for e, item, w in zip(held["e"], held["item"], held["w"])]
    assert suppressed == frame["w"].sum() - held["n"].sum()
    held = held[held["n"] > 0].rename(columns={"e": "person"}).assign(kind=0)[["person", "cls", "item", "kind", "n"]]
    if len(held):
        minima = smallest_support(held, Adversary(k, m, 0), threshold=k)
        assert (minima[[f"min_{level}" for level in range(1, m + 1)]] >= k).all().all()


@examples(60)
@given(rows, st.integers(2, 4), st.integers(1, 3), st.integers(0, 40))
def test_stopping_at_the_limit_changes_no_decision(found, k, m, limit):
    frame = _relation(found)
    whole = _suppress(frame, k, m)
    stopped = _suppress(frame, k, m, limit)
    assert (stopped[2] > limit) == (whole[2] > limit)
    if whole[2] <= limit:
        assert np.array_equal(stopped[0], whole[0]) and stopped[2] == whole[2]
        assert set(map(tuple, stopped[1].tolist())) == set(map(tuple, whole[1].tolist()))  # pairs, in no set order


@examples(80)
@given(rows, st.integers(2, 4), st.integers(1, 3), st.one_of(st.none(), st.integers(0, 40)))
def test_later_rounds_counting_only_what_died_decide_as_counting_everything(found, k, m, limit):
    """Rounds after the first count only the itemsets that hold an item which died since: the
    rows, items and classes taken are those of recounting every itemset every round."""
    frame = _relation(found)
    kept = _suppress(frame, k, m, limit)
    everything = _suppress(frame, k, m, limit, recount_all=True)
    assert kept[2] == everything[2] and np.array_equal(kept[0], everything[0])
    assert set(map(tuple, kept[1].tolist())) == set(map(tuple, everything[1].tolist()))


@examples(15)
@given(st.integers(0, 2**32 - 1), st.integers(2, 5), st.integers(2, 3))
def test_many_rounds_counting_only_what_died_decide_as_counting_everything(seed, k, m):
    """The same on tables large enough for removals to cascade over many rounds."""
    rng = np.random.default_rng(seed)
    people = int(rng.integers(50, 400))
    found = [
        (int(p), int(p % 3), int(min(rng.zipf(1.6), 25)), int(rng.integers(1, 3)))
        for p in range(people)
        for _ in range(int(rng.integers(1, 6)))
    ]
    frame = _relation(found)
    kept = _suppress(frame, k, m)
    everything = _suppress(frame, k, m, recount_all=True)
    assert kept[2] == everything[2] and np.array_equal(kept[0], everything[0])
    assert set(map(tuple, kept[1].tolist())) == set(map(tuple, everything[1].tolist()))


@examples(40)
@given(rows, st.integers(2, 4), st.integers(2, 3), st.one_of(st.none(), st.integers(0, 40)), st.integers(1, 12))
def test_counting_a_hash_range_of_itemsets_at_a_time_decides_as_counting_them_at_once(found, k, m, limit, budget):
    """Where a level has more (person, itemset) pairs than the budget, each pass counts one hash
    range of the itemsets (memory bounded whatever the unit's size): the same rows, items and
    classes are taken as by one pass over all of them. Past the limit a count may stop at the
    range that shows it (its rows are then only a figure above the limit), so the node fails
    either way."""
    frame = _relation(found)
    ranged = _suppress(frame, k, m, limit, budget=budget)
    whole = _suppress(frame, k, m, limit, budget=10**9)
    if limit is not None and whole[2] > limit:
        assert ranged[2] > limit
        return
    assert ranged[2] == whole[2] and np.array_equal(ranged[0], whole[0])
    assert set(map(tuple, ranged[1].tolist())) == set(map(tuple, whole[1].tolist()))


@pytest.mark.slow
@examples(10)
@given(st.integers(0, 2**32 - 1), st.integers(2, 5))
def test_a_large_table_counted_in_many_hash_ranges_decides_as_counting_it_at_once(seed, k):
    rng = np.random.default_rng(seed)
    found = [
        (int(p), int(p % 3), int(min(rng.zipf(1.6), 25)), int(rng.integers(1, 3)))
        for p in range(int(rng.integers(50, 400)))
        for _ in range(int(rng.integers(1, 7)))
    ]
    frame = _relation(found)
    ranged = _suppress(frame, k, 3, budget=50)
    whole = _suppress(frame, k, 3, budget=10**9)
    assert ranged[2] == whole[2] and np.array_equal(ranged[0], whole[0])
    assert set(map(tuple, ranged[1].tolist())) == set(map(tuple, whole[1].tolist()))


people = st.lists(
    st.tuples(
        st.integers(10, 59),
        st.sampled_from("FM"),
        st.lists(st.sampled_from(["SH", "HZ", "NJ", "BJ", "TJ", "GZ"]), min_size=1, max_size=4),
    ),
    min_size=6,
    max_size=40,
)


@examples(20)
@given(people, st.integers(2, 3), st.sampled_from([0.05, 0.3]))
def test_the_km_search_returns_a_node_within_the_limit_whenever_one_exists(found, k, limit):
    """Bisection along the chain may skip nodes, never past a passing one: every node at or above
    the m = 1 node is counted here, and the search must find a node within the limit exactly when
    one of them is, and count no more nodes than its budget (or the bisection) allows."""
    rows = [(age, sex, city, person) for person, (age, sex, cities) in enumerate(found) for city in cities]
    ages, sexes, cities, entity = zip(*rows)
    qis = [
        encode("age", pa.array([str(a) for a in ages]), AGE),
        encode("sex", pa.array(sexes), SEX),
        encode("city", pa.array(cities), CITY),
    ]
    ranges = {q.name: (0, q.hierarchy.top) for q in qis}
    table = InMemory(qis, np.array(entity), {}, np.ones(len(rows), np.int64), list(ranges.values()), PrivacyModel(k, m=2))
    items = [False, False, True]
    try:
        start = search_table(table, qis, ranges, limit)
    except Unreachable:
        return
    allowed = int(np.floor(limit * table.rows))
    low = tuple(start.levels[q.name] for q in qis)
    above = itertools.product(*(range(lo, q.hierarchy.top + 1) for lo, q in zip(low, qis)))
    passing = {node for node in above if table.itemsets(node, items)[2] <= allowed}
    with mock.patch.object(table, "itemsets", wraps=table.itemsets) as spy:
        try:
            solution = with_itemsets(table, qis, ranges, start, items, limit)
        except Unreachable:
            assert not passing
            return
        counted = [call.args[0] for call in spy.call_args_list]
    assert tuple(solution.levels[q.name] for q in qis) in passing
    chain = coarsening(low, list(ranges.values()), lambda node: node)  # as long as the search's own chain
    assert len(set(counted)) <= max(ITEMSET_EVALUATIONS, 2 + int(np.ceil(np.log2(len(chain)))))


@given(st.integers(1, 200), st.data())
def test_bisection_finds_the_first_passing_node_of_a_monotone_chain(length, data):
    first = data.draw(st.integers(0, length))  # length: none passes
    asked = []

    def passes(index: int) -> bool:
        asked.append(index)
        return index >= first

    found = first_passing(list(range(length)), passes)
    assert found == (first if first < length else None)
    assert len(asked) <= 2 + int(np.ceil(np.log2(length)))


@examples(40)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 9), st.sampled_from("FM"), st.sampled_from(["SH", "HZ", "NJ", "BJ"])),
        min_size=1,
        max_size=80,
    ),
    st.integers(2, 4),
    st.integers(1, 3),
    st.sampled_from([None, 0, 5, 40]),
    st.integers(1, 30),
)
def test_counting_a_group_of_units_at_a_time_gives_what_counting_all_at_once_gives(found, k, m, limit, group):
    """The out-of-core table counts itemsets a group of units at a time (units share no class),
    each group in a connection that holds it alone; against the in-memory table counting them all
    at once: the same rows suppressed, the same items taken, the same row classes, for any size of
    group (one unit, several, all) and any limit (a count that stops past it says it is past)."""
    from transforms import outofcore
    from transforms.hierarchy import UnitHierarchy
    from transforms.outofcore import OutOfCore

    units, people, sexes, cities = zip(*found)
    entity = np.array([u * 100 + p for u, p in zip(units, people)])  # a person in two units is two records
    qis = [
        encode("unit", pa.array([str(u) for u in units]), UnitHierarchy()),
        encode("sex", pa.array(sexes), SEX),
        encode("city", pa.array(cities), CITY),
    ]
    bounds = [(0, 0), (0, 1), (0, 2)]
    items = [False, False, True]
    model = PrivacyModel(k, m=m)
    memory = InMemory(qis, entity, {}, np.ones(len(found), np.int64), bounds, model)
    tally = pa.table(
        {
            "unit": qis[0].codes,
            "sex": qis[1].codes,
            "city": qis[2].codes,
            "e": entity,
            "subject": [False] * len(found),
            "rows": [1] * len(found),
        }
    )
    with (
        mock.patch.object(outofcore, "GROUP_COMBOS", group),
        OutOfCore(
            [tally],
            qis,
            ["unit", "sex", "city"],
            [pa.array(np.arange(q.sizes[0])) for q in qis],
            bounds,
            entity="e",
            by_entity=True,
            subject="subject",
            rows="rows",
            model=model,
            grouped=True,
        ) as table,
    ):
        for node in [(0, 0, 0), (0, 1, 1), (0, 0, 2)]:
            mine, theirs = table.itemsets(node, items, limit), memory.itemsets(node, items, limit)
            assert (mine[2] > (limit if limit is not None else mine[2])) == (
                theirs[2] > (limit if limit is not None else theirs[2])
            )
            if limit is None or theirs[2] <= limit:
                assert mine[2] == theirs[2]
                assert set(map(tuple, mine[1].tolist())) == set(map(tuple, theirs[1].tolist()))
                assert sorted(zip(*table.codes(mine[0])[0])) == sorted(zip(*memory.codes(theirs[0])[0]))


@examples(10)
@given(st.integers(0, 2**32 - 1), st.integers(2, 4))
def test_a_node_chosen_on_a_sample_of_units_is_counted_on_everyone_and_holds_there(seed, k):
    """A large table of many units chooses its node on a sample of whole units and counts it once
    on everyone (climbing the chain while everyone does not pass): what it keeps is (k, k^m)-
    anonymous in every unit, checked by the intruder's own counting, within the limit."""
    from transforms import outofcore
    from transforms.anonymity import confirmed
    from transforms.hierarchy import UnitHierarchy
    from transforms.outofcore import OutOfCore

    rng = np.random.default_rng(seed)
    units = rng.integers(0, 40, 3000)
    people = rng.integers(0, 12, 3000)
    cities = rng.choice(["SH", "HZ", "NJ", "BJ", "TJ", "GZ"], 3000)
    sexes = rng.choice(["F", "M"], 3000)
    entity = units * 100 + people
    frame = pd.DataFrame({"u": units, "e": entity, "s": sexes, "c": cities}).drop_duplicates()
    qis = [
        encode("unit", pa.array(frame["u"].astype(str)), UnitHierarchy()),
        encode("sex", pa.array(frame["s"]), SEX),
        encode("city", pa.array(frame["c"]), CITY),
    ]
    bounds, items = [(0, 0), (0, 1), (0, 2)], [False, False, True]
    ranges = {q.name: b for q, b in zip(qis, bounds)}
    tally = pa.table(
        {
            "unit": qis[0].codes,
            "sex": qis[1].codes,
            "city": qis[2].codes,
            "e": frame["e"].to_numpy(),
            "subject": np.zeros(len(frame), bool),
            "rows": np.ones(len(frame), np.int64),
        }
    )
    with (
        mock.patch.object(outofcore, "SAMPLE_UNITS", 5),
        OutOfCore(
            [tally],
            qis,
            ["unit", "sex", "city"],
            [pa.array(np.arange(q.sizes[0])) for q in qis],
            bounds,
            entity="e",
            by_entity=True,
            subject="subject",
            rows="rows",
            model=PrivacyModel(k, m=2),
            grouped=True,
        ) as table,
    ):
        sample = table.sample(table.size // 4)
        assert sample is not None and sample.size < table.size
        try:
            chosen = with_itemsets(sample, qis, ranges, search_table(sample, qis, ranges, 0.1), items, 0.1)
            solution = confirmed(table, qis, ranges, chosen, items, 0.1)
        except Unreachable:
            return
        node = tuple(solution.levels[q.name] for q in qis)
        rare, taken, rows = table.itemsets(node, items, None)
        everyone = table.rows
    # The node is the sample's, or one of the least-loss chain above it; everyone passes it within
    # the limit, as the in-memory count of every combination (the oracle) counts it too.
    start = tuple(chosen.levels[q.name] for q in qis)
    assert all(a >= b for a, b in zip(node, start))
    assert rows <= int(np.floor(0.1 * everyone)) and np.array_equal(rare, solution.suppressed)
    oracle = InMemory(qis, frame["e"].to_numpy(), {}, np.ones(len(frame), np.int64), bounds, PrivacyModel(k, m=2))
    assert oracle.itemsets(node, items, None)[2] == rows
    assert set(map(tuple, oracle.itemsets(node, items, None)[1].tolist())) == set(map(tuple, taken.tolist()))


def test_a_person_is_drawn_by_id_alone_about_the_share_asked():
    """The same ids are drawn whatever else is drawn with them, about `share` of them."""
    from transforms.combinations import drawn

    ids = np.arange(200_000, dtype=np.int64) * 7919 + 13
    taken = drawn(ids, 0.4)
    assert abs(taken.mean() - 0.4) < 0.01
    assert np.array_equal(drawn(ids[::3], 0.4), taken[::3])
    assert not drawn(ids, 0.0).any() and drawn(ids, 1.0).all()


@examples(10)
@given(st.integers(0, 2**32 - 1), st.integers(4, 6))
def test_a_node_chosen_on_a_sample_of_people_is_counted_on_everyone_and_holds_there(seed, k):
    """One large unit chooses its node on a sample of its people at a scaled k (anonymity.sampled)
    and counts it once on everyone: each drawn person comes with every combination they hold, in
    memory as out of core (the same people: drawn by the tallies' ids), and what the release keeps
    is (k, k^m)-anonymous for everyone, by the oracle's own count, within the limit."""
    from transforms.anonymity import confirmed, sampled
    from transforms.hierarchy import UnitHierarchy
    from transforms.outofcore import OutOfCore

    rng = np.random.default_rng(seed)
    n = 4000
    people = rng.integers(0, 900, n)
    cities = rng.choice(["SH", "HZ", "NJ", "BJ", "TJ", "GZ"], n)
    sexes = np.array(["F", "M"])[people % 2]  # an attribute of the person, as a buyer's nationality
    entity = people * 31 + 5
    frame = pd.DataFrame({"u": 0, "e": entity, "s": sexes, "c": cities}).drop_duplicates()
    qis = [
        encode("unit", pa.array(frame["u"].astype(str)), UnitHierarchy()),
        encode("sex", pa.array(frame["s"]), SEX),
        encode("city", pa.array(frame["c"]), CITY),
    ]
    bounds, items = [(0, 0), (0, 1), (0, 2)], [False, False, True]
    ranges = {q.name: b for q, b in zip(qis, bounds)}
    model = PrivacyModel(k, m=2)
    scaled, share = sampled(model)
    assert scaled.k == 2 and share == 2 / k
    tally = pa.table(
        {
            "unit": qis[0].codes,
            "sex": qis[1].codes,
            "city": qis[2].codes,
            "e": frame["e"].to_numpy(),
            "subject": np.zeros(len(frame), bool),
            "rows": np.ones(len(frame), np.int64),
        }
    )
    oracle = InMemory(qis, frame["e"].to_numpy(), {}, np.ones(len(frame), np.int64), bounds, model)
    with OutOfCore(
        [tally],
        qis,
        ["unit", "sex", "city"],
        [pa.array(np.arange(q.sizes[0])) for q in qis],
        bounds,
        entity="e",
        by_entity=True,
        subject="subject",
        rows="rows",
        model=model,
        grouped=True,
    ) as table:
        sample, in_memory = table.people(share, scaled), oracle.people(share, scaled)
        assert sample.model.k == 2 and 0 < sample.size < table.size
        held = {int(e): n for e, n in zip(*np.unique(frame["e"], return_counts=True))}
        ids = sample.entity_ids[sample.entity]
        assert sorted(ids.tolist()) == sorted(in_memory.entity[in_memory.entity >= 0].tolist())
        assert all(held[int(e)] == n for e, n in zip(*np.unique(ids, return_counts=True)))
        try:
            chosen = with_itemsets(sample, qis, ranges, search_table(sample, qis, ranges, 0.1), items, 0.1)
            solution = confirmed(table, qis, ranges, chosen, items, 0.1, drawn="people")
        except Unreachable:
            return
        node = tuple(solution.levels[q.name] for q in qis)
        rare, _, rows = table.itemsets(node, items, None)
        assert "sample of people" in solution.method
    assert all(a >= b for a, b in zip(node, (chosen.levels[q.name] for q in qis)))
    assert rows <= int(np.floor(0.1 * len(frame))) and np.array_equal(rare, solution.suppressed)
    assert oracle.itemsets(node, items, None)[2] == rows
