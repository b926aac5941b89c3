"""Spill files in the restricted work area: what a pass writes batch by batch so that it never
holds more than a batch (staged rows, tallies, classes), and reads back the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class Spill:
    """Batches written one after another to one owner-only file in the work area, so that no pass
    holds more than a batch of them: staged rows as Arrow IPC (`.arrow`: written and read back
    several times faster than Parquet), what DuckDB reads (tallies, classes) as Parquet."""

    def __init__(self, path: Path):
        self.path = path
        self._writer: pa.ipc.RecordBatchFileWriter | pq.ParquetWriter | None = None

    @property
    def opened(self) -> bool:
        return self._writer is not None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(mode=0o600)
            self.path.chmod(0o600)
            self._writer = (
                pa.ipc.new_file(str(self.path), table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4"))
                if self.path.suffix == ".arrow"
                else pq.ParquetWriter(self.path, table.schema, compression="lz4")
            )
        self._writer.write_table(table)

    def close(self) -> Path:
        if self._writer is None:
            raise ValueError(f"{self.path}: nothing was written to this spill file")
        self._writer.close()
        return self.path


def read_spill(path: Path) -> Iterator[pa.RecordBatch]:
    with pa.ipc.open_file(path) as source:
        for i in range(source.num_record_batches):
            yield source.get_batch(i)
