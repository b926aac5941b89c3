"""The privacy engine finds the least-loss level vector that reaches k, exactly."""

import dataclasses
import itertools
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.examples import examples
from transforms import metrics, outofcore
from transforms.anonymity import Questions, Unreachable, search, search_table
from transforms.combinations import class_keys
from transforms.criteria import LDiversity, PrivacyModel, RecursiveDiversity
from transforms.hierarchy import TableHierarchy, encode
from transforms.outofcore import OutOfCore

AGE = TableHierarchy([[str(a), f"{a // 10 * 10}s", "<30" if a < 30 else ">=30", "*"] for a in range(10, 60)])
CITY = TableHierarchy(
    [[c, r, "*"] for c, r in [("SH", "east"), ("HZ", "east"), ("NJ", "east"), ("BJ", "north"), ("TJ", "north"), ("GZ", "south")]]
)
SEX = TableHierarchy([["F", "*"], ["M", "*"]])


def _table(rows):
    ages, cities, sexes = zip(*rows)
    return [
        encode("age", pa.array([str(a) for a in ages]), AGE),
        encode("city", pa.array(cities), CITY),
        encode("sex", pa.array(sexes), SEX),
    ]


def _brute_force(qis, k, limit, weights=None, sensitive=None, l=None, asked=()):
    """Every node of the lattice, evaluated from the published values with pandas: the reference
    the search must match, independent of the engine's internals."""
    n = len(qis[0].codes)
    w = np.array([(weights or {}).get(q.name, 1.0) for q in qis])
    w = w / w.sum()
    best = None
    for node in itertools.product(*(range(q.hierarchy.top + 1) for q in qis)):
        frame = pd.DataFrame({q.name: q.column(lv).to_pylist() for q, lv in zip(qis, node)})
        group = frame.groupby(list(frame.columns), dropna=False)
        small = group[frame.columns[0]].transform("size").to_numpy() < k
        if sensitive is not None:
            small |= frame.assign(s=sensitive).groupby(list(frame.columns), dropna=False)["s"].transform("nunique").to_numpy() < l
        if small.sum() > int(np.floor(limit * n)):
            continue
        loss = sum(wi * (q.loss[lv][q.codes[~small]].sum() + small.sum()) / n for wi, q, lv in zip(w, qis, node))
        levels = dict(zip((q.name for q in qis), node))
        unanswered = sum(any(levels[name] > need for name, need in by.items()) for by in asked)
        best = (unanswered, loss) if best is None else min(best, (unanswered, loss))
    return best if asked else (best[1] if best else None)


rows = st.lists(
    st.tuples(st.integers(10, 59), st.sampled_from(["SH", "HZ", "NJ", "BJ", "TJ", "GZ"]), st.sampled_from("FM")),
    min_size=8,
    max_size=60,
)


@examples(60)
@given(
    rows,
    st.integers(2, 5),
    st.sampled_from([0.0, 0.05, 0.2]),
    st.sampled_from([None, {"age": 3.0}]),
    st.sampled_from([None, 2]),
    st.randoms(use_true_random=False),
)
def test_search_is_exact(data, k, limit, weights, l, rnd):
    qis = _table(data)
    ranges = {q.name: (0, q.hierarchy.top) for q in qis}
    sensitive = np.array([rnd.randrange(3) for _ in data]) if l else None
    model = PrivacyModel(k, (LDiversity("s", l),) if l else ())
    reference = _brute_force(qis, k, limit, weights, sensitive, l)
    try:
        found = search(qis, ranges, model, limit, weights=weights, sensitive={"s": sensitive} if l else None)
    except Unreachable:
        assert reference is None
        return
    assert found.loss == pytest.approx(reference)
    assert found.suppressed.sum() <= int(np.floor(limit * len(data)))
    kept = pd.DataFrame({q.name: q.column(found.levels[q.name]).to_pylist() for q in qis})[~found.suppressed]
    assert metrics.k_anonymity(kept, ["age", "city", "sex"]) >= k
    assert found.nodes_evaluated <= found.nodes_total


@examples(60)
@given(
    rows,
    st.integers(2, 5),
    st.sampled_from([0.0, 0.05, 0.2]),
    st.lists(st.dictionaries(st.sampled_from(["age", "city", "sex"]), st.integers(0, 2), min_size=1), min_size=1, max_size=3),
)
def test_the_declared_questions_come_first_and_the_loss_breaks_ties(data, k, limit, asked):
    """With questions, the search returns the node that leaves the fewest of them unanswerable by
    its levels, and among those the least loss: brute force over every node agrees."""
    qis = _table(data)
    ranges = {q.name: (0, q.hierarchy.top) for q in qis}
    reference = _brute_force(qis, k, limit, asked=asked)
    questions = Questions.of([q.name for q in qis], asked)
    try:
        found = search(qis, ranges, PrivacyModel(k), limit, questions=questions)
    except Unreachable:
        assert reference is None
        return
    unanswered = sum(any(found.levels[n] > need for n, need in by.items()) for by in asked)
    assert (unanswered, found.loss) == (reference[0], pytest.approx(reference[1]))


def test_entity_level_counts_people_not_rows():
    # Ten purchases by one customer in Shanghai are ten rows but one person: with k=2 the rows
    # pass at city level, the people only once Shanghai is merged with Beijing's two customers.
    qis = [encode("city", pa.array(["SH"] * 10 + ["BJ"] * 2), CITY)]
    entity = np.array([0] * 10 + [1, 2])
    assert search(qis, {"city": (0, 2)}, PrivacyModel(2), 0.0).levels == {"city": 0}
    by_people = search(qis, {"city": (0, 2)}, PrivacyModel(2), 0.0, entity)
    assert by_people.levels == {"city": 2} and by_people.k == 3


def test_rows_without_entity_count_as_separate_people():
    qis = [encode("city", pa.array(["SH"] * 3 + ["BJ"] * 3), CITY)]
    entity = np.array([7, -1, -1, 8, 8, 8])  # Shanghai: one customer and two unknown buyers; Beijing: one customer
    found = search(qis, {"city": (0, 2)}, PrivacyModel(3), 0.0, entity)
    assert found.levels == {"city": 2} and found.k == 4


@examples(60)
@given(rows, st.integers(2, 4), st.sampled_from([0.0, 0.2]), st.sampled_from([None, 2]), st.randoms(use_true_random=False))
def test_aggregated_combinations_give_the_same_solution_as_rows(data, k, limit, l, rnd):
    """What the streaming pipeline relies on: the search over (distinct combination, count)
    equals the search over the rows, with people counted once and unknown buyers each."""
    qis = _table(data)
    entity = np.array([rnd.choice([-1, 0, 1, 2, 3, 4, 5]) for _ in data])
    sensitive = np.array([rnd.randrange(3) for _ in data])
    model = PrivacyModel(k, (LDiversity("s", l),) if l else ())
    ranges = {q.name: (0, q.hierarchy.top) for q in qis}
    frame = pd.DataFrame({"age": qis[0].codes, "city": qis[1].codes, "sex": qis[2].codes, "e": entity, "s": sensitive})
    combos = frame.groupby(list(frame.columns)).size().reset_index(name="n")
    aggregated = [dataclasses.replace(q, codes=combos[q.name].to_numpy()) for q in qis]
    by_combos_of = {"sensitive": {"s": combos["s"].to_numpy()}, "counts": combos["n"].to_numpy()}
    try:
        by_rows = search(qis, ranges, model, limit, entity, sensitive={"s": sensitive})
    except Unreachable:
        with pytest.raises(Unreachable):
            search(aggregated, ranges, model, limit, combos["e"].to_numpy(), **by_combos_of)
        return
    by_combos = search(aggregated, ranges, model, limit, combos["e"].to_numpy(), **by_combos_of)
    assert by_combos.levels == by_rows.levels and by_combos.loss == pytest.approx(by_rows.loss)
    assert by_combos.k == by_rows.k and (combos["n"].to_numpy() * by_combos.suppressed).sum() == by_rows.suppressed.sum()


@pytest.mark.parametrize("one_key", [True, False], ids=["one-integer-key", "one-column-per-qi"])
@examples(30)
@given(
    rows,
    st.integers(2, 4),
    st.sampled_from([0.0, 0.1, 0.3]),
    st.sampled_from([None, {"age": 3.0}]),
    st.sampled_from([None, LDiversity("s", 2), LDiversity("s", 1.5, "entropy"), RecursiveDiversity("s", 3, 2)]),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_out_of_core_table_answers_as_the_in_memory_one(one_key, data, k, limit, weights, criterion, by_entity, rnd):
    """The pipeline's engine table (DuckDB, out of core) against the in-memory one (numpy) as the
    oracle, on rows with counts, people with several rows, rows without a person, null sensitive
    values, raised lower levels, each kind of criterion on a sensitive column (the statistics it
    needs computed in SQL and in numpy), and rows of subjects and erased people that both must leave out:
    the same levels, loss, nodes visited, suppressed rows and class sizes; with class keys as one
    integer and, as when the key space is too large for one, one column per quasi-identifier."""
    qis = _table(data)
    ranges = {q.name: (rnd.randint(0, 1), q.hierarchy.top) for q in qis}
    entity = np.array([rnd.choice([-1, 0, 1, 2, 3, 4, 5]) for _ in data])
    values = [rnd.choice(["a", "b", "c", None]) for _ in data]
    counts = np.array([rnd.randint(1, 3) for _ in data])
    subject = np.array([rnd.random() < 0.1 for _ in data])
    erased = {rnd.randint(0, 5)} if by_entity else set()
    kept = ~subject & ~np.isin(entity, list(erased))
    assume(kept.any())
    codes = pd.factorize(pd.Series(values), use_na_sentinel=False)[0]
    model = PrivacyModel(k, (criterion,) if criterion else ())
    try:
        memory = search(
            [dataclasses.replace(q, codes=q.codes[kept]) for q in qis],
            ranges,
            model,
            limit,
            entity[kept] if by_entity else None,
            weights,
            {"s": codes[kept]},
            counts[kept],
        )
    except Unreachable:
        memory = None
    tally = pa.table(
        {
            "age": qis[0].codes,
            "city": qis[1].codes,
            "sex": qis[2].codes,
            "s": values,
            "e": pa.array(entity, mask=entity < 0),
            "subject": subject,
            "rows": counts,
        }
    )
    one_key_below = outofcore.ONE_KEY_BELOW if one_key else 0
    with (
        mock.patch.object(outofcore, "ONE_KEY_BELOW", one_key_below),
        OutOfCore(
            [tally],
            qis,
            ["age", "city", "sex"],
            [pa.array(np.arange(q.sizes[0])) for q in qis],
            [ranges[q.name] for q in qis],
            entity="e",
            by_entity=by_entity,
            subject="subject",
            rows="rows",
            model=model,
            erased=pa.array(sorted(erased), pa.int64()),
        ) as table,
    ):
        assert table.erased_rows == counts[~kept].sum() and table.rows == counts[kept].sum()
        if memory is None:
            with pytest.raises(Unreachable):
                search_table(table, qis, ranges, limit, weights)
            return
        found = search_table(table, qis, ranges, limit, weights)
        _, suppressed = table.codes(found.suppressed)
    assert found.levels == memory.levels and found.loss == pytest.approx(memory.loss)
    assert found.nodes_evaluated == memory.nodes_evaluated and found.k == memory.k
    assert sorted(found.class_sizes) == sorted(memory.class_sizes)
    assert suppressed == counts[kept][memory.suppressed].sum() <= int(np.floor(limit * counts[kept].sum()))


def test_class_keys_are_exact_or_hash_to_a_conservative_key():
    codes = [np.array([0, 1, 1, 0]), np.array([2, 2, 2, 2])]
    assert list(class_keys(codes, [2, 3])) == [2, 5, 5, 2]
    wide = class_keys([np.array([1, 1, 2]), np.array([3, 3, 3])], [2**40, 2**40])  # beyond int64: hashed
    assert wide[0] == wide[1] != wide[2]


def test_unreachable_k_is_an_error_that_names_the_limits():
    qis = [encode("city", pa.array(["SH", "BJ"]), CITY)]
    with pytest.raises(Unreachable, match="k=5 cannot be reached"):
        search(qis, {"city": (0, 0)}, PrivacyModel(5), 0.0)


def test_level_ranges_are_respected():
    qis = _table([(20 + i % 30, "SH", "F") for i in range(40)])
    found = search(qis, {"age": (2, 3), "city": (0, 0), "sex": (0, 1)}, PrivacyModel(3), 0.0)
    assert 2 <= found.levels["age"] <= 3 and found.levels["city"] == 0


def test_greedy_heuristic_beyond_the_exact_limit(monkeypatch):
    from transforms import anonymity

    data = [(20 + i % 37, "SH" if i % 3 else "BJ", "F" if i % 2 else "M") for i in range(300)]
    qis = _table(data)
    ranges = {q.name: (0, q.hierarchy.top) for q in qis}
    exact = search(qis, ranges, PrivacyModel(5), 0.05)
    monkeypatch.setattr(anonymity, "EXACT_LIMIT", 1)
    greedy = search(qis, ranges, PrivacyModel(5), 0.05)
    assert greedy.method == "greedy top-down" and exact.method == "exact"
    assert greedy.k >= 5 and greedy.suppressed.sum() <= 15 and greedy.loss >= exact.loss - 1e-12


@examples(40)
@given(rows, st.integers(2, 4), st.sampled_from([0.0, 0.1, 0.3]))
def test_the_chain_start_is_the_first_feasible_node_of_the_least_loss_chain(data, k, limit):
    """strategy="chain" (the start of k^m on a large table): a feasible node, the first of the
    chain from the lowest levels that is; no node before it on the chain is feasible."""
    from transforms.anonymity import coarsening
    from transforms.combinations import InMemory

    qis = _table(data)
    ranges = {q.name: (0, q.hierarchy.top) for q in qis}
    table = InMemory(qis, None, {}, np.ones(len(data), np.int64), list(ranges.values()), PrivacyModel(k))
    allowed = int(np.floor(limit * len(data)))
    solution = search_table(table, qis, ranges, limit, strategy="chain")
    node = tuple(solution.levels[q.name] for q in qis)
    assert solution.method == "chain" and table.failing(node, allowed)[1] is not None
    n = len(data)
    per_level = [[float(q.loss[level] @ table.rows_per_code()[j]) / n for level in range(len(q.maps))] for j, q in enumerate(qis)]
    chain = coarsening((0, 0, 0), list(ranges.values()), lambda nd: sum(per_level[j][lv] for j, lv in enumerate(nd)) / 3)
    assert node in chain
    assert all(table.failing(before, allowed)[1] is None for before in chain[: chain.index(node)])
    assert solution.nodes_evaluated <= 2 + int(np.ceil(np.log2(len(chain))))


def test_entropy_l_diversity():
    # SH's sensitive values are 5:5 (entropy 0.693), BJ's 9:1 (0.325), both merged 14:6 (0.611);
    # entropy l-diversity with l = 1.8 needs log(1.8) = 0.588, which only the merged class has.
    qis = [encode("city", pa.array(["SH"] * 10 + ["BJ"] * 10), CITY)]
    sensitive = np.array([0, 1] * 5 + [0] * 9 + [1])
    distinct = search(qis, {"city": (0, 2)}, PrivacyModel(2, (LDiversity("s", 2),)), 0.0, sensitive={"s": sensitive})
    entropy = search(qis, {"city": (0, 2)}, PrivacyModel(2, (LDiversity("s", 1.8, "entropy"),)), 0.0, sensitive={"s": sensitive})
    assert distinct.levels == {"city": 0}  # both classes hold 2 distinct values
    assert entropy.levels == {"city": 2}  # only the merged class is diverse enough


def test_recursive_diversity():
    # Recursive (c, l = 2): SH 5:5 holds at c = 2 (5 < 2 * 5), BJ 9:1 does not (9 >= 2 * 1), nor
    # does the merged 14:6 (14 >= 2 * 6); at c = 3 the merged class holds (14 < 18), BJ still not.
    qis = [encode("city", pa.array(["SH"] * 10 + ["BJ"] * 10), CITY)]
    sensitive = {"s": np.array([0, 1] * 5 + [0] * 9 + [1])}
    with pytest.raises(Unreachable, match=r"recursive_diversity \(c=2, l=2\) on s"):
        search(qis, {"city": (0, 2)}, PrivacyModel(2, (RecursiveDiversity("s", 2, 2),)), 0.0, sensitive=sensitive)
    merged = search(qis, {"city": (0, 2)}, PrivacyModel(2, (RecursiveDiversity("s", 3, 2),)), 0.0, sensitive=sensitive)
    assert merged.levels == {"city": 2}
    allowed = search(qis, {"city": (0, 2)}, PrivacyModel(2, (RecursiveDiversity("s", 2, 2),)), 0.5, sensitive=sensitive)
    assert allowed.levels == {"city": 0} and allowed.suppressed.sum() == 10  # BJ suppressed, SH kept


def test_unreachable_diversity_names_the_model():
    qis = [encode("city", pa.array(["SH"] * 6), CITY)]
    with pytest.raises(Unreachable, match=r"l_diversity \(l=3, measure=distinct\) on s"):
        search(qis, {"city": (0, 2)}, PrivacyModel(2, (LDiversity("s", 3),)), 0.0, sensitive={"s": np.array([0, 1] * 3)})


def test_rows_in_matches_nulls_and_compares_types_as_sql_does():
    import datetime as dt

    when = [dt.datetime(2026, 3, 1, 10), dt.datetime(2026, 3, 1, 11), None, dt.datetime(2026, 3, 1, 10)]
    table = pa.table(
        {
            "t": pa.array(when, pa.timestamp("ms")),
            "s": pa.array(["a", "b", None, None]),
            "d": pa.array([dt.date(2026, 3, 1)] * 4, pa.date32()),
        }
    )
    classes = pa.table(
        {
            "t": pa.array([dt.datetime(2026, 3, 1, 10), None], pa.timestamp("us")),
            "s": ["a", None],
            "d": pa.array([dt.date(2026, 3, 1)] * 2, pa.date32()),
        }
    )
    assert outofcore.rows_in(table, classes).tolist() == [True, False, True, False]
    assert outofcore.rows_in(table, classes.slice(0, 0)).tolist() == [False] * 4
