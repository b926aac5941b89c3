"""One export date, stage by stage, as plain functions: no Prefect here. The flow
(flows/pipeline/anonymize.py) calls `process_date` once per date with an Executor that runs the
steps as Prefect tasks; a test or a notebook calls it with `Inline()` and needs nothing else.

    backup     the date's raw files, encrypted, into the restricted area (flows/storage/backup.py),
               beside the privacy engine and pass 2; nothing is published unless it completed
    scan       pass 1, per file, in batches (flows/pipeline/passes.py): headers must match the
               policy, typed values (rows that do not parse -> restricted quarantine, counted), the
               customer token of each row (own document, or via member number / receipt), rows of
               subjects on requests/erasure.csv flagged; staged and tallied
    plan       per source, the privacy engine on the merged tallies: levels (at or above the
               release's, flows/pipeline/release_levels.py) and the classes to suppress, erased
               subjects left out (transforms/plan.py)
    write      pass 2, per source: erase, suppress, every operator; each batch validated as it is
               written (schema, no identifier), then k and l on the whole partition (GX)
    release    the date's partitions together, as the intruder would hold them (flows/pipeline/release.py)
    publish    only if every source of the date passed and the counts reconcile (read = published +
               suppressed + quarantined + erased): renamed into place, then recorded in the ledger

A date that fails anywhere raises DateFailed (or the error of the step that failed) and publishes
nothing. Log lines go to the `tuomin` logger, which the flow's runner forwards to Prefect.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from flows.pipeline import passes, release, release_levels
from flows.pipeline.executor import Executor, Step
from flows.pipeline.quarantine import quarantine_batch
from flows.pipeline.record import Inputs, file_sha256, ledger_entry
from flows.pipeline.run import Run
from flows.runtime import failpoints
from flows.storage import backup as backup_io
from flows.storage import landing as landing_io
from flows.storage import ledger
from flows.storage import warehouse as warehouse_io
from flows.storage.entries import BackupEntry, PartitionEntry
from transforms import plan, steps
from transforms.anonymity import Unreachable
from transforms.policy import SourcePolicy

log = logging.getLogger("tuomin.pipeline")


class DateFailed(RuntimeError):
    """A date that cannot be published; the message names source, file or check, never values."""


@dataclass
class Scans:
    """Pass 1's results for a date: each source's files in order, the copies not read ({copy:
    original}), and the person names and erased subjects' tokens found (in the date's files and in
    look-back windows)."""

    found: dict[str, list[passes.Scanned]] = field(default_factory=dict)
    copied: dict[str, dict[str, str]] = field(default_factory=dict)
    linked_names: set[str] = field(default_factory=set)
    linked_erased: set[str] = field(default_factory=set)

    @property
    def names(self) -> set[str]:
        return self.linked_names.union(*(s.names for found in self.found.values() for s in found))

    @property
    def erased(self) -> set[str]:
        return self.linked_erased.union(*(s.erased for found in self.found.values() for s in found))

    def shas(self) -> dict[str, str]:
        return {s.file.path: s.file.sha256 for found in self.found.values() for s in found}


@dataclass(frozen=True)
class Published:
    """What a date published for one source, as the run's summary reports it."""

    counts: dict[str, int]
    k: int | None
    levels: dict[str, int]
    policy_sha256: str
    inputs: list[dict]
    dropped_columns: list[dict]
    path: str


def source_order(policies: dict[str, SourcePolicy]) -> list[str]:
    """Sources whose rows others link to come first."""
    return sorted(policies, key=lambda s: (bool(policies[s].link), s))


def process_date(run: Run, job: passes.Job, date: dt.date, executor: Executor, flow_run_id: str = "") -> dict[str, Published]:
    """Every stage of one date; `flow_run_id` is recorded with each partition (empty outside Prefect)."""
    began = dt.datetime.now(dt.UTC)
    names = [s for s in source_order(run.policies) if s in run.sources_for(date)]
    # The backup (encryption and hashing, which release the GIL) runs on a thread of its own once
    # pass 1 is done, beside the privacy engine and pass 2 (beside pass 2 alone was measured no
    # faster); nothing is published unless it completed.
    with ThreadPoolExecutor(1) as beside:
        backup = None
        try:
            scans = scan_sources(run, job, names, date, executor)
            if run.backup_key is not None:
                step = Step(back_up, (run, scans.shas(), date), f"backup-{date}", reads_landing=True)
                backup = beside.submit(contextvars.copy_context().run, executor.call, step)
            failpoints.hit("extracted")
            erased = scans.erased
            plans = plan_sources(run, job, scans, erased, date, executor)
            written = write_sources(run, job, scans, plans, erased, date, executor, flow_run_id)
            verdict = check_release(run, job, written, date)
            if backup is not None:
                backup.result()
            failpoints.hit("validated")
            return publish(run, written, date, began, verdict)
        finally:
            for name in names:  # staged raw batches do not outlive the date
                shutil.rmtree(job.work_root / name / date.isoformat(), ignore_errors=True)


def back_up(run: Run, shas: dict[str, str], date: dt.date) -> None:
    """Encrypt the date's raw files ({path: SHA-256 as pass 1 read it}); recorded in the ledger
    once per distinct set of files (a rerun on the same files does not back them up again)."""
    if not shas:
        return
    assert run.backup_key is not None
    manifest_path, manifest, written = backup_io.backup_files(run.landing, shas, date, run.restricted, run.backup_key)
    if written:
        ledger.append(
            run.restricted,
            BackupEntry(
                export_date=date.isoformat(),
                run_id=run.run_id,
                manifest=str(manifest_path),
                key_id=manifest["key_id"],
                files=[{k: f[k] for k in ("path", "bytes", "sha256")} for f in manifest["files"]],
            ),
        )
        log.info("%s: %d file(s) backed up, encrypted, -> %s", date, len(shas), manifest_path.parent)


def scan_sources(run: Run, job: passes.Job, names: list[str], date: dt.date, executor: Executor) -> Scans:
    """Pass 1 over every file of the date: sources that others link to first (all their files at
    once), then the linking ones with their look-ups. A file delivered twice is read once."""
    scans = Scans()
    for wave in ([s for s in names if not run.policies[s].link], [s for s in names if run.policies[s].link]):
        pending: dict[str, list[Step]] = {}
        for name in wave:
            policy = run.policies[name]
            lookups: list = []
            if policy.link:
                same_day = {s: [x.staged for x in found] for s, found in scans.found.items()}
                args = (run.landing, run.policies, policy, date, job, same_day)
                lookups, found_names, found_erased = executor.call(
                    Step(passes.link_lookups, args, f"link-{name}-{date}", reads_landing=True)
                )
                scans.linked_names |= found_names
                scans.linked_erased |= found_erased
            link_keys = steps.link_keys_of(run.policies, name)
            files = landing_io.files_for(run.landing, policy, date)
            scans.copied[name] = landing_io.copies(run.landing, files)
            for copy, original in scans.copied[name].items():
                log.warning("%s: byte-identical to %s (delivered twice); read once", copy, original)
            pending[name] = [
                Step(
                    passes.scan,
                    (run.landing, policy, relative, index, date, job, link_keys, lookups),
                    f"scan-{name}-{date}-{index}",
                    reads_landing=True,
                )
                for index, relative in enumerate(files)
                if relative not in scans.copied[name]
            ]
        results = iter(executor.run([s for wave_steps in pending.values() for s in wave_steps]))
        for name, wave_steps in pending.items():
            scans.found[name] = [next(results) for _ in wave_steps]
            _log_scan(name, date, scans.found[name])
    return scans


def _log_scan(name: str, date: dt.date, scans: list[passes.Scanned]) -> None:
    for s in scans:
        for header in s.dropped:
            log.warning("%s: column %r is not in the policy; dropped (--drop-unknown)", s.file.path, header)
        if s.quarantined:
            log.warning(
                "%s %s: %d row(s) of %s quarantined (unparseable or wrong field count)", name, date, s.quarantined, s.file.path
            )


def plan_sources(
    run: Run, job: passes.Job, scans: Scans, erased: set[str], date: dt.date, executor: Executor
) -> dict[str, plan.Plan]:
    """The privacy engine per source, on the merged tallies of its files, at the release's levels or
    above (flows/pipeline/release_levels.py)."""
    plans, failures = {}, []
    floors = release_levels.floors(run.restricted)
    for name, found in scans.found.items():
        policy = run.policies[name].at_least(floors.get(name, {}))
        try:
            plans[name] = executor.call(Step(solve, (policy, [s.tally for s in found], erased, job, date), f"plan-{name}-{date}"))
        except Unreachable as exc:
            failures.append(f"{name}: {exc}")
    if failures:
        raise DateFailed(f"{date}: nothing published. " + " | ".join(failures))
    return plans


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
    run: Run,
    job: passes.Job,
    scans: Scans,
    plans: dict[str, plan.Plan],
    erased: set[str],
    date: dt.date,
    executor: Executor,
    flow_run_id: str = "",
) -> dict[str, passes.Written]:
    """Pass 2 for every source at once. Every source passes the gate or the date fails as a
    whole; a partition that fails is set aside in the restricted quarantine (it may hold exactly
    the identifiers that made it fail) for someone to look at."""
    # Every gate's GX objects exist before any worker opens the GX project (a worker's context
    # is loaded once and would not see objects added after).
    gates = {
        name: passes.gate(run.policies[name], date, job, [s.staged for s in found], plans[name])
        for name, found in scans.found.items()
    }
    person_names = scans.names
    pending = []
    for name, found in scans.found.items():
        policy = run.policies[name]
        inputs = Inputs(
            tuple(s.file.__dict__ for s in found),
            tuple((s.file.path, h) for s in found for h in s.dropped),
            tuple(sorted(scans.copied[name].items())),
        )
        counts = {"read": sum(s.file.rows for s in found), "quarantined": sum(s.quarantined for s in found)}
        fingerprint = run.fingerprint(policy, [(s.file.path, s.file.sha256) for s in found])
        ids = {
            "run_id": run.run_id,
            "key_id": run.pseudonymizer.key_id,
            "flow_run_id": flow_run_id,
            "fingerprint": fingerprint,
            "unit": f"{name}/{date.isoformat()}/{fingerprint}",  # what its tokens are keyed to
            ledger.HEAD_KEY: ledger.head(run.restricted),
        }
        redacts = any(c.transform == "redact" for c in policy.columns)
        args = (
            policy,
            date,
            job,
            [s.staged for s in found],
            plans[name],
            erased,
            person_names if redacts else set(),
            inputs,
            counts,
            ids,
            gates[name],
        )
        pending.append(Step(passes.write, args, f"write-{name}-{date}"))
    written, failures = {}, []
    for name, result in zip(scans.found, executor.run(pending), strict=True):
        if not result.outcome.success:
            where = quarantine_batch(run.restricted, run.run_id, name, date, result.path)
            failures.append(f"{name}: validation failed: {'; '.join(result.outcome.failures())}; batch set aside in {where}")
        written[name] = result
    if failures:
        raise DateFailed(f"{date}: nothing published. " + " | ".join(failures))
    return written


def check_release(run: Run, job: passes.Job, written: dict[str, passes.Written], date: dt.date) -> release.Verdict:
    """The date's partitions as the intruder would hold them, before any is published: person-level
    k^m, l and units with GX, and the side channels (flows/pipeline/release.gate). Any failure
    publishes nothing."""
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
    log.info(
        "%s: the release passes for %d person-level records (%d checks, %.1f s)",
        date,
        verdict.people,
        len(verdict.outcome.checks),
        time.perf_counter() - began,
    )
    return verdict


def publish(
    run: Run, written: dict[str, passes.Written], date: dt.date, began: dt.datetime, verdict: release.Verdict
) -> dict[str, Published]:
    """Check that every row is accounted for; then move each staged partition into place and
    record it in the ledger, with the release's verdict."""
    for name, result in written.items():
        counts = result.counts
        if counts["read"] != counts["published"] + counts["suppressed"] + counts["quarantined"] + counts["erased"]:
            raise DateFailed(f"{date}: {name}: row counts do not reconcile {counts}; nothing published")
    recorded = {"people": verdict.people, "checks": list(verdict.outcome.checks)}
    summary = {}
    for name, result in written.items():
        sha256 = file_sha256(result.path)
        target = warehouse_io.publish(result.path, run.warehouse, name, date)
        entry = ledger_entry(
            result.metadata, result.counts, result.cells, result.inputs, target, run.warehouse, sha256, run.triggered_by, began
        )
        ledger.append(run.restricted, PartitionEntry(**entry, release=recorded))
        metadata = result.metadata
        summary[name] = Published(
            counts=result.counts,
            k=metadata["metrics"].get("k"),
            levels=metadata["levels"],
            policy_sha256=metadata["policy_sha256"],
            inputs=result.inputs,
            dropped_columns=metadata["dropped_columns"],
            path=str(target),
        )
        log.info(
            "%s %s: published %d of %d rows (k=%s) -> %s",
            name,
            date,
            result.counts["published"],
            result.counts["read"],
            summary[name].k,
            target,
        )
    return summary
