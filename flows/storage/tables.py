"""Reading a table to assess: a CSV, a Parquet file, or a warehouse dataset (all its partitions)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from flows.storage.warehouse import METADATA_KEY


def read_table(path: Path) -> tuple[pd.DataFrame, dict]:
    """The table as pandas (CSV types inferred, as pandas and pycanon do: numbers stay numbers, so
    t-closeness orders them) and its tuomin metadata when it has some."""
    if path.is_dir():
        dataset = ds.dataset(path, format="parquet", partitioning="hive")
        files = sorted(dataset.files)
        return dataset.to_table().to_pandas(), _metadata(Path(files[0])) if files else {}
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pandas(), _metadata(path)
    return pd.read_csv(path, skipinitialspace=True), {}


def _metadata(path: Path) -> dict:
    raw = (pq.ParquetFile(path).metadata.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}
