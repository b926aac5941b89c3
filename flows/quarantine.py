"""The quarantine: rows that could not be read or parsed, kept for a person to fix, never published.

They hold raw personal data, so they live in the restricted area (directories 0700, files 0600)
and are deleted by purge like the landing files. Each row says where it came from (file, data row)
and what was wrong (the columns that did not parse, or a wrong field count).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flows.landing import Export
from flows.paths import restricted_dir
from transforms.steps import Parsed


def quarantine_rows(restricted: Path, run_id: str, source: str, date: dt.date, export: Export, parsed: Parsed) -> Path:
    folder = restricted_dir(restricted, "quarantine", source, f"export_date={date.isoformat()}")
    path = folder / f"{run_id}.csv"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["file", "row", "problem", *export.table.column_names])
        bad = parsed.bad
        raw = export.table.filter(bad).to_pylist()
        for index, values in zip(bad.nonzero()[0], raw):
            columns = [c for c, mask in parsed.invalid.items() if mask[index]]
            out.writerow([*export.where(int(index)), "unparseable: " + " ".join(columns), *values.values()])
        for file, text in export.ragged:
            out.writerow([file, "", "wrong number of fields", text])
    return path


def quarantine_batch(restricted: Path, run_id: str, source: str, date: dt.date, table: pa.Table) -> Path:
    """An anonymized batch that failed its checks, kept whole (0600) for someone to look at."""
    folder = restricted_dir(restricted, "quarantine", "failed-validation", source, f"export_date={date.isoformat()}")
    path = folder / f"{run_id}.parquet"
    pq.write_table(table, path)
    path.chmod(0o600)
    return path


def quarantined_files(restricted: Path, date: dt.date) -> list[Path]:
    """Every quarantine file of an export date (unparseable rows and failed batches, any source)."""
    return sorted((restricted / "quarantine").glob(f"**/export_date={date.isoformat()}/*"))
