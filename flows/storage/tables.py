"""Reading a table to assess: a CSV, a Parquet file, or a warehouse dataset (all its partitions)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from flows.storage.footer import METADATA_KEY, PartitionRecord


def read_table(path: Path) -> tuple[pd.DataFrame, PartitionRecord | None]:
    """The table as pandas (CSV types inferred, as pandas and pycanon do: numbers stay numbers, so
    t-closeness orders them) and, for a published partition, its record."""
    if path.is_dir():
        dataset = ds.dataset(path, format="parquet", partitioning="hive")
        files = sorted(dataset.files)
        return dataset.to_table().to_pandas(), _record(Path(files[0])) if files else None
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pandas(), _record(path)
    return pd.read_csv(path, skipinitialspace=True), None


def _record(path: Path) -> PartitionRecord | None:
    """The file's PartitionRecord; None for a file without a tuomin footer, or a DP table's."""
    raw = (pq.ParquetFile(path).metadata.metadata or {}).get(METADATA_KEY)
    document = json.loads(raw) if raw else {}
    return PartitionRecord.model_validate(document) if "dataset" in document else None
