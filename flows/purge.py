"""purge: delete the raw data of the dates the anonymized partitions replace, with a certificate.

A date's raw data (landing files, quarantined rows and failed batches, backups) goes only when
    - every source of the date has a published partition whose validation succeeded,
    - each partition was made from exactly the landing files there now (same paths, same SHA-256):
      a re-export not yet processed is never deleted,
    - each partition file is still in place with the SHA-256 the ledger recorded,
    - the date is older than the grace period of each of its sources (policy retention.raw_grace_days),
or when the date is past its sources' retention period altogether (raw data never outlives the
anonymized copy). Otherwise the date is held, with the reason. After deleting, a `deletion` entry in the ledger is
the certificate: every file (area, path, bytes, SHA-256), when, why (the policies' PIPL Art. 47
ground), the row counts, and the partitions (path, SHA-256, ledger seq and hash) that replace it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger

from flows import backup as backup_io
from flows import landing as landing_io
from flows import ledger, paths
from flows import warehouse as warehouse_io
from flows.quarantine import quarantined_files
from flows.record import file_sha256
from flows.run import today
from transforms.policy import SourcePolicy, load_policies


class PurgeIncomplete(RuntimeError):
    """Some files of a date could not be deleted; the certificate records the others."""


@dataclass
class Plan:
    """One export date: what would be deleted, or why it is held."""

    export_date: dt.date
    files: list[dict] = field(default_factory=list)  # {area, path, bytes, sha256}
    replaced_by: list[dict] = field(default_factory=list)
    grounds: list[str] = field(default_factory=list)
    rows: dict[str, dict] = field(default_factory=dict)
    held: str | None = None  # the reason it is kept, if it is


def plan(landing: landing_io.Landing, warehouse: Path, restricted: Path, policies: dict[str, SourcePolicy],
         as_of: dt.date) -> list[Plan]:
    """A Plan for every date with raw data anywhere (landing, quarantine, backups)."""
    published = ledger.partition_entries(warehouse)
    dates = set(landing_io.export_dates(landing, policies))
    dates |= {dt.date.fromisoformat(p.name.split("=", 1)[1]) for p in (restricted / "quarantine").glob("**/export_date=*")}
    dates |= {dt.date.fromisoformat(p.parent.parent.name.split("=", 1)[1]) for p in backup_io.manifests(restricted)}
    return [_plan_date(landing, warehouse, restricted, policies, published, day, as_of) for day in sorted(dates)]


def _plan_date(landing, warehouse, restricted, policies, published, day: dt.date, as_of: dt.date) -> Plan:
    out = Plan(day)  # filled source by source; the first reason to hold returns a plan to keep everything
    sources = {name: landing_io.files_for(landing, policy, day) for name, policy in policies.items()}
    sources = {name: files for name, files in sources.items() if files or (name, day.isoformat()) in published}
    if not sources:
        return Plan(day, held="no published partition replaces this date's raw data")
    for name, files in sources.items():
        current = {f: landing.sha256(f) for f in files}
        retention = policies[name].retention
        entry = published.get((name, day.isoformat()))
        if entry is None and retention.expired(day, as_of):  # raw data never outlives the anonymized copy
            out.grounds.append(f"{retention.deletion_ground} Retention period over ({retention.keep_years} years).")
        else:
            reason = _not_replaced(warehouse, entry, current) or (
                None if retention.raw_expired(day, as_of) else
                f"within its grace period ({retention.raw_grace_days} days after the export date)")
            if reason:
                return Plan(day, held=f"{name}: {reason}")
            data = entry["data"]
            out.replaced_by.append({"dataset": name, "path": data["output"]["path"], "sha256": data["output"]["sha256"],
                                    "ledger_seq": entry["seq"], "ledger_hash": entry["hash"]})
            out.rows[name] = data["rows"]
            out.grounds.append(retention.deletion_ground)
        out.files += [{"area": "landing", "path": f, "bytes": landing.size(f), "sha256": sha} for f, sha in current.items()]
    out.grounds = sorted(set(out.grounds))
    for path in quarantined_files(restricted, day):
        out.files.append(_local("quarantine", path))
    for area, path in subject_files(warehouse, day):
        out.files.append(_local(area, path))
    for manifest in backup_io.manifests(restricted, day):
        out.files += [_local("backup", p) for p in sorted(manifest.parent.rglob("*")) if p.is_file()]
    return out


SUBJECT_AREAS = ("notices", "lookups")  # files made for data subjects, in folders the operator chose


def subject_files(warehouse: Path, day: dt.date) -> list[tuple[str, Path]]:
    """Raw personal data made for data subjects, deleted with the raw data it was made from,
    wherever it was written (the ledger records where): the closure-notice batches made from
    this date's CRM snapshot, and a person's lookup file whose newest record is from this date."""
    found = set()
    for entry in ledger.entries(warehouse):
        data = entry["data"]
        if entry["kind"] == "notices" and data["snapshot"] == day.isoformat():
            found |= {("notices", Path(f)) for f in data["files"]}
        elif entry["kind"] == "subject_lookup" and data.get("newest_date") == day.isoformat():
            found.add(("lookups", Path(data["file"])))
    return sorted((area, path) for area, path in found if path.is_file())


def _not_replaced(warehouse: Path, entry: dict | None, current: dict[str, str]) -> str | None:
    """Why a published partition does not (yet) replace the landing files with these SHA-256s."""
    if entry is None:
        return "not published"
    data = entry["data"]
    if not data["validation"]["success"]:
        return "its partition did not pass validation"
    output = warehouse / data["output"]["path"]
    if not output.is_file() or file_sha256(output) != data["output"]["sha256"]:
        return f"the partition file {data['output']['path']} is missing or differs from the ledger"
    made_from = {i["path"]: i["sha256"] for i in data["inputs"]}
    made_from |= {c["file"]: made_from[c["copy_of"]] for c in data.get("copies_not_read", [])}  # read once, as its original
    if any(made_from.get(f) != sha for f, sha in current.items()):
        return "the landing files changed since the partition was published (re-export not yet processed)"
    return None


def _local(area: str, path: Path) -> dict:
    return {"area": area, "path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def carry_out(item: Plan, landing: landing_io.Landing, warehouse: Path, as_of: dt.date, trigger: str) -> dict:
    """Delete a date's files, then record the certificate (what went, and what could not be
    deleted); returns the ledger entry, or raises PurgeIncomplete after recording."""
    deleted, failed = [], []
    for f in item.files:
        try:
            if f["area"] == "landing":
                landing.remove(f["path"])
            else:
                Path(f["path"]).unlink()
                if f["area"] not in SUBJECT_AREAS:  # their folders are the operator's choice: left
                    _prune(Path(f["path"]).parent)  # the emptied folders (export_date=…, backup versions) go too
            deleted.append(f)
        except OSError as exc:
            failed.append({**f, "error": exc.__class__.__name__})
    entry = ledger.append(warehouse, "deletion", {
        "export_date": item.export_date.isoformat(), "as_of": as_of.isoformat(), "why": item.grounds,
        "files": deleted, "bytes": sum(f["bytes"] for f in deleted), "rows": item.rows, "not_deleted": failed,
        "replaced_by": item.replaced_by, "method": "deleted (unlinked); backups were AES-256-GCM encrypted",
        "triggered_by": trigger})
    if failed:
        raise PurgeIncomplete(f"{item.export_date}: {len(failed)} file(s) could not be deleted "
                              f"({', '.join(f['path'] for f in failed)}); certificate ledger entry {entry['seq']} lists "
                              "what was; run purge again")
    return entry


def _prune(folder: Path) -> None:
    while folder.is_dir() and folder.name not in ("quarantine", "backups") and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


@flow(name="purge-raw", persist_result=False, log_prints=False)
def purge(landing: str, warehouse: str = str(paths.WAREHOUSE),
          restricted: str = str(paths.RESTRICTED), policies: str = str(paths.POLICIES), as_of: str | None = None,
          trigger: str = "python"):
    """Delete the raw data of every date an anonymized partition replaces and whose grace period
    is over; one deletion certificate per date in the ledger. `landing` has no default: a
    deletion always names its target."""
    log = get_run_logger()
    day = dt.date.fromisoformat(as_of) if as_of else today()
    area, done = landing_io.Landing(landing), []
    with warehouse_io.exclusive(Path(warehouse)):
        if ledger.verify(Path(warehouse)):  # the certificates would point into a chain nobody can trust
            raise ledger.LedgerBroken(f"{warehouse}: the ledger's chain is broken (see `tuomin ledger verify`); nothing deleted")
        for item in plan(area, Path(warehouse), Path(restricted), load_policies(Path(policies)), day):
            if item.held:
                log.info("%s kept: %s", item.export_date, item.held)
                continue
            entry = carry_out(item, area, Path(warehouse), day, trigger)
            log.info("%s: %d file(s) deleted, certificate ledger entry %d (%s)", item.export_date, len(item.files),
                     entry["seq"], entry["hash"][:16])
            done.append({"export_date": item.export_date.isoformat(), "files": len(item.files), "ledger_seq": entry["seq"]})
    return done
