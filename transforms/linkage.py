"""Who is one person: rows that share an identifier, directly or through other rows, are one
person's (connected components of rows and identifier values). `tuomin risk` links published rows
by their tokens; the DP tables link raw rows by their normalized identifiers, so that their privacy
unit (one customer) holds across datasets and dates. A row without an identifier is a person of its
own; two people who share one (a family's mobile) become one unit, which only bounds them together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

ERASED = "_erased"  # a row that names someone on the erasure list
IDENTIFIERS = ("id:", "link:")  # columns of normalized identifiers (`id:<kind>`) and link keys (`link:<source>.<key>`)
Key = tuple[str, int, Sequence]  # (domain, part, one value per row of that part; None, NaN or '': none)


def components(sizes: Sequence[int], keys: Iterable[Key]) -> list[np.ndarray]:
    """A dense person id for every row of each part (parts of `sizes` rows, in order): two rows get
    the same id when they hold the same value in the same domain, or are linked through others.
    Values of different domains never match (a mobile is not a member number)."""
    offsets = np.cumsum([0, *sizes])
    by_domain: dict[str, list[tuple[np.ndarray, pd.Series]]] = {}
    for domain, part, values in keys:
        found = pd.Series(values, dtype=object)
        by_domain.setdefault(domain, []).append((np.arange(sizes[part]) + offsets[part], found.where(found != "")))  # "": none
    # Nodes: every row, then every identifier value; an edge joins a row to each of its values.
    src, dst, nodes = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], int(offsets[-1])
    for parts in by_domain.values():
        codes, uniques = pd.factorize(pd.concat([values for _, values in parts], ignore_index=True))
        rows = np.concatenate([r for r, _ in parts])
        src.append(rows[codes >= 0])
        dst.append(codes[codes >= 0] + nodes)
        nodes += len(uniques)
    sources, targets = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(len(sources), np.int8), (sources, targets)), shape=(nodes, nodes))
    _, labels = connected_components(graph, directed=False)
    dense, _ = pd.factorize(labels[: offsets[-1]])
    return [dense[offsets[i] : offsets[i + 1]].astype(np.int64) for i in range(len(sizes))]


def people(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Each source's rows with `person`, one id per customer across sources (rows that share a
    document, mobile or member number, or a case and its receipt), without the people on the
    erasure list (all their rows, in every source)."""
    sources = list(frames)
    parts = components(
        [frames[s].height for s in sources],
        (
            (column.split(":", 1)[1] if column.startswith("id:") else column, i, frames[s][column].to_pandas())
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
        found[source] = frame.filter(~pl.col("person").is_in(erased))
    return found
