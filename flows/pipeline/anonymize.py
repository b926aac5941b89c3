"""anonymize-exports: the three systems' exports in, validated anonymized Parquet out, as a
Prefect flow. The stages of one export date are plain functions (flows/pipeline/stages.py); this
module is the runner around them: which dates (a named one, a range for a backfill, all, or by
default those new or changed since published), one subflow run per date, the steps as tasks with
retries on a thread pool or a Dask cluster (`runner="dask"`), and the run's ledger entry.

A date that fails anywhere publishes nothing; the run goes on with the other dates and ends
Failed. A storage failure (OSError) stops the run: the next dates would fail alike.
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

from flows.pipeline import release_levels
from flows.pipeline.executor import Step
from flows.pipeline.parameters import RunParameters
from flows.pipeline.run import Run, select_dates
from flows.pipeline.stages import DateFailed, process_date
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


# Each round republishes at the levels the one before raised; levels only rise, and a date solved
# at the floor rarely needs more, so a few rounds settle them (a test checks every partition agrees).
RELEASE_ROUNDS = 3


def _stale(run: Run, summary: dict[str, Any], failed: list[str], log) -> list[dt.date]:
    """The published dates below their dataset's release levels (flows/pipeline/release_levels.py),
    to be republished in this run; one whose raw exports are gone cannot be, and fails the run."""
    found = []
    for day, datasets in release_levels.stale(run.restricted, run.policies).items():
        if day.isoformat() in failed:
            continue
        why = run.nothing_for(day)
        if why:
            error = f"{day}: {', '.join(datasets)} below the release's levels, and cannot be republished: {why}"
            log.error("%s", error)
            summary["dates"][day.isoformat()] = {"error": error}
            failed.append(day.isoformat())
            continue
        log.info("%s: %s republished at the release's levels (another date needed coarser ones)", day, ", ".join(datasets))
        summary.setdefault("republished", []).append(day.isoformat())
        found.append(day)
    if found:
        progress.report("more", dates=[d.isoformat() for d in found])
    return found


def _range(start: str | None, end: str | None) -> str:
    return f"from {start or 'the first date'} to {end or 'the last'} " if start or end else ""


@flow(name="anonymize-exports", persist_result=False, log_prints=False)
def anonymize_exports(parameters: RunParameters = RunParameters()) -> dict:  # noqa: B008  (frozen: never mutated)
    """Anonymize the export dates of the landing area into the warehouse (see RunParameters for
    which dates). Columns no policy covers fail the run unless dropped (and recorded); each date's
    raw files are backed up (encrypted) first unless `backup` is off, and a missing backup key
    fails the run; a pseudonym key other than the warehouse's fails it unless `rotate_key` (then
    the change is recorded and every date republished under the new key). The per-file and
    per-partition work runs on a thread pool, or with runner dask on a Dask cluster."""
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
        p.landing, p.warehouse, p.restricted, p.policies, p.drop_unknown, via, p.backup, p.rotate_key
    )
    dates, skipped = _edge(select_dates, "select-dates")(run, p.date, p.start, p.end, p.every)
    log.info(
        "run %s: %d export date(s) to process, %d up to date, %d erasure request(s), key %s",
        run.run_id,
        len(dates),
        len(skipped),
        len(run.subjects),
        run.pseudonymizer.key_id,
    )
    summary: dict[str, Any] = {
        "run_id": run.run_id,
        "warehouse": str(run.warehouse),
        "key_id": run.pseudonymizer.key_id,
        "dates": {},
        "up_to_date": [d.isoformat() for d in skipped],
    }
    failed = []
    job = run.job()
    job.clear_stale_work()
    # A file whose columns the policy does not cover stops the whole run before anything is written.
    problems = _edge(landing_io.check_headers, "check-headers")(run.landing, run.policies, dates, p.drop_unknown)
    for problem in problems:
        log.error("%s", problem)
    if problems:
        summary["errors"] = problems
        dates, failed = [], [f"{len(problems)} file(s) do not match their policy"]

    @flow(name="anonymize-date", flow_run_name="{date}", persist_result=False, log_prints=False, task_runner=runner)
    def one_date(date: str) -> dict:  # the run (key, erasure list) stays in the closure, out of Prefect's records
        published = process_date(run, job, dt.date.fromisoformat(date), Tasks(), str(flow_run.get_id() or ""))
        return {name: dataclasses.asdict(done) for name, done in published.items()}

    requested, dates = dates, []
    for day in requested:
        why = run.nothing_for(day)
        if why and p.date:  # a date asked for by name with nothing to process fails, not an empty success
            log.error("%s", why)
            summary["dates"][day.isoformat()] = {"error": why}
            failed.append(day.isoformat())
        elif why:  # found in a range or by --all: every source that delivered it is past retention
            summary.setdefault("past_retention", []).append(day.isoformat())
        else:
            dates.append(day)
    progress.report("start", dates=[d.isoformat() for d in dates])
    pending, rounds = list(dates), 0
    while pending:
        day = pending.pop(0)
        try:
            summary["dates"][day.isoformat()] = one_date(day.isoformat())
            progress.report("date", date=day.isoformat(), ok=True)
        except (DateFailed, steps.ExportError, OSError) as exc:
            stop = isinstance(exc, OSError)  # the storage, not the data: the next dates would fail alike
            error = (
                f"{day}: nothing published: {exc.strerror or exc} ({exc.filename or 'storage'}); the run stops here"
                if isinstance(exc, OSError)
                else str(exc)
            )
            log.error("%s", error)
            summary["dates"][day.isoformat()] = {"error": error}
            failed.append(day.isoformat())
            progress.report("date", date=day.isoformat(), ok=False)
            if stop:
                summary["not_run"] = [d.isoformat() for d in pending]
                break
        finally:
            warehouse_io.discard_staging(run.warehouse, run.run_id)
        if not pending and rounds < RELEASE_ROUNDS:  # a date that needed coarser levels left others below them
            rounds += 1
            pending = _stale(run, summary, failed, log)
    shutil.rmtree(job.work_root, ignore_errors=True)
    message = (
        "nothing published: " + " | ".join(problems)
        if problems
        else f"{len(failed)} of {len(requested)} export date(s) failed: {', '.join(failed)}"
        if failed
        else f"no export files {_range(p.start, p.end)}under {p.landing}"
        if not (requested or skipped)
        else None
    )
    ledger.append(
        run.restricted,
        RunEntry(
            run_id=run.run_id,
            flow_run_id=str(flow_run.get_id() or ""),
            started_at=run.started.isoformat(timespec="seconds"),
            ended_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            status="failed" if message else "published" if summary["dates"] else "up to date",
            message=message,
            triggered_by=run.triggered_by,
            parameters={
                **p.model_dump(include={"landing", "warehouse", "date", "start", "end", "every", "drop_unknown", "backup"}),
                "runner": type(runner).__name__,
            },
            policies={s: {"file": pol.path.name, "sha256": pol.sha256} for s, pol in run.policies.items()},
            key_id=run.pseudonymizer.key_id,
            backup_key_id=run.backup_key.key_id if run.backup_key else None,
            erasure_requests=len(run.subjects),
            dates=summary["dates"],
            up_to_date=summary["up_to_date"],
            past_retention=summary.get("past_retention", []),
            republished=summary.get("republished", []),
            errors=problems,
        ),
    )
    create_table_artifact(
        key=ARTIFACT,
        table=summary_rows(summary),
        description=mask(f"tuomin run {run.run_id}: " + (message or f"{len(summary['dates'])} export date(s) published")),
    )
    return Failed(message=message, data=summary) if message else summary


ARTIFACT = "anonymize-summary"


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The run in the Prefect UI (a table artifact): per date and dataset, rows read and published,
    the k achieved and the levels chosen; a failed date with its error. Counts and names only."""
    rows: list[dict[str, Any]] = []
    for day, outcome in summary["dates"].items():
        if "error" in outcome:
            rows.append(
                {
                    "export_date": day,
                    "dataset": "",
                    "status": "failed",
                    "read": None,
                    "published": None,
                    "k": None,
                    "levels": mask(outcome["error"]),
                }
            )
            continue
        for name, done in outcome.items():
            rows.append(
                {
                    "export_date": day,
                    "dataset": name,
                    "status": "published",
                    "read": done["counts"]["read"],
                    "published": done["counts"]["published"],
                    "k": done["k"],
                    "levels": ", ".join(f"{c}={lv}" for c, lv in done["levels"].items()),
                }
            )
    rows += [
        {"export_date": day, "dataset": "", "status": "up to date", "read": None, "published": None, "k": None, "levels": ""}
        for day in summary["up_to_date"]
    ]
    return rows
