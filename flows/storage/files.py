"""A file's SHA-256, as the ledger records it for every file a step reads, writes or deletes; and
`sync`, which makes a write, rename or deletion durable before the ledger says it happened."""

from __future__ import annotations

import hashlib
import os
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


def sync(path: Path) -> None:
    """fsync a file or a folder (its entries: a rename or a deletion in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
