"""The quarantine: rows that could not be read or parsed, kept for a person to fix, never published.

They hold raw personal data, so they live in the restricted area (directories 0700, files 0600)
and are deleted by purge like the landing files. Each row says where it came from (file, data row)
and what was wrong (the columns that did not parse, or a wrong field count).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
import typing
from pathlib import Path

import pyarrow as pa

from flows.runtime.paths import restricted_dir
from transforms.steps import Parsed


class Quarantine:
    """The quarantine file of one input file, opened at its first bad row (0600)."""

    def __init__(self, restricted: Path, run_id: str, source: str, date: dt.date, name: str):
        self.folder = (restricted, "quarantine", source, f"export_date={date.isoformat()}")
        self.name = f"{run_id}-{name}.csv"
        self.path: Path | None = None
        self.count = 0
        self._fh: typing.TextIO | None = None
        self._out: typing.Any = None  # a csv writer, once the first row is set aside

    def _writer(self, columns: list[str]):
        if self._out is None:
            self.path = restricted_dir(*self.folder) / self.name
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self._fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
            self._out = csv.writer(self._fh)
            self._out.writerow(["file", "row", "problem", *columns])
        return self._out

    def unparseable(self, file: str, first_row: int, raw: pa.Table, parsed: Parsed) -> None:
        """The rows of a batch whose values did not parse; first_row = the batch's first data row
        number in the file (1-based)."""
        bad = parsed.bad
        out = self._writer(raw.column_names)
        for index, values in zip(bad.nonzero()[0], raw.filter(pa.array(bad)).to_pylist()):
            columns = [c for c, mask in parsed.invalid.items() if mask[index]]
            out.writerow([file, first_row + int(index), "unparseable: " + " ".join(columns), *values.values()])
        self.count += int(bad.sum())

    def ragged(self, file: str, lines: list[str], columns: list[str]) -> None:
        if not lines:
            return
        out = self._writer(columns)
        for text in lines:
            out.writerow([file, "", "wrong number of fields", text])
        self.count += len(lines)

    def close(self) -> Path | None:
        if self._fh is not None:
            self._fh.close()
        return self.path


def quarantine_batch(restricted: Path, run_id: str, source: str, date: dt.date, staged: Path) -> Path:
    """Anonymized files that failed their checks (a partition, or a folder of a dataset's units),
    moved whole (files 0600, folders 0700) for someone to look at; kept with the newest export
    date they were made from (purge deletes them with it)."""
    folder = restricted_dir(restricted, "quarantine", "failed-validation", source, f"export_date={date.isoformat()}")
    path = folder / (f"{run_id}.parquet" if staged.is_file() else run_id)
    shutil.move(staged, path)
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        item.chmod(0o700 if item.is_dir() else 0o600)
    return path


def quarantined_files(restricted: Path, date: dt.date) -> list[Path]:
    """Every quarantine file of an export date (unparseable rows and failed batches, any source)."""
    return sorted((restricted / "quarantine").glob(f"**/export_date={date.isoformat()}/*"))
