"""Who is one person: rows that share an identifier, directly or through other rows, are one
person's (connected components of rows and identifier values). `tuomin risk` links published rows
by their tokens; the DP tables link raw rows by their normalized identifiers, so that their privacy
unit (one customer) holds across datasets and dates. Two people who share an identifier (a
family's mobile) become one unit, which only bounds them together; a placeholder or dummy number
(N/A, 13800138000) is no identifier (flows/storage/raw.py clears them, transforms/text.py lists
them). In `people`, the DP tables' linking, a row with no identifier at all (a counter enquiry
with neither receipt nor member number) is left out: it cannot be tied to anyone, and counted as
a person of its own, one customer's forty enquiries would be forty customers to the noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

ERASED = "_erased"  # a row that names someone on the erasure list
IDENTIFIERS = ("id:", "link:")  # columns of normalized identifiers (`id:<kind>`) and link keys (`link:<source>.<key>`)
Key = tuple[str, int, Sequence]  # (domain, part, one value per row of that part; None, NaN or '': none)


def components(sizes: Sequence[int], keys: Iterable[Key]) -> list[np.ndarray]:
    """A dense person id for every row of each part (parts of `sizes` rows, in order): two rows get
    the same id when they hold the same value in the same domain, or are linked through others.
    Values of different domains never match (a mobile is not a member number). Values are encoded
    by Arrow as they are (a release gate's millions of tokens never become Python strings), and
    the graph's indices are 4 bytes while its nodes allow."""
    offsets = np.cumsum([0, *sizes])
    by_domain: dict[str, list[tuple[int, pa.Array]]] = {}
    for domain, part, values in keys:
        by_domain.setdefault(domain, []).append((part, _text(values)))
    # Nodes: every row, then every identifier value; an edge joins a row to each of its values.
    src, dst, nodes = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], int(offsets[-1])
    for parts in by_domain.values():
        values = pa.chunked_array([v for _, v in parts], pa.string()).combine_chunks()
        encoded = pc.dictionary_encode(pc.if_else(pc.equal(values, ""), None, values))  # "": none
        codes = pc.fill_null(encoded.indices, -1).to_numpy()
        has = codes >= 0
        rows = np.concatenate([np.arange(sizes[part]) + offsets[part] for part, _ in parts] or [np.zeros(0, np.int64)])
        src.append(rows[has])
        dst.append(codes[has].astype(np.int64) + nodes)
        nodes += len(encoded.dictionary)
    index = np.int32 if nodes < 2**31 else np.int64
    sources, targets = np.concatenate(src).astype(index), np.concatenate(dst).astype(index)
    del src, dst
    graph = coo_matrix((np.ones(len(sources), np.int8), (sources, targets)), shape=(nodes, nodes))
    del sources, targets
    _, labels = connected_components(graph, directed=False)
    dense, _ = pd.factorize(labels[: offsets[-1]])
    return [dense[offsets[i] : offsets[i + 1]].astype(np.int64) for i in range(len(sizes))]


def _text(values) -> pa.Array:
    """One part's values as Arrow text, null where there is none (None, NaN)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(pd.Series(values, dtype=object), from_pandas=True)
    return values if values.type == pa.string() else values.cast(pa.string())


def identified(frame: pl.DataFrame) -> pl.Series:
    """Whether each row holds at least one identifier or link key."""
    names = [c for c in frame.columns if c.startswith(IDENTIFIERS)]
    if not names:
        return pl.Series([False] * frame.height)
    return frame.select(pl.any_horizontal(pl.col(c).is_not_null() & (pl.col(c).cast(pl.String) != "") for c in names))[
        :, 0
    ].fill_null(False)


def people(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Each source's rows with `person`, one id per customer across sources (rows that share a
    document, mobile or member number, or a case and its receipt), without the people on the
    erasure list (all their rows, in every source) and without the rows that hold no identifier."""
    sources = list(frames)
    parts = components(
        [frames[s].height for s in sources],
        (
            (column.split(":", 1)[1] if column.startswith("id:") else column, i, frames[s][column].to_arrow())
            for i, s in enumerate(sources)
            for column in frames[s].columns
            if column.startswith(IDENTIFIERS)
        ),
    )
    erased = np.unique(
        np.concatenate([p[frames[s][ERASED].to_numpy()] for s, p in zip(sources, parts)] or [np.zeros(0, np.int64)])
    )
    found = {}
    for source, part in zip(sources, parts):
        frame = frames[source].with_columns(pl.Series("person", part))
        found[source] = frame.filter(~pl.col("person").is_in(erased) & identified(frame))
    return found
