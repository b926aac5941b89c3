"""The ledger: an append-only, hash-chained record of what tuomin did.

    <warehouse>/_ledger/ledger.jsonl    one JSON object per line

Each entry has `seq`, `at` (UTC), `kind` (run, partition, backup, deletion, partition_removed,
review, key_rotated, key_destroyed), `data`, `prev` (the previous entry's hash) and `hash` =
SHA-256 of the canonical JSON of the other fields, so editing or deleting any entry breaks the
chain at that point. Entries hold counts, names, paths
and hashes, never a data value. DuckDB reads it as a table:
read_json('<warehouse>/_ledger/ledger.jsonl').
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
from pathlib import Path

LEDGER = Path("_ledger") / "ledger.jsonl"
GENESIS = "0" * 64


class LedgerBroken(RuntimeError):
    """The hash chain does not verify: nothing that relies on the ledger may proceed."""


def _digest(entry: dict) -> str:
    body = {k: entry[k] for k in ("seq", "at", "kind", "data", "prev")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def entries(warehouse: Path) -> list[dict]:
    path = warehouse / LEDGER
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def append(warehouse: Path, kind: str, data: dict) -> dict:
    """Add an entry under an exclusive lock, chained to the last one, flushed to disk."""
    path = warehouse / LEDGER
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        last = None
        for line in fh:
            if line.strip():
                last = json.loads(line)
        entry = {"seq": last["seq"] + 1 if last else 1, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "kind": kind, "data": json.loads(json.dumps(data, ensure_ascii=False, default=str)),
                 "prev": last["hash"] if last else GENESIS}
        entry["hash"] = _digest(entry)
        fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return entry


def verify(warehouse: Path) -> list[str]:
    """Every break in the chain: an edited entry, a deleted or reordered one. Empty = intact."""
    problems, prev = [], GENESIS
    for position, entry in enumerate(entries(warehouse), start=1):
        if entry.get("seq") != position:
            problems.append(f"entry {position}: sequence number {entry.get('seq')} (an entry was deleted or moved)")
        if entry.get("prev") != prev:
            problems.append(f"entry {position}: does not follow the entry before it")
        if _digest(entry) != entry.get("hash"):
            problems.append(f"entry {position}: its content does not match its hash (edited)")
        prev = entry.get("hash")
    return problems


def runs(warehouse: Path) -> list[dict]:
    return [e["data"] for e in entries(warehouse) if e["kind"] == "run"]


def partition_entries(warehouse: Path) -> dict[tuple[str, str], dict]:
    """The latest `partition` entry (whole, with seq and hash) of every (dataset, export date)
    still published, in ledger order."""
    latest: dict[tuple[str, str], dict] = {}
    for entry in entries(warehouse):
        if entry["kind"] == "partition":
            latest[(entry["data"]["dataset"], entry["data"]["export_date"])] = entry
        elif entry["kind"] == "partition_removed":
            latest.pop((entry["data"]["dataset"], entry["data"]["export_date"]), None)
    return latest


def partitions(warehouse: Path) -> list[dict]:
    """The data of the latest published entry of every (dataset, export date)."""
    return [entry["data"] for entry in partition_entries(warehouse).values()]
