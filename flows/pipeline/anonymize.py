"""anonymize-exports: the three systems' exports in, validated anonymized Parquet out, as a
Prefect flow. The stages of a release are plain functions (flows/pipeline/stages.py); this module
is the runner around them: which files (flows/pipeline/run.select: named export dates, a range for
a backfill, all, or by default those new or changed since), one subflow run for the release (and
one more when its units need coarser levels than the release's), the steps as tasks with retries
on a thread pool or a Dask cluster (`runner="dask"`), and the run's ledger entry.

A release that fails anywhere publishes nothing, and the run ends Failed naming what failed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from prefect import Task, flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.runtime import deployment, flow_run
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.pipeline.executor import Step
from flows.pipeline.parameters import RunParameters
from flows.pipeline.run import Run, Selection, out_of_place, recover, select
from flows.pipeline.stages import Release, ReleaseFailed, RunSummary, Widen, process_release
from flows.runtime import progress
from flows.runtime.logfilter import mask
from flows.storage import landing as landing_io
from flows.storage import ledger
from flows.storage import warehouse as warehouse_io
from flows.storage.entries import RunEntry
from transforms import steps

P = ParamSpec("P")
R = TypeVar("R")


class Tasks:
    """The date pipeline's steps as Prefect tasks (the Executor of flows/pipeline/executor.py):
    submitted to the flow's task runner (threads, or a Dask cluster) and shown in the UI by name.
    Raw data moves between tasks only by path or in memory: no result persistence, no input hashing
    for caches. Reads from the landing area are retried twice, after 2 and 10 seconds, when the
    failure is transient (an OSError: network, share, storage), never when it is about the data."""

    def run(self, steps: Sequence[Step]) -> list:
        futures = [_task(step).submit(*step.args) for step in steps]
        wait(futures)
        return [f.result() for f in futures]

    def call(self, step: Step):
        return _task(step)(*step.args)


def _transient(task, task_run, state) -> bool:
    try:
        state.result()
    except OSError:
        return True
    except Exception:  # noqa: BLE001  (any other failure is about the data: do not retry)
        return False
    return False


raw_task = task(cache_policy=NO_CACHE, persist_result=False)
io_task = task(cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient)


@functools.cache
def _task_of(fn, reads_landing: bool) -> Task:
    return (io_task if reads_landing else raw_task)(fn)


def _edge(fn: Callable[P, R], name: str) -> Callable[P, R]:
    """A step of the run itself (start, which dates, headers) as a task named `name`, retried like a read."""
    return cast(Callable[P, R], _task_of(fn, True).with_options(name=name))


def _task(step: Step) -> Task:
    return _task_of(step.fn, step.reads_landing).with_options(task_run_name=step.name)


def _range(start: dt.date | None, end: dt.date | None) -> str:
    return f"from {start or 'the first date'} to {end or 'the last'} " if start or end else ""


@flow(name="anonymize-exports", persist_result=False, log_prints=False)
def anonymize_exports(parameters: RunParameters = RunParameters()) -> RunSummary:  # noqa: B008  (frozen: never mutated)
    """Anonymize the landing area's exports into the warehouse as one release (see RunParameters
    for which files). Columns no policy covers fail the run unless dropped (and recorded); the
    raw files read are backed up (encrypted) unless `backup` is off, and a missing backup key
    fails the run; a pseudonym key other than the warehouse's fails it unless `rotate_key` (then
    the change is recorded and every unit republished under it). The per-file and per-dataset
    work runs on a thread pool, or with runner dask on a Dask cluster."""
    p = parameters
    with warehouse_io.exclusive(Path(p.warehouse)), dask_cluster(p.runner, p.dask_address) as address:
        return _anonymize(p, task_runner(p.runner, address))


@contextmanager
def dask_cluster(runner: str, address: str | None) -> Iterator[str | None]:
    """The scheduler address to use: the one given, or a LocalCluster started for this run (one
    process per core, one thread each: the work holds the GIL in places) and closed after it.
    Its workers report to this run's Prefect API (else each would start a server of its own)."""
    if runner != "dask" or address:
        yield address
        return
    from distributed import LocalCluster
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        api = str(client.api_url)
    with LocalCluster(
        n_workers=os.cpu_count() or 2, threads_per_worker=1, dashboard_address=None, env={"PREFECT_API_URL": api}
    ) as cluster:
        yield cluster.scheduler_address


def task_runner(runner: str, address: str | None):
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    return ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2)


def _anonymize(p: RunParameters, runner):
    log = get_run_logger()
    via = p.trigger or (f"deployment {deployment.name}" if deployment.get_id() else "python")
    run = _edge(Run.start, "start-run")(
        p.landing, p.warehouse, p.restricted, p.policies, p.drop_unknown, via, p.backup, p.rotate_key, p.max_unit_rows
    )
    for line in _edge(recover, "recover")(run):  # what a crash left half done, ended before anything is chosen
        log.warning(line)
    try:
        selection, unchanged = _edge(select, "select")(run, p.date, p.start, p.end, p.every)
        refused = None
    except steps.ExportError as exc:  # a landing no run can read (a folder dated after today): recorded, below
        selection, unchanged, refused = Selection(), [], str(exc)
    files = sum(len(f) for f in selection.files.values())
    reading = ", ".join(name for name, f in selection.files.items() if f)
    log.info(
        "run %s: %s; %s unchanged; %d erasure request(s); key %s",
        run.run_id,
        f"{files} file(s) to read for {reading}" if files else "no file to read",
        ", ".join(unchanged) or "nothing",
        len(run.subjects),
        run.pseudonymizer.key_id,
    )
    summary = RunSummary(run_id=run.run_id, warehouse=str(run.warehouse), key_id=run.pseudonymizer.key_id, up_to_date=unchanged)
    job = run.job()
    job.clear_stale_work()
    # A file whose columns the policy does not cover stops the whole run before anything is written.
    problems = _edge(landing_io.check_headers, "check-headers")(run.landing, run.policies, selection.files, p.drop_unknown)
    problems += _edge(out_of_place, "check-published")(run, selection)
    for problem in problems:
        log.error("%s", problem)
    message = None
    if refused:
        summary.errors = problems = [refused]
        message = f"nothing read or published: {refused}"
    elif problems:
        summary.errors = problems
        message = "nothing published: " + " | ".join(problems)
    elif not selection and not unchanged:
        message = f"no export files {_range(p.start, p.end)}under {p.landing}"
    elif not selection and p.date:
        message = f"{p.date}: no export files for this date under {p.landing}; nothing published"
    elif not selection and (p.start or p.end):
        message = f"no export files {_range(p.start, p.end)}under {p.landing}; nothing published"
    elif selection:
        message = _release(run, job, selection, summary, runner, log)
    shutil.rmtree(job.work_root, ignore_errors=True)
    ledger.append(
        run.restricted,
        RunEntry(
            run_id=run.run_id,
            flow_run_id=str(flow_run.get_id() or ""),
            started_at=run.started.isoformat(timespec="seconds"),
            ended_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            status="failed" if message else "published" if summary.datasets else "up to date",
            message=message,
            triggered_by=run.triggered_by,
            parameters={
                **p.model_dump(
                    include={"landing", "warehouse", "date", "start", "end", "every", "drop_unknown", "backup", "max_unit_rows"}
                ),
                "runner": type(runner).__name__,
            },
            policies={s: {"file": pol.path.name, "sha256": pol.sha256} for s, pol in run.policies.items()},
            key_id=run.pseudonymizer.key_id,
            backup_key_id=run.backup_key.key_id if run.backup_key else None,
            erasure_requests=len(run.subjects),
            datasets={name: dataclasses.asdict(done) for name, done in summary.datasets.items()},
            files=summary.files if not message else {},
            up_to_date=summary.up_to_date,
            past_retention=summary.past_retention,
            snapshots_kept=summary.snapshots_kept,
            republished=summary.republished,
            errors=problems or ([message] if message else []),
        ),
    )
    create_table_artifact(
        key=ARTIFACT,
        table=summary_rows(summary),
        description=mask(f"tuomin run {run.run_id}: " + (message or f"{len(summary.datasets)} dataset(s) published")),
    )
    return Failed(message=message, data=summary) if message else summary


def _release(run: Run, job, selection: Selection, summary: RunSummary, runner, log) -> str | None:
    """The release of the selected files, as one subflow run; widened once when its units need
    coarser levels than the release's (every unit of those sources solved together). Returns the
    error, or None when it published."""

    @flow(name="release", flow_run_name="{name}", persist_result=False, log_prints=False, task_runner=runner)
    def release(name: str) -> Release:  # the run (key, erasure list) stays in the closure, out of Prefect's records
        return process_release(run, job, chosen, Tasks(), str(flow_run.get_id() or ""))

    chosen = selection
    for attempt in range(2):
        progress.report("start", sources=[n for n, f in chosen.files.items() if f])
        try:
            published = release("release" if not attempt else "release-widened")
        except Widen as wider:
            if attempt:
                return f"nothing published: the levels of {wider} kept rising"
            log.info("%s: coarser levels than the release's; every unit of it is solved again, together", wider)
            chosen = selection.widened(run, wider.sources)
            continue
        except (ReleaseFailed, steps.ExportError, OSError) as exc:
            error = (
                f"nothing published: {exc.strerror or exc} ({exc.filename or 'storage'}); the run stops here"
                if isinstance(exc, OSError)
                else str(exc)
            )
            log.error("%s", error)
            summary.error = error
            progress.report("done", ok=False)
            return error
        finally:
            warehouse_io.discard_staging(run.warehouse, run.run_id)
        summary.took(published)
        progress.report("done", ok=True)
        return None
    return None


ARTIFACT = "anonymize-summary"


def summary_rows(summary: RunSummary) -> list[dict[str, Any]]:
    """The run in the Prefect UI (a table artifact): per dataset, the units published, rows read
    and published, the k achieved and the levels chosen; a failed release with its error. Counts
    and names only."""
    rows: list[dict[str, Any]] = []
    if summary.error:
        rows.append(
            {
                "dataset": "",
                "status": "failed",
                "units": None,
                "read": None,
                "published": None,
                "k": None,
                "levels": mask(summary.error),
            }
        )
    for name, done in summary.datasets.items():
        rows.append(
            {
                "dataset": name,
                "status": "published",
                "units": done.units,
                "read": done.counts.read,
                "published": done.counts.published,
                "k": done.k,
                "levels": ", ".join(f"{c}={lv}" for c, lv in done.levels.items()),
            }
        )
    rows += [
        {"dataset": name, "status": "up to date", "units": None, "read": None, "published": None, "k": None, "levels": ""}
        for name in summary.up_to_date
    ]
    return rows
