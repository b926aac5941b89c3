"""Choose generalization levels (and suppress a few records) so that a privacy model (k, and the
criteria on sensitive columns: transforms/criteria.py) holds with the least information lost.

Full-domain generalization: one level per quasi-identifier for the whole table; a candidate is a
node of the lattice of level vectors. Everything runs on integer codes (see hierarchy.encode),
and on the table's distinct combinations of (quasi-identifier codes, entity, sensitive values)
with their row counts rather than on its rows: a node maps those combinations' codes through its
levels, combines them into one int64 class key and counts by bincount or hashing, never sorting.
The search asks a table of combinations (transforms/combinations.py: Combinations) a few
questions per node; the table is held in memory (InMemory, numpy) or out of core
(transforms/outofcore.py, DuckDB).

Every criterion is monotone (merging classes never breaks it), so record suppression can repair
any class that fails: every class must hold k rows, or k distinct entities when one person has
many rows, and meet each criterion on a sensitive column.
The table judges a class by asking its model (Combinations.model).

Search:
- Loss is ARX's "loss" metric: per attribute, the average over records of (values merged into
  the record's group - 1) / (distinct values - 1); a suppressed record loses 1 on every attribute.
  Attributes are combined by a weighted mean (ARX's attribute weights, from the policy).
- The objective puts the analysts' declared questions first (Questions): a node costs 1 for each
  question it publishes a column of coarser than the question needs, then its loss; the loss
  breaks ties. Being a cost of the levels alone, it is part of every lower bound below.
- Exact when the lattice has at most EXACT_LIMIT nodes: nodes are visited in increasing order of
  their loss with nothing suppressed (a lower bound that needs no data pass and grows with
  generalization); once that bound reaches the best feasible loss, no unvisited node can beat it.
  Before a node is evaluated, the bound is tightened with what its evaluated coarser neighbours
  suppressed: a record suppressed there is suppressed here too (its class only gets smaller), so
  it costs 1 rather than its generalized loss; a node whose tightened bound cannot beat the best is
  skipped without a data pass.
  A node below one that failed even with suppression (finer on every attribute) fails too and is
  skipped, as in ARX's Flash and OLA; and when a node fails, its coarser neighbours are tried in
  turn while they still fail (Flash's climb), so that each failure found prunes as much of the
  lattice below it as possible.
- Beyond that, a documented heuristic, greedy top-down specialization: start from the coarsest
  node (always feasible if anything is), and repeatedly take the one-step-finer neighbour with the
  lowest loss that is still feasible, until none is. Its result is feasible, not necessarily best.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from transforms.combinations import Combinations, InMemory
from transforms.criteria import PrivacyModel
from transforms.errors import TuominError
from transforms.hierarchy import Encoded

EXACT_LIMIT = 100_000  # lattice nodes searched exactly; larger lattices use the greedy heuristic
# Combinations up to which the m = 1 search before k^m is exact; above, it starts k^m from the
# least-loss chain (measured at 1 M POS lines: benchmarks/RESULTS.md).
EXACT_COMBINATIONS = 200_000
PEOPLE_SHARE = 0.4  # the share of people a sample of people draws (k scaled with it: `sampled`)


class Unreachable(TuominError, ValueError):
    """No level vector within the allowed ranges reaches the privacy models within the suppression limit."""


@dataclass(frozen=True)
class Solution:
    levels: dict[str, int]
    suppressed: np.ndarray  # bool per row
    k: int  # smallest class (in entities when counted so) among published rows
    loss: float  # weighted; 0 = nothing generalized or suppressed, 1 = everything '*'
    loss_by_attribute: dict[str, float]
    nodes_total: int
    nodes_evaluated: int
    class_sizes: np.ndarray = field(repr=False)  # per published class, in entities when counted so
    method: str = "exact"
    taken: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 3), np.int64), repr=False
    )  # (entity id, item key, rows of it kept) suppressed (k^m)


@dataclass(frozen=True)
class Questions:
    """The analysts' declared questions as the search's objective (transforms/workload.py): a node
    that publishes a question's column coarser than the question needs costs 1 for that question,
    more than any loss (at most 1), so the search answers as many questions as the model allows
    and breaks ties by loss. `needs`: per question, (attribute position, level it needs) pairs.
    A cost of the levels alone, so every lower bound the searches use stays one."""

    needs: tuple[tuple[tuple[int, int], ...], ...] = ()

    @classmethod
    def of(cls, names: list[str], asked: list[dict[str, int]]) -> Questions:
        position = {name: j for j, name in enumerate(names)}
        return cls(tuple(tuple((position[n], lv) for n, lv in by.items() if n in position) for by in asked))

    def cost(self, nodes) -> np.ndarray:
        """Per node (the last axis holds its levels): how many questions it cannot answer."""
        grid = np.asarray(nodes)
        total = np.zeros(grid.shape[:-1])
        for need in self.needs:
            if need:
                at, levels = zip(*need)
                total = total + np.any(grid[..., list(at)] > np.array(levels), axis=-1)
        return total

    def of_node(self, node: tuple[int, ...]) -> float:
        return float(self.cost(np.asarray(node)))


NO_QUESTIONS = Questions()


def search(
    qis: list[Encoded],
    ranges: dict[str, tuple[int, int]],
    model: PrivacyModel,
    max_suppression: float,
    entity: np.ndarray | None = None,
    weights: dict[str, float] | None = None,
    sensitive: dict[str, np.ndarray] | None = None,
    counts: np.ndarray | None = None,
    questions: Questions = NO_QUESTIONS,
) -> Solution:
    """Levels and suppression for elements given by their codes (qis, entity with -1 for none,
    the codes of each column the model's criteria read), held in memory: one element per row,
    or, with `counts`, combinations standing for that many rows each. `suppressed` is per element."""
    counts = np.ones(len(qis[0].codes), np.int64) if counts is None else np.asarray(counts, np.int64)
    entity = None if entity is None else np.asarray(entity)
    table = InMemory(qis, entity, sensitive or {}, counts, [ranges[q.name] for q in qis], model)
    solution = search_table(table, qis, ranges, max_suppression, weights, questions=questions)
    return solution if table.inverse is None else replace(solution, suppressed=solution.suppressed[table.inverse])


def search_table(
    table: Combinations,
    qis: list[Encoded],
    ranges: dict[str, tuple[int, int]],
    max_suppression: float,
    weights: dict[str, float] | None = None,
    strategy: str = "auto",
    questions: Questions = NO_QUESTIONS,
) -> Solution:
    """Levels and suppression for a table of combinations (`suppressed` is per combination).
    `strategy`: "auto" (exact up to EXACT_LIMIT nodes, else greedy top-down), or "chain": the
    first node within the limit along the least-loss coarsening chain from the lowest levels, by
    bisection (a handful of evaluations; the start of a k^m search on a large table, where the
    exact optimum at m = 1 is far below the node k^m needs anyway)."""
    n = table.rows
    bounds = [ranges[q.name] for q in qis]
    allowed = int(np.floor(max_suppression * n))
    w = np.array([(weights or {}).get(q.name, 1.0) for q in qis], float)
    w /= w.sum()

    # An attribute's loss at a level is its per-code loss weighted by the records kept per code:
    # one dot product per attribute, no per-record matrix. With every record kept it is the
    # data-free lower bound the exact search orders nodes by.
    def attribute_losses(node: tuple[int, ...], per_code: list[np.ndarray]) -> np.ndarray:
        return np.array([q.loss[level] @ rows for q, rows, level in zip(qis, per_code, node)])

    everything = table.rows_per_code()
    avg_loss = [[float(q.loss[level] @ rows) / n for level in range(len(q.maps))] for q, rows in zip(qis, everything)]

    def evaluate(node: tuple[int, ...]) -> tuple:
        """(feasible, weighted loss, loss per attribute, failing combinations as packed bits)."""
        suppressed, failing = table.failing(node, allowed)
        if failing is None:
            return False, None, None, None
        kept = everything if not suppressed else [a - b for a, b in zip(everything, table.rows_per_code(failing))]
        losses = (attribute_losses(node, kept) + suppressed) / n
        return True, float(w @ losses) + questions.of_node(node), losses, np.packbits(failing)

    nodes_total = int(np.prod([hi - lo + 1 for lo, hi in bounds]))

    def extra(node: tuple[int, ...], suppressed: np.ndarray) -> float:
        """Weighted loss that suppressing these combinations (packed bits) adds at this node, over
        their generalized loss: sum over records of (1 - loss)."""
        lost = table.rows_per_code(np.unpackbits(suppressed, count=table.size).astype(bool))
        return float(w @ ((lost[0].sum() - attribute_losses(node, lost)) / n))

    if strategy == "chain":
        best, evaluated = _chain(bounds, w, avg_loss, evaluate, questions)
        method = "chain"
    elif nodes_total <= EXACT_LIMIT:
        best, evaluated = _exact(qis, bounds, w, avg_loss, evaluate, extra, questions)
        method = "exact"
    else:
        best, evaluated = _greedy(bounds, evaluate)
        method = "greedy top-down"
    if best is None:
        raise Unreachable(
            f"k={table.model.k}"
            + "".join(f", {c.kind} ({_said(c.parameters())}) on {c.column}" for c in table.model.columns)
            + f" cannot be reached with at most {max_suppression:.1%} of {n} rows suppressed, even with every "
            f"quasi-identifier at its coarsest allowed level ({', '.join(f'{q.name}<={hi}' for q, (_, hi) in zip(qis, bounds))})"
        )
    node, loss, losses, packed = best
    published = table.published(node)
    return Solution(
        levels={q.name: lv for q, lv in zip(qis, node)},
        suppressed=np.unpackbits(packed, count=table.size).astype(bool),
        k=int(published.min()) if len(published) else 0,
        loss=loss - questions.of_node(node),
        loss_by_attribute={q.name: float(x) for q, x in zip(qis, losses)},
        nodes_total=nodes_total,
        nodes_evaluated=evaluated,
        class_sizes=published.astype(np.int64),
        method=method,
    )


def _said(parameters: dict) -> str:
    return ", ".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}" for name, value in parameters.items())


ITEMSET_EVALUATIONS = 12  # nodes the k^m search may count (each counts itemsets once) before it settles


def coarsening(start: tuple[int, ...], bounds: list[tuple[int, int]], cost) -> list[tuple[int, ...]]:
    """A chain of nodes from `start` to the coarsest: each one attribute coarser than the one
    before, the attribute whose `cost(node)` is least."""
    chain = [start]
    while any(level < hi for level, (_, hi) in zip(chain[-1], bounds)):
        node = chain[-1]
        chain.append(
            min((node[:j] + (node[j] + 1,) + node[j + 1 :] for j in range(len(node)) if node[j] < bounds[j][1]), key=cost)
        )
    return chain


def first_passing(chain: list, passes) -> int | None:
    """The index of the first node of `chain` that `passes`, by bisection: passing is taken to be
    monotone along the chain (once a node passes, every later one does). None if the last fails."""
    if passes(chain[0]):
        return 0
    if not passes(chain[-1]):
        return None
    low, high = 0, len(chain) - 1  # chain[low] fails, chain[high] passes
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if passes(chain[middle]) else (middle, high)
    return high


def with_itemsets(
    table: Combinations,
    qis: list[Encoded],
    ranges: dict[str, tuple[int, int]],
    solution: Solution,
    items: list[bool],
    max_suppression: float,
    weights: dict[str, float] | None = None,
    questions: Questions = NO_QUESTIONS,
) -> Solution:
    """(k, k^m): from the search's node (k over classes of person and item together: m = 1), the
    node at or above it, with items taken from the people whose itemsets of up to m items fewer
    than k of their class hold (transforms/itemsets.py), whose loss is least while no more than
    the limit is suppressed.

    Counting itemsets is the dear part (seconds per node at 1 M lines), and near the search's node
    k^m usually fails by far, so nodes are not tried one by one upwards. First a chain: from the
    search's node to the coarsest, one attribute coarsened per step, the one whose loss with
    nothing suppressed (a lower bound) grows least; supports only grow as values merge, so
    suppression falls along it and bisection finds its first node within the limit in a logarithm
    of its length. Then, while the budget (ITEMSET_EVALUATIONS) lasts, the other nodes in order of
    that bound, skipping any finer than a node that failed and stopping once the bound reaches the
    best loss found."""
    n, bounds = table.rows, [ranges[q.name] for q in qis]
    allowed = int(np.floor(max_suppression * n))
    k, m = table.model.k, table.model.m
    w = np.array([(weights or {}).get(q.name, 1.0) for q in qis], float)
    w /= w.sum()
    everything = table.rows_per_code()
    per_level = [np.array([q.loss[level] @ rows for level in range(len(q.maps))]) / n for q, rows in zip(qis, everything)]

    def bound_at(levels: np.ndarray) -> np.ndarray:
        """The loss with nothing suppressed (a lower bound) at nodes: an array of level vectors;
        with the questions they leave unanswered."""
        return sum(w[j] * per_level[j][levels[..., j]] for j in range(len(qis))) + questions.cost(levels)

    def bound_of(node: tuple[int, ...]) -> float:
        return float(bound_at(np.asarray(node)))

    def losses(at: tuple[int, ...], found: tuple[np.ndarray, np.ndarray, int]) -> np.ndarray:
        """Per attribute; every suppressed row loses 1, and a rare class's rows no longer count at
        their generalized loss (an item taken from a person still does: an overestimate, erring towards loss)."""
        mask, _, rows = found
        kept = [a - b for a, b in zip(everything, table.rows_per_code(mask))] if mask.any() else everything
        return (np.array([q.loss[level] @ per for q, per, level in zip(qis, kept, at)]) + rows) / n

    counted: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, int] | None] = {}  # None: past the limit
    best: tuple[tuple[int, ...], tuple, float] | None = None

    def count(node: tuple[int, ...]) -> bool:
        nonlocal best
        if node not in counted:
            found = table.itemsets(node, items, allowed)
            counted[node] = found if found[2] <= allowed else None
            if counted[node] is not None:
                total = float(w @ losses(node, found)) + questions.of_node(node)
                if best is None or total < best[2] - 1e-12:
                    best = (node, found, total)
        return counted[node] is not None

    start = tuple(solution.levels[q.name] for q in qis)
    chain = coarsening(start, bounds, bound_of)
    if first_passing(chain, count) is None or best is None:  # a node that passes is the best so far
        raise Unreachable(
            f"k={k}, k^m with m={m} cannot be reached with at most {max_suppression:.1%} of {n} rows "
            f"suppressed, even with every attribute at its coarsest allowed level"
        )
    nodes = np.array(list(itertools.product(*(range(lo, hi + 1) for lo, (_, hi) in zip(start, bounds)))))
    bound = bound_at(nodes)
    for index in np.lexsort((nodes.sum(axis=1), bound)):
        if bound[index] >= best[2] - 1e-12 or len(counted) >= ITEMSET_EVALUATIONS:
            break
        node = tuple(int(x) for x in nodes[index])
        failed = (f for f, found in counted.items() if found is None)
        if node in counted or any(all(a <= b for a, b in zip(node, f)) for f in failed):
            continue
        count(node)
    node, found, _ = best
    final = losses(node, found)
    published = table.published(node)
    return Solution(
        levels={q.name: level for q, level in zip(qis, node)},
        suppressed=found[0],
        k=int(published.min()) if len(published) else 0,
        loss=float(w @ final),
        loss_by_attribute={q.name: float(x) for q, x in zip(qis, final)},
        nodes_total=solution.nodes_total,
        nodes_evaluated=solution.nodes_evaluated + len(counted),
        class_sizes=published.astype(np.int64),
        method=f"{solution.method}, then k^{m} itemsets",
        taken=found[1],
    )


def sampled(model: PrivacyModel) -> tuple[PrivacyModel, float] | None:
    """The model a sample of people is judged by, and the share of people to draw: k scaled with
    the share (a class of k people holds k x share of them on average), at least 2, the share
    then k_sample / k; None where that would draw more than half of everyone (k below 4)."""
    k = max(2, round(model.k * PEOPLE_SHARE))
    share = k / model.k
    return (replace(model, k=k), share) if share <= 0.5 else None


def confirmed(
    table: Combinations,
    qis: list[Encoded],
    ranges: dict[str, tuple[int, int]],
    chosen: Solution,
    items: list[bool],
    max_suppression: float,
    weights: dict[str, float] | None = None,
    drawn: str = "units",
    questions: Questions = NO_QUESTIONS,
) -> Solution:
    """A node chosen on a sample (of whole units: OutOfCore.sample; or of people at a scaled k:
    Combinations.people), counted once on everyone: the sample's node if everyone passes it within
    the limit, else the first node above it on the least-loss coarsening chain that does (each a
    count). Units share no class, so a sample of them meets the same classes as everyone and its
    node rarely needs a step; a sample of people judges each class by a few of its people, so its
    node may be finer or coarser than everyone's best (its loss against the exact search:
    benchmarks/RESULTS.md). Privacy never rests on the sample: the node is counted on everyone."""
    n, bounds = table.rows, [ranges[q.name] for q in qis]
    allowed = int(np.floor(max_suppression * n))
    k, m = table.model.k, table.model.m
    w = np.array([(weights or {}).get(q.name, 1.0) for q in qis], float)
    w /= w.sum()
    everything = table.rows_per_code()
    per_level = [np.array([q.loss[level] @ rows for level in range(len(q.maps))]) / n for q, rows in zip(qis, everything)]

    def bound_of(node: tuple[int, ...]) -> float:
        return float(sum(w[j] * per_level[j][level] for j, level in enumerate(node))) + questions.of_node(node)

    km = any(items) and m > 1
    start = tuple(chosen.levels[q.name] for q in qis)
    for tried, node in enumerate(coarsening(start, bounds, bound_of), start=1):
        rows, failing = table.failing(node, allowed)
        if failing is None:
            continue
        found = table.itemsets(node, items, allowed) if km else (failing, np.zeros((0, 3), np.int64), rows)
        if found[2] > allowed:
            continue
        mask = found[0]
        kept = [a - b for a, b in zip(everything, table.rows_per_code(mask))] if mask.any() else everything
        final = (np.array([q.loss[level] @ per for q, per, level in zip(qis, kept, node)]) + found[2]) / n
        published = table.published(node)
        return Solution(
            levels={q.name: level for q, level in zip(qis, node)},
            suppressed=mask,
            k=int(published.min()) if len(published) else 0,
            loss=float(w @ final),
            loss_by_attribute={q.name: float(x) for q, x in zip(qis, final)},
            nodes_total=chosen.nodes_total,
            nodes_evaluated=chosen.nodes_evaluated + tried,
            class_sizes=published.astype(np.int64),
            method=f"{chosen.method}, chosen on a sample of {drawn}, counted on everyone",
            taken=found[1],
        )
    raise Unreachable(
        f"k={k}" + (f", k^m with m={m}" if km else "") + f" cannot be reached with at most {max_suppression:.1%} of {n} rows "
        "suppressed, even with every attribute at its coarsest allowed level"
    )


def _exact(qis, bounds, w, avg_loss, evaluate, extra, questions: Questions = NO_QUESTIONS):
    nodes = list(itertools.product(*(range(lo, hi + 1) for lo, hi in bounds)))
    grid = np.array(nodes)
    bound = sum(w[i] * np.array(avg_loss[i])[grid[:, i]] for i in range(len(qis))) + questions.cost(grid)
    order = np.lexsort((np.arange(len(nodes)), grid.sum(axis=1), bound))
    index = {node: i for i, node in enumerate(nodes)}
    below_failure = np.zeros(len(nodes), bool)  # at or under a node that fails: fails too (monotone)
    known: dict[tuple, tuple] = {}  # evaluated nodes
    best, evaluated = None, 0

    def suppressed_extra(node: tuple) -> float:
        """What records its evaluated coarser neighbours suppress add to a node's lower bound."""
        suppressed = None
        for i in range(len(node)):
            parent = node[:i] + (node[i] + 1,) + node[i + 1 :]
            result = known.get(parent)
            if result is not None and result[0]:
                failing = result[3]
                suppressed = failing if suppressed is None else suppressed | failing
        return 0.0 if suppressed is None else extra(node, suppressed)

    def infeasible(node) -> bool:
        return bool(below_failure[index[node]])

    def visit(node: tuple) -> tuple:
        nonlocal evaluated, best
        if node not in known:
            evaluated += 1
            known[node] = evaluate(node)
            feasible, *result = known[node]
            if feasible and (best is None or result[0] < best[1] - 1e-12):
                best = (node, *result)
        return known[node]

    for idx in order:
        if best is not None and bound[idx] >= best[1] - 1e-12:
            break
        node = nodes[idx]
        if infeasible(node):
            continue
        if best is not None and bound[idx] + suppressed_extra(node) >= best[1] - 1e-12:
            continue
        if visit(node)[0]:
            continue
        # Climb: a coarser neighbour that still fails prunes everything below it too.
        top = node
        while True:
            up = [top[:i] + (top[i] + 1,) + top[i + 1 :] for i in range(len(top)) if top[i] < bounds[i][1]]
            up = sorted((u for u in up if not infeasible(u)), key=lambda u: bound[index[u]])
            nxt = next((u for u in up if not visit(u)[0]), None)
            if nxt is None:
                break
            top = nxt
        below_failure |= np.all(grid <= np.array(top), axis=1)
    return best, evaluated


def _chain(bounds, w, avg_loss, evaluate, questions: Questions = NO_QUESTIONS):
    """The first feasible node of the coarsening chain from the lowest levels (each step the
    attribute whose loss with nothing suppressed grows least), found by bisection: feasibility
    is monotone along it (every step coarsens)."""
    per_level = [np.array(levels) for levels in avg_loss]

    def bound(node: tuple[int, ...]) -> float:
        return float(sum(w[j] * per_level[j][level] for j, level in enumerate(node))) + questions.of_node(node)

    chain = coarsening(tuple(lo for lo, _ in bounds), bounds, bound)
    results: dict[tuple[int, ...], tuple] = {}

    def feasible(node: tuple[int, ...]) -> bool:
        if node not in results:
            results[node] = evaluate(node)
        return bool(results[node][0])

    found = first_passing(chain, feasible)
    if found is None:
        return None, len(results)
    node = chain[found]
    return (node, *results[node][1:]), len(results)


def _greedy(bounds, evaluate):
    node = tuple(hi for _, hi in bounds)
    result = evaluate(node)
    evaluated = 1
    if not result[0]:
        return None, evaluated
    best = (node, *result[1:])
    while True:
        options = []
        for i, (lo, _) in enumerate(bounds):
            if best[0][i] > lo:
                finer = best[0][:i] + (best[0][i] - 1,) + best[0][i + 1 :]
                evaluated += 1
                result = evaluate(finer)
                if result[0]:
                    options.append((finer, *result[1:]))
        if not options:
            return best, evaluated
        best = min(options, key=lambda option: option[1])
