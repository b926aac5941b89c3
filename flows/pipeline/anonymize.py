"""anonymize-exports: the three systems' exports in, validated anonymized Parquet out.

For each export date (one subflow run each), every source goes through

    backup     the date's raw files, encrypted, into the restricted area (flows/storage/backup.py), beside
               pass 1; nothing is published unless it completed
    scan       pass 1, per file, in batches (flows/pipeline/passes.py): headers must match the policy,
               typed values (rows that do not parse -> restricted quarantine, counted), the
               customer token of each row (own document, or via member number / receipt),
               rows of subjects on requests/erasure.csv flagged; staged and tallied
    plan       per source, the privacy engine on the merged tallies: levels and the classes to
               suppress, erased subjects left out (transforms/plan.py)
    write      pass 2, per source: erase, suppress, every operator; each batch validated as it is
               written (schema, no identifier), then k and l on the whole partition (GX)
    publish    only if every source of the date passed: staged, then renamed into place, then
               recorded in the ledger

and the counts must reconcile: read = published + suppressed + quarantined + erased. A date that
fails anywhere publishes nothing; the run goes on with the other dates and ends Failed. Which
dates: a named one, a range (backfill), all, or by default those new or changed since published.
Tasks run on Prefect's default thread pool, or on a Dask cluster (`runner="dask"`).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.futures import wait
from prefect.runtime import deployment, flow_run
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.pipeline import passes, release
from flows.pipeline.parameters import RunParameters
from flows.pipeline.passes import io_task, raw_task
from flows.pipeline.quarantine import quarantine_batch
from flows.pipeline.record import Inputs, file_sha256, ledger_entry
from flows.pipeline.run import Run, select_dates
from flows.runtime import failpoints, progress
from flows.storage import backup as backup_io
from flows.storage import landing as landing_io
from flows.storage import ledger
from flows.storage import warehouse as warehouse_io
from transforms import plan, steps
from transforms.anonymity import Unreachable
from transforms.policy import SourcePolicy


class DateFailed(RuntimeError):
    """A date that cannot be published; the message names source, file or check, never values."""


def source_order(policies: dict[str, SourcePolicy]) -> list[str]:
    """Sources whose rows others link to come first."""
    return sorted(policies, key=lambda s: (bool(policies[s].link), s))


@io_task(task_run_name="backup-{date}")
def back_up(run: Run, shas: dict[str, str], date: dt.date) -> None:
    """Encrypt the date's raw files ({path: SHA-256 as pass 1 read it}); recorded in the ledger
    once per distinct set of files (a rerun on the same files does not back them up again)."""
    if not shas:
        return
    manifest_path, manifest, written = backup_io.backup_files(run.landing, shas, date, run.restricted, run.backup_key)
    if written:
        ledger.append(
            run.restricted,
            "backup",
            {
                "export_date": date.isoformat(),
                "run_id": run.run_id,
                "manifest": str(manifest_path),
                "key_id": manifest["key_id"],
                "files": [{k: f[k] for k in ("path", "bytes", "sha256")} for f in manifest["files"]],
            },
        )
        get_run_logger().info("%s: %d file(s) backed up, encrypted, -> %s", date, len(shas), manifest_path.parent)


def process_date(run: Run, job: passes.Job, date: dt.date) -> dict:
    began = dt.datetime.now(dt.UTC)
    names = [s for s in source_order(run.policies) if s in run.sources_for(date)]
    # The backup (encryption and hashing, which release the GIL) runs on a thread of this flow
    # run once pass 1 is done, beside the privacy engine and pass 2 (beside pass 2 alone was
    # measured no faster); nothing is published unless it completed.
    with ThreadPoolExecutor(1) as beside:
        backup = None
        try:
            scans, copied, linked_names, linked_erased = scan_sources(run, job, names, date)
            if run.backup_key is not None:
                shas = {s.file.path: s.file.sha256 for found in scans.values() for s in found}
                backup = beside.submit(contextvars.copy_context().run, back_up, run, shas, date)
            failpoints.hit("extracted")
            erased = linked_erased.union(*(s.erased for found in scans.values() for s in found))
            person_names = linked_names.union(*(s.names for found in scans.values() for s in found))
            plans = plan_sources(run, job, scans, erased, date)
            written = write_sources(run, job, scans, copied, plans, erased, person_names, date)
            verdict = check_release(run, job, written, date)
            if backup is not None:
                backup.result()
            failpoints.hit("validated")
            return publish(run, written, date, began, verdict)
        finally:
            _clear_work(job, names, date)


def _clear_work(job: passes.Job, names: list[str], date: dt.date) -> None:
    for name in names:  # staged raw batches do not outlive the date
        shutil.rmtree(job.work_root / name / date.isoformat(), ignore_errors=True)


def scan_sources(run: Run, job: passes.Job, names: list[str], date: dt.date) -> tuple[dict, dict, set[str], set[str]]:
    """Pass 1 over every file of the date: sources that others link to first (all their files at
    once), then the linking ones with their look-ups. A file delivered twice is read once.
    Returns each source's scans in file order, its copies not read ({copy: original}), and the
    names and erased tokens found in look-back windows."""
    scans: dict[str, list[passes.Scanned]] = {}
    copied: dict[str, dict[str, str]] = {}
    linked_names, linked_erased = set(), set()
    for wave in ([s for s in names if not run.policies[s].link], [s for s in names if run.policies[s].link]):
        futures = {}
        for name in wave:
            policy = run.policies[name]
            lookups = []
            if policy.link:
                lookups, found_names, found_erased = passes.link_lookups(
                    run.landing, run.policies, policy, date, job, {s: [x.staged for x in scans[s]] for s in scans}
                )
                linked_names |= found_names
                linked_erased |= found_erased
            link_keys = steps.link_keys_of(run.policies, name)
            files = landing_io.files_for(run.landing, policy, date)
            copied[name] = landing_io.copies(run.landing, files)
            for copy, original in copied[name].items():
                get_run_logger().warning("%s: byte-identical to %s (delivered twice); read once", copy, original)
            futures[name] = [
                passes.scan.submit(run.landing, policy, relative, index, date, job, link_keys, lookups)
                for index, relative in enumerate(files)
                if relative not in copied[name]
            ]
        # Every scan ends before any result is read: a file that fails must not leave the others
        # running after the date has failed and its work area is cleared.
        wait([f for pending in futures.values() for f in pending])
        for name, pending in futures.items():
            scans[name] = [f.result() for f in pending]
            _log_scan(name, date, scans[name])
    return scans, copied, linked_names, linked_erased


def _log_scan(name: str, date: dt.date, scans: list[passes.Scanned]) -> None:
    log = get_run_logger()
    for s in scans:
        for header in s.dropped:
            log.warning("%s: column %r is not in the policy; dropped (--drop-unknown)", s.file.path, header)
        if s.quarantined:
            log.warning(
                "%s %s: %d row(s) of %s quarantined (unparseable or wrong field count)", name, date, s.quarantined, s.file.path
            )


def plan_sources(run: Run, job: passes.Job, scans: dict, erased: set[str], date: dt.date) -> dict[str, plan.Plan]:
    """The privacy engine per source, on the merged tallies of its files."""
    plans, failures = {}, []
    for name, found in scans.items():
        policy = run.policies[name]
        try:
            plans[name] = solve(policy, [s.tally for s in found], erased, job, date)
        except Unreachable as exc:
            failures.append(f"{name}: {exc}")
    if failures:
        raise DateFailed(f"{date}: nothing published. " + " | ".join(failures))
    return plans


@raw_task(task_run_name="plan-{policy.source}-{date}")
def solve(policy: SourcePolicy, tallies: list[plan.Tally], erased: set[str], job: passes.Job, date: dt.date) -> plan.Plan:
    """The files' tallies side by side; the engine's table goes to the work area (out of core)."""
    decided = plan.solve(
        plan.concat(tallies),
        policy,
        plan.hierarchies(policy, job.context(date, policy)),
        erased,
        job.work(policy.source, date) / "engine",
    )
    passes.release_memory()
    return decided


def write_sources(
    run: Run, job: passes.Job, scans: dict, copied: dict, plans: dict, erased: set[str], person_names: set[str], date: dt.date
) -> dict[str, passes.Written]:
    """Pass 2 for every source at once. Every source passes the gate or the date fails as a
    whole; a partition that fails is set aside in the restricted quarantine (it may hold exactly
    the identifiers that made it fail) for someone to look at."""
    # Every gate's GX objects exist before any worker opens the GX project (a worker's context
    # is loaded once and would not see objects added after).
    gates = {
        name: passes.gate(run.policies[name], date, job, [s.staged for s in found], plans[name]) for name, found in scans.items()
    }
    futures = {}
    for name, found in scans.items():
        policy = run.policies[name]
        inputs = Inputs(
            tuple(s.file.__dict__ for s in found),
            tuple((s.file.path, h) for s in found for h in s.dropped),
            tuple(sorted(copied[name].items())),
        )
        counts = {"read": sum(s.file.rows for s in found), "quarantined": sum(s.quarantined for s in found)}
        fingerprint = run.fingerprint(policy, [(s.file.path, s.file.sha256) for s in found])
        ids = {
            "run_id": run.run_id,
            "key_id": run.pseudonymizer.key_id,
            "flow_run_id": str(flow_run.get_id() or ""),
            "fingerprint": fingerprint,
            "unit": f"{name}/{date.isoformat()}/{fingerprint}",  # what its tokens are keyed to
            ledger.HEAD_KEY: ledger.head(run.restricted),
        }
        futures[name] = passes.write.submit(
            policy,
            date,
            job,
            [s.staged for s in found],
            plans[name],
            erased,
            person_names if _redacts(policy) else set(),
            inputs,
            counts,
            ids,
            gates[name],
        )
    written, failures = {}, []
    for name, future in futures.items():
        result = future.result()
        if not result.outcome.success:
            where = quarantine_batch(run.restricted, run.run_id, name, date, result.path)
            failures.append(f"{name}: validation failed: {'; '.join(result.outcome.failures())}; batch set aside in {where}")
        written[name] = result
    if failures:
        raise DateFailed(f"{date}: nothing published. " + " | ".join(failures))
    return written


def check_release(run: Run, job: passes.Job, written: dict[str, passes.Written], date: dt.date) -> dict:
    """The date's partitions as the intruder would hold them, before any is published: person-level
    k^m, l and units with GX, and the side channels (flows/pipeline/release.gate). Any failure publishes nothing."""
    began = time.perf_counter()
    verdict = release.gate(
        {name: w.path for name, w in written.items()},
        warehouse_io.staging(run.warehouse, run.run_id),
        job.gx_project,
        f"{job.run_id} {date}",
        job.work_root,
    )
    if verdict.failures:
        raise DateFailed(f"{date}: nothing published, the release fails: " + " | ".join(verdict.failures))
    get_run_logger().info(
        "%s: the release passes for %d person-level records (%d checks, %.1f s)",
        date,
        verdict.people,
        len(verdict.outcome.checks),
        time.perf_counter() - began,
    )
    return {"people": verdict.people, "checks": list(verdict.outcome.checks)}


def _redacts(policy: SourcePolicy) -> bool:
    return any(c.transform == "redact" for c in policy.columns)


def publish(run: Run, written: dict[str, passes.Written], date: dt.date, began: dt.datetime, verdict: dict) -> dict:
    """Check that every row is accounted for; then move each staged partition into place and
    record it in the ledger, with the release's verdict (check_release)."""
    summary = {}
    for name, result in written.items():
        counts = result.counts
        if counts["read"] != counts["published"] + counts["suppressed"] + counts["quarantined"] + counts["erased"]:
            raise DateFailed(f"{date}: {name}: row counts do not reconcile {counts}; nothing published")
        metadata = result.metadata
        summary[name] = {
            "counts": counts,
            "k": metadata["metrics"].get("k"),
            "levels": metadata["levels"],
            "policy_sha256": metadata["policy_sha256"],
            "inputs": result.inputs,
            "dropped_columns": metadata["dropped_columns"],
        }
    for name, result in written.items():
        sha256 = file_sha256(result.path)
        target = warehouse_io.publish(result.path, run.warehouse, name, date)
        ledger.append(
            run.restricted,
            "partition",
            ledger_entry(
                result.metadata,
                result.counts,
                result.cells,
                result.inputs,
                target,
                run.warehouse,
                sha256,
                run.triggered_by,
                began,
            )
            | {"release": verdict},
        )
        summary[name]["path"] = str(target)
        get_run_logger().info(
            "%s %s: published %d of %d rows (k=%s) -> %s",
            name,
            date,
            summary[name]["counts"]["published"],
            summary[name]["counts"]["read"],
            summary[name]["k"],
            target,
        )
    return summary


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
    run = io_task(Run.start, name="start-run")(
        p.landing, p.warehouse, p.restricted, p.policies, p.drop_unknown, via, p.backup, p.rotate_key
    )
    dates, skipped = io_task(select_dates, name="select-dates")(run, p.date, p.start, p.end, p.every)
    log.info(
        "run %s: %d export date(s) to process, %d up to date, %d erasure request(s), key %s",
        run.run_id,
        len(dates),
        len(skipped),
        len(run.subjects),
        run.pseudonymizer.key_id,
    )
    summary = {
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
    problems = io_task(landing_io.check_headers, name="check-headers")(run.landing, run.policies, dates, p.drop_unknown)
    for problem in problems:
        log.error("%s", problem)
    if problems:
        summary["errors"] = problems
        dates, failed = [], [f"{len(problems)} file(s) do not match their policy"]

    @flow(name="anonymize-date", flow_run_name="{date}", persist_result=False, log_prints=False, task_runner=runner)
    def one_date(date: str) -> dict:  # the run (key, erasure list) stays in the closure, out of Prefect's records
        return process_date(run, job, dt.date.fromisoformat(date))

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
    for number, day in enumerate(dates):
        try:
            summary["dates"][day.isoformat()] = one_date(day.isoformat())
            progress.report("date", date=day.isoformat(), ok=True)
        except (DateFailed, steps.ExportError, OSError) as exc:
            stop = isinstance(exc, OSError)  # the storage, not the data: the next dates would fail alike
            error = (
                f"{day}: nothing published: {exc.strerror or exc} ({exc.filename or 'storage'}); the run stops here"
                if stop
                else str(exc)
            )
            log.error("%s", error)
            summary["dates"][day.isoformat()] = {"error": error}
            failed.append(day.isoformat())
            progress.report("date", date=day.isoformat(), ok=False)
            if stop:
                summary["not_run"] = [d.isoformat() for d in dates[number + 1 :]]
                break
        finally:
            warehouse_io.discard_staging(run.warehouse, run.run_id)
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
        "run",
        {
            "run_id": run.run_id,
            "flow_run_id": str(flow_run.get_id() or ""),
            "started_at": run.started.isoformat(timespec="seconds"),
            "ended_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "status": "failed" if message else "published" if summary["dates"] else "up to date",
            "message": message,
            "triggered_by": run.triggered_by,
            "parameters": {
                **p.model_dump(include={"landing", "warehouse", "date", "start", "end", "every", "drop_unknown", "backup"}),
                "runner": type(runner).__name__,
            },
            "policies": {s: {"file": pol.path.name, "sha256": pol.sha256} for s, pol in run.policies.items()},
            "key_id": run.pseudonymizer.key_id,
            "backup_key_id": run.backup_key.key_id if run.backup_key else None,
            "erasure_requests": len(run.subjects),
            "dates": summary["dates"],
            "up_to_date": summary["up_to_date"],
            "past_retention": summary.get("past_retention", []),
            "errors": problems,
        },
    )
    return Failed(message=message, data=summary) if message else summary
