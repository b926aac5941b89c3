"""One release, stage by stage, as plain functions: no Prefect here. The flow
(flows/pipeline/anonymize.py) calls `process_release` with an Executor that runs the steps as
Prefect tasks; a test or a notebook calls it with `Inline()` and needs nothing else.

    scan       pass 1, per file, in batches (flows/pipeline/passes.py): headers must match the
               policy, typed values (rows that do not parse -> restricted quarantine, counted),
               each row placed in the unit of its own date (transforms/units.py: a buyer-day, the
               latest snapshot), the customer token of each row (own document, or via member
               number / receipt), rows of subjects on requests/erasure.csv flagged; staged by unit
               and tallied. A unit larger than the run may count is refused here, in one line
    backup     each export date's raw files read, encrypted, into the restricted area, beside the
               privacy engine and pass 2; nothing is published unless it completed
    plan       per source, the privacy engine once on the tallies of every unit: one set of levels
               for all of them, at or above the release's (flows/pipeline/release_levels.py), the
               unit a key of every class (transforms/plan.py)
    write      pass 2, per source: every unit's rows through the plan, checked as they pass
               (schema and no identifier; k and l once, the unit a column), one file per unit
    snapshots  a snapshot source's new snapshot left out if it would chain to the one published
               (a tuple unique on both dates, a class in which fewer than k people changed): the
               published one stays (`hold_snapshots`)
    release    every staged unit together, as the intruder would hold them (flows/pipeline/intruder.py)
    publish    only if everything passed and the counts reconcile (per file: read = placed in units +
               quarantined + elsewhere; per unit: placed = published + suppressed + erased):
               renamed into place, then recorded in the ledger, one entry per unit

A release that fails anywhere raises ReleaseFailed (or the error of the step that failed) and
publishes nothing. Log lines go to the `tuomin` logger, which the flow's runner forwards to Prefect.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import BaseModel

from flows.pipeline import intruder, passes, release_levels
from flows.pipeline.executor import Executor, Step
from flows.pipeline.quarantine import quarantine_batch
from flows.pipeline.record import Inputs, ledger_entry
from flows.pipeline.run import Run, Selection
from flows.runtime import failpoints
from flows.runtime.clock import today
from flows.runtime.memory import release_memory
from flows.storage import backup as backup_io
from flows.storage import intents, ledger
from flows.storage import landing as landing_io
from flows.storage import warehouse as warehouse_io
from flows.storage.entries import BackupEntry, Change, PartitionEntry, PartitionRemovedEntry, Rows
from flows.storage.files import file_sha256
from flows.storage.footer import read_footer
from transforms import plan, steps
from transforms.anonymity import Unreachable
from transforms.errors import TuominError
from transforms.operators import Suppress
from transforms.policy import SourcePolicy
from transforms.units import UNIT, last_day

log = logging.getLogger("tuomin.pipeline")

SCAN_BYTES = 64 << 20  # small files are scanned several to a step: a step costs more to schedule than a small file to read


class ReleaseFailed(TuominError, RuntimeError):
    """A release that cannot be published; the message names source, unit, file or check, never values."""


class Widen(Exception):  # noqa: N818  (not an error: the run starts the release again, wider)
    """The units of this run need coarser levels than the release's: every unit of these sources
    is solved again, together (Selection.widened)."""

    def __init__(self, sources: list[str]):
        super().__init__(", ".join(sources))
        self.sources = sources


@dataclass
class Scans:
    """Pass 1's results: each source's files in order, the copies not read ({copy: original}),
    and the person names and erased subjects' tokens found (in the files and in look-back windows)."""

    found: dict[str, list[passes.Scanned]] = field(default_factory=dict)
    copied: dict[str, dict[str, str]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    erased: set[str] = field(default_factory=set)

    def add(self, name: str, found: list[passes.Scanned]) -> None:
        """A source's scans, their names and erased tokens gathered here (each file's own sets
        repeat the same customers: a history's hundreds of them would hold millions of strings)."""
        for s in found:
            self.names |= s.names
            self.erased |= s.erased
            s.names, s.erased = set(), set()
        self.found[name] = found

    def shas(self) -> dict[dt.date, dict[str, str]]:
        """The files read, by the export date that delivered them: {date: {path: SHA-256}}."""
        by_date: dict[dt.date, dict[str, str]] = {}
        for found in self.found.values():
            for s in found:
                by_date.setdefault(s.export_date, {})[s.file.path] = s.file.sha256
        return by_date

    def units(self, name: str) -> dict[str, list[passes.Scanned]]:
        """A source's units, each with the scans of the files that placed rows in it."""
        found: dict[str, list[passes.Scanned]] = {}
        for s in self.found[name]:
            for label in s.staged:
                found.setdefault(label, []).append(s)
        return dict(sorted(found.items()))


@dataclass(frozen=True)
class Published:
    """What a release published for one source, as the run's summary reports it."""

    units: int
    periods: list[str]  # the units' labels, in order
    counts: Rows  # summed over its units
    k: int | None
    levels: dict[str, int]
    policy_sha256: str
    republished: list[str]  # units that had a partition before
    superseded: list[str]  # partitions removed because a later snapshot replaces them
    questions: dict[str, dict] = field(default_factory=dict)  # the declared questions' scores (workload.Score)


class RunSummary(BaseModel):
    """What a run did: the anonymize-exports flow's result (its state's data when it failed),
    what `tuomin run` prints and the run's ledger entry records. Names and counts only."""

    run_id: str
    warehouse: str
    key_id: str
    datasets: dict[str, Published] = {}  # per source published
    up_to_date: list[str] = []  # sources left as published (same files, levels, key)
    files: dict[str, dict] = {}  # every landing file read: sha256, rows, quarantined, placed, elsewhere
    republished: list[str] = []  # "dataset period" of units that had a partition before
    past_retention: list[str] = []  # units of rows past their retention period: never published
    snapshots_kept: dict[str, str] = {}  # snapshot sources whose published snapshot stays, and why (hold_snapshots)
    errors: list[str] = []  # files whose columns no policy covers: nothing was read
    error: str | None = None  # why the release published nothing

    def took(self, release: Release) -> None:
        """What a release published, into the summary."""
        self.files = release.files
        self.datasets = dict(release.published)
        self.republished = [f"{n} {label}" for n, done in release.published.items() for label in done.republished]
        self.past_retention = release.past_retention
        self.snapshots_kept = release.snapshots_kept
        self.up_to_date = sorted(set(self.up_to_date) | set(release.unchanged))


@dataclass(frozen=True)
class Release:
    """What a release published: per source, and every landing file it read (path: SHA-256)."""

    published: dict[str, Published]
    files: dict[str, dict]  # every landing file read: sha256, rows, quarantined, placed (in units), elsewhere
    past_retention: list[str]  # units ("dataset period") of rows past their retention period: never published
    unchanged: list[str]  # sources read whose every unit was left as published (same files, levels, key)
    snapshots_kept: dict[str, str]  # snapshot sources whose published snapshot stays: why the new one is not published


def source_order(policies: dict[str, SourcePolicy]) -> list[str]:
    """Sources whose rows others link to come first."""
    return sorted(policies, key=lambda s: (bool(policies[s].link), s))


def process_release(run: Run, job: passes.Job, selection: Selection, executor: Executor, flow_run_id: str = "") -> Release:
    """Every stage of one release; `flow_run_id` is recorded with each partition (empty outside
    Prefect). Raises Widen when the run must solve more units than it selected."""
    began = dt.datetime.now(dt.UTC)
    names = [s for s in source_order(run.policies) if selection.files.get(s)]
    backups: list[Future] = []
    # The backup (encryption and hashing, which release the GIL) runs on a thread of its own once
    # pass 1 is done, beside the privacy engine and pass 2; nothing is published unless it completed.
    with ThreadPoolExecutor(1) as beside:
        try:
            scans = scan_sources(run, job, names, selection, executor)
            if run.backup_key is not None:
                for day, shas in sorted(scans.shas().items()):
                    step = Step(back_up, (run, shas, day), f"backup-{day}", reads_landing=True)
                    backups.append(beside.submit(contextvars.copy_context().run, executor.call, step))
            failpoints.hit("extracted")
            _reconcile(scans)
            erased = scans.erased
            expired = {name: _expired(run.policies[name], scans) for name in names}
            plans = plan_sources(run, job, scans, erased, selection, expired, executor)
            written = write_sources(run, job, scans, plans, erased, expired, executor, flow_run_id)
            snapshots_kept = hold_snapshots(run, written)
            verdict = check_release(run, job, written) if written else None
            for backup in backups:
                backup.result()
            failpoints.hit("validated")
            files = {
                s.file.path: {
                    "sha256": s.file.sha256,
                    "rows": s.file.rows,
                    "quarantined": s.quarantined,
                    "placed": sum(s.placed.values()),
                    "elsewhere": s.elsewhere,
                }
                for found in scans.found.values()
                for s in found
            }
            files |= {copy: {**files[o], "copy_of": o} for copied in scans.copied.values() for copy, o in copied.items()}
            past = [f"{name} {label}" for name in names for label in sorted(expired[name])]
            published = publish(run, written, began, verdict)
            unchanged = [
                n
                for n in names
                if n not in published and n not in snapshots_kept and scans.units(n) and set(scans.units(n)) - expired[n]
            ]
            return Release(published, files, past, unchanged, snapshots_kept)
        finally:
            for backup in backups:
                backup.cancel()
            shutil.rmtree(job.work_root, ignore_errors=True)  # staged raw rows do not outlive the release
            job.work_root.mkdir(parents=True, exist_ok=True)


def back_up(run: Run, shas: dict[str, str], date: dt.date) -> None:
    """Encrypt an export date's raw files read ({path: SHA-256 as pass 1 read it}); recorded in the
    ledger once per distinct set of files (a rerun on the same files does not back them up again)."""
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


def scan_sources(run: Run, job: passes.Job, names: list[str], selection: Selection, executor: Executor) -> Scans:
    """Pass 1 over every file of the release: sources that others link to first, then the linking
    ones with their look-ups. A file delivered twice is read once; small files are read several
    to a step."""
    scans = Scans()
    read = {f for name in names for f in selection.files[name]}
    for wave in ([s for s in names if not run.policies[s].link], [s for s in names if run.policies[s].link]):
        pending: dict[str, list[Step]] = {}
        for name in wave:
            policy = run.policies[name]
            files = selection.files[name]
            lookups: list = []
            if policy.link:
                same_run = {
                    s: [p for x in found for paths in x.staged.values() for p in paths] for s, found in scans.found.items()
                }
                args = (run.landing, run.policies, policy, files, job, same_run, read)
                lookups, found_names, found_erased = executor.call(
                    Step(passes.link_lookups, args, f"link-{name}", reads_landing=True)
                )
                scans.names |= found_names
                scans.erased |= found_erased
            link_keys = steps.link_keys_of(run.policies, name)
            scans.copied[name] = landing_io.copies(run.landing, files)
            for copy, original in scans.copied[name].items():
                log.warning("%s: byte-identical to %s (delivered twice); read once", copy, original)
            chunks = _chunks(run.landing, [(i, f) for i, f in enumerate(files) if f not in scans.copied[name]])
            pending[name] = [
                Step(
                    passes.scan_many,
                    (run.landing, policy, chunk, job, link_keys, lookups, selection.units.get(name)),
                    f"scan-{name}-{chunk[0][0]}" + (f"-{chunk[-1][0]}" if len(chunk) > 1 else ""),
                    reads_landing=True,
                )
                for chunk in chunks
            ]
        results = iter(executor.run([s for wave_steps in pending.values() for s in wave_steps]))
        for name, wave_steps in pending.items():
            scans.add(name, [s for _ in wave_steps for s in next(results)])
            _check_sizes(run, name, scans.units(name))
            _log_scan(name, scans.found[name])
    return scans


def _chunks(landing: landing_io.Landing, files: list[tuple[int, str]]) -> list[list[tuple[int, str]]]:
    """Files in steps of about SCAN_BYTES (a large file is a step of its own)."""
    chunks: list[list[tuple[int, str]]] = []
    size = SCAN_BYTES
    for index, relative in files:
        bytes_ = landing.size(relative)
        if size + bytes_ > SCAN_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append((index, relative))
        size += bytes_
    return chunks


def _check_sizes(run: Run, name: str, units: dict[str, list[passes.Scanned]]) -> None:
    """A unit whose rows, over every file, are more than the run may count: refused before the search.
    A source without items (the CRM's profiles) counts no itemsets and has no such limit."""
    if not run.policies[name].counts_itemsets:
        return
    for label, found in units.items():
        rows = sum(s.placed[label] for s in found)
        if rows > run.max_unit_rows:
            where = ", ".join(s.file.path for s in found[:3]) + (" …" if len(found) > 3 else "")
            raise passes.UnitTooLarge(passes.too_large(run.policies[name], label, rows, run.max_unit_rows, where))


def _reconcile(scans: Scans) -> None:
    """Every row of every file read is quarantined, placed in a unit, or belongs to a unit the run
    does not rebuild; anything else is a bug, and nothing is published."""
    for name, found in scans.found.items():
        for s in found:
            if s.file.rows != s.quarantined + sum(s.placed.values()) + s.elsewhere:
                raise ReleaseFailed(
                    f"{name}: {s.file.path}: {s.file.rows} rows read, but {s.quarantined} quarantined + "
                    f"{sum(s.placed.values())} placed in units + {s.elsewhere} in units not rebuilt; nothing published"
                )


def _log_scan(name: str, scans: list[passes.Scanned]) -> None:
    for s in scans:
        for header in s.dropped:
            log.warning("%s: column %r is not in the policy; dropped (--drop-unknown)", s.file.path, header)
        if s.quarantined:
            log.warning("%s: %d row(s) of %s quarantined (unparseable or wrong field count)", name, s.quarantined, s.file.path)


def _expired(policy: SourcePolicy, scans: Scans) -> set[str]:
    """The source's units whose period ended longer ago than its retention: never published."""
    grain = None if policy.unit.snapshot else policy.unit.grain
    return {label for label in scans.units(policy.source) if policy.retention.expired(last_day(label, grain), today())}


def plan_sources(
    run: Run,
    job: passes.Job,
    scans: Scans,
    erased: set[str],
    selection: Selection,
    expired: dict[str, set[str]],
    executor: Executor,
) -> dict[str, plan.Plan]:
    """The privacy engine per source, once on the tallies of every unit, at the release's levels or
    above. Units that need coarser levels than the release's, where other units of the source are
    published and not in this run, widen the run (Widen)."""
    plans, failures, wider = {}, [], []
    floors = release_levels.floors(run.restricted)
    published = ledger.partition_entries(run.restricted)
    for name, found in scans.found.items():
        floor = floors.get(name, {})
        policy = run.policies[name].at_least(floor)
        try:
            step = Step(solve, (policy, [s.tally for s in found], erased, expired[name], job), f"plan-{name}")
            plans[name] = executor.call(step)
        except Unreachable as exc:
            failures.append(f"{name}: {exc}")
            continue
        levels = plans[name].solution.levels if plans[name].solution else {}
        rising = any(levels.get(column, 0) > level for column, level in floor.items())
        others = {period for (dataset, period) in published if dataset == name} - set(scans.units(name))
        if rising and others and selection.units.get(name) is not None and not run.policies[name].unit.snapshot:
            wider.append(name)
    if failures:
        raise ReleaseFailed("nothing published. " + " | ".join(failures))
    if wider:
        raise Widen(wider)
    return plans


def solve(policy: SourcePolicy, tallies: list[plan.Tally], erased: set[str], expired: set[str], job: passes.Job) -> plan.Plan:
    """Every unit's tallies side by side; the engine's table goes to the work area (out of core)."""
    decided = plan.solve(
        plan.concat(tallies),
        policy,
        plan.hierarchies(policy, job.context(policy)),
        erased,
        job.work(policy.source) / "engine",
        leave_out=expired,
    )
    release_memory()
    return decided


def write_sources(
    run: Run,
    job: passes.Job,
    scans: Scans,
    plans: dict[str, plan.Plan],
    erased: set[str],
    expired: dict[str, set[str]],
    executor: Executor,
    flow_run_id: str = "",
) -> dict[str, passes.Written]:
    """Pass 2 for every source at once. Every source passes the gate or the release fails as a
    whole; a source that fails is set aside in the restricted quarantine (its files may hold
    exactly the identifiers that made it fail) for someone to look at."""
    head = ledger.head(run.restricted)
    current = ledger.partition_entries(run.restricted)
    work = {}
    for name in scans.found:
        made = {
            label: _unit(run, name, label, found, scans.copied[name], head, flow_run_id)
            for label, found in scans.units(name).items()
            if label not in expired[name]
        }
        work[name] = {
            label: unit
            for label, unit in made.items()
            if not _unchanged(run, run.policies[name], plans[name], unit, current.get((name, label)))
        }
    # Every gate's GX objects exist before any worker opens the GX project (a worker's context
    # is loaded once and would not see objects added after).
    gates = {
        name: passes.gate(run.policies[name], job, next(iter(units.values())).staged[0], plans[name])
        for name, units in work.items()
        if units
    }
    person_names = scans.names
    pending = []
    for name in gates:
        policy = run.policies[name]
        redacts = any(c.transform == "redact" for c in policy.columns)
        args = (policy, job, work[name], plans[name], erased, person_names if redacts else set(), gates[name])
        pending.append(Step(passes.write, args, f"write-{name}"))
    written, failures = {}, []
    for name, result in zip(gates, executor.run(pending), strict=True):
        if not result.outcome.success:
            staging = warehouse_io.staging(run.warehouse, run.run_id) / f"dataset={name}"
            newest = max(s.export_date for s in scans.found[name])
            where = quarantine_batch(run.restricted, run.run_id, name, newest, staging)
            failures.append(f"{name}: validation failed: {'; '.join(result.outcome.failures())}; files set aside in {where}")
        written[name] = result
    if failures:
        raise ReleaseFailed("nothing published. " + " | ".join(failures))
    return written


def _unchanged(
    run: Run, policy: SourcePolicy, decided: plan.Plan, unit: passes.Unit, entry: ledger.Recorded[PartitionEntry] | None
) -> bool:
    """A unit already published from the same files, policy, key and erasure list at the same
    levels, its file in place as recorded: written again it would be the same rows with other run
    ids, so it is left as it is (a run that widens to every unit rewrites only those whose levels
    moved). Cell suppression counts over every unit, so a source that blanks rare cells is always
    rewritten."""
    if entry is None or any(isinstance(c.operator, Suppress) for c in policy.columns):
        return False
    if ledger.out_of_place(run.warehouse, entry.data) is not None:  # deleted, swapped, damaged: republished
        return False
    levels = {k: v for k, v in (decided.solution.levels if decided.solution else {}).items() if k != UNIT}
    return entry.data.fingerprint == unit.ids["fingerprint"] and entry.data.levels == levels


def _unit(
    run: Run, name: str, label: str, found: list[passes.Scanned], copied: dict[str, str], head: ledger.Head, flow_run_id: str
) -> passes.Unit:
    """What pass 2 needs of one unit: its staged rows, the files that placed rows in it (with how
    many), and the ids its file records; its tokens are keyed to its fingerprint."""
    policy = run.policies[name]
    files = tuple({**s.file.__dict__, "rows": s.placed[label]} for s in found)
    paths = {s.file.path for s in found}
    inputs = Inputs(
        files,
        tuple((s.file.path, h) for s in found for h in s.dropped),
        tuple(sorted((c, o) for c, o in copied.items() if o in paths)),
    )
    linked = sum(s.linked.get(label, 0) for s in found) % (1 << 63) if policy.link else None
    fingerprint = run.fingerprint(policy, [(s.file.path, s.file.sha256) for s in found], linked)
    ids = {
        "run_id": run.run_id,
        "key_id": run.pseudonymizer.key_id,
        "flow_run_id": flow_run_id,
        "fingerprint": fingerprint,
        "unit": f"{name}/{label}/{fingerprint}",  # what its tokens are keyed to
        ledger.HEAD_KEY: head.record(),
    }
    staged = tuple(p for s in found for p in s.staged[label])
    return passes.Unit(staged, inputs, ids, Rows(read=sum(s.placed[label] for s in found)))


def hold_snapshots(run: Run, written: dict[str, passes.Written]) -> dict[str, str]:
    """A snapshot source's new snapshot is published only if it cannot be chained to one already
    published (flows/pipeline/intruder.snapshot_chain: no tuple unique on both dates, no class in
    which fewer than k people changed): the intruder keeps the earlier one, so the two would be
    one member followed from date to date, or a change dated to a small crowd. Otherwise the
    published snapshot stays, and the new one is left out of this release (removed from
    `written`, its staged files discarded). Returns {source: why} for those kept."""
    kept = {}
    published = ledger.partition_entries(run.restricted)
    for name in [n for n in written if run.policies[n].unit.snapshot]:
        labels = set(written[name].partitions)
        earlier = [
            run.warehouse / e.data.output.path
            for (dataset, period), e in sorted(published.items())
            if dataset == name and period not in labels and (run.warehouse / e.data.output.path).is_file()
        ]
        if not earlier:
            continue
        staged = [p.path for p in written[name].partitions.values()]
        chain = intruder.snapshot_chain(name, staged, earlier, run.policies[name].privacy.k)
        if chain["unique_on_both"] or chain["classes_changed_below_k"]:
            kept[name] = (
                f"the snapshot of {', '.join(sorted(labels))} is not published: with the one published "
                f"({', '.join(sorted(p.parent.name.split('=', 1)[1] for p in earlier))}) it would chain "
                f"({chain['unique_on_both']} tuple(s) unique on both dates, {chain['classes_changed_below_k']} "
                f"class(es) in which fewer than k people changed)"
            )
            log.warning("%s: %s; the published snapshot stays", name, kept[name])
            for part in written.pop(name).partitions.values():
                part.path.unlink(missing_ok=True)
    return kept


def check_release(run: Run, job: passes.Job, written: dict[str, passes.Written]) -> intruder.Verdict:
    """Every staged unit as the intruder would hold them, before any is published: person-level
    k^m, l and units with GX, and the side channels (flows/pipeline/intruder.gate). Any failure
    publishes nothing."""
    began = time.perf_counter()
    release_memory()  # what pass 2 let go of, before the gate holds its groups
    verdict = intruder.gate(
        {name: {label: p.path for label, p in w.partitions.items()} for name, w in written.items()},
        warehouse_io.staging(run.warehouse, run.run_id),
        job.gx_project,
        job.run_id,
        job.work_root,
        _replaced(run, written),
    )
    if verdict.failures:
        raise ReleaseFailed("nothing published, the release fails: " + " | ".join(verdict.failures))
    log.info(
        "the release passes for %d person-level records (%d checks, %.1f s)",
        verdict.people,
        len(verdict.outcome.checks),
        time.perf_counter() - began,
    )
    return verdict


def _replaced(run: Run, written: dict[str, passes.Written]) -> dict[str, dict[str, Path]]:
    """The published files the staged units replace with another version ({dataset: {period:
    file}}). A file of the same version (its footer's `unit`) is what a run cut short after its
    rename published: the same rows and tokens, which this run records. A file that is not the one
    the ledger records (swapped, damaged) is no version of the unit: it is replaced unchecked."""
    found: dict[str, dict[str, Path]] = {}
    current = ledger.partition_entries(run.restricted)
    for name, w in written.items():
        for label, part in w.partitions.items():
            target = warehouse_io.partition(run.warehouse, name, label) / warehouse_io.PART
            entry = current.get((name, label))
            if entry is not None and ledger.out_of_place(run.warehouse, entry.data) is not None:
                continue
            if target.exists() and _unit_of(target) != part.metadata.unit:
                found.setdefault(name, {})[label] = target
    return found


def _unit_of(path: Path) -> str | None:
    try:
        return read_footer(path).get("unit")
    except Exception:  # not a file tuomin wrote: its tokens are checked like another version's
        return None


def publish(
    run: Run, written: dict[str, passes.Written], began: dt.datetime, verdict: intruder.Verdict | None
) -> dict[str, Published]:
    """Check that every row is accounted for; then move each unit's staged file into place and
    record it in the ledger, with the release's verdict; a snapshot the release replaces is
    removed (recorded). Returns {source: Published}."""
    for name, result in written.items():
        for label, part in result.partitions.items():
            if not part.counts.reconciles():
                raise ReleaseFailed(f"{name} {label}: row counts do not reconcile ({part.counts}); nothing published")
    recorded = {"people": verdict.people, "checks": list(verdict.outcome.checks)} if verdict else {}
    before = ledger.partition_entries(run.restricted)
    summary = {}
    for name, result in written.items():
        policy = run.policies[name]
        for label, part in result.partitions.items():
            sha256 = file_sha256(part.path)
            target = warehouse_io.partition(run.warehouse, name, label) / warehouse_io.PART
            entry = ledger_entry(
                part.metadata,
                part.counts,
                part.cells,
                part.inputs,
                target,
                run.warehouse,
                sha256,
                run.triggered_by,
                began,
                size=part.path.stat().st_size,
                release=recorded,
                erasure_sha256=run.erasure_sha256,
            )
            # Intend, act, commit (flows/storage/intents.py): a crash between the rename and its
            # entry leaves an intent the next command finishes.
            intent = intents.intend(run.restricted, "publish", [Change(path=entry.output.path, sha256=sha256)], entry)
            failpoints.hit("intended")
            warehouse_io.publish(part.path, run.warehouse, name, label)
            intents.commit(run.restricted, intent, entry)
        superseded = _supersede(run, name, set(result.partitions), before) if policy.unit.snapshot else []
        counts = Rows.total([p.counts for p in result.partitions.values()])
        ks = [k for p in result.partitions.values() if (k := p.metadata.metrics.k) is not None]
        metadata = next(iter(result.partitions.values())).metadata
        summary[name] = Published(
            units=len(result.partitions),
            periods=sorted(result.partitions),
            counts=counts,
            k=min(ks) if ks else None,
            levels=metadata.levels,
            policy_sha256=metadata.policy_sha256 or "",
            republished=sorted(label for label in result.partitions if (name, label) in before),
            superseded=superseded,
            questions={q: asdict(score) for q, score in result.questions.items()},
        )
        log.info(
            "%s: published %d of %d rows in %d unit(s) (k=%s) -> %s",
            name,
            counts.published,
            counts.read,
            len(result.partitions),
            summary[name].k,
            warehouse_io.partition(run.warehouse, name, "*"),
        )
    return summary


def _supersede(
    run: Run, name: str, published: set[str], before: dict[tuple[str, str], ledger.Recorded[PartitionEntry]]
) -> list[str]:
    """The earlier snapshots of a snapshot source, removed once the latest is published (each
    recorded): the release holds one snapshot, never one per day."""
    removed = []
    for (dataset, period), entry in sorted(before.items()):
        if dataset != name or period in published:
            continue
        output = entry.data.output
        path = run.warehouse / output.path
        if path.is_file():
            path.unlink()
            for folder in (path.parent, path.parent.parent):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
        ledger.append(
            run.restricted,
            PartitionRemovedEntry(
                dataset=name,
                period=period,
                path=output.path,
                sha256=output.sha256,
                published_rows=output.rows,
                published_seq=entry.seq,
                published_hash=entry.hash,
                why=f"superseded: the release holds the latest snapshot ({', '.join(sorted(published))}) only",
                as_of=today().isoformat(),
                triggered_by=str(run.triggered_by.get("via", "")),
            ),
        )
        removed.append(period)
    return removed
