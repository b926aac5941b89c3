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
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

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
