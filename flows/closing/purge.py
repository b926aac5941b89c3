"""purge: delete the raw data of the dates the anonymized partitions replace, with a certificate.

First, the landing is checked against the ledger: every input file a published partition records
must be in the landing with the SHA-256 recorded, or certified deleted by an earlier purge. A
landing that does not hold them (a mistyped or wrong --landing, files moved by hand) refuses the
whole purge before anything is deleted, naming the files.

A date's raw data goes only when
    - every source of the date has a published partition whose validation succeeded,
    - each partition was made from exactly the landing files there now (same paths, same SHA-256):
      a re-export not yet processed is never deleted,
    - each partition file is still in place with the SHA-256 the ledger recorded,
    - the date is older than the grace period of each of its sources (policy retention.raw_grace_days),
or when the date is past its sources' retention period altogether (raw data never outlives the
anonymized copy). Otherwise the date is held, with the reason.

The raw data of a date, by area:
    landing      the export files
    quarantine   rows set aside by a run, and batches that failed validation
    work         staged batches a killed run left in the restricted work area
    backup       the encrypted backups: deleted last, only once every landing file they protect is
                 verified gone (a backup is the only copy while the raw files are still there)
    notices, lookups, restored
                 files made from it for data subjects, or restored from its backup (the ledger
                 records where they were written)

After deleting, a `deletion` entry in the ledger is the certificate: every area with what was
deleted (path, bytes, SHA-256) and what was not (and why), when, why (the policies' PIPL Art. 47
ground), the row counts, and the partitions (path, SHA-256, ledger seq and hash) that replace it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow

from flows.pipeline.parameters import AsOf, LandingUrl, Policies, Restricted, Trigger, Warehouse, with_help
from flows.pipeline.quarantine import quarantined_files
from flows.runtime import failpoints, paths
from flows.runtime.clock import today
from flows.storage import backup as backup_io
from flows.storage import intents, ledger
from flows.storage import landing as landing_io
from flows.storage import warehouse as warehouse_io
from flows.storage.entries import (
    BackupRestoredEntry,
    Change,
    DeletionEntry,
    Entry,
    NoticesEntry,
    PartitionEntry,
    RunEntry,
    SubjectLookupEntry,
)
from flows.storage.files import file_sha256, sync
from transforms.errors import Refused, TuominError
from transforms.policy import SourcePolicy, load_policies

AREAS = ("landing", "quarantine", "work", "backup")  # always on a certificate, even when empty there
MADE_FROM = ("notices", "lookups", "restored")  # files made from raw data, in folders the operator chose


class PurgeIncomplete(TuominError, RuntimeError):
    """Some files of a date could not be deleted; the certificate records the others."""


class LandingMismatch(Refused, ValueError):
    """The landing does not hold what the ledger says the partitions were made from; nothing deleted."""


log = logging.getLogger("tuomin")
Published = dict[tuple[str, str], ledger.Recorded[PartitionEntry]]  # ledger.partition_entries


@dataclass
class Plan:
    """One export date: what would be deleted, or why it is held."""

    export_date: dt.date
    files: list[dict] = field(default_factory=list)  # {area, path, bytes, sha256}
    replaced_by: list[dict] = field(default_factory=list)
    grounds: list[str] = field(default_factory=list)
    rows: dict[str, dict] = field(default_factory=dict)
    held: str | None = None  # the reason it is kept, if it is
    mismatch: list[str] = field(default_factory=list)  # recorded inputs the landing does not hold (see mismatches)


def report(items: list[Plan], as_of: dt.date) -> dict:
    """A plan as data (what `tuomin purge --dry-run --json` prints): per date the decision, the
    files with their areas and sizes, and why; totals of what would go and what is kept."""
    dates = [
        {
            "export_date": item.export_date.isoformat(),
            "decision": "keep" if item.held else "delete",
            "why": item.held or " ".join(item.grounds),
            "files": item.files,
            "bytes": sum(f["bytes"] for f in item.files),
            "not_in_landing": item.mismatch,
        }
        for item in items
    ]
    deleted = [d for d in dates if d["decision"] == "delete"]
    return {
        "as_of": as_of.isoformat(),
        "dates": dates,
        "totals": {
            "dates_to_delete": len(deleted),
            "dates_kept": len(dates) - len(deleted),
            "files_to_delete": sum(len(d["files"]) for d in deleted),
            "bytes_to_delete": sum(d["bytes"] for d in deleted),
        },
    }


def plan(
    landing: landing_io.Landing, warehouse: Path, restricted: Path, policies: dict[str, SourcePolicy], as_of: dt.date
) -> list[Plan]:
    """A Plan for every date with raw data anywhere (landing, quarantine, work area, backups) or
    a published partition."""
    published = ledger.partition_entries(restricted)
    empty = _read_empty(restricted)
    missing = mismatches(landing, restricted)
    dates = set(landing_io.export_dates(landing, policies)) | set(missing)
    dates |= {
        landing_io.date_in_path(path) for made_from in _recorded_inputs(ledger.read(restricted)).values() for path in made_from
    }
    dates |= {dt.date.fromisoformat(p.name.split("=", 1)[1]) for p in (restricted / "quarantine").glob("**/export_date=*")}
    dates |= {dt.date.fromisoformat(p.parent.parent.name.split("=", 1)[1]) for p in backup_io.manifests(restricted)}
    requests = landing_io.read_erasure_requests(landing)
    held = requests.num_rows - landing_io.applied_requests(requests).num_rows
    waiting = (
        f"{held} erasure request(s) held for their batch: the raw records are what finds their published rows "
        "(a mobile or member number leads to them only through the exports); carry them out first "
        "(`tuomin subjects erase --flush`)"
    )
    return [
        Plan(day, held=waiting)
        if held
        else Plan(day, held="the landing does not hold the files its partitions were made from", mismatch=missing[day])
        if day in missing
        else _plan_date(landing, warehouse, restricted, policies, published, day, as_of, empty)
        for day in sorted(dates)
    ]


def mismatches(landing: landing_io.Landing, restricted: Path) -> dict[dt.date, list[str]]:
    """Per date, the input files the ledger records published partitions as made from that the
    landing does not hold and no purge certificate deleted (existence only: cheap)."""
    entries = ledger.read(restricted)
    gone = {f["path"]: f["sha256"] for e in ledger.only(entries, DeletionEntry) for f in e.data.files if f["area"] == "landing"}
    found: dict[dt.date, list[str]] = {}
    for (name, period), made_from in sorted(_recorded_inputs(entries).items()):
        for path, sha in made_from.items():
            if gone.get(path) != sha and not landing.exists(path):
                day = landing_io.date_in_path(path)
                found.setdefault(day, []).append(f"{path} ({name} {period}, SHA-256 {sha[:12]})")
    return found


def _recorded_inputs(entries: list[ledger.Recorded[Entry]]) -> dict[tuple[str, str], dict[str, str]]:
    """{(dataset, period): {path: SHA-256}} of the latest publication of every partition ever
    published (removed ones included: their raw data may still be there)."""
    return {(e.data.dataset, e.data.period): _inputs(e.data) for e in ledger.only(entries, PartitionEntry)}


def check_landing(landing: landing_io.Landing, missing: dict[dt.date, list[str]]) -> None:
    """Refuse the purge if the landing does not match the ledger (see LandingMismatch)."""
    if missing:
        files = [m for found in missing.values() for m in found]
        raise LandingMismatch(
            f"--landing {landing.url} does not hold {len(files)} file(s) that published partitions were made from "
            f"(by the ledger), and no purge certificate deleted them ({', '.join(d.isoformat() for d in sorted(missing))}; "
            f"first: {files[0]}): wrong --landing, or files moved by hand. Nothing was deleted."
        )


def _plan_date(
    landing: landing_io.Landing,
    warehouse: Path,
    restricted: Path,
    policies: dict[str, SourcePolicy],
    published: Published,
    day: dt.date,
    as_of: dt.date,
    empty: dict[str, str],
) -> Plan:
    out = Plan(day)  # filled source by source; the first reason to hold returns a plan to keep everything
    sources = {name: landing_io.files_for(landing, policy, day) for name, policy in policies.items()}
    sources = {name: files for name, files in sources.items() if files or _made_from_day(published, name, day)}
    if not sources:
        return Plan(day, held="no published partition replaces this date's raw data")
    for name, files in sources.items():
        # Deleting a link would certify the data deleted while it stays where the link points.
        linked = [(f, to) for f in files if (to := landing.link(f)) is not None]
        if linked:
            f, to = linked[0]
            return Plan(
                day, held=f"{name}: {f} is a symbolic link (to {to}): purge deletes files, not links; put the file itself there"
            )
        current = {f: landing.sha256(f) for f in files}
        policy = policies[name]
        retention = policy.retention
        # The partitions of the units these files placed rows in (a file may feed several: a
        # dump); for a snapshot not published itself, the snapshot the release holds instead (a
        # later one that superseded it, or an earlier one kept because this one would chain to it).
        users = [e for (dataset, _), e in published.items() if dataset == name and set(_inputs(e.data)) & set(current)]
        superseded = not users and policy.unit.snapshot is not None
        if superseded:
            users = [entry for (dataset, period), entry in published.items() if dataset == name and period != day.isoformat()]
        if not users and retention.expired(day, as_of):  # raw data never outlives the anonymized copy
            out.grounds.append(f"{retention.deletion_ground} Retention period over ({retention.keep_years} years).")
        else:
            reason = _not_replaced(warehouse, users, {} if superseded else current, empty) or (
                None
                if retention.raw_expired(day, as_of)
                else f"within its grace period ({retention.raw_grace_days} days after the export date)"
            )
            if reason:
                return Plan(day, held=f"{name}: {reason}")
            for entry in users:
                out.replaced_by.append(
                    {
                        "dataset": name,
                        "period": entry.data.period,
                        "path": entry.data.output.path,
                        "sha256": entry.data.output.sha256,
                        "ledger_seq": entry.seq,
                        "ledger_hash": entry.hash,
                    }
                )
            placed = sum(f.rows for e in users for f in e.data.inputs if f.path in current)
            out.rows[name] = {"partitions": len(users), "rows_placed": placed} | ({"superseded": True} if superseded else {})
            out.grounds.append(retention.deletion_ground)
        out.files += [{"area": "landing", "path": f, "bytes": landing.size(f), "sha256": sha} for f, sha in current.items()]
    out.grounds = sorted(set(out.grounds))
    out.files += [_local("quarantine", path) for path in quarantined_files(restricted, day)]
    out.files += [_local("work", path) for path in work_files(restricted, warehouse, day)]
    out.files += [_local(area, path) for area, path in made_files(restricted, day)]
    for manifest in backup_io.manifests(restricted, day):
        out.files += [_local("backup", p) for p in sorted(manifest.parent.rglob("*")) if p.is_file()]
    if not out.files:
        return Plan(day, held="nothing left to delete (purged before)")
    return out


def _inputs(data: PartitionEntry) -> dict[str, str]:
    """The landing files a partition was made from ({path: SHA-256}), copies not read included."""
    made_from = {i.path: i.sha256 for i in data.inputs}
    return made_from | {c.file: made_from[c.copy_of] for c in data.copies_not_read if c.copy_of in made_from}


def _made_from_day(published: Published, name: str, day: dt.date) -> bool:
    """Whether a partition of the source records a file delivered on this export date."""
    prefix = f"{name}/{day.isoformat()}/"
    return any(path.startswith(prefix) for (dataset, _), e in published.items() if dataset == name for path in _inputs(e.data))


def work_files(restricted: Path, warehouse: Path, day: dt.date) -> list[Path]:
    """Staged raw rows a killed run of this warehouse left in the work area, in the unit of this day."""
    owner = str(warehouse.resolve())
    found = []
    for marker in (restricted / ".work").glob("*/warehouse"):
        if marker.read_text() == owner:
            found += [p for p in sorted(marker.parent.glob(f"*/{day.isoformat()}/**/*")) if p.is_file()]
    return found


def made_files(restricted: Path, day: dt.date) -> list[tuple[str, Path]]:
    """Raw personal data made from this date's raw data, wherever it was written (the ledger
    records where): closure-notice batches from its CRM snapshot, lookup files whose newest
    record is from it, files restored from its backup."""
    found = set()
    for entry in ledger.read(restricted):
        data = entry.data
        if isinstance(data, NoticesEntry) and data.snapshot == day.isoformat():
            found |= {("notices", Path(f)) for f in data.files}
        elif isinstance(data, SubjectLookupEntry) and data.newest_date == day.isoformat() and data.file:
            found.add(("lookups", Path(data.file)))
        elif isinstance(data, BackupRestoredEntry) and data.export_date == day.isoformat():
            found |= {("restored", Path(f["path"])) for f in data.files}
    return sorted((area, path) for area, path in found if path.is_file())


def _read_empty(restricted: Path) -> dict[str, str]:
    """Files a run read and published nothing from (no row of theirs in any unit: a header only,
    every row quarantined): {path: SHA-256 as read}. Their raw data is replaced by nothing, and
    nothing needs them."""
    return {
        path: f["sha256"]
        for entry in ledger.of_kind(restricted, RunEntry)
        if entry.data.status == "published"
        for path, f in entry.data.files.items()
        if f.get("placed") == 0 and f.get("elsewhere") == 0
    }


def _not_replaced(
    warehouse: Path, entries: list[ledger.Recorded[PartitionEntry]], current: dict[str, str], empty: dict[str, str]
) -> str | None:
    """Why published partitions do not (yet) replace the landing files with these SHA-256s
    (`empty`: files a run read that placed no row in any unit)."""
    current = {f: sha for f, sha in current.items() if empty.get(f) != sha}
    if not entries:
        return "not published" if current else None
    for entry in entries:
        data = entry.data
        if not data.validation.success:
            return "its partition did not pass validation"
        output = warehouse / data.output.path
        if not output.is_file() or file_sha256(output) != data.output.sha256:
            return f"the partition file {data.output.path} is missing or differs from the ledger"
        made_from = _inputs(data)
        if any(f in made_from and made_from[f] != sha for f, sha in current.items()):
            return "the landing files changed since the partition was published (re-export not yet processed)"
    if any(not any(f in _inputs(e.data) for e in entries) for f in current):
        return "a file of the date is in no published partition (not processed yet)"
    return None


def _local(area: str, path: Path) -> dict:
    return {"area": area, "path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def carry_out(
    item: Plan, landing: landing_io.Landing, restricted: Path, as_of: dt.date, trigger: str
) -> ledger.Recorded[DeletionEntry]:
    """Delete a date's files, backups last, then record the certificate (every area: what went,
    what could not be deleted and why); returns the ledger entry, or raises PurgeIncomplete after
    recording."""
    draft = DeletionEntry(
        export_date=item.export_date.isoformat(),
        as_of=as_of.isoformat(),
        why=item.grounds,
        landing=landing.url,
        areas=dict.fromkeys(AREAS, {}),
        files=[],
        bytes=0,
        rows=item.rows,
        not_deleted=[],
        replaced_by=item.replaced_by,
        method="deleted (unlinked); backups were AES-256-GCM encrypted",
        triggered_by=trigger,
    ).settled(item.files, [])
    # Intend, act, commit (flows/storage/intents.py): a purge killed midway leaves an intent the
    # next command finishes, certifying what is gone.
    changes = [Change(path=f["path"], area=f["area"]) for f in item.files]
    intent = intents.intend(restricted, "purge", changes, draft)
    failpoints.hit("purge-intended")
    protected, keep = _protected(item), None
    deleted: list[dict] = []
    failed: list[dict] = []
    for f in sorted(item.files, key=lambda f: f["area"] == "backup"):
        if f["area"] == "backup":
            keep = _still_needed(protected, landing, failed) if keep is None else keep  # decided once, after the rest
            if keep:
                failed.append({**f, "error": keep})
                continue
        try:
            if f["area"] == "landing":
                landing.remove(f["path"])
                if landing.exists(f["path"]):
                    raise FileExistsError(f"{f['path']} is still in the landing after deletion")
            else:
                Path(f["path"]).unlink()
                sync(Path(f["path"]).parent)  # durable before the certificate says it
                if f["area"] not in MADE_FROM:  # their folders are the operator's choice: left
                    _prune(Path(f["path"]).parent)  # the emptied folders (export_date=…, backup versions) go too
            deleted.append(f)
            failpoints.hit("purge-deleted-one")
        except OSError as exc:
            failed.append({**f, "error": exc.__class__.__name__})
    entry = intents.commit(restricted, intent, draft.settled(deleted, failed))
    if failed:
        stuck = [f["path"] for f in failed if not f["error"].startswith("kept:")]
        raise PurgeIncomplete(
            f"{item.export_date}: {len(stuck)} file(s) could not be deleted ({', '.join(stuck)})"
            + (f", so {len(failed) - len(stuck)} backup file(s) were kept" if len(failed) > len(stuck) else "")
            + f"; certificate ledger entry {entry.seq} lists what was deleted; run purge again"
        )
    return entry


def _protected(item: Plan) -> set[str]:
    """The landing files the date's backups hold copies of (from their manifests' file lists)."""
    found = {f["path"] for f in item.files if f["area"] == "landing"}
    for f in item.files:
        if f["area"] == "backup" and f["path"].endswith("manifest.json"):
            try:
                found |= {x["path"] for x in json.loads(Path(f["path"]).read_text("utf-8"))["files"]}
            except (OSError, ValueError, KeyError):
                pass  # an unreadable manifest protects at least the date's landing files
    return found


def _still_needed(protected: set[str], landing: landing_io.Landing, failed: list[dict]) -> str:
    """Why the date's backups must stay ("" if they need not): they are the only other copy of a
    raw file still held."""
    if any(f["area"] == "landing" for f in failed):
        return "kept: a landing file it protects could not be deleted"
    if any(landing.exists(path) for path in protected):
        return "kept: a landing file it protects is still there"
    return ""


def _prune(folder: Path) -> None:
    while folder.is_dir() and folder.name not in ("quarantine", "backups", ".work") and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def preflight(landing: str | Path, warehouse: Path, restricted: Path, policies: Path) -> tuple[landing_io.Landing, dict]:
    """What a purge checks before it deletes anything (and `tuomin purge` before Prefect starts):
    the landing and the policies exist, the ledger can be trusted (the certificates would point
    into a chain nobody can trust), and the landing holds every file the ledger records the
    partitions as made from. Refused otherwise, nothing deleted."""
    area, rules = landing_io.existing(landing), load_policies(policies)
    ledger.trusted(restricted, warehouse)
    check_landing(area, mismatches(area, restricted))
    return area, rules


def purge_dates(
    landing: str | Path, warehouse: Path, restricted: Path, policies: Path, as_of: dt.date, trigger: str
) -> list[dict]:
    """The purge itself, under the warehouse's lock (the checks of `preflight` again, then each
    date whose raw data may go): one certificate per date deleted; what each date's was."""
    done = []
    with warehouse_io.exclusive(warehouse):
        area, rules = preflight(landing, warehouse, restricted, policies)
        for item in plan(area, warehouse, restricted, rules, as_of):
            if item.held:
                log.info("%s kept: %s", item.export_date, item.held)
                continue
            entry = carry_out(item, area, restricted, as_of, trigger)
            log.info(
                "%s: %d file(s) deleted, certificate ledger entry %d (%s)",
                item.export_date,
                len(item.files),
                entry.seq,
                entry.hash[:16],
            )
            done.append(
                {
                    "export_date": item.export_date.isoformat(),
                    "files": len(item.files),
                    "ledger_seq": entry.seq,
                    "areas": entry.data.areas,
                }
            )
    return done


@flow(name="purge-raw", persist_result=False, log_prints=False)
@with_help
def purge(
    landing: LandingUrl,
    warehouse: Warehouse = str(paths.WAREHOUSE),
    restricted: Restricted = str(paths.RESTRICTED),
    policies: Policies = str(paths.POLICIES),
    as_of: AsOf = None,
    trigger: Trigger = "python",
) -> list[dict]:
    """Delete the raw data of every date an anonymized partition replaces and whose grace period
    is over; one deletion certificate per date in the ledger. `landing` has no default: a
    deletion always names its target, and it must hold what the ledger recorded."""
    day = as_of or today()
    return purge_dates(landing, Path(warehouse), Path(restricted), Path(policies), day, trigger)
