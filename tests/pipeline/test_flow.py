"""Real flow runs (Prefect test server, GX, Parquet read back) on generated exports."""

from __future__ import annotations

import collections
import json
import re
import shutil
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.storage import ledger
from flows.storage.entries import Rows
from flows.storage.footer import read_footer
from tests.conftest import TEST_KEY, run_flow
from tests.leaks import find_leaks, norm, raw_identifiers, read_landing
from transforms.pseudonymize import Pseudonymizer

DATASETS = ("pos", "membership", "after_sales")


def _published_strings(warehouse: Path) -> list[str]:
    values = []
    for path in warehouse.rglob("*.parquet"):
        table = pq.read_table(path)
        for field in table.schema:
            if field.type == "string":
                values += [v for v in table[field.name].to_pylist() if v]
        values.append(pq.ParquetFile(path).metadata.metadata[b"tuomin"].decode())
    return values


def test_run_completes_and_counts_reconcile(published):
    """Every row accounted for: per file read, rows = quarantined + placed in units (its run
    entry lists every file); per unit, placed = published + suppressed + erased; per dataset,
    the run's summary adds its units up. One partition per unit of the rows' own dates."""
    from flows.storage import ledger

    assert published.state.is_completed(), published.state.message
    entries = ledger.partition_entries(published.restricted)
    assert sorted(entries) == [
        ("after_sales", "2026-03-01"),
        ("after_sales", "2026-03-02"),
        ("membership", "2026-03-02"),  # the latest snapshot only
        ("pos", "2026-03-01"),
        ("pos", "2026-03-02"),
    ]
    for (name, period), entry in entries.items():
        c = entry.data.rows
        assert c.read == c.published + c.suppressed + c.erased and c.reconciles(), (name, period)
        assert c.published > 0 and c.read == sum(f.rows for f in entry.data.inputs)
        meta = read_footer(published.warehouse / entry.data.output.path)
        assert meta["rows"] == {"published": c.published} and meta["policy_sha256"] and meta["key_id"].startswith("k1-")
        assert meta["period"] == period and meta["grain"] == ("snapshot" if name == "membership" else "day")
        assert TEST_KEY not in json.dumps(meta)
    for name, info in published.summary.datasets.items():
        units = [e.data.rows for (d, _), e in entries.items() if d == name]
        assert info.units == len(units) and info.counts == Rows.total(units)
    [record] = ledger.runs(published.restricted)
    assert len(record["files"]) == 6  # POS day 1, day 2 in two parts; 2 days of cases; the latest snapshot
    for path, f in record["files"].items():
        assert f["rows"] == f["quarantined"] + f["placed"] + f["elsewhere"] > 0, path


def test_leak_scan_finds_planted_values(landing):
    raw = raw_identifiers(landing)
    mobile, document, name = sorted(raw["mobile"])[0], sorted(raw["document"])[0], sorted(raw["name"])[0]
    planted = [f"回访 +86 {mobile[:3]} {mobile[3:7]}-{mobile[7:]}", document.lower(), f"顾客{name}", "clean text"]
    assert {kind for kind, _ in find_leaks(planted, raw)} >= {"mobile", "document", "name"}


def test_no_raw_identifier_is_published(published, landing):
    """Every string in every file (values and metadata), normalized, against every raw value."""
    leaks = find_leaks(_published_strings(published.warehouse), raw_identifiers(landing))
    assert not leaks, sorted(leaks)[:10]


def test_hive_partitions_and_duckdb(published):
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT dataset, period, count(*) FROM read_parquet('{published.warehouse}/dataset=*/period=*/*.parquet',"
        " hive_partitioning=true, union_by_name=true) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    days = ("2026-03-01", "2026-03-02")
    assert {(r[0], str(r[1])) for r in rows} == {(d, day) for d in ("pos", "after_sales") for day in days} | {
        ("membership", "2026-03-02")
    }
    for path in published.warehouse.rglob("*.parquet"):
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_k_anonymity_recomputed_from_metadata_holds(published):
    """An independent check with DuckDB, driven only by what each file's metadata declares."""
    con = duckdb.connect()
    for path in published.warehouse.rglob("*.parquet"):
        meta = read_footer(path)
        qi = ", ".join(f'"{c}"' for c in meta["quasi_identifiers"])
        row = "'row' || file_row_number"  # a row without a customer counts as a person of its own
        entity = f'coalesce("{meta["entity_column"]}", {row})' if meta["entity_column"] else row
        smallest = con.execute(
            f"SELECT min(n) FROM (SELECT count(DISTINCT {entity}) AS n"
            f" FROM read_parquet('{path}', file_row_number=true) GROUP BY {qi or 'true'})"
        ).fetchone()[0]
        assert smallest >= meta["k"] == 5, path


def test_a_token_joins_nothing_outside_its_partition(published, landing):
    """A customer's token is keyed to the partition (dataset, date and version): inside it, one
    person has one token; outside it, the same person has another, and the pipeline's own (global)
    token appears nowhere."""
    from flows.storage.footer import read_footer

    raw = read_landing(landing)
    pseudonymizer = Pseudonymizer(TEST_KEY.encode())
    partitions = {
        p: (pq.read_table(p)["customer_id"], read_footer(p)["unit"])
        for p in sorted(published.warehouse.glob("dataset=*/*/*.parquet"))
    }
    seen: dict[str, Path] = {}
    for path, (tokens, _) in partitions.items():
        for token in set(tokens.drop_null().to_pylist()):
            assert token not in seen, f"{token[:6]}… in {seen[token]} and {path}"
            seen[token] = path
    # A member who bought something on the first date: their token there is the partition's keying of theirs.
    members = raw["membership"].drop_duplicates("会员编号").set_index("会员编号")["证件号码"]
    buyers = {norm(d) for d in raw["pos"]["doc_no"]}
    holders = {}
    for doc in sorted({norm(d) for d in members if norm(d) in buyers}):
        own = pseudonymizer.token(doc, "customer")
        assert own not in seen
        holders[doc] = {
            path.parent.parent.name
            for path, (tokens, unit) in partitions.items()
            if pseudonymizer.unit_tokens(pa.array([own]), unit)[0].as_py() in set(tokens.to_pylist())
        }
    assert any({"dataset=pos", "dataset=membership"} <= found for found in holders.values())


def test_erased_subjects_are_absent(published, landing):
    raw = read_landing(landing)
    requests = pd.read_csv(landing / "requests" / "erasure.csv", dtype=str, keep_default_na=False)
    pos, crm = raw["pos"], raw["membership"]
    docs = set()
    for _, r in requests.iterrows():
        if r["doc_no"]:
            docs.add(norm(r["doc_no"]))
        if r["mobile"]:
            m = re.sub(r"^86", "", norm(r["mobile"]))
            docs |= {norm(d) for d, mob in zip(pos["doc_no"], pos["mobile"]) if mob and re.sub(r"^86", "", norm(mob)) == m}
            docs |= {norm(d) for d, mob in zip(crm["证件号码"], crm["手机号码"]) if mob and re.sub(r"^86", "", norm(mob)) == m}
        if r["member_no"]:
            docs |= {norm(d) for d, no in zip(crm["证件号码"], crm["会员编号"]) if no == r["member_no"]}
    assert len(docs) >= 3  # the generator's three known subjects (the fourth is unknown to the shop)
    pseudonymizer = Pseudonymizer(TEST_KEY.encode())
    erased = {pseudonymizer.token(d, "customer") for d in docs}
    for path in published.warehouse.rglob("*.parquet"):
        assert not erased & set(pq.read_table(path, columns=["customer_id"])["customer_id"].to_pylist()), path
    assert sum(info.counts.erased or 0 for info in published.summary.datasets.values()) > 0


def test_a_failing_validation_publishes_nothing(prefect_server, landing, tmp_path, monkeypatch):
    """Sabotage the privacy engine so the published batch is too fine: the GX k-anonymity check
    must catch it, and the release must publish nothing at all (not even its valid datasets)."""
    from transforms import plan
    from transforms.anonymity import Solution

    def no_protection(table, qis, ranges, k, max_suppression, weights=None, diversity=(), strategy="auto"):
        import numpy as np

        return Solution({q.name: ranges[q.name][0] for q in qis}, np.zeros(table.size, bool), k, 0.0, {}, 1, 1, np.array([k]))

    monkeypatch.setattr(plan, "search_table", no_protection)
    run = run_flow(landing, tmp_path, every=True)  # the CRM has no items: nothing but the search protects it
    assert run.state.is_failed()
    error = run.summary.error
    assert "expect_table_to_be_k_anonymous" in error and "nothing published" in error
    assert not list(run.warehouse.rglob("*.parquet"))
    # The failed files are set aside, owner-only, in the restricted area, and the error says where.
    set_aside = list((run.restricted / "quarantine" / "failed-validation").rglob("*.parquet"))
    assert set_aside and all(oct(p.stat().st_mode & 0o777) == "0o600" for p in set_aside)
    assert any(str(parent) in error for parent in set_aside[0].parents)


def test_a_misclassified_identifier_fails_the_scan(prefect_server, landing, tmp_path, policy_copy):
    """A policy that publishes the mobile column as a kept attribute (misfiled as a category): the
    no-identifier check blocks it."""
    text, edits = re.subn(
        r"  mobile:\n    role: direct_identifier\n    kind: mobile\n    pipl: general\n    purpose: .*\n    transform: drop",
        "  mobile:\n    role: sensitive_attribute\n    kind: category\n    pipl: general\n"
        "    purpose: misfiled\n    transform: keep",
        (policy_copy / "pos.yaml").read_text(),
    )
    assert edits == 1
    (policy_copy / "pos.yaml").write_text(text)
    run = run_flow(landing, tmp_path, date="2026-03-01", policies=str(policy_copy))
    assert run.state.is_failed()
    error = run.summary.error
    assert "expect_no_direct_identifiers" in error and "mobile.mobile" in error
    assert not list(run.warehouse.rglob("*.parquet"))
    assert not re.search(r"1[3-9]\d{9}", error)  # the message counts, it does not quote


def test_unknown_column_fails_closed(prefect_server, landing, tmp_path):
    """A new export field the policy does not cover, in one file of one date: the whole run
    publishes nothing, and the error names the file and column and how to propose an entry."""
    import shutil

    copy = tmp_path / "landing"
    shutil.copytree(landing, copy)
    path = copy / "after_sales" / "2026-03-01" / "cases_20260301.csv"
    lines = path.read_text("utf-8").splitlines()
    path.write_text("\n".join([lines[0] + ",vip_note"] + [line + ",x" for line in lines[1:]]) + "\n", "utf-8")
    run = run_flow(copy, tmp_path / "out")
    assert run.state.is_failed() and "nothing published" in run.state.message
    error = run.summary.errors[0]
    assert "cases_20260301.csv" in error and "vip_note" in error and "tuomin classify" in error
    assert not list((tmp_path / "out").rglob("*.parquet"))  # not even the other, clean files
    from flows.storage import ledger  # noqa: I001

    [record] = ledger.runs(tmp_path / "out" / "restricted")
    assert record["status"] == "failed" and record["errors"] == run.summary.errors


def test_a_unit_too_large_to_count_is_refused_in_one_line_before_the_search(prefect_server, landing, tmp_path):
    """A unit with more rows than the run may count (--max-unit-rows; the k^m count's memory): the
    run stops in pass 1, before any plan task starts, with one line naming the unit, its size, the
    files and what to change; nothing is published and the run is recorded as failed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )

    from flows.storage import ledger

    run = run_flow(landing, tmp_path, max_unit_rows=500)
    assert run.state.is_failed()
    error = run.summary.error
    assert len(error.splitlines()) == 1
    # the CRM's 1,056 members are one unit too, but profiles count no itemsets: no limit there
    assert re.match(r"pos 2026-03-01: more than 500 rows in one unit \(one day of txn_time; [\d,]+ read so far", error), error
    assert "pos_lines_20260301.csv" in error and "--max-unit-rows" in error and "Nothing is published" in error
    assert not list(tmp_path.rglob("*.parquet"))
    [record] = ledger.runs(tmp_path / "restricted")
    assert record["status"] == "failed" and record["errors"] == [error]
    with get_client(sync_client=True) as client:
        parent = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.state.state_details.flow_run_id]))
        [release] = client.read_flow_runs(flow_run_filter=parent)
        mine = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[release.id]))
        tasks = {t.name for t in client.read_task_runs(task_run_filter=mine)}
    assert any(name.startswith("scan-pos") for name in tasks)
    assert not any(name.startswith("plan-") for name in tasks), sorted(tasks)


def test_key_from_a_prefect_secret_block(prefect_server, monkeypatch):
    from prefect.blocks.system import Secret

    from flows.storage.keys import load_pseudonymizer
    from transforms.pseudonymize import PseudonymKeyError

    secret = "block-held-key-" + "fedcba9876543210" * 3
    Secret(value=secret).save("tuomin-test-key", overwrite=True)
    monkeypatch.delenv("TUOMIN_PSEUDONYM_KEY")
    monkeypatch.setenv("TUOMIN_PSEUDONYM_KEY_BLOCK", "tuomin-test-key")
    assert load_pseudonymizer().key_id == Pseudonymizer(secret.encode()).key_id
    monkeypatch.setenv("TUOMIN_PSEUDONYM_KEY_BLOCK", "no-such-block")
    with pytest.raises(PseudonymKeyError, match="'no-such-block'.*not found") as err:
        load_pseudonymizer()
    assert secret not in str(err.value)


def test_membership_is_l_diverse_and_says_so(published):
    for path in published.warehouse.glob("dataset=membership/*/*.parquet"):
        meta = read_footer(path)
        assert meta["l_diversity"] == [
            {"attribute": "lifetime_spend", "l": 2.0, "measure": "distinct", "column": "lifetime_spend"},
            {"attribute": "points", "l": 2.0, "measure": "distinct", "column": "points"},
        ]
        assert meta["metrics"]["l_distinct"] >= 2
        assert any(c["expectation"] == "expect_table_to_be_l_diverse" and c["success"] for c in meta["validation"]["checks"])


def test_data_docs_hold_no_raw_value(published, landing):
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["docs", "--restricted", str(published.restricted)])
    assert result.exit_code == 0 and "index.html" in result.output, result.output
    pages = [p.read_text(errors="ignore") for p in (published.restricted / "gx").rglob("*") if p.suffix in (".html", ".json")]
    assert len(pages) > 10
    assert not find_leaks(pages, raw_identifiers(landing))


def test_the_run_record(published):
    from flows.storage import ledger

    [record] = ledger.runs(published.restricted)
    assert record["status"] == "published" and record["run_id"] == published.summary.run_id
    assert set(record["policies"]) == set(DATASETS) and all(len(p["sha256"]) == 64 for p in record["policies"].values())
    assert record["key_id"].startswith("k1-") and TEST_KEY not in (published.restricted / ledger.LEDGER).read_text()
    pos = record["datasets"]["pos"]
    assert pos["counts"]["read"] > 0 and pos["units"] == 2 and all(len(f["sha256"]) == 64 for f in record["files"].values())
    assert ledger.verify(published.restricted, published.warehouse) == []
    con = duckdb.connect()
    kinds = con.execute(
        f"SELECT kind, count(*) FROM read_json('{published.restricted / ledger.LEDGER}') GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    # a backup per export date read, a partition per unit, each after its intent
    assert kinds == [("backup", 2), ("intent", 5), ("partition", 5), ("run", 1)]
    assert record["backup_key_id"].startswith("b1-") and record["parameters"]["backup"] is True


def test_drop_unknown_publishes_and_records_the_dropped_column(prefect_server, landing, tmp_path):
    import shutil

    copy = tmp_path / "landing"
    shutil.copytree(landing, copy)
    path = copy / "after_sales" / "2026-03-01" / "cases_20260301.csv"
    lines = path.read_text("utf-8").splitlines()
    path.write_text("\n".join([lines[0] + ",vip_note"] + [line + ",x" for line in lines[1:]]) + "\n", "utf-8")
    run = run_flow(copy, tmp_path / "out", date="2026-03-01", drop_unknown=True)
    assert run.state.is_completed(), run.state.message
    dropped = [{"file": "after_sales/2026-03-01/cases_20260301.csv", "column": "vip_note"}]
    path = run.warehouse / "dataset=after_sales" / "period=2026-03-01" / "part-0.parquet"
    assert read_footer(path)["dropped_columns"] == dropped and "vip_note" not in pq.read_schema(path).names
    from flows.storage import ledger

    [record] = ledger.runs(run.restricted)
    assert record["parameters"]["drop_unknown"] is True
    assert ledger.partition_entries(run.restricted)[("after_sales", "2026-03-01")].data.dropped_columns == dropped


def test_a_log_line_or_exception_quoting_an_identifier_is_masked_everywhere(prefect_server, capfd):
    """Defence in depth: should code (a library, a future bug) log a raw identifier or an exception
    quoting one, the record is masked when it is made, before Prefect's console and API handlers."""
    from prefect import flow, get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.runtime import flow_run

    doc, mobile = "11010519491231002X", "13812345678"

    @flow(name="leaky")
    def leaky() -> str:
        log = get_run_logger()
        log.info("customer %s called from %s", doc, mobile)
        try:
            raise ValueError(f"bad value {doc.lower()}")
        except ValueError:
            log.exception("a library failed")
        return flow_run.get_id()

    run_id = leaky()
    printed = capfd.readouterr()
    with get_client(sync_client=True) as client:
        for _ in range(100):  # the API handler sends in the background
            stored = [e.message for e in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))]
            if len(stored) >= 2:
                break
            time.sleep(0.1)
    assert any(m.startswith("customer [") for m in stored) and any("a library failed" in m for m in stored)
    assert any("bad value [" in m for m in stored)  # the traceback is there, masked
    for text in [printed.out, printed.err, *stored]:
        assert doc not in text.upper() and mobile not in text


def test_a_failing_log_handler_prints_nothing_of_what_was_being_handled(capfd):
    """A handler that fails (a closed stream, a broken pipe) makes logging print the failure with
    the exception being handled chained to it, and that exception's text is not masked: a tuomin
    process prints nothing instead (logging.raiseExceptions off)."""
    import io
    import logging

    import flows  # noqa: F401  (installs the filter, as every tuomin process does)

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    stream.close()
    log = logging.getLogger("tuomin.test.broken-handler")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise ValueError("bad value 11010519491231002x")
        except ValueError:
            log.exception("a library failed")
    finally:
        log.removeHandler(handler)
    assert "11010519491231002X" not in capfd.readouterr().err.upper()


def _levels(warehouse: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for path in sorted(warehouse.glob("dataset=*/*/*.parquet")):
        found.setdefault(path.parent.parent.name, []).append(read_footer(path)["levels"])
    return found


def test_every_partition_of_a_dataset_publishes_a_column_at_one_level(published):
    """One meaning per column in the release: a GROUP BY across dates never mixes levels."""
    for dataset, levels in _levels(published.warehouse).items():
        assert all(found == levels[0] for found in levels), dataset


def test_units_that_need_coarser_levels_republish_the_release_at_them_in_one_step(prefect_server, copy_of, policy_copy, tmp_path):
    """The first day published alone; then a small second day that needs coarser POS levels (little
    suppression allowed here, 3%, so that it cannot be absorbed): the run solves every POS unit again,
    together, and republishes the first day at the new levels (recorded twice), with tokens that
    join nothing of the version it replaces; a rerun finds nothing to do."""
    pos = policy_copy / "pos.yaml"
    pos.write_text(pos.read_text().replace("max_suppression: 0.05", "max_suppression: 0.03"))
    day2 = copy_of / "pos" / "2026-03-02"
    for part in sorted(day2.glob("*_part*.csv")):
        part.unlink()
    main = next(day2.glob("*.csv"))
    main.write_bytes(b"".join(main.read_bytes().splitlines(keepends=True)[:60]))
    first = run_flow(copy_of, tmp_path, date="2026-03-01", policies=str(policy_copy))
    assert first.state.is_completed(), first.state.message
    day1 = first.warehouse / "dataset=pos" / "period=2026-03-01" / "part-0.parquet"
    before = set(pq.read_table(day1, columns=["customer_id"])["customer_id"].drop_null().to_pylist())
    first_sizes = sorted(collections.Counter(pq.read_table(day1)["customer_id"].to_pylist()).values())
    first_rows = pq.read_table(day1).num_rows
    assert first.summary.datasets["pos"].counts.suppressed  # the first version left rows out
    run = run_flow(copy_of, tmp_path, policies=str(policy_copy))
    assert run.state.is_completed(), run.state.message
    assert "pos 2026-03-01" in run.summary.republished
    # The new version's tokens are keyed to it: nothing joins it to the one it replaced.
    after = set(pq.read_table(day1, columns=["customer_id"])["customer_id"].drop_null().to_pylist())
    assert before and after and not before & after
    # And it is the first version generalized: the same people with the same number of rows each,
    # none of the rows the first version suppressed, so that the two together tell nothing the
    # first did not (an intruder pairing them by content gains no row).
    assert sorted(collections.Counter(pq.read_table(day1)["customer_id"].to_pylist()).values()) == first_sizes
    assert pq.read_table(day1).num_rows == first_rows
    for dataset, levels in _levels(run.warehouse).items():
        assert all(found == levels[0] for found in levels), dataset
    from flows.storage import ledger

    entries = ledger.entries(run.restricted)
    pos = [
        (e["data"]["period"], e["data"]["levels"]) for e in entries if e["kind"] == "partition" and e["data"]["dataset"] == "pos"
    ]
    assert [p for p, _ in pos] == ["2026-03-01", "2026-03-01", "2026-03-02"] and pos[0][1] != pos[1][1] == pos[2][1]
    record = [e["data"] for e in entries if e["kind"] == "run"][-1]
    assert "pos 2026-03-01" in record["republished"] and ledger.verify(run.restricted, run.warehouse) == []
    again = run_flow(copy_of, tmp_path, policies=str(policy_copy))
    assert again.summary.datasets == {} and sorted(again.summary.up_to_date) == sorted(DATASETS)


def test_a_later_crm_snapshot_that_would_chain_to_the_published_one_is_not_published(prefect_server, tmp_path):
    """Daily operation on the bundled sample: the CRM snapshot of 2026-03-02 published, then 2026-03-03's arrives. The
    intruder keeps the first copy; published too, the second would chain to it without a token
    (tuples unique on both dates: the same member followed). So the published snapshot stays, the
    run says why and records it, and `tuomin risk` holding both copies finds no chain."""
    from flows.pipeline.intruder import assess
    from flows.runtime.paths import SAMPLE_LANDING
    from flows.storage import ledger

    copy_of = tmp_path / "landing"
    shutil.copytree(SAMPLE_LANDING, copy_of, ignore=shutil.ignore_patterns("2026-03-03"))  # what has arrived by then
    first = run_flow(copy_of, tmp_path)
    assert first.state.is_completed(), first.state.message
    before = tmp_path / "before"
    shutil.copytree(first.warehouse, before)
    for source in ("pos", "membership", "after_sales"):
        shutil.copytree(SAMPLE_LANDING / source / "2026-03-03", copy_of / source / "2026-03-03")
    run = run_flow(copy_of, tmp_path)
    assert run.state.is_completed(), run.state.message
    assert set(run.summary.datasets) == {"pos", "after_sales"}
    why = run.summary.snapshots_kept["membership"]
    assert "2026-03-03 is not published" in why and "tuple(s) unique on both dates" in why
    assert [p.parent.name for p in (run.warehouse / "dataset=membership").glob("*/part-0.parquet")] == ["period=2026-03-02"]
    assert ledger.entries(run.restricted)[-1]["data"]["snapshots_kept"] == run.summary.snapshots_kept
    assert ledger.verify(run.restricted, run.warehouse) == []
    found = assess(run.warehouse, against=before)
    [chained] = [c for c in found.checks if c.name == "snapshot chaining"]
    assert chained.passed and found.snapshot_chains["membership"]["pairs"] == 0
    # Measured as if it had been published: the chain the run refused.
    staged = tmp_path / "as-if"
    run_flow(copy_of, staged)  # afresh: nothing published before, nothing to chain to
    chain = assess(staged / "warehouse", against=before).snapshot_chains["membership"]
    assert chain["pairs"] == 1 and chain["unique_on_both"] > 0
    # `tuomin risk` takes every copy the intruder keeps: one of them holding that snapshot is enough.
    from typer.testing import CliRunner

    from flows.cli import app

    both = ["risk", "--warehouse", str(run.warehouse), "--against", str(before), "--format", "json"]
    assert CliRunner().invoke(app, both).exit_code == 0
    result = CliRunner().invoke(app, [*both, "--against", str(staged / "warehouse")])
    found = json.loads(result.output)
    assert result.exit_code == 1 and not {c["name"]: c["passed"] for c in found["checks"]}["snapshot chaining"]


def test_a_node_chosen_on_a_sample_of_people_is_published_only_as_everyone_passes_it(
    prefect_server, landing, tmp_path, monkeypatch
):
    """With every table counted as large (PEOPLE_COMBOS and PEOPLE_COMBOS_RELATIONAL = 0), the
    sources choose their node on a sample of their people at a scaled k (or, where the sample is
    too thin to reach the model, on everyone) and count it once on everyone: the footers say
    which, and the release gate, which counts every person, passes what was published."""
    from transforms import plan

    monkeypatch.setattr(plan, "PEOPLE_COMBOS", 0)
    monkeypatch.setattr(plan, "PEOPLE_COMBOS_RELATIONAL", 0)
    run = run_flow(landing, tmp_path, every=True)
    assert run.state.is_completed(), run.summary.error
    methods = {
        path.parts[-3]: read_footer(path)["search"]["method"] for path in run.warehouse.glob("dataset=*/period=*/part-0.parquet")
    }
    assert "sample of people, counted on everyone" in methods["dataset=pos"], methods
    assert "sample of people, counted on everyone" in methods["dataset=membership"], methods  # k and l alone


def test_a_run_scores_the_declared_questions_on_what_it_read(prefect_server, landing, tmp_path, policy_copy):
    """Every run scores the policies' questions on the rows it read against the rows it published:
    the run summary and its ledger entry say which the release answers and at what error, and a
    question on a column published coarser than it needs says so. Checked against the landing's
    own answer, counted here from its CSV files and the published Parquet."""
    path = policy_copy / "pos.yaml"
    text = path.read_text()
    question = (
        "  - name: lines_by_category_day\n    ask: lines by category x day\n"
        "    measure: rows\n    period: day\n    by: {product: 2}\n"
    )
    path.write_text(text.replace("questions:\n", "questions:\n" + question, 1))
    run = run_flow(landing, tmp_path, policies=str(policy_copy))
    assert run.state.is_completed(), run.summary.error
    pos = run.summary.datasets["pos"]
    scores = pos.questions
    assert {"lines_by_category_day", "lines_by_category_week_channel", "buyers_by_continent_month", "lines_by_store_day"} <= set(
        scores
    )
    score = scores["lines_by_category_day"]
    assert pos.levels["product"] <= 2, "the test needs product published at the category or finer"
    # The run's answer against the landing's: read, every published row attributed, the cells' median error.
    assert score["read"] == pos.counts.read - pos.counts.erased
    assert score["attributed"] == pytest.approx(pos.counts.published / (pos.counts.read - pos.counts.erased), abs=1e-4)
    con = duckdb.connect()
    raw = con.sql(
        f"""SELECT category, regexp_extract(filename, '(\\d{{4}}-\\d{{2}}-\\d{{2}})', 1) AS day, count(*) AS n
            FROM read_csv('{landing}/pos/*/*.csv', all_varchar=true, filename=true) GROUP BY ALL"""
    ).df()
    anon = con.sql(
        f"""SELECT product AS category, CAST(period AS VARCHAR) AS day, count(*) AS n
            FROM read_parquet('{run.warehouse}/dataset=pos/*/*.parquet', hive_partitioning=true) GROUP BY ALL"""
    ).df()
    joined = raw.merge(anon, on=["category", "day"], how="left", suffixes=("_raw", "_anon")).fillna(0)
    scored = joined[joined["n_raw"] >= 20]
    median = ((scored["n_anon"] - scored["n_raw"]).abs() / scored["n_raw"]).median()
    assert score["cells"] == len(scored)
    assert score["median_error"] == pytest.approx(median, abs=0.01)  # the landing's count includes the few erased rows
    assert score["answered"] == (score["attributed"] >= 0.9 and score["median_error"] <= 0.10)
    # A question on a column published coarser than it needs attributes nothing, and says which.
    coarse = [
        q for q, s in scores.items() if any(f"{n} is published at level" in s["why"] for n in ("store_code", "nationality"))
    ]
    for q in coarse:
        assert scores[q]["attributed"] == 0.0 and not scores[q]["answered"]
    assert run.summary.datasets["after_sales"].questions["cases_by_type_week"]["read"] > 0
    entry = [json.loads(line) for line in (run.restricted / "ledger" / "ledger.jsonl").read_text().splitlines()][-1]
    assert entry["kind"] == "run" and entry["data"]["datasets"]["pos"]["questions"] == scores


def test_rows_and_folders_dated_where_no_export_can_be_are_refused_or_quarantined(prefect_server, copy_of, tmp_path):
    """A row dated 9999-12-31 in a normal file is quarantined and counted, never published and
    never a crash; a landing folder dated after today refuses the run in one line before anything
    is read or written, and a scheduled run records the refusal."""
    from typer.testing import CliRunner

    from flows.cli import app

    path = copy_of / "pos" / "2026-03-01" / "pos_lines_20260301.csv"
    lines = path.read_text("utf-8-sig").splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    at = header.index("txn_time")
    row[at] = "9999-12-31 10:00:00"
    lines[1] = ",".join(row)
    path.write_text("\n".join(lines) + "\n", "utf-8-sig")
    run = run_flow(copy_of, tmp_path / "rows", date="2026-03-01")
    assert run.state.is_completed(), run.summary.error
    [counted] = [f for p, f in run.summary.files.items() if p.endswith("pos_lines_20260301.csv")]
    assert counted["quarantined"] >= 1
    published = pq.read_table(run.warehouse / "dataset=pos").to_pandas()
    assert not published["txn_time"].astype(str).str.startswith("9999").any()
    later = copy_of / "pos" / "9999-12-31"
    later.mkdir()
    shutil.copy(path, later / "pos_lines_99991231.csv")
    where = ["--landing", str(copy_of), "--warehouse", str(tmp_path / "w"), "--restricted", str(tmp_path / "r")]
    done = CliRunner().invoke(app, ["run", *where, "--no-backup"])
    assert done.exit_code == 2 and len(done.output.strip().splitlines()) == 1, done.output
    assert "9999-12-31" in done.output and "after today" in done.output
    assert not (tmp_path / "w").exists() and not (tmp_path / "r").exists()
    # Where a ledger exists, the console's refusal is recorded in it; a scheduled run (the flow
    # itself, no console) fails the same way, recorded too.
    rows = ["--landing", str(copy_of), "--warehouse", str(run.warehouse), "--restricted", str(run.restricted)]
    again = CliRunner().invoke(app, ["run", *rows, "--no-backup"])
    assert again.exit_code == 2 and "after today" in again.output
    last = ledger.runs(run.restricted)[-1]
    assert last["status"] == "failed" and "9999-12-31" in last["message"] and "after today" in last["message"]
    scheduled = run_flow(copy_of, tmp_path / "rows")
    assert scheduled.state.is_failed() and "9999-12-31" in scheduled.state.message and "after today" in scheduled.state.message
    assert len(ledger.runs(run.restricted)) == 3 and ledger.verify(run.restricted, run.warehouse) == []
