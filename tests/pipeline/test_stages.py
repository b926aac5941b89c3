"""The release without Prefect: its stages are plain functions (flows/pipeline/stages.py) that a
runner calls; run inline, in a process that never imports Prefect, they publish exactly what the
anonymize-exports flow publishes (tests/data/published.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_published import EXPECTED

SCRIPT = """
import json, sys
from pathlib import Path
from flows.pipeline.executor import Inline
from flows.pipeline.run import Run, select
from flows.pipeline.stages import process_release
from flows.runtime.paths import POLICIES
from flows.storage import ledger, warehouse
from tests.published_digest import digest

root = Path(sys.argv[2])
run = Run.start(sys.argv[1], str(root / "warehouse"), str(root / "restricted"), str(POLICIES), False, "test")
job = run.job()
job.clear_stale_work()
selection, _ = select(run, None, None, None, False)
done = process_release(run, job, selection, Inline())
warehouse.discard_staging(run.warehouse, run.run_id)
summary = {name: p.counts.model_dump() for name, p in done.published.items()}
print(json.dumps({
    "prefect_imported": sorted(m for m in sys.modules if m.split(".")[0] == "prefect"),
    "digest": digest(run.warehouse),
    "kinds": [e["kind"] for e in ledger.entries(run.restricted)],
    "summary": summary,
}))
"""


def test_the_stages_run_without_prefect_and_publish_what_the_flow_publishes(landing, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(landing), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["prefect_imported"] == []
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    assert sorted(found["digest"]) == sorted(expected)
    for name, partition in expected.items():
        for part in ("rows", "schema", "rows_sha256", "metadata"):
            assert found["digest"][name][part] == partition[part], f"{name}: {part} differs"
    assert found["kinds"].count("partition") == len(expected)  # each published partition recorded
    assert found["kinds"].count("backup") == 2  # one per export date read
    for name, c in found["summary"].items():
        assert c["read"] == c["published"] + c["suppressed"] + c["erased"], name


def test_the_flow_runs_the_stages_as_named_prefect_tasks(published):
    """The same stages under the flow: each step a task run of the release's subflow, under its
    name; reads from the landing are retried, the rest not. The partition records that subflow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    from flows.pipeline.anonymize import _task
    from flows.pipeline.executor import Step
    from flows.pipeline.passes import scan_many, write
    from flows.storage.footer import read_footer

    assert _task(Step(scan_many, (), "scan-x", reads_landing=True)).retries == 2
    assert _task(Step(write, (), "write-x")).retries == 0
    partition = published.warehouse / "dataset=pos" / "period=2026-03-01" / "part-0.parquet"
    subflow = read_footer(partition)["flow_run_id"]
    assert subflow
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[subflow])))
    names = {t.name for t in runs}
    for name in ("scan-pos-0-2", "link-after_sales", "plan-pos", "write-pos", "backup-2026-03-01", "backup-2026-03-02"):
        assert name in names, (name, sorted(names))


def test_each_run_leaves_its_summary_as_a_table_artifact(published, landing):
    """The Prefect UI shows what a run did without opening the ledger: per dataset, units, rows
    read and published, k and levels (counts and names only)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.pipeline.anonymize import ARTIFACT

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT])))
    mine = [a for a in found if published.summary.run_id in (a.description or "")]
    assert len(mine) == 1 and mine[0].type == "table"
    rows = json.loads(mine[0].data) if isinstance(mine[0].data, str) else mine[0].data
    expected = {name: info.counts.published for name, info in published.summary.datasets.items()}
    assert {r["dataset"]: r["published"] for r in rows} == expected and len(expected) == 3
    from tests.leaks import find_leaks, raw_identifiers

    assert not find_leaks([json.dumps(rows, ensure_ascii=False), mine[0].description or ""], raw_identifiers(landing))


def _release(landing: Path, root: Path):
    """Every file of a landing as one release, inline (no Prefect)."""
    from flows.pipeline.executor import Inline
    from flows.pipeline.run import Run, select
    from flows.pipeline.stages import process_release
    from flows.runtime.paths import POLICIES

    run = Run.start(str(landing), str(root / "warehouse"), str(root / "restricted"), str(POLICIES), False, "test", backup=False)
    job = run.job()
    job.clear_stale_work()
    selection, _ = select(run, None, None, None, True)
    return process_release(run, job, selection, Inline()), run.warehouse


def _rows_without_tokens(warehouse: Path) -> dict[str, list]:
    """Each partition's rows, tokens left out (they are keyed to the unit's inputs), in one order."""
    import pyarrow.parquet as pq

    from flows.storage.warehouse import partition_files

    found = {}
    for path in partition_files(warehouse):
        table = pq.read_table(path)
        table = table.drop_columns([c for c in table.column_names if c == "customer_id"])
        found[str(path.relative_to(warehouse))] = sorted(
            json.dumps(r, default=str, ensure_ascii=False) for r in table.to_pylist()
        )
    return found


def test_a_closing_dump_publishes_the_rows_the_daily_files_publish(landing, tmp_path):
    """The unit follows the rows, not the delivery: the same rows handed over as one dump (every
    POS line in one file, every case in one file, the last snapshot, all under the last export
    date) publish the same partitions, row for row, as the daily files; the counts are the same."""
    from sample_data.dump import as_dump

    as_dump(landing, tmp_path / "dump")
    assert len(list((tmp_path / "dump" / "pos").rglob("*.csv"))) == 1
    daily, daily_warehouse = _release(landing, tmp_path / "daily-out")
    dumped, dump_warehouse = _release(tmp_path / "dump", tmp_path / "dump-out")
    assert {n: p.counts for n, p in dumped.published.items()} == {n: p.counts for n, p in daily.published.items()}
    rows = _rows_without_tokens(daily_warehouse)
    assert sorted(rows) == [
        "dataset=after_sales/period=2026-03-01/part-0.parquet",
        "dataset=after_sales/period=2026-03-02/part-0.parquet",
        "dataset=membership/period=2026-03-02/part-0.parquet",
        "dataset=pos/period=2026-03-01/part-0.parquet",
        "dataset=pos/period=2026-03-02/part-0.parquet",
    ]
    assert _rows_without_tokens(dump_warehouse) == rows
