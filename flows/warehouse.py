"""Writing the anonymized warehouse: hive-partitioned Parquet, one file per partition.

    <warehouse>/dataset=<name>/export_date=<YYYY-MM-DD>/part-0.parquet

A partition is written under <warehouse>/.staging/<run_id>/ first and moved into place with
os.replace, which is atomic on one filesystem: readers see the old file or the new one, never a
partial one. Re-running a date replaces its file, so reruns never duplicate rows. Readers skip
the staging directory (pyarrow and DuckDB ignore names starting with '.' or '_' in hive paths).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

METADATA_KEY = b"tuomin"
PART = "part-0.parquet"


def partition(warehouse: Path, dataset: str, date: dt.date) -> Path:
    return warehouse / f"dataset={dataset}" / f"export_date={date.isoformat()}"


def stage(warehouse: Path, run_id: str, dataset: str, date: dt.date, table: pa.Table, metadata: dict) -> Path:
    """Write the partition's file under the run's staging directory; returns its path."""
    staged = partition(warehouse / ".staging" / run_id, dataset, date) / PART
    staged.parent.mkdir(parents=True, exist_ok=True)
    schema_metadata = {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata, ensure_ascii=False, default=str).encode()}
    pq.write_table(table.replace_schema_metadata(schema_metadata), staged, compression="zstd")
    return staged


def publish(staged: Path, warehouse: Path, dataset: str, date: dt.date) -> Path:
    """Move a staged file into its partition, replacing what was there in one rename."""
    target = partition(warehouse, dataset, date) / PART
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)
    return target


def discard_staging(warehouse: Path, run_id: str) -> None:
    shutil.rmtree(warehouse / ".staging" / run_id, ignore_errors=True)


def read_metadata(path: Path) -> dict:
    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])
