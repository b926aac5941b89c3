"""The process's in-memory DuckDB, lent one connection (a cursor) at a time.

Making a DuckDB database costs ~25 ms; a connection to one that exists, under a millisecond. Pass 2
orders every partition by a hash, and the k^m count opens one per group of units: over a history
of hundreds of partitions the databases alone cost seconds. A connection's temporary tables and
registered Arrow tables are its own and go when it is closed, so callers stay apart as they were
with a database each.

Settings (threads, memory limit, temp directory) belong to the database, not the connection: a
caller that needs its own opens its own database (the out-of-core engine on disk, the release
gate's one-thread count, the analysts' confined `tuomin query`).
"""

from __future__ import annotations

import os
import threading

import duckdb

_lock = threading.Lock()
_database: tuple[int, duckdb.DuckDBPyConnection] | None = None  # (the process that made it, it)


def connection() -> duckdb.DuckDBPyConnection:
    """A new connection to the process's in-memory database (made on first use, and again in a
    forked child, which may not share its parent's); close it when done."""
    global _database
    with _lock:
        if _database is None or _database[0] != os.getpid():
            _database = (os.getpid(), duckdb.connect())
        return _database[1].cursor()
