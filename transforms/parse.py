"""Typed values from the exports' text, strictly: a value that does not parse is flagged, never
guessed (Arrow's own strptime would turn 2026-02-30 into 2026-03-02; pandas' does not).

Each parser returns the typed array and a boolean mask of the rows whose non-empty text did
not parse; the flow quarantines those rows. Empty text is null, not an error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.text import Column, fold

DECIMAL = pa.decimal128(12, 2)
DEFAULT_FORMATS = {"date": ["%Y-%m-%d"], "datetime": ["%Y-%m-%d %H:%M:%S"]}
# Dates a retail export can hold: a value outside is a broken or hostile export (9999-12-31), not
# data, and would break the date arithmetic downstream (a week or month after it is out of range).
EARLIEST, LATEST = pd.Timestamp("1900-01-01"), pd.Timestamp("2199-12-31 23:59:59")


def parse(column: Column, kind: str, formats: list[str] | None = None) -> tuple[pa.Array, np.ndarray]:
    typed, bad = _typed(column, kind, formats)
    return typed, bad | _nul_rows(column)


def _nul_rows(column: Column) -> np.ndarray:
    """Rows holding a NUL byte: never data (a broken or hostile export; tools downstream cut
    text at it). Each chunk's bytes are checked at once first, so a clean column costs one scan."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    data = [c.buffers()[2] for c in chunks]
    if not any(b is not None and b.size and np.frombuffer(b, np.uint8).min() == 0 for b in data):
        return np.zeros(len(column), bool)
    return true_where(pc.match_substring(column, "\x00"))


def _typed(column: Column, kind: str, formats: list[str] | None) -> tuple[pa.Array, np.ndarray]:
    if kind == "string":
        return _combine(pc.if_else(pc.equal(column, ""), None, column)), np.zeros(len(column), bool)
    text = fold(column)
    if kind == "int":
        return _by_pattern(text, r"^[+-]?\d+$", pa.int64())
    if kind == "decimal":
        # Thousands separators are a display habit, not part of the number: 1,280.00 -> 1280.00.
        plain = pc.if_else(
            pc.match_substring_regex(text, r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$"), pc.replace_substring(text, ",", ""), text
        )
        return _by_pattern(plain, r"^[+-]?\d+(\.\d{1,2})?$", DECIMAL)
    if kind in DEFAULT_FORMATS:
        return _temporal(text, formats or DEFAULT_FORMATS[kind], kind)
    raise ValueError(f"unknown column type {kind!r}")


def _combine(column: Column) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _by_pattern(text: Column, pattern: str, to: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    ok = pc.match_substring_regex(text, pattern)
    bad = pc.and_(pc.is_valid(text), pc.invert(ok))
    clean = pc.if_else(ok, text, pa.scalar(None, pa.string()))
    return _combine(pc.cast(clean, to)), true_where(bad)


def _temporal(text: Column, formats: list[str], kind: str) -> tuple[pa.Array, np.ndarray]:
    # Parsed once per distinct text (dates and times repeat across lines), then mapped back.
    encoded = pc.dictionary_encode(_combine(text))
    parsed, bad = _temporal_distinct(encoded.dictionary, formats, kind)
    return parsed.take(encoded.indices), true_where(pa.array(bad).take(encoded.indices))


def _temporal_distinct(text: pa.Array, formats: list[str], kind: str) -> tuple[pa.Array, np.ndarray]:
    series = pd.Series(text.to_pandas(), dtype="str")
    parsed = pd.Series(pd.NaT, index=series.index, dtype="datetime64[s]")
    for fmt in formats:
        todo = parsed.isna() & series.notna()
        if not todo.any():
            break
        parsed[todo] = pd.to_datetime(series[todo], format=fmt, errors="coerce").astype("datetime64[s]")
    outside = parsed.notna() & ((parsed < EARLIEST) | (parsed > LATEST))
    parsed[outside] = pd.NaT
    bad = (parsed.isna() & series.notna()).to_numpy()
    out = pa.array(parsed).cast(pa.timestamp("s"))
    return (out.cast(pa.date32()) if kind == "date" else out), bad


def true_where(values: Column) -> np.ndarray:
    """A boolean Arrow column as numpy, null as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)
