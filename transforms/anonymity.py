"""Choose generalization levels (and suppress a few records) so that k-anonymity holds with the
least information lost.

Full-domain generalization: one level per quasi-identifier for the whole table; a candidate is a
node of the lattice of level vectors. Everything runs on integer codes (see hierarchy.encode):
evaluating a node maps the codes through each level, combines them into one int64 class key and
counts, in distinct entities when one person has many rows.

The search is exact:
- Loss is ARX's "loss" metric: per attribute, the average over records of (values merged into
  the record's group - 1) / (distinct values - 1); a suppressed record loses 1 on every attribute.
  Attributes are combined by a weighted mean (ARX's attribute weights, from the policy).
- A node's loss is at least its loss with nothing suppressed, which needs no data pass and grows
  with generalization. Nodes are visited in increasing order of that bound; once the bound
  reaches the best feasible loss found, no unvisited node can beat it.
- Feasibility is monotone: merging classes never creates a class below k, so when a node fails
  even with the allowed suppression, every node below it (finer on all attributes) fails too and
  is skipped without a data pass.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from transforms.hierarchy import Encoded


class Unreachable(ValueError):
    """No level vector within the allowed ranges reaches k within the suppression limit."""


@dataclass(frozen=True)
class Solution:
    levels: dict[str, int]
    suppressed: np.ndarray  # bool per row
    k: int  # smallest class (in entities) among published rows
    loss: float  # weighted; 0 = nothing generalized or suppressed, 1 = everything '*'
    loss_by_attribute: dict[str, float]
    nodes_total: int
    nodes_evaluated: int
    class_sizes: np.ndarray = field(repr=False)  # entities per published class


def entity_codes(entity: np.ndarray | None, n: int) -> np.ndarray | None:
    """Integer entity codes; a row without an entity counts as a person of its own."""
    if entity is None:
        return None
    codes = np.asarray(entity, dtype=np.int64).copy()
    missing = codes < 0
    codes[missing] = codes.max(initial=-1) + 1 + np.arange(missing.sum())
    return codes


def class_keys(qis: list[Encoded], levels: tuple[int, ...], rows: np.ndarray | None = None) -> np.ndarray:
    """One int64 key per row identifying its equivalence class at these levels (mixed radix)."""
    key = None
    radix = 1
    for qi, level in zip(qis, levels):
        codes = qi.maps[level][qi.codes if rows is None else qi.codes[rows]]
        size = qi.sizes[level]
        if key is None:
            key, radix = codes.copy(), size
            continue
        if radix * size >= 2**62:  # re-densify before the mixed radix overflows
            _, key = np.unique(key, return_inverse=True)
            radix = int(key.max(initial=0)) + 1
        key = key * size + codes
        radix *= size
    return key if key is not None else np.zeros(len(qis[0].codes) if rows is None else len(rows), np.int64)


def class_sizes(key: np.ndarray, entity: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(class index per row, size of each class), sizes counted in distinct entities."""
    classes, inverse = np.unique(key, return_inverse=True)
    if entity is None:
        return inverse, np.bincount(inverse, minlength=len(classes))
    pairs = np.unique(inverse.astype(np.int64) * (int(entity.max(initial=0)) + 1) + entity)
    return inverse, np.bincount(pairs // (int(entity.max(initial=0)) + 1), minlength=len(classes))


def search(qis: list[Encoded], ranges: dict[str, tuple[int, int]], k: int, max_suppression: float,
           entity: np.ndarray | None = None, weights: dict[str, float] | None = None) -> Solution:
    n = len(qis[0].codes)
    w = np.array([(weights or {}).get(q.name, 1.0) for q in qis], float)
    w /= w.sum()
    entity = entity_codes(entity, n)
    allowed = int(np.floor(max_suppression * n))
    bounds = [ranges[q.name] for q in qis]
    # Average loss per attribute and level with nothing suppressed: the data-free lower bound.
    counts0 = [np.bincount(q.codes, minlength=len(q.maps[0])) for q in qis]
    avg_loss = [[float(c @ q.loss[lv]) / n for lv in range(len(q.maps))] for q, c in zip(qis, counts0)]
    nodes = list(itertools.product(*(range(lo, hi + 1) for lo, hi in bounds)))
    bound = np.array([sum(w[i] * avg_loss[i][lv] for i, lv in enumerate(node)) for node in nodes])
    order = np.lexsort((np.arange(len(nodes)), np.array([sum(nd) for nd in nodes]), bound))
    failed: list[tuple[int, ...]] = []
    best: Solution | None = None
    evaluated = 0
    for idx in order:
        node = nodes[idx]
        if best is not None and bound[idx] >= best.loss - 1e-12:
            break
        if failed and np.any(np.all(np.array(node) <= np.array(failed), axis=1)):
            continue
        evaluated += 1
        inverse, sizes = class_sizes(class_keys(qis, node), entity)
        small = sizes[inverse] < k
        if small.sum() > allowed:
            failed.append(node)
            continue
        kept = ~small
        by_attr = {
            q.name: (float(q.loss[lv][q.codes[kept]].sum()) + int(small.sum())) / n for q, lv in zip(qis, node)
        }
        loss = float(w @ np.array(list(by_attr.values())))
        if best is None or loss < best.loss - 1e-12:
            published = sizes[sizes >= k]
            best = Solution(
                levels={q.name: lv for q, lv in zip(qis, node)}, suppressed=small,
                k=int(published.min()) if len(published) else 0, loss=loss, loss_by_attribute=by_attr,
                nodes_total=len(nodes), nodes_evaluated=0, class_sizes=published,
            )
    if best is None:
        raise Unreachable(
            f"k={k} cannot be reached with at most {max_suppression:.1%} of {n} rows suppressed, even with "
            f"every quasi-identifier at its coarsest allowed level ({', '.join(f'{q.name}<={hi}' for q, (_, hi) in zip(qis, bounds))})"
        )
    return Solution(**{**best.__dict__, "nodes_evaluated": evaluated})
