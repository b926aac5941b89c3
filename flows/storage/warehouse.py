"""Writing the anonymized warehouse: hive-partitioned Parquet, one file per partition.

    <warehouse>/dataset=<name>/period=<label>/part-0.parquet     (one unit: transforms/units.py)
    <warehouse>/dataset=dp_<table>/release=<release_id>/part-0.parquet   (DP tables, issue 22)

A partition is written under <warehouse>/.staging/<run_id>/ first and moved into place with
os.replace, which is atomic on one filesystem: readers see the old file or the new one, never a
partial one. Republishing a unit replaces its file, so reruns never duplicate rows. Readers skip
the staging directory (pyarrow and DuckDB ignore names starting with '.' or '_' in hive paths).

Modes are set here, whatever the umask (tuomin runs with 077: flows/runtime/environment.py): what
is published is the analysts' group's to read (folders 0750, files 0640), and the staging folder
is the owner's alone (0700) until its files have passed the gate.
"""

from __future__ import annotations

import fcntl
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flows.runtime import failpoints
from flows.storage.footer import METADATA_KEY, DPTableRecord, PartitionRecord, footer_json
from flows.storage.intents import place
from transforms.errors import Refused, Transient

STAGING = ".staging"
SHARED_FOLDER, SHARED_FILE, PRIVATE_FOLDER = 0o750, 0o640, 0o700
PART = "part-0.parquet"
ROW_GROUP = 500_000  # rows per Parquet row group


class WarehouseBusy(Refused, Transient, RuntimeError):
    """Another run holds the warehouse."""


class WarehouseUnwritable(Refused, RuntimeError):
    """The warehouse cannot be written (read-only, no permission, no space)."""


@contextmanager
def exclusive(warehouse: Path) -> Iterator[None]:
    """One run at a time per warehouse (runs decide what to do from the ledger, so two at once
    could both redo a date). Holding the lock, the staging files of runs that died are cleared."""
    try:
        shared(warehouse, warehouse)
        failpoints.hit("lock", warehouse / ".lock")
        lock = (warehouse / ".lock").open("w")
    except OSError as exc:
        raise WarehouseUnwritable(f"{warehouse} cannot be written ({exc.strerror}); nothing was run") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WarehouseBusy(f"another tuomin run is using {warehouse}; try again when it has finished") from None
        shutil.rmtree(warehouse / STAGING, ignore_errors=True)
        yield


def shared(warehouse: Path, folder: Path) -> Path:
    """`folder` (the warehouse or under it) and every folder between, created if need be, readable
    by the analysts' group and no one else (a set-group-ID bit the operator gave is kept)."""
    relative = folder.relative_to(warehouse).parts
    for depth in range(len(relative) + 1):
        path = warehouse.joinpath(*relative[:depth])
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(SHARED_FOLDER | (path.stat().st_mode & stat.S_ISGID))
    return folder


def put(staged: Path, warehouse: Path, target: Path) -> Path:
    """Move a staged file to `target` under the warehouse, readable by the analysts' group, in
    one durable rename (flows/storage/intents.py)."""
    shared(warehouse, target.parent)
    staged.chmod(SHARED_FILE)
    place(staged, target)
    return target


def staging(warehouse: Path, run_id: str) -> Path:
    """A run's staging directory: its files sit at the paths they will have in the warehouse."""
    return warehouse / STAGING / run_id


PERIOD = "period"  # the hive key of a unit's partition: its period's label (a day, week, month, snapshot)


def partition(warehouse: Path, dataset: str, period: str) -> Path:
    return warehouse / f"dataset={dataset}" / f"{PERIOD}={period}"


def partition_files(warehouse: Path, dataset: str = "*") -> list[Path]:
    """Every published unit's file (of one dataset, or of all), in path order."""
    return sorted(warehouse.glob(f"dataset={dataset}/{PERIOD}=*/*.parquet"))


def period_of(path: Path) -> str:
    """The period label of a partition file (…/period=<label>/part-0.parquet)."""
    return path.parent.name.split("=", 1)[1]


def release_folder(warehouse: Path, table: str, release_id: str) -> Path:
    """Where a DP table of one release is published (flows/pipeline/dp.py)."""
    return warehouse / f"dataset={DP_PREFIX}{table}" / f"release={release_id}"


DP_PREFIX = "dp_"


def stage(
    warehouse: Path,
    run_id: str,
    dataset: str,
    period: str,
    batches: Iterable[pa.Table],
    fields: dict[str, dict[str, str]],
    metadata: Callable[[], PartitionRecord | DPTableRecord],
) -> Path:
    """Write the partition's file under the run's staging directory, batch by batch (one or more
    row groups each); returns its path. `fields` goes onto each column (keys `tuomin.<name>`);
    `metadata()`, called after the last batch (it may depend on all of them), into the file's
    key-value metadata (key `tuomin`; flows/storage/footer.py reads it back)."""
    staged = partition(staging(warehouse, run_id), dataset, period) / PART
    return stage_at(staged, batches, fields, metadata, f"{dataset} {period}")


def stage_at(
    staged: Path,
    batches: Iterable[pa.Table],
    fields: dict[str, dict[str, str]],
    metadata: Callable[[], PartitionRecord | DPTableRecord],
    what: str,
) -> Path:
    """stage() at a path of the caller's (`what` names it in an error)."""
    private = next((p for p in staged.parents if p.name == STAGING), None)
    if private is not None:  # not for the analysts until it has passed the gate
        private.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
        private.chmod(PRIVATE_FOLDER)
    staged.parent.mkdir(parents=True, exist_ok=True)
    writer, schema = None, None
    for table in batches:
        if writer is None:
            schema = pa.schema(
                [f.with_metadata({f"tuomin.{k}": v for k, v in fields.get(f.name, {}).items()}) for f in table.schema]
            )
            writer = pq.ParquetWriter(staged, schema, compression="zstd")
        writer.write_table(table.cast(schema), row_group_size=ROW_GROUP)
        failpoints.hit("mid-write", staged)  # data written, footer not: the file is incomplete
    if writer is None:
        raise ValueError(f"{what}: no batch to write (an empty partition is still one empty batch)")
    writer.add_key_value_metadata({METADATA_KEY: footer_json(metadata()).encode()})
    writer.close()
    failpoints.hit("staged", staged)
    return staged


def publish(staged: Path, warehouse: Path, dataset: str, period: str) -> Path:
    """Move a staged file into its partition, replacing what was there in one rename."""
    target = put(staged, warehouse, partition(warehouse, dataset, period) / PART)
    failpoints.hit("published-one")
    return target


def discard_staging(warehouse: Path, run_id: str) -> None:
    shutil.rmtree(staging(warehouse, run_id), ignore_errors=True)


def read_fields(path: Path) -> dict[str, dict[str, str]]:
    """Each column's field metadata as stage() was given it (keys without the `tuomin.` prefix)."""
    return fields_of(pq.read_schema(path))


def fields_of(schema: pa.Schema) -> dict[str, dict[str, str]]:
    return {f.name: {k.decode().removeprefix("tuomin."): v.decode() for k, v in (f.metadata or {}).items()} for f in schema}
