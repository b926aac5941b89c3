"""The run record: one JSON document per run under <warehouse>/_runs/, written whether the run
published or failed. It names what was read (files, SHA-256), the policies (SHA-256), the key
(fingerprint), what was published or why not, and any unknown columns dropped on request.
Counts, names and hashes only: no data value ever enters it. DuckDB reads the lot with
read_json('<warehouse>/_runs/*.json').
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RUNS = "_runs"


def record_run(warehouse: Path, record: dict) -> Path:
    folder = warehouse / RUNS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['run_id']}.json"
    staged = path.with_suffix(".json.tmp")
    staged.write_text(json.dumps(record, ensure_ascii=False, indent=1, default=str), "utf-8")
    os.replace(staged, path)  # a reader never sees half a record
    return path
