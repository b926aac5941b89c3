"""A file's SHA-256, as the ledger records it for every file a step reads, writes or deletes."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return stream_sha256(fh)


def stream_sha256(fh) -> str:
    """SHA-256 of a binary file object, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    while block := fh.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()
