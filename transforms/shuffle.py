"""The published order of a partition's rows: by a hash of each row's published values.

An export is ordered by time, receipt or member number, and pass 2 keeps that order. Published
as is, position would give back what generalization took away (rows next to each other are one
receipt; the n-th row is the n-th sale of the day). Ordered by a hash of its own published
values, a row's position is a function of what is already published, so it tells nothing more;
and the same rows always land in the same order, so a rerun writes the same file.

Rows are put in order without holding the partition: each hash falls in one of `buckets` equal
ranges (its high bits), a bucket is sorted on its own, and the buckets in range order are the
rows sorted by hash whatever their number.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from transforms import scratch

ORDER = "__order"  # the hash column while rows wait in their bucket


def keys(table: pa.Table) -> np.ndarray:
    """A 64-bit hash of each row's values (all columns, in order), as DuckDB's hash() gives it.
    Times are hashed at one unit, so that a time column hashes the same before it is written and
    as Parquet gives it back (Parquet has no seconds: `timestamp[s]` comes back as `[ms]`)."""
    if table.num_rows == 0:
        return np.zeros(0, np.uint64)
    schema = pa.schema([f.with_type(pa.timestamp("us", f.type.tz)) if pa.types.is_timestamp(f.type) else f for f in table.schema])
    con = scratch.connection()
    try:
        con.register("rows", table.cast(schema))
        columns = ", ".join('"' + c.replace('"', '""') + '"' for c in table.column_names)
        return np.asarray(con.execute(f"SELECT hash({columns}) AS h FROM rows").fetchnumpy()["h"], np.uint64)
    finally:
        con.close()


def buckets_of(hashes: np.ndarray, buckets: int) -> np.ndarray:
    """Each hash's bucket: `buckets` equal ranges of the 64-bit space, in order (monotone in the hash)."""
    return (((hashes >> np.uint64(32)) * np.uint64(buckets)) >> np.uint64(32)).astype(np.int64)


def in_order(table: pa.Table, hashes: np.ndarray | None = None) -> pa.Table:
    """`table`'s rows sorted by their hash (ties, which are identical rows but for a collision
    once in 2^64 pairs, keep their order)."""
    hashes = keys(table) if hashes is None else hashes
    return table.take(pa.array(np.argsort(hashes, kind="stable")))
