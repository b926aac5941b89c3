"""Running unattended and re-running without fear: file selection, backfills, fsspec landings,
retries, atomic and idempotent publishing (a run killed mid-write), the ledger, field metadata,
queries and the scheduled deployment."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import duckdb
import fsspec
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.storage import ledger
from flows.storage.footer import read_footer
from tests.conftest import copy_run, run_flow

DAY1, DAY2 = "2026-03-01", "2026-03-02"


def _rows(warehouse: Path, dataset: str, day: str):
    return pq.read_table(warehouse / f"dataset={dataset}" / f"period={day}" / "part-0.parquet").to_pylist()


def test_default_runs_only_new_or_changed_files(published, landing, tmp_path):
    copy_of, first = copy_run(published, landing, tmp_path)  # the first run (the session's, copied)
    assert set(first.summary.datasets) == {"pos", "membership", "after_sales"}
    again = run_flow(copy_of, tmp_path)
    assert again.state.is_completed() and again.summary.datasets == {}
    assert sorted(again.summary.up_to_date) == ["after_sales", "membership", "pos"]
    # A re-export of one day's POS file: the unit its rows are in (that day) is rebuilt, from it and
    # from the other file of that day; nothing else.
    before = ledger.partition_entries(tmp_path / "restricted")
    pos = copy_of / "pos" / DAY2 / "pos_lines_20260302.csv"
    lines = pos.read_bytes().splitlines(keepends=True)
    pos.write_bytes(b"".join(lines[:-1]))  # the re-export has one line fewer
    third = run_flow(copy_of, tmp_path)
    assert set(third.summary.datasets) == {"pos"} and third.summary.datasets["pos"].units == 1
    assert sorted(third.summary.up_to_date) == ["after_sales", "membership"]
    after = ledger.partition_entries(tmp_path / "restricted")
    assert after[("pos", DAY2)].data.rows.read == (before[("pos", DAY2)].data.rows.read or 0) - 1
    assert after[("pos", DAY1)] == before[("pos", DAY1)]  # the other day untouched
    assert ledger.verify(tmp_path / "restricted", tmp_path / "warehouse") == []


def test_rerunning_a_date_is_idempotent(prefect_server, landing, tmp_path):
    """The same files again: the same units, from the same inputs at the same levels, are left
    as they are (identical rows, nothing appended, nothing recorded twice)."""
    first = run_flow(landing, tmp_path, date=DAY1)
    before = {d: _rows(first.warehouse, d, DAY1) for d in ("pos", "after_sales")}
    second = run_flow(landing, tmp_path, date=DAY1)
    assert second.state.is_completed() and second.summary.datasets == {}
    for dataset, rows in before.items():
        assert _rows(second.warehouse, dataset, DAY1) == rows  # identical rows, not appended
    con = duckdb.connect()
    count = con.execute(f"SELECT count(*) FROM read_parquet('{second.warehouse}/dataset=pos/*/*.parquet')").fetchone()[0]
    assert count == len(before["pos"])
    published = [e for e in ledger.entries(second.restricted) if e["kind"] == "partition" and e["data"]["dataset"] == "pos"]
    assert len(published) == 1 and [r["status"] for r in ledger.runs(second.restricted)] == ["published", "up to date"]


def test_a_policy_change_republishes_with_the_new_hash(published, landing, tmp_path, policy_copy):
    copy_of, _ = copy_run(published, landing, tmp_path)  # published with the same policies' content
    pos = policy_copy / "pos.yaml"
    pos.write_text(pos.read_text().replace("privacy:\n  k: 5", "privacy:\n  k: 6", 1))
    changed = run_flow(copy_of, tmp_path, policies=str(policy_copy))
    assert changed.summary.datasets["pos"].units == 2  # every unit was made with the old policy
    from transforms.policy import load_policy

    new_hash = load_policy(pos).sha256
    meta = read_footer(changed.warehouse / "dataset=pos" / f"period={DAY1}" / "part-0.parquet")
    assert meta["policy_sha256"] == new_hash and meta["k"] == 6 and meta["metrics"]["k"] >= 6
    latest = {(p["dataset"], p["period"]): p for p in ledger.partitions(changed.restricted)}
    assert latest[("pos", DAY1)]["policy_sha256"] == new_hash


def test_backfill_processes_the_range_with_files(prefect_server, landing, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "backfill",
            "--start",
            "2026-02-27",
            "--end",
            DAY1,
            "--landing",
            str(landing),
            "--warehouse",
            str(tmp_path / "wh"),
            "--restricted",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "wh" / "dataset=pos").iterdir()) == [f"period={DAY1}"]
    [run] = ledger.runs(tmp_path / "r")
    assert run["parameters"]["start"] == "2026-02-27" and run["triggered_by"]["via"] == "cli: tuomin backfill"
    bad = CliRunner().invoke(app, ["backfill", "--start", DAY2, "--end", DAY1])
    assert bad.exit_code == 2 and "is after" in bad.output


def test_a_memory_url_landing(prefect_server, landing, tmp_path):
    fs = fsspec.filesystem("memory")
    for path in landing.rglob("*.csv"):
        fs.pipe(f"/landing-test/{path.relative_to(landing).as_posix()}", path.read_bytes())
    run = run_flow("memory://landing-test", tmp_path, date=DAY1)
    assert run.state.is_completed(), run.state.message
    [made_from] = ledger.partition_entries(run.restricted)[("pos", DAY1)].data.inputs
    assert made_from.path == "pos/2026-03-01/pos_lines_20260301.csv"
    assert _rows(run.warehouse, "pos", DAY1) == _rows(run_flow(landing, tmp_path / "local", date=DAY1).warehouse, "pos", DAY1)


def test_every_landing_option_takes_an_fsspec_url(published, landing, tmp_path):
    """`--landing s3://…` as the README promises: the option is a URL, not a local path (a memory
    filesystem stands in for the remote one; the run is the same code path)."""
    fs = fsspec.filesystem("memory")
    for path in landing.rglob("*.csv"):
        fs.pipe(f"/cli-landing/{path.relative_to(landing).as_posix()}", path.read_bytes())
    where = ["--warehouse", str(tmp_path / "wh"), "--restricted", str(tmp_path / "rs")]
    ran = CliRunner().invoke(app, ["run", "--landing", "memory://cli-landing", "--date", DAY1, *where])
    assert ran.exit_code == 0, ran.output
    assert len(_rows(tmp_path / "wh", "pos", DAY1)) > 0
    planned = CliRunner().invoke(app, ["purge", "--landing", "memory://cli-landing", "--dry-run", *where])
    assert planned.exit_code == 0 and DAY1 in planned.output, planned.output
    missing = CliRunner().invoke(app, ["run", "--landing", "memory://nowhere", *where])
    assert missing.exit_code == 2 and "memory://nowhere: no such directory" in missing.output


def test_transient_read_errors_are_retried(prefect_server, landing, tmp_path, monkeypatch):
    from flows.storage import landing as landing_io

    real, failures = landing_io.Landing.open, []

    def flaky(self, relative):
        if relative.startswith("after_sales/") and not failures:
            failures.append(relative)
            raise ConnectionResetError("the share went away for a moment")
        return real(self, relative)

    monkeypatch.setattr(landing_io.Landing, "open", flaky)
    run = run_flow(landing, tmp_path, date=DAY1)
    assert failures and run.state.is_completed(), run.state.message


def test_bad_data_is_not_retried(prefect_server, copy_of, tmp_path, monkeypatch):
    from flows.storage import landing as landing_io

    reads = []
    real = landing_io.iter_csv
    monkeypatch.setattr(landing_io, "iter_csv", lambda *a, **k: reads.append(1) or real(*a, **k))
    (copy_of / "pos" / DAY1 / "pos_lines_20260301.csv").write_bytes(b"\xef\xbb\xbf")  # empty: no header
    run = run_flow(copy_of, tmp_path, date=DAY1)
    assert run.state.is_failed() and "empty file" in run.state.message and reads == []  # refused before reading


def test_columns_carry_what_was_done_to_them(published):
    schema = pq.read_schema(next(published.warehouse.glob("dataset=membership/*/*.parquet")))
    age = {k.decode(): v.decode() for k, v in schema.field("age").metadata.items()}
    assert age["tuomin.technique"] == "generalization" and age["tuomin.source_column"] == "birth_date"
    assert age["tuomin.level_meaning"] in (
        *(f"{n}-year age bands at the policy's reference date" for n in (5, 10, 20)),
        "suppressed (*)",
    )
    token = {k.decode(): v.decode() for k, v in schema.field("customer_id").metadata.items()}
    assert token["tuomin.technique"] == "pseudonymization" and "HMAC" in token["tuomin.token"]


def test_query_views_and_formats(published):
    runner = CliRunner()
    out = runner.invoke(
        app, ["query", "SELECT count(*) AS n FROM pos", "--warehouse", str(published.warehouse), "--format", "json"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["n"] == published.summary.datasets["pos"].counts.published
    csv = runner.invoke(
        app,
        [
            "query",
            "SELECT dataset, k_achieved FROM partitions ORDER BY ALL",
            "--warehouse",
            str(published.warehouse),
            "--format",
            "csv",
        ],
    )
    assert csv.output.splitlines()[0] == "dataset,k_achieved" and len(csv.output.splitlines()) == 6  # 5 units
    bad = runner.invoke(app, ["query", "SELECT nope FROM pos", "--warehouse", str(published.warehouse)])
    assert bad.exit_code == 2 and "query failed" in bad.output


def test_the_query_tool_reads_the_warehouse_and_nothing_else(published, landing, tmp_path):
    """`tuomin query` is the analysts' tool: it prints NULLs of any type, and it cannot read the raw
    landing, write a file (even into the warehouse, even through EXPLAIN ANALYZE), change its own
    settings, load extensions, run past its time or memory, or take a folder that is not a warehouse."""
    runner, wh = CliRunner(), ["--warehouse", str(published.warehouse)]
    nulls = runner.invoke(app, ["query", "SELECT CAST(NULL AS INTEGER) AS n, CAST(NULL AS DATE) AS d, 1 AS one", *wh])
    assert nulls.exit_code == 0, nulls.output
    cases = runner.invoke(app, ["query", "SELECT * FROM after_sales LIMIT 5", *wh])  # NULL integers there
    assert cases.exit_code == 0, cases.output
    raw = next((landing / "pos").rglob("*.csv"))
    written = published.warehouse / "leak.csv"
    part = next(published.warehouse.glob("dataset=after_sales/period=*/part-0.parquet"))
    kept = part.read_bytes()
    for sql in (
        f"SELECT * FROM read_csv('{raw}')",
        f"COPY (SELECT 1) TO '{written}'",
        f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
        "SET enable_external_access = true",
        "INSTALL httpfs",
        f"ATTACH '{tmp_path / 'x.db'}'",
        "SELECT 1; COPY (SELECT 1) TO 'x.csv'",
        # EXPLAIN ANALYZE runs what it explains: at 874540f these replaced a published partition
        # and added a partition of fake rows every analyst's view then counted
        f"EXPLAIN ANALYZE COPY (SELECT * FROM after_sales) TO '{part}' (FORMAT parquet)",
        f"EXPLAIN ANALYZE COPY (SELECT *, DATE '2026-03-31' AS p FROM pos) TO '{published.warehouse / 'dataset=pos'}' "
        "(FORMAT parquet, PARTITION_BY (p), OVERWRITE_OR_IGNORE)",
        "EXPLAIN SELECT 1",
        "PRAGMA version",
        "CALL pragma_version()",
        "CREATE TABLE t AS SELECT 1",
        "SELECT 1) UNION ALL (SELECT 2",
    ):
        refused = runner.invoke(app, ["query", sql, *wh])
        assert refused.exit_code == 2 and "query failed" in refused.output, (sql, refused.output)
    assert not written.exists() and not (tmp_path / "out.csv").exists() and not (tmp_path / "x.db").exists()
    assert part.read_bytes() == kept and not list(published.warehouse.glob("dataset=pos/p=*"))
    # stopped at its limits, in one line: a three-way cross join, a result larger than its memory
    for sql, says in (
        ("SELECT max(a.txn_time || b.txn_time || c.txn_time) FROM pos a, pos b, pos c", "ran past 2 s"),
        ("SELECT list(x) FROM range(300000000) t(x)", "more than 100MB of memory"),
    ):
        stopped = runner.invoke(app, ["query", sql, *wh, "--timeout", "2", "--memory", "100MB"])
        assert stopped.exit_code == 2 and says in stopped.output and len(stopped.output.strip().splitlines()) == 1, stopped.output
    # a folder that is not a warehouse: the root, the landing, a restricted area
    for folder in ("/", str(landing), str(published.restricted)):
        refused = runner.invoke(app, ["query", "SELECT content FROM read_text('/etc/passwd')", "--warehouse", folder])
        assert refused.exit_code == 2 and "not a warehouse" in refused.output, refused.output
    ending = runner.invoke(app, ["query", "SELECT 1 AS one; -- a note", *wh, "--format", "csv"])
    assert ending.exit_code == 0 and ending.output.split() == ["one", "1"], ending.output
    nested = runner.invoke(app, ["query", "SELECT [1, 2] AS l, {'a': DATE '2026-03-01'} AS s", *wh, "--format", "csv"])
    assert nested.output.splitlines()[1] == '"[1, 2]","{""a"": ""2026-03-01""}"', nested.output  # JSON, not Python reprs
    fine = runner.invoke(app, ["query", "SELECT count(*) AS n FROM pos", *wh, "--format", "json"])
    assert fine.exit_code == 0 and json.loads(fine.output)[0]["n"] > 0


def test_query_results_keep_their_types_and_print_whole(published, tmp_path):
    """DATE stays a date and DECIMAL exact in JSON and in a Parquet file written with --out; a wide
    table piped to a file keeps every column whole instead of squeezing it to fit 110 columns."""
    runner, wh = CliRunner(), ["--warehouse", str(published.warehouse)]
    typed = "SELECT period, 12.50::DECIMAL(10,2) AS price, NULL::INTEGER AS none FROM pos LIMIT 1"
    shown = runner.invoke(app, ["query", typed, *wh, "--format", "json"])
    [row] = json.loads(shown.output)
    assert row["period"] in (DAY1, DAY2) and row["price"] == "12.50" and row["none"] is None  # a date, exact
    out = tmp_path / "result.parquet"
    written = runner.invoke(app, ["query", typed, *wh, "--out", str(out)])
    assert written.exit_code == 0, written.output
    schema = pq.read_schema(out)
    assert str(schema.field("period").type) == "date32[day]" and str(schema.field("price").type) == "decimal128(10, 2)"
    wide = runner.invoke(app, ["query", "SELECT * FROM pos LIMIT 2", *wh])
    assert wide.exit_code == 0 and "customer_id" in wide.output and "period" in wide.output
    bad = runner.invoke(app, ["query", "SELECT 1", *wh, "--out", str(tmp_path / "result.txt")])
    assert bad.exit_code == 2 and not (tmp_path / "result.txt").exists()


def test_the_data_dictionary_describes_every_published_column(published, landing, tmp_path):
    """`tuomin docs` writes what each published column means, its type, the levels its partitions
    hold and, for few-valued columns, the values; the views of `tuomin query` carry the same as
    column comments. Tokens list no values; no entry holds a count of rows."""
    done = CliRunner().invoke(
        app,
        ["docs", "--warehouse", str(published.warehouse), "--restricted", str(published.restricted), "--out", str(tmp_path)],
    )
    assert done.exit_code == 0, done.output
    found = json.loads((tmp_path / "dictionary.json").read_text())["datasets"]
    assert set(found) == {"pos", "membership", "after_sales"}
    for name, dataset in found.items():
        files = sorted(published.warehouse.glob(f"dataset={name}/*/*.parquet"))
        columns = {c["column"]: c for c in dataset["columns"]}
        assert set(columns) == {f.name for path in files for f in pq.read_schema(path)}, name
        for column in columns.values():
            assert column["meaning"] and column["type"] and column["questions"], (name, column["column"])
            if column["technique"] == "generalization":
                assert column["levels"] and sum(lv["partitions"] for lv in column["levels"]) == len(files)
                assert all(lv["meaning"] for lv in column["levels"])
                if column["values"] == ["*"]:  # every value suppressed: said so, not "level 3 of a table"
                    assert {lv["meaning"] for lv in column["levels"]} == {"suppressed (*)"}, (name, column)
                    # and never offered as a breakdown
                    assert column["questions"].startswith("None: it holds only `*`"), (name, column)
                else:
                    assert "only `*`" not in column["questions"], (name, column)
    assert any(c["values"] == ["*"] for c in found["pos"]["columns"])  # the test landing has some
    # The declared questions, as the run scored them: the same words as its summary.
    for name in ("pos", "after_sales"):
        scored = published.summary.datasets[name].questions
        assert [q["question"] for q in found[name]["questions"]] == list(scored)
        for q in found[name]["questions"]:
            assert q["score"].startswith("answered" if scored[q["question"]]["answered"] else "not answered")
    assert found["membership"]["questions"] == []
    page = (tmp_path / "dictionary.html").read_text()
    assert "lines_by_store_day" in page and "declared questions" in page
    assert found["pos"]["columns"][[c["column"] for c in found["pos"]["columns"]].index("customer_id")]["values"] is None
    assert "<td><code>customer_id</code>" in (tmp_path / "dictionary.html").read_text()
    from flows.storage.query import connect

    views = "('pos', 'membership', 'after_sales')"
    comments = connect(published.warehouse).sql(f"SELECT * FROM duckdb_columns() WHERE table_name IN {views}").df()
    bounds = comments["column_name"].str.endswith(("_lower", "_upper")).sum()  # the bands' bounds (views only)
    assert len(comments) == sum(len(d["columns"]) + 2 for d in found.values()) + bounds  # + dataset and period
    assert comments["comment"].notna().all() and (comments["comment"].str.len() > 10).all()
    from tests.leaks import find_leaks, raw_identifiers

    written = [(tmp_path / name).read_text("utf-8") for name in ("dictionary.json", "dictionary.html")]
    assert not find_leaks([*written, *comments["comment"]], raw_identifiers(landing))


def test_bands_have_numeric_bounds_in_the_views(published):
    """A band label ('[1000, 5000)', '>=50000', '30-39') sorts as text in the wrong order; each
    view adds its bounds as numbers, half-open, NULL where unbounded, so it sorts and compares."""
    from flows.storage.query import connect

    con = connect(published.warehouse)
    banded = con.sql(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE column_name LIKE '%\\_lower' ESCAPE '\\'"
    ).fetchall()
    assert banded, "no banded column in the views"
    for view, lower in banded:
        column = lower.removesuffix("_lower")
        rows = con.sql(f'SELECT DISTINCT "{column}", "{column}_lower", "{column}_upper" FROM "{view}"').fetchall()
        for label, low, high in rows:
            assert label is None or low is not None or high is not None, (view, label)
            assert low is None or high is None or low < high, (view, label, low, high)
            if label and label.startswith("["):
                a, b = (float(x) for x in label.strip("[)").split(","))
                assert (low, high) == (a, b), (view, label)
            if label and label.startswith(">="):
                assert (low, high) == (float(label[2:]), None)
            if label and label.startswith("<"):
                assert (low, high) == (None, float(label[1:]))


def test_readme_questions_run(published):
    """Every SQL example in the README's analysts section runs against a real warehouse."""
    from flows.storage.query import connect

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Questions analysts ask", 1)[1].split("\n## ", 1)[0]
    queries = [block.split("```", 1)[0] for block in section.split("```sql\n")[1:]]
    assert len(queries) >= 5
    con = connect(published.warehouse)
    for sql in queries:
        assert con.sql(sql).fetchall() is not None, sql


def test_a_warehouse_that_cannot_be_written_fails_before_anything_runs(prefect_server, landing, tmp_path, monkeypatch):
    monkeypatch.setenv("TUOMIN_FAILPOINT", "lock:EROFS")
    run = run_flow(landing, tmp_path)
    assert run.state.is_failed() and "cannot be written (Read-only file system); nothing was run" in run.state.message
    assert not list((tmp_path / "warehouse").rglob("*.parquet")) and not (tmp_path / "restricted").exists()


def test_the_daily_deployment_registers_with_its_schedule(prefect_server):
    """Registered against a real Prefect server (the session's), with cron and time zone."""
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.cli.deploy import daily

    deployment = daily()
    deployment.apply()

    async def read():
        async with get_client() as client:
            return await client.read_deployment_by_name("anonymize-exports/daily")

    stored = asyncio.run(read())
    [schedule] = stored.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "Asia/Shanghai")
    assert set(stored.parameters["parameters"]) == {"landing", "warehouse", "restricted"}
    # One parameter model: every field described in the schema the Prefect UI shows (a backfill is
    # the same deployment with a range).
    schema = stored.parameter_openapi_schema
    fields = schema["definitions"]["RunParameters"]["properties"]
    assert "start" in fields and all(field.get("description") for field in fields.values())
    assert "trigger" not in fields  # set by the CLI and the deployments, not typed into the form


def test_one_run_at_a_time_per_warehouse(tmp_path):
    from flows.storage.warehouse import WarehouseBusy, exclusive

    (tmp_path / ".staging" / "dead-run").mkdir(parents=True)
    with exclusive(tmp_path):
        assert not (tmp_path / ".staging").exists()  # a dead run's leftovers are cleared
        with pytest.raises(WarehouseBusy, match="another tuomin run"), exclusive(tmp_path):
            pass


def test_a_run_on_a_busy_warehouse_is_refused_in_one_line_and_may_be_retried(prefect_server, landing, tmp_path):
    """Another run holds the warehouse: `tuomin run` publishes nothing and exits 75 (EX_TEMPFAIL,
    what a cron wrapper retries), not 2 (the command must change) nor 1 (it failed)."""
    from flows.storage.warehouse import exclusive

    warehouse = tmp_path / "wh"
    args = ["--landing", str(landing), "--warehouse", str(warehouse), "--restricted", str(tmp_path / "r"), "--date", DAY1]
    with exclusive(warehouse):
        busy = CliRunner().invoke(app, ["run", *args])
    assert busy.exit_code == 75, busy.output
    assert "refused: another tuomin run" in busy.output and "FAILED" not in busy.output
    assert not list(warehouse.glob("dataset=*"))


def _alive(pid: int) -> bool:
    """A process that still runs (a zombie waiting to be reaped has stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_make_stop_stops_everything_make_serve_started(tmp_path, spawns_prefect):
    """`make serve` (a real Prefect server, then `tuomin serve`), then `make stop`: the deployments
    pause their schedules and stop, then the server; nothing is left running."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    repo, home = Path(__file__).resolve().parents[2], tmp_path / "prefect"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}, "PREFECT_LOGGING_LEVEL": "INFO"}
    make = ["make", "-C", str(repo), f"PREFECT_HOME={home}", f"PREFECT_PORT={port}"]
    served = subprocess.Popen(
        [*make, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        lines = []
        for line in served.stdout:  # until the deployments are served (or make gives up)
            lines.append(line)
            if "serving anonymize-exports/daily" in line:  # printed once the runner has started
                break
        pids = {name: int((home / f"{name}.pid").read_text()) for name in ("server", "serve")}
        assert all(_alive(pid) for pid in pids.values()), "".join(lines)
        stopped = subprocess.run([*make, "stop"], env=env, capture_output=True, text=True, timeout=300)
        assert stopped.returncode == 0 and "tuomin serve stopped" in stopped.stdout and "Prefect server stopped" in stopped.stdout
        assert served.wait(timeout=300) is not None
        rest = served.stdout.read()
        assert not any(_alive(pid) for pid in pids.values()), rest
        assert "All deployments have been paused" in rest  # stopped while the server was still there to hear it
        assert not (home / "serve.pid").exists() and not (home / "server.pid").exists()
    finally:
        if served.poll() is None:
            os.killpg(served.pid, 9)


def test_pandas_polars_and_duckdb_each_read_every_dataset_with_one_line(published):
    """README's one line per tool, per dataset: the same rows in each, and the period as text in
    each (pyarrow's hive partitioning gives pandas a category of strings). At 874540f a read of the
    whole warehouse mixed datasets (and broke on DP tables); a dataset is one folder."""
    import duckdb
    import pandas as pd
    import polars as pl

    wh = published.warehouse
    for name in ("pos", "membership", "after_sales"):
        frame = pd.read_parquet(wh / f"dataset={name}")
        lazy = pl.read_parquet(f"{wh}/dataset={name}/**/*.parquet", hive_partitioning=True, try_parse_hive_dates=False)
        rel = duckdb.sql(
            f"SELECT * FROM read_parquet('{wh}/dataset={name}/*/*.parquet', hive_partitioning = true, "
            "hive_types_autocast = false)"
        )
        rows = rel.fetchall()
        assert len(frame) == lazy.height == len(rows) > 0, name
        assert frame["period"].cat.categories.dtype == object or str(frame["period"].cat.categories.dtype) == "str"
        assert lazy["period"].dtype == pl.String and rel.types[rel.columns.index("period")] == "VARCHAR"
        assert sorted(frame["period"].astype(str).unique()) == sorted(lazy["period"].unique().to_list())
