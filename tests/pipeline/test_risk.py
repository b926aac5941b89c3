"""`tuomin risk`: the intruder's measurements, each checked against a brute force or a release
built to fail (or pass) it, and today's release measured as what it is."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from flows.cli import app
from flows.pipeline.intruder import assess
from flows.storage import ledger
from flows.storage.entries import ErasureRequestedEntry, Republished
from tests.examples import examples
from transforms.risk import (
    CONTACTS,
    PROFILE,
    PURCHASES,
    Adversary,
    Dataset,
    _hash,
    people,
    relational_classes,
    smallest_support,
)

TOKEN = "keyed HMAC-SHA256, domain '{}'"


def _brute_force(held: pd.DataFrame, adversary: Adversary) -> dict[int, list[int]]:
    """Per person, the smallest support of their itemsets of each size (cumulative), by trying
    every itemset: what Apriori must agree with. Rows are a bag: an item in n rows is its first …
    n-th occurrence, as many as the adversary may know of its kind."""

    def occurrences(g: pd.DataFrame) -> frozenset:
        counts = g.groupby(["item", "kind"]).size()
        most = {0: max(adversary.purchases, 1), 1: max(adversary.contacts, 1)}
        return frozenset((item, kind, j) for (item, kind), n in counts.items() for j in range(min(n, most[kind])))

    sets = {p: (g["cls"].iloc[0], occurrences(g)) for p, g in held.groupby("person")}
    out = {}
    for person, (cls, mine) in sets.items():
        minima, best = [], np.inf
        for size in range(1, adversary.purchases + adversary.contacts + 1):
            for combo in itertools.combinations(sorted(mine), size):
                kinds = [kind for _, kind, _ in combo]
                if kinds.count(0) > adversary.purchases or kinds.count(1) > adversary.contacts:
                    continue
                if any(j and (item, kind, j - 1) not in combo for item, kind, j in combo):
                    continue  # what one may know: an item's second occurrence only with its first
                support = sum(c == cls and set(combo) <= s for c, s in sets.values())
                best = min(best, support)
            minima.append(best)
        out[person] = minima
    return out


@examples(60)
@given(
    st.lists(st.tuples(st.integers(0, 11), st.integers(0, 5), st.integers(0, 1)), min_size=1, max_size=60),
    st.integers(1, 3),
    st.integers(0, 1),
)
def test_apriori_minima_equal_trying_every_itemset(rows, purchases, contacts):
    held = pd.DataFrame(rows, columns=["person", "item", "kind"]).astype(np.int64)
    held["kind"] = held["kind"] if contacts else 0
    held["item"] = held["item"] * 2 + held["kind"]  # a purchase and a contact are never the same item
    # Rows are a bag: a person's item may recur (bought twice), as published rows do.
    held["cls"] = held["person"] % 2  # two relational classes
    adversary = Adversary(5, purchases, contacts)
    expected = _brute_force(held, adversary)
    levels = purchases + contacts
    # Counted in one pass, and a hash range of itemsets at a time (as a release too large for one
    # pass is); itemsets extended from 2 people (the risk figures) or from k (the release gate):
    # exact at the threshold and above, below it wherever the truth is.
    for budget, threshold in ((10**9, 2), (7, 2), (7, 3)):
        found = smallest_support(held, adversary, threshold, budget=budget).set_index("person")
        for person, minima in expected.items():
            got = found.loc[person, [f"min_{level}" for level in range(1, levels + 1)]].tolist()
            assert all(g == e if e >= threshold else g < threshold for g, e in zip(got, minima)), (budget, person, got, minima)


@examples(60)
@given(
    st.lists(st.tuples(st.integers(0, 8), st.sampled_from(["x", "y", None]), st.integers(0, 2)), min_size=1, max_size=30),
    st.lists(st.tuples(st.integers(0, 8), st.sampled_from(["P", "Q"])), max_size=20),
)
def test_relational_classes_are_the_sets_of_values_people_show(crm_rows, pos_rows):
    """Two people share a relational class exactly when they show the same set of values in every
    relational column of every dataset (snapshots that differ show both; no row, no value)."""
    crm = Dataset(
        "crm",
        pa.table(
            {
                "customer_id": [f"c{p}" for p, _, _ in crm_rows],
                "city": [c for _, c, _ in crm_rows],
                "band": pa.array([b for _, _, b in crm_rows], pa.int64()),
                "period": ["2026-03-01"] * len(crm_rows),
            }
        ),
        PROFILE,
        {"customer_id": "customer"},
    )
    pos = Dataset(
        "pos",
        pa.table(
            {
                "customer_id": [f"c{p}" for p, _ in pos_rows],
                "store": [s for _, s in pos_rows],
                "period": ["2026-03-01"] * len(pos_rows),
            }
        ),
        PURCHASES,
        {"customer_id": "customer"},
    )
    datasets = [crm, pos]
    found = people(datasets)
    classes = relational_classes(datasets, found)
    shown: dict[int, tuple] = {}
    for d in datasets:
        columns = found.relational[d.name]
        rows = d.table.select(columns).to_pylist()
        for person in range(found.count):
            mine = frozenset(tuple(r.values()) for r, p in zip(rows, found.ids[d.name]) if p == person)
            shown[person] = shown.get(person, ()) + ((d.name, mine if columns else None),)
    for a, b in itertools.combinations(range(found.count), 2):
        assert (classes[a] == classes[b]) == (shown[a] == shown[b]), (a, b, shown[a], shown[b])


def test_a_value_is_one_code_across_the_files_of_a_dataset_whatever_their_encoding():
    """A release's table is its units' files concatenated: a column in many chunks, plain or
    dictionary-encoded, or in none (a dataset with no rows in a group of units: Arrow cannot make
    an empty dictionary array of dates). Equal rows get equal codes, different rows different ones."""
    days = [dt.date(2026, 3, 1 + i % 28) for i in range(600)]
    plain = [pa.array(days[i : i + 50]) for i in range(0, 600, 50)]
    encoded = pa.chunked_array([c.dictionary_encode() for c in plain])
    # A dataset with no rows in a group of units: a column of no chunks at all.
    assert len(_hash(pa.table({"day": pa.chunked_array([], pa.date32()), "n": pa.chunked_array([], pa.int64())}))) == 0
    for column in (pa.chunked_array(plain), encoded):
        codes = _hash(pa.table({"day": column}))
        assert len(set(codes.tolist())) == 28
        assert all((codes[i] == codes[j]) == (days[i] == days[j]) for i, j in itertools.combinations(range(0, 600, 7), 2))


def test_rows_sharing_a_customer_receipt_or_case_token_are_one_person_and_staff_tokens_join_nothing():
    pos = Dataset(
        "pos",
        pa.table(
            {
                "customer_id": ["a", "a", "b", None],
                "receipt_id": ["r1", "r2", "r3", "r4"],
                "cashier_id": ["s", "s", "s", "s"],
                "x": [1, 2, 3, 4],
            }
        ),
        PURCHASES,
        {"customer_id": "customer", "receipt_id": "receipt", "cashier_id": "staff"},
    )
    cases = Dataset("after_sales", pa.table({"receipt_id": ["r3", "r9"], "y": [1, 2]}), CONTACTS, {"receipt_id": "receipt"})
    found = people([pos, cases])
    ids = found.ids
    assert ids["pos"][0] == ids["pos"][1] and ids["pos"][2] != ids["pos"][0]  # one customer; the staff token joins no one
    assert ids["after_sales"][0] == ids["pos"][2]  # the case reaches its buyer through the receipt
    assert len({*ids["pos"], *ids["after_sales"]}) == found.count == 4


def _write(
    warehouse: Path, dataset: str, day: str, table: pa.Table, tokens: dict[str, str], record: str, extra: dict | None = None
) -> Path:
    """A published file as tuomin writes one: field metadata for tokens, the `tuomin` entry."""
    fields = [f.with_metadata({"tuomin.token": TOKEN.format(tokens[f.name])}) if f.name in tokens else f for f in table.schema]
    table = table.cast(pa.schema(fields))
    path = warehouse / f"dataset={dataset}" / f"period={day}" / "part-0.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {name: {"output": name, "role": "quasi_identifier"} for name in table.column_names if name not in tokens}
    meta = {"dataset": dataset, "period": day, "record": record, "columns": columns, **(extra or {})}
    pq.write_table(table.replace_schema_metadata({"tuomin": json.dumps(meta)}), path)
    return path


def _crowd(people_per_group: int, groups: int, day: str, salt: str, item_of=lambda g: g, shuffle=True) -> pa.Table:
    """Purchases where each group of people bought one identical item, each person once."""
    rows = [
        {"customer_id": f"{salt}-{g}-{i}", "store": f"S{item_of(g)}", "sex": "F"}
        for g in range(groups)
        for i in range(people_per_group)
    ]
    if shuffle:
        np.random.default_rng(0).shuffle(rows)
    return pa.Table.from_pylist(rows)


def _basket(people: int, twice: int = 0) -> pa.Table:
    """Each person bought products A and B; the first `twice` of them A a second time."""
    rows = [{"customer_id": f"b-{i}", "store": "S1", "product": product} for i in range(people) for product in "AB"]
    rows += [{"customer_id": f"b-{i}", "store": "S1", "product": "A"} for i in range(twice)]
    np.random.default_rng(0).shuffle(rows)
    return pa.Table.from_pylist(rows)


def test_a_release_of_crowds_passes_and_each_side_channel_fails_it(tmp_path):
    k = Adversary(k=5)
    good = tmp_path / "good"
    for day in ("2026-03-01", "2026-03-02"):
        _write(good, "pos", day, _crowd(6, 4, day, f"u{day}"), {"customer_id": "customer"}, PURCHASES)
    passed = assess(good, k)
    assert passed.passed, passed.failed()
    assert passed.max_risk == pytest.approx(1 / 6) and passed.singled_out_share == 0

    def failing(name: str, build) -> set[str]:
        root = tmp_path / name
        build(root)
        return {c.name.split(" (")[0] for c in assess(root, k).failed()}

    # One token on two dates: the two days' purchases are one person's record.
    shared = failing(
        "shared",
        lambda root: [
            _write(root, "pos", day, _crowd(6, 4, day, "same"), {"customer_id": "customer"}, PURCHASES)
            for day in ("2026-03-01", "2026-03-02")
        ],
    )
    assert "identifiers shared" in shared
    # A lone item: one person singled out by one purchase.
    lone = failing(
        "lone",
        lambda root: _write(
            root,
            "pos",
            "2026-03-01",
            pa.concat_tables([_crowd(6, 2, "d", "u"), pa.table({"customer_id": ["x"], "store": ["S-rare"], "sex": ["F"]})]),
            {"customer_id": "customer"},
            PURCHASES,
        ),
    )
    assert {"singling out", "re-identification", "k^m"} <= lone
    # Rows are a bag: six people bought A and B, one of them A twice, which nobody else did.
    twice = failing(
        "twice", lambda root: _write(root, "pos", "2026-03-01", _basket(6, twice=1), {"customer_id": "customer"}, PURCHASES)
    )
    assert {"singling out", "k^m"} <= twice
    # A time-ordered export.
    ordered = failing(
        "ordered",
        lambda root: _write(
            root,
            "pos",
            "2026-03-01",
            _crowd(6, 4, "d", "u", shuffle=False).append_column(
                "txn_time", pa.array([dt.datetime(2026, 3, 1, 8) + dt.timedelta(minutes=i) for i in range(24)])
            ),
            {"customer_id": "customer"},
            PURCHASES,
        ),
    )
    assert "row order" in ordered
    # A small count in the metadata, and in the analyst-visible ledger.
    counted = failing(
        "counted",
        lambda root: _write(
            root, "pos", "2026-03-01", _crowd(6, 4, "d", "u"), {"customer_id": "customer"}, PURCHASES, {"rows": {"erased": 2}}
        ),
    )
    assert "counts below k=5" in counted
    ledgered = tmp_path / "ledgered"
    _write(ledgered, "pos", "2026-03-01", _crowd(6, 4, "d", "u"), {"customer_id": "customer"}, PURCHASES)
    republished = Republished(dataset="pos", period="2026-03-01", erased=1, suppressed=0, classes_suppressed=0, ledger_seq=1)
    ledger.append(ledgered, ErasureRequestedEntry(identifier="doc_no", republished=[republished]))
    assert not assess(ledgered, k).passed

    # Two copies of a partition, before and after one person's rows were taken out: new tokens,
    # a new order, and still the difference is that person's record. Taking out six is a crowd's.
    def versions(root: Path, gone: int) -> set[str]:
        earlier, crowd = root / "earlier", _crowd(6, 4, "d", "u")
        entity = {"entity_column": "customer_id"}
        _write(earlier, "pos", "2026-03-01", crowd, {"customer_id": "customer"}, PURCHASES, entity | {"run_id": "r1"})
        kept = crowd.filter(pc.invert(pc.is_in(crowd["customer_id"], pa.array([f"u-0-{i}" for i in range(gone)]))))
        renamed = kept.set_column(0, "customer_id", pc.binary_join_element_wise("v2-", kept["customer_id"], ""))
        _write(
            root / "now",
            "pos",
            "2026-03-01",
            renamed.take(pa.array(np.random.default_rng(1).permutation(renamed.num_rows))),
            {"customer_id": "customer"},
            PURCHASES,
            entity | {"run_id": "r2"},
        )
        found = assess(root / "now", k, against=earlier)
        assert [v["records_gone"] for v in found.versions] == [gone]
        return {c.name for c in found.failed()}

    assert "version differences" in versions(tmp_path / "one-erased", 1)
    assert "version differences" not in versions(tmp_path / "six-erased", 6)

    # Two snapshots linked by a token, where someone's age band moved: a birthday, to the day.
    def snapshots(root):
        for day, band in (("2026-03-01", "30-34"), ("2026-03-02", "35-39")):
            members = pa.table({"customer_id": [f"m{i}" for i in range(10)], "age": ["30-34"] * 9 + [band]})
            _write(root, "membership", day, members, {"customer_id": "customer"}, PROFILE)

    assert {"snapshot differencing", "identifiers shared"} <= failing("snapshots", snapshots)

    # Snapshots of two dates with tokens of their own still chain: a tuple unique on both dates is
    # one member followed, and a class where fewer than k people changed tells who; five who move
    # together are a crowd's change.
    def chained(root, ages):
        for day, age in zip(("2026-03-01", "2026-03-02"), ages):
            members = pa.table({"customer_id": [f"{day}-{i}" for i in range(len(age))], "age": age})
            _write(root, "membership", day, members, {"customer_id": "customer"}, PROFILE)

    unique = ["30-34"] * 9 + ["60-64"]
    assert "snapshot chaining" in failing("unique", lambda root: chained(root, (unique, unique)))
    assert "snapshot chaining" in failing("one-moved", lambda root: chained(root, (["30-34"] * 10, ["30-34"] * 9 + ["35-39"])))
    assert "snapshot chaining" not in failing("five-moved", lambda root: chained(root, (["30-34"] * 10, ["30-34", "35-39"] * 5)))
    # Staff are people: a cashier token is an identifier.
    staff = failing(
        "staff",
        lambda root: _write(
            root,
            "pos",
            "2026-03-01",
            _crowd(6, 4, "d", "u").append_column("cashier_id", pa.array(["s1"] * 24)),
            {"customer_id": "customer", "cashier_id": "staff"},
            PURCHASES,
        ),
    )
    assert "staff identifiers" in staff


def test_the_pipelines_release_holds_against_the_intruder(published, landing):
    """The release a real flow run publishes passes: nobody singled out, k^m within classes, no
    token joining partitions, no staff token or free text, no count below k where analysts read;
    and the measurement holds no value."""
    from tests.leaks import find_leaks, raw_identifiers

    result = CliRunner().invoke(app, ["risk", "--warehouse", str(published.warehouse), "--format", "json"])
    found = json.loads(result.output)
    assert result.exit_code == 0 and found["passed"], [c for c in found["checks"] if not c["passed"]]
    assert found["singled_out_share"] == 0 and found["max_risk"] <= 0.2
    assert all(v == 0 for stats in found["shared_identifiers"].values() for key, v in stats.items() if key != "values")
    assert not found["staff_identifiers"] and not found["free_text"]
    assert not find_leaks([result.output], raw_identifiers(landing))


def test_a_time_ordered_export_is_published_in_an_order_that_tells_nothing(prefect_server, landing, tmp_path):
    """POS exported as a till writes it (by time, a receipt's lines together): the published rows
    are in the hash order of their own values, so neither the time nor the receipt comes back
    from a row's position, and `tuomin risk` finds no order."""
    import shutil

    from tests.conftest import run_flow
    from transforms import shuffle
    from transforms.risk import spearman_p

    copy = tmp_path / "landing"
    shutil.copytree(landing, copy)
    [export] = (copy / "pos" / "2026-03-01").glob("*.csv")
    frame = pd.read_csv(export, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    frame.sort_values(["txn_time", "txn_id", "line_no"]).to_csv(export, index=False, encoding="utf-8-sig")
    run = run_flow(copy, tmp_path, date="2026-03-01")
    assert run.state.is_completed(), run.state.message
    published = pq.read_table(run.warehouse / "dataset=pos" / "period=2026-03-01" / "part-0.parquet")
    hashes = shuffle.keys(published)
    assert published.num_rows > 500 and np.all(hashes[:-1] <= hashes[1:])
    assert spearman_p(published["txn_time"].to_pandas())[1] > 1e-3
    # In export order the same rows' (generalized) times would have given the order away.
    assert spearman_p(frame.sort_values("txn_time")["txn_time"].str[:13])[1] < 1e-3
    found = json.loads(CliRunner().invoke(app, ["risk", "--warehouse", str(run.warehouse), "--format", "json"]).output)
    assert found["row_order"] == [] and next(c for c in found["checks"] if c["name"] == "row order")["passed"]


def test_the_release_gate_refuses_each_failure_naming_the_criterion_and_the_dataset(tmp_path):
    """The gate that runs before publishing (flows/pipeline/intruder.gate: GX on the person frame, then the side
    channels) passes a release of crowds and refuses each way of failing it, saying which
    criterion failed in which dataset."""
    from flows.pipeline.intruder import gate

    day = "2026-03-01"
    customer = {"customer_id": "customer"}

    def failures(name: str, *files: tuple) -> list[str]:
        root = tmp_path / name
        staged = {
            dataset: {day: _write(root, dataset, day, table, tokens, record, {"k": 5, "m": 3} | (extra or {}))}
            for dataset, table, tokens, record, extra in files
        }
        verdict = gate(staged, root)
        assert verdict.outcome.success == (not any("k^m" in f or "l-div" in f or "unit" in f for f in verdict.failures))
        return verdict.failures

    crowd = ("pos", _crowd(6, 4, "d", "u"), customer, PURCHASES, None)
    cases = ("after_sales", _crowd(5, 2, "d", "c"), customer, CONTACTS, None)
    assert failures("good", crowd, cases) == []

    lone = failures(
        "lone",
        (
            "pos",
            pa.concat_tables([_crowd(6, 2, "d", "u"), pa.table({"customer_id": ["x"], "store": ["S-rare"], "sex": ["F"]})]),
            customer,
            PURCHASES,
            None,
        ),
        cases,
    )
    assert lone == [
        "k^m (m=0) on the person-level record: 1 people in a crowd smaller than their k in pos"
    ]  # each buys once: store is relational

    # Rows are a bag: a product bought twice is two purchases, which only one person made.
    assert failures("bag", ("pos", _basket(6), customer, PURCHASES, None), cases) == []
    twice = failures("twice", ("pos", _basket(6, twice=1), customer, PURCHASES, None), cases)
    assert twice == ["k^m (m=2) on the person-level record: 1 people in a crowd smaller than their k in pos"]

    shared = failures("shared", crowd, ("after_sales", _crowd(6, 4, "d", "u"), customer, CONTACTS, None))
    assert "a token shared outside its unit: 24 people whose rows span datasets or units in after_sales, pos" in shared

    ordered = failures(
        "ordered",
        (
            "pos",
            _crowd(6, 4, "d", "u", shuffle=False).append_column(
                "txn_time", pa.array([dt.datetime(2026, 3, 1, 8 + i // 6) for i in range(24)])
            ),
            customer,
            PURCHASES,
            None,
        ),
    )  # a crowd per hour
    assert ordered == ["row order follows txn_time in pos"]

    # A republication carries none of the tokens of the version it replaces: here the staged crowd
    # is a copy of the published one, tokens and all.
    recorded = {"k": 5, "m": 3}
    published = {"pos": {day: _write(tmp_path / "published", "pos", day, _crowd(6, 4, "d", "u"), customer, PURCHASES, recorded)}}
    again = {"pos": {day: _write(tmp_path / "again", "pos", day, _crowd(6, 4, "d", "u"), customer, PURCHASES, recorded)}}
    assert gate(again, tmp_path / "again").failures == []
    assert gate(again, tmp_path / "again", replaces=published).failures == [
        f"a token shared with the version it replaces: 24 token value(s) in pos {day}"
    ]

    counted = failures("counted", ("pos", _crowd(6, 4, "d", "u"), customer, PURCHASES, {"rows": {"erased": 2}}))
    assert counted == ["count below k=5 in the file metadata of pos (rows.erased)"]

    staff = failures(
        "staff",
        (
            "pos",
            _crowd(6, 4, "d", "u").append_column("cashier_id", pa.array(["s1"] * 24)),
            {**customer, "cashier_id": "staff"},
            PURCHASES,
            None,
        ),
    )
    assert staff == ["staff token published in pos.cashier_id"]

    members = pa.table(
        {
            "customer_id": [f"m{i}" for i in range(10)],
            "age": ["30-34"] * 5 + ["35-39"] * 5,
            "points": ["0-999"] * 5 + ["0-999", "1000+", "0-999", "1000+", "0-999"],
        }
    )
    roles = {
        "columns": {
            "age": {"output": "age", "role": "quasi_identifier"},
            "points": {"output": "points", "role": "sensitive_attribute"},
        },
        "l_diversity": [{"column": "points", "l": 2}],
    }
    certain = failures("certain", ("membership", members, customer, PROFILE, roles))
    assert certain == ["l-diversity (l=2) of membership.points: 5 people whose class holds fewer values in membership"]


def test_a_release_whose_tokens_join_its_units_is_not_published(prefect_server, landing, tmp_path, monkeypatch):
    """With tokens keyed to nothing (the same customer token in every dataset), the date's
    after-sales cases join its purchases: the release gate refuses the date before anything is
    written into the warehouse, and says which criterion failed where."""
    from flows.pipeline import passes
    from tests.conftest import run_flow

    keyed = passes.Job.context
    monkeypatch.setattr(
        passes.Job, "context", lambda self, policy, names=frozenset(), unit="": keyed(self, policy, names, unit="")
    )
    run = run_flow(landing, tmp_path, every=True)
    assert run.state.is_failed()
    error = run.summary.error
    assert "the release fails: k^m (m=0) on the person-level record: " in error, error
    assert (
        "| a token shared outside its unit: " in error
        and "people whose rows span datasets or units in after_sales, membership, pos" in error
    ), error
    assert not list(run.warehouse.glob("dataset=*/period=*/*.parquet"))
    # What the refusal wrote (the run's summary and ledger entry, the GX results of the person
    # frame) holds counts and names, never a raw identifier.
    from tests.leaks import find_leaks, raw_identifiers

    texts = [run.summary.model_dump_json()]
    texts += [
        f.read_text("utf-8", errors="replace")
        for f in run.restricted.rglob("*")
        if f.is_file() and f.suffix in (".json", ".jsonl", ".html")
    ]
    assert any("release" in t for t in texts[1:]) and not find_leaks(texts, raw_identifiers(landing))


@pytest.mark.parametrize("columns", [64, 1])
def test_a_token_shared_between_units_the_gate_reads_apart_is_refused(tmp_path, monkeypatch, columns):
    """The gate reads units in groups (memory follows a group, not the release); a token in two
    units of different groups is still found, over every file, whether one query reads every
    token column's hashes or each is read by a query of its own."""
    from flows.pipeline import intruder

    monkeypatch.setattr(intruder, "GATE_ROWS", 1)  # every unit a group of its own
    monkeypatch.setattr(intruder, "SHARED_COLUMNS", columns)
    customer = {"customer_id": "customer"}
    staged = {
        "pos": {
            day: _write(tmp_path, "pos", day, _crowd(6, 4, day, "same"), customer, PURCHASES, {"k": 5, "m": 3})
            for day in ("2026-03-01", "2026-03-02")
        }
    }
    shared = "a token shared outside its unit: 24 token value(s) in more than one unit"
    assert intruder.gate(staged, tmp_path).failures == [shared]
    apart = {
        "pos": {
            day: _write(tmp_path / "apart", "pos", day, _crowd(6, 4, day, day), customer, PURCHASES, {"k": 5, "m": 3})
            for day in ("2026-03-01", "2026-03-02")
        }
    }
    assert intruder.gate(apart, tmp_path / "apart").failures == []


def test_groups_of_one_kind_of_item_each_are_judged_at_every_m_of_the_release(tmp_path, monkeypatch):
    """The intruder knows 3 purchases and 3 contacts (m up to 6), but the gate reads units in
    groups, and a group of purchases only counts itemsets of up to 3: a buyer's crowd at m = 4..6
    is their crowd at 3 (they hold no larger itemset). Every m is judged, none raises."""
    from flows.pipeline import intruder

    monkeypatch.setattr(intruder, "GATE_ROWS", 1)  # every unit a group of its own
    customer = {"customer_id": "customer"}
    staged = {
        "pos": {
            "2026-03-01": _write(tmp_path, "pos", "2026-03-01", _crowd(6, 4, "a", "p"), customer, PURCHASES, {"k": 5, "m": 3})
        },
        "after_sales": {
            "2026-03-02": _write(
                tmp_path, "after_sales", "2026-03-02", _crowd(6, 4, "b", "c"), customer, CONTACTS, {"k": 5, "m": 3}
            )
        },
    }
    verdict = intruder.gate(staged, tmp_path)
    assert verdict.failures == [] and verdict.people == 48
    judged = {c["arguments"].get("m") for c in verdict.outcome.checks if c["expectation"] == "expect_people_to_be_km_anonymous"}
    assert set(range(1, 7)) <= judged, judged
    # A crowd too small in one group is still caught at every m above its own.
    staged["pos"]["2026-03-01"] = _write(
        tmp_path, "pos", "2026-03-01", _crowd(4, 4, "a", "p"), customer, PURCHASES, {"k": 5, "m": 3}
    )
    assert any(f.startswith("k^m") for f in intruder.gate(staged, tmp_path).failures)


@given(st.lists(st.integers(0, 12), min_size=4, max_size=4), st.integers(2, 6), st.booleans())
def test_a_hidden_row_count_never_comes_back_by_subtraction(terms, k, quarantine_recorded):
    """A partition's rows add up (read = quarantined + erased + suppressed + published; a unit's
    rows may not record quarantine): once coarsened, a count below k is never the one hidden
    figure of the sum, and what is shown is exact."""
    from flows.pipeline.intruder import ROW_SUM, coarsen

    exact = dict(zip(ROW_SUM[1], terms)) | {"read": sum(terms)}
    if not quarantine_recorded:
        exact["read"] -= exact.pop("quarantined")
    shown = coarsen({"rows": exact}, k)["rows"]
    hidden = [key for key, value in shown.items() if isinstance(value, str)]
    assert all(shown[key] == exact[key] for key in exact if key not in hidden)
    assert all(shown[key] == f"<{k}" for key in exact if 0 < exact[key] < k)
    assert all(exact[key] >= k for key in hidden if shown[key] == f"≥{k}")
    assert len(hidden) != 1
