"""retention: remove the published partitions their policy no longer lets us keep.

Each dataset's policy says how many years after a unit's period ends its anonymized partition is kept
(retention.keep_years, with the basis for it). A partition past that is deleted and a
`partition_removed` entry in the ledger records what went (path, SHA-256, rows, the ledger entry
that published it), when and why. From then on the anonymize flow never publishes that unit of
that dataset again. A dataset without a policy keeps its partitions and fails the run: its
retention period is unknown. Before anything is deleted, every partition to remove must be in
place with the SHA-256 the ledger recorded and the ledger must verify; otherwise nothing is.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from prefect import flow

from flows.pipeline.parameters import AsOf, Policies, Restricted, Trigger, Warehouse, with_help
from flows.runtime import paths
from flows.runtime.clock import today
from flows.storage import ledger
from flows.storage import warehouse as warehouse_io
from flows.storage.entries import PartitionEntry, PartitionRemovedEntry
from flows.storage.files import file_sha256
from transforms.errors import Refused, TuominError
from transforms.policy import load_policies
from transforms.units import last_day


class RetentionError(TuominError, RuntimeError):
    """Partitions whose retention cannot be decided; the message names them."""


class RetentionMismatch(Refused, ValueError):
    """A partition to remove is not the file the ledger recorded; nothing was removed."""


log = logging.getLogger("tuomin")


@dataclass
class Expired:
    entry: ledger.Recorded[PartitionEntry]  # the entry that published the partition
    keep_until: dt.date
    basis: str
    keep_years: int


def expired(restricted: Path, policies_dir: Path, as_of: dt.date) -> tuple[list[Expired], list[str]]:
    """(partitions past their retention period, datasets with no policy)."""
    policies = load_policies(policies_dir)
    found, orphans = [], set()
    for (dataset, period), entry in ledger.partition_entries(restricted).items():
        if dataset not in policies:
            orphans.add(dataset)
            continue
        policy = policies[dataset]
        retention = policy.retention
        day = last_day(period, None if policy.unit.snapshot else policy.unit.grain)
        if retention.expired(day, as_of):
            found.append(Expired(entry, retention.keep_until(day), retention.basis, retention.keep_years))
    return found, sorted(orphans)


def check_files(items: list[Expired], warehouse: Path) -> None:
    """Every partition about to be removed is the file the ledger recorded (RetentionMismatch)."""
    outputs = [item.entry.data.output for item in items]
    wrong = [o.path for o in outputs if not (warehouse / o.path).is_file() or file_sha256(warehouse / o.path) != o.sha256]
    if wrong:
        raise RetentionMismatch(
            f"{len(wrong)} partition(s) past retention are missing or differ from the SHA-256 the ledger "
            f"recorded ({', '.join(wrong)}): see `tuomin review`. Nothing was removed."
        )


def remove(
    item: Expired, warehouse: Path, restricted: Path, as_of: dt.date, trigger: str
) -> ledger.Recorded[PartitionRemovedEntry]:
    data = item.entry.data
    path = warehouse / data.output.path
    path.unlink(missing_ok=True)
    for folder in (path.parent, path.parent.parent):  # period=…, then dataset=… once empty
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return ledger.append(
        restricted,
        PartitionRemovedEntry(
            dataset=data.dataset,
            period=data.period,
            path=data.output.path,
            sha256=data.output.sha256,
            published_rows=data.output.rows,
            published_seq=item.entry.seq,
            published_hash=item.entry.hash,
            why=f"retention period over: kept {item.keep_years} years, until {item.keep_until.isoformat()}. {item.basis}",
            as_of=as_of.isoformat(),
            triggered_by=trigger,
        ),
    )


def preflight(warehouse: Path, restricted: Path, policies: Path, as_of: dt.date) -> tuple[list[Expired], list[str]]:
    """What retention checks before it removes anything (and `tuomin retention` before Prefect
    starts): the policies exist, the ledger can be trusted, and each partition to remove is the
    file the ledger recorded. Refused otherwise, nothing removed. The partitions past retention,
    and the datasets no policy covers."""
    load_policies(policies)
    ledger.trusted(restricted, warehouse)
    items, orphans = expired(restricted, policies, as_of)
    check_files(items, warehouse)
    return items, orphans


def remove_expired(warehouse: Path, restricted: Path, policies: Path, as_of: dt.date, trigger: str) -> list[dict]:
    """Retention itself, under the warehouse's lock (the checks of `preflight` again): every
    partition past its retention period removed, one ledger entry each. A dataset no policy
    covers keeps its partitions and fails the whole (RetentionError) once the others are done."""
    removed = []
    with warehouse_io.exclusive(warehouse):
        items, orphans = preflight(warehouse, restricted, policies, as_of)
        for item in items:
            entry = remove(item, warehouse, restricted, as_of, trigger)
            log.info(
                "%s %s: removed (kept until %s), ledger entry %d",
                entry.data.dataset,
                entry.data.period,
                item.keep_until,
                entry.seq,
            )
            removed.append({"dataset": entry.data.dataset, "period": entry.data.period, "ledger_seq": entry.seq})
    if orphans:
        raise RetentionError(
            f"no policy for dataset(s) {', '.join(orphans)} under {policies}: their retention is unknown, "
            "their partitions are kept"
        )
    return removed


@flow(name="retention", persist_result=False, log_prints=False)
@with_help
def retention(
    warehouse: Warehouse = str(paths.WAREHOUSE),
    restricted: Restricted = str(paths.RESTRICTED),
    policies: Policies = str(paths.POLICIES),
    as_of: AsOf = None,
    trigger: Trigger = "python",
) -> list[dict]:
    """Delete every published partition past its dataset's retention period; one ledger entry each."""
    day = as_of or today()
    return remove_expired(Path(warehouse), Path(restricted), Path(policies), day, trigger)
