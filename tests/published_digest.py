"""What a run publishes, reduced to what must not change when the code is reorganized: per
partition, a digest of its rows in published order and its metadata without what names the run
(ids, times, the ledger's head, the temporary paths it read). tests/e2e/test_published.py compares a
fresh run of the test landing against the digest committed in tests/data/published.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq

from flows.storage.footer import read_footer
from flows.storage.warehouse import partition_files

RUN_KEYS = {"run_id", "flow_run_id", "created_at", "ledger_head"}  # name the run, not what it published


def digest(warehouse: Path) -> dict[str, dict]:
    out = {}
    for path in partition_files(warehouse):
        table = pq.read_table(path)
        metadata = {k: v for k, v in read_footer(path).items() if k not in RUN_KEYS}
        metadata["inputs"] = sorted(f["sha256"] for f in metadata.get("inputs", []))  # paths are temporary
        rows = json.dumps(table.to_pylist(), default=str, ensure_ascii=False).encode()
        out[str(path.relative_to(warehouse))] = {
            "rows": table.num_rows,
            "rows_sha256": hashlib.sha256(rows).hexdigest(),
            "schema": [f"{f.name}: {f.type}" for f in table.schema],
            "metadata": _rounded(json.loads(json.dumps(metadata, default=str, sort_keys=True))),
        }
    return out


def _rounded(value):
    """Floats to 12 significant digits: a sum over threads may differ in its last bit."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
