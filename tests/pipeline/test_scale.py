"""Streaming and distribution: the result must not depend on how the work is cut up.

Batches, files and workers only change how the rows travel; the plan (levels, suppressed
classes) is made from merged tallies, so any split gives the same published rows.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from flows.runtime.ahead import ahead
from flows.storage import ledger
from flows.storage.warehouse import partition_files
from tests.conftest import TEST_KEY, run_flow
from tests.examples import examples
from transforms import outofcore, plan
from transforms.operators import Context
from transforms.pseudonymize import Pseudonymizer
from transforms.redact import NameMatcher

DAY1 = "2026-03-01"


@pytest.fixture(scope="module")
def members(landing):
    """The first day's CRM snapshot, parsed and staged as pass 1 stages it."""
    from flows.runtime.paths import POLICIES
    from tests.conftest import read_all
    from transforms.policy import load_policies
    from transforms.steps import parse_table

    policy = load_policies(POLICIES)["membership"]
    table = parse_table(read_all(landing, policy, dt.date(2026, 3, 1)), policy).table
    ctx = Context(Pseudonymizer(TEST_KEY.encode()), POLICIES, NameMatcher([]), policy.privacy.reference_date)
    staged = _stage(table, policy, ctx)
    return policy, ctx, plan.hierarchies(policy, ctx), staged


def _stage(table: pa.Table, policy, ctx: Context) -> pa.Table:
    """A snapshot's rows staged as pass 1 stages them (their unit: the snapshot's date)."""
    from transforms.steps import entity_tokens
    from transforms.units import labels

    tokens = entity_tokens(table, policy, ctx.pseudonymizer)
    return plan.stage(table, tokens, np.zeros(table.num_rows, bool), policy, labels(table, policy.unit, dt.date(2026, 3, 1)))


def _cut(table: pa.Table, sizes: list[int]) -> list[pa.Table]:
    parts, start = [], 0
    for size in sizes:
        parts.append(table.slice(start, size))
        start += size
    return parts + [table.slice(start)]


@pytest.mark.slow
@examples(8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 700), max_size=6), erase=st.integers(0, 40))
def test_any_split_into_batches_gives_the_plan_and_rows_of_the_whole(members, sizes, erase):
    policy, ctx, built, staged = members
    erased = set(staged[plan.ENTITY].slice(0, erase).to_pylist())
    whole = plan.solve(plan.merge([plan.tally(staged, policy, ctx, built)], policy), policy, built, erased)
    parts = _cut(staged, sizes)
    # Tallies merged in any grouping (batches, then files) equal the tally of the whole.
    tallies = [plan.tally(p, policy, ctx, built) for p in parts]
    merged = plan.merge([plan.merge(tallies[:2], policy)] + tallies[2:], policy)
    split = plan.solve(merged, policy, built, erased)
    side_by_side = plan.solve(plan.concat(tallies), policy, built, erased)  # the engine merges them itself
    _same_plan_and_rows(staged, parts, whole, [split, side_by_side], policy, ctx, built, erased)


@pytest.mark.slow
@pytest.mark.parametrize("sizes, erase", [([300, 1, 420], 17)])
def test_the_out_of_core_search_gives_the_plan_and_rows_of_the_in_memory_one(members, sizes, erase):
    """As the pipeline does it at scale: tallies written to files, the search in DuckDB on disk
    (one split: every node costs a query, so the properties above are checked in memory)."""
    policy, ctx, built, staged = members
    erased = set(staged[plan.ENTITY].slice(0, erase).to_pylist())
    whole = plan.solve(plan.merge([plan.tally(staged, policy, ctx, built)], policy), policy, built, erased)
    parts = _cut(staged, sizes)
    tallies = [plan.tally(p, policy, ctx, built) for p in parts]
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(outofcore, "IN_MEMORY", 0):
        files = [Path(tmp) / f"{i}.parquet" for i in range(len(tallies))]
        for file, t in zip(files, tallies):
            pq.write_table(t.parts[0], file)
        out_of_core = plan.solve(
            plan.Tally(files, plan.concat(tallies).representatives), policy, built, erased, Path(tmp) / "engine"
        )
        assert not (Path(tmp) / "engine").exists()
    _same_plan_and_rows(staged, parts, whole, [out_of_core], policy, ctx, built, erased)


def _same_plan_and_rows(staged, parts, whole, others, policy, ctx, built, erased) -> None:
    one = plan.finish(staged, whole, policy, ctx, built, erased).table
    for other in others:
        assert other.solution.levels == whole.solution.levels
        assert (other.erased, other.suppressed) == (whole.erased, whole.suppressed)
        assert np.array_equal(other.suppressed_keys, whole.suppressed_keys)
        rows = pa.concat_tables([plan.finish(p, other, policy, ctx, built, erased).table for p in parts])
        assert rows.equals(one)
    assert one.num_rows == staged.num_rows - whole.erased - whole.suppressed


@examples(6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 700), max_size=5), spilled=st.booleans())
def test_classes_of_batches_merge_to_the_classes_of_the_whole(members, sizes, spilled):
    """The classes of pass 2's batches (a customer's combination may recur across them), held in
    memory or written to files, give the k/l checks and every figure what the published rows
    give, with one row per class and sensitive value instead of one per class and customer."""
    from transforms import metrics

    policy, ctx, built, staged = members
    decided = plan.solve(plan.merge([plan.tally(staged, policy, ctx, built)], policy), policy, built, set())
    published = plan.finish(staged, decided, policy, ctx, built, set()).table
    published = pa.concat_tables([published, published.slice(0, published.num_rows // 3)])  # people with 2 rows
    pieces = [plan.classes(p, policy) for p in _cut(published, sizes)]
    with tempfile.TemporaryDirectory() as tmp:
        if spilled:
            files = [Path(tmp) / f"{i}.parquet" for i in range(len(pieces))]
            for file, piece in zip(files, pieces):
                pq.write_table(piece, file)
            pieces = files
        frame = plan.classes_frame(pieces, policy, Path(tmp) / "classes" if spilled else None)
    qis = decided.qis
    assert frame[plan.ROWS].sum() == published.num_rows
    assert len(frame) == len(
        published.select(qis + policy.sensitive_outputs).group_by(qis + policy.sensitive_outputs).aggregate([])
    )
    compact = metrics.summary(frame, qis, None, policy.privacy.k, policy.sensitive_outputs, count=plan.ROWS, people=plan.PEOPLE)
    rows = metrics.summary(published.to_pandas(), qis, policy.entity, policy.privacy.k, policy.sensitive_outputs)
    assert compact.keys() == rows.keys()
    for key, value in rows.items():  # floats summed in another order may differ in the last digit
        assert compact[key] == (pytest.approx(value) if isinstance(value, float) else value), key


@examples(40)
@given(
    rows=st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.integers(0, 3)), max_size=60),
    sizes=st.lists(st.integers(0, 25), max_size=5),
    batch_rows=st.integers(1, 30),
)
def test_the_published_order_is_the_hash_order_of_the_rows_however_they_arrive(tmp_path_factory, rows, sizes, batch_rows):
    """Whatever the batches and the number of buckets, the rows come out once each, sorted by
    the hash of their values: the order depends on the rows alone, never on the export's."""
    from flows.pipeline import passes
    from transforms import shuffle

    table = pa.table({"s": pa.array([r[0] for r in rows], pa.string()), "n": pa.array([r[1] for r in rows], pa.int64())})
    batches = _cut(table, sizes)
    work = tmp_path_factory.mktemp("shuffle")
    with mock.patch.object(passes, "BATCH_ROWS", batch_rows):
        out = pa.concat_tables(list(passes.shuffled(iter(batches), table.num_rows, work)))
    assert out.schema == table.schema and out.num_rows == table.num_rows
    assert sorted(out.to_pylist(), key=repr) == sorted(table.to_pylist(), key=repr)
    hashes = shuffle.keys(out)
    assert np.all(hashes[:-1] <= hashes[1:])
    assert out.equals(shuffle.in_order(table))  # one batch, in memory
    assert not list(work.rglob("*.arrow"))  # the buckets' spill files are gone


def test_a_unit_whose_every_row_was_taken_out_is_published_empty_with_its_schema(tmp_path):
    """Pass 2 holds a unit's rows in a spill file; when suppression or erasure took every row (a
    quiet day's few cases, in a year of history), the file holds the schema and no batch, and the
    unit is still published: one empty table, with its columns."""
    from flows.pipeline import passes
    from flows.storage.spill import Spill

    schema = pa.schema([("s", pa.string()), ("n", pa.int64())])
    rows = Spill(tmp_path / "unit.arrow")
    rows.write(schema.empty_table())
    held = list(passes.held_tables(rows.close()))
    assert [t.num_rows for t in held] == [0] and held[0].schema == schema
    [out] = list(passes.shuffled(iter(held), 0, tmp_path / "shuffle"))
    assert out.num_rows == 0 and out.schema == schema


def test_ahead_gives_every_item_in_order_and_raises_where_the_source_raised():
    assert list(ahead(range(100))) == list(range(100)) and list(ahead([])) == []

    def failing():
        yield 1
        raise ValueError("boom")

    got = []
    with pytest.raises(ValueError, match="boom"):
        for item in ahead(failing()):
            got.append(item)
    assert got == [1]


def test_ahead_produces_the_next_item_while_the_consumer_works_and_stops_when_closed():
    produced, second = [], threading.Event()

    def source():
        for i in range(5):
            produced.append(i)
            if i == 1:
                second.set()
            yield i

    items = ahead(source())
    assert next(items) == 0
    assert second.wait(10), "the next item was not produced while the consumer held the first"
    items.close()
    assert produced == [0, 1]  # one item ahead at most, and nothing after closing


def test_a_file_is_read_in_blocks_with_ragged_rows_set_aside(landing):
    from flows.runtime.paths import POLICIES
    from flows.storage.landing import Landing, files_for, iter_csv
    from transforms.policy import load_policies

    policy = load_policies(POLICIES)["pos"]
    area = Landing(landing)
    relative = files_for(area, policy, dt.date(2026, 3, 1))[0]
    ragged: list[str] = []
    batches = list(iter_csv(area, relative, policy, ragged, block_size=16 << 10))
    whole = list(iter_csv(area, relative, policy, ragged))
    assert len(batches) > 5 and len(whole) == 1 and not ragged
    assert pa.concat_tables(batches).equals(whole[0])
    assert whole[0].num_rows == len((landing / relative).read_text(encoding="utf-8-sig").splitlines()) - 1


def _rows(path) -> list[tuple]:
    table = pq.read_table(path)
    return sorted(zip(*(table[c].to_pylist() for c in table.column_names)), key=repr)


def test_tiny_batches_publish_what_one_batch_publishes(prefect_server, landing, published, tmp_path, monkeypatch):
    """A real flow run with pass-1 batches of 8 KiB and pass-2 batches of 97 rows."""
    from flows.pipeline import passes

    monkeypatch.setattr(passes, "BATCH_BYTES", 8 << 10)
    monkeypatch.setattr(passes, "BATCH_ROWS", 97)
    run = run_flow(landing, tmp_path)
    assert run.state.is_completed(), run.state.message
    assert run.summary.datasets == published.summary.datasets
    for path in partition_files(published.warehouse):
        mine = run.warehouse / path.relative_to(published.warehouse)
        assert pq.read_table(mine).equals(pq.read_table(path)), path
        if pq.ParquetFile(path).metadata.num_rows > 97:
            assert pq.ParquetFile(mine).num_row_groups > 1  # it was written batch by batch
    assert not (run.restricted / ".work").exists() or not any((run.restricted / ".work").iterdir())


@pytest.mark.slow
def test_a_dask_cluster_publishes_what_one_process_publishes(prefect_server, landing, published, tmp_path, capfd):
    """Per-file scans and per-partition writes on a 2-worker LocalCluster (an existing scheduler,
    given by address, as a real cluster would be); and nothing raw escapes on the way: not in the
    workers' or the flow's logs (printed, or stored by the Prefect API), Prefect's result storage,
    GX results, the ledger, or any file left in the work area. (The engine out of core, DuckDB on
    disk, is checked against the in-memory one above: on this landing it costs a minute here.)"""
    from distributed import LocalCluster
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import LogSort
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH

    from tests.leaks import find_leaks, raw_identifiers

    with LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=None, env={"PREFECT_API_URL": PREFECT_API_URL.value()}
    ) as cluster:
        run = run_flow(landing, tmp_path, runner="dask", dask_address=cluster.scheduler_address)
    assert run.state.is_completed(), run.state.message
    assert run.summary.datasets == published.summary.datasets
    for path in partition_files(published.warehouse):
        assert _rows(run.warehouse / path.relative_to(published.warehouse)) == _rows(path), path

    printed = capfd.readouterr()
    with get_client(sync_client=True) as client:
        stored = [log.message for log in client.read_logs(limit=200, sort=LogSort.TIMESTAMP_DESC)]  # this run's
    storage = PREFECT_LOCAL_STORAGE_PATH.value()
    files = [
        *(p for p in storage.rglob("*") if p.is_file()),
        *(p for p in (run.restricted / "gx").rglob("*") if p.is_file()),
        *run.warehouse.glob("_ledger/*"),
    ]
    texts = [printed.out, printed.err, *stored, *(p.read_text(errors="ignore") for p in files)]
    assert len(stored) > 10 and any("pos: published" in m for m in stored)  # the scan sees this run's logs
    assert not find_leaks(texts, raw_identifiers(landing))
    assert not [p for p in (run.restricted / ".work").rglob("*") if p.is_file() and p.name != "warehouse"]


def test_bad_rows_deep_in_a_file_are_quarantined_with_their_row_numbers(prefect_server, landing, tmp_path, monkeypatch):
    """With 8 KiB batches, rows that do not parse (or have a wrong field count) in later batches
    go to the restricted quarantine under their own data row number, and the counts reconcile."""
    import csv
    import io
    import shutil

    from flows.pipeline import passes

    copy = tmp_path / "landing"
    shutil.copytree(landing, copy)
    path = next((copy / "pos" / DAY1).glob("*.csv"))
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = next(csv.reader([lines[0]]))
    bad_time = 700  # data row numbers (1-based)
    row = next(csv.reader([lines[bad_time]]))
    row[header.index("txn_time")] = "2026-02-30 10:00:00"  # not a date (Arrow would roll it into March)
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    lines[bad_time] = out.getvalue()
    lines.insert(751, "ragged,row")  # after data row 750
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    monkeypatch.setattr(passes, "BATCH_BYTES", 8 << 10)

    run = run_flow(copy, tmp_path / "out", date=DAY1)
    assert run.state.is_completed(), run.state.message
    [record] = ledger.runs(run.restricted)
    read = record["files"][path.relative_to(copy).as_posix()]
    assert read["quarantined"] == 2 and read["rows"] == read["placed"] + 2
    counts = run.summary.datasets["pos"].counts
    assert counts.read == read["placed"] == counts.published + counts.suppressed + counts.erased
    files = list((run.restricted / "quarantine" / "pos").rglob("*.csv"))
    assert files and all(oct(f.stat().st_mode & 0o777) == "0o600" for f in files)
    found = [r for f in files for r in csv.DictReader(f.open(encoding="utf-8"))]
    assert {(r["row"], r["problem"]) for r in found} == {(str(bad_time), "unparseable: txn_time"), ("", "wrong number of fields")}


def test_cell_suppression_counts_over_the_whole_export(landing, policy_copy):
    """Cell suppression decides on whole-column counts even when the column arrives in batches: a
    value common in the export survives in a batch where it is rare."""
    from tests.conftest import read_all
    from transforms.policy import load_policies
    from transforms.steps import parse_table

    path = policy_copy / "membership.yaml"
    text = path.read_text()
    start = text.index("  tier:\n")
    end = text.index("  points:\n")
    path.write_text(
        text[:start] + "  tier:\n    aliases: [会员等级]\n    role: sensitive_attribute\n    kind: category\n"
        "    pipl: general\n    purpose: Tier mix, rare tiers blanked.\n    transform: suppress\n"
        "    params: {min_count: 150}\n" + text[end:]
    )
    policy = load_policies(policy_copy)["membership"]
    ctx = Context(Pseudonymizer(TEST_KEY.encode()), policy_copy, NameMatcher([]), policy.privacy.reference_date)
    table = parse_table(read_all(landing, policy, dt.date(2026, 3, 1)), policy).table
    staged = _stage(table, policy, ctx)
    built = plan.hierarchies(policy, ctx)
    parts = _cut(staged, [300, 600])
    decided = plan.solve(plan.concat([plan.tally(p, policy, ctx, built) for p in parts]), policy, built, set())
    decided = decided.with_counts(plan.merge_counts([plan.count_values(p, policy, set()) for p in parts]), policy)
    first = plan.finish(parts[0], decided, policy, ctx, built, set())
    common = set(policy.column("tier").operator.apply(staged["tier"], ctx).drop_null().to_pylist())
    rare_in_first = {v for v, n in pd.Series(parts[0]["tier"].to_pylist()).value_counts().items() if n < 150}
    assert common & rare_in_first  # the case that per-batch counting would get wrong
    assert set(first.table["tier"].drop_null().to_pylist()) == common & set(parts[0]["tier"].to_pylist())
    assert first.cells_suppressed.get("tier", 0) > 0
