"""Anonymizing a source in two passes over batches, with compact state in between.

    pass 1  stage(batch)   parsed rows + entity token + erasure flag (the restricted work file)
            tally(staged)  its distinct (quasi-identifiers at their lowest allowed level, entity,
                           erasure flag, sensitive values) with row counts, and one input value
                           per lowest-level label
    merge   merge(tallies) one tally per source and date, whatever the number of batches/files
    plan    solve(tally)   the privacy engine on the merged combinations: levels, and the classes
                           whose records are suppressed (by class key)
    pass 2  finish(staged) every operator, the planned levels, the suppressed classes removed

The engine never sees rows, only combinations (a class is a set of them), so memory follows the
number of distinct combinations, not the size of the export; and because pass 2 derives codes and
class keys exactly as the plan did, it suppresses exactly the records the engine counted.
Merging is associative and ordered by input, so batches or files processed on other machines
give the same plan as one process reading them in turn. All functions are pure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.anonymity import Diversity, Solution, class_keys, search
from transforms.hierarchy import Hierarchy, encode
from transforms.operators import Context, Drop, Suppress
from transforms.policy import SourcePolicy
from transforms.steps import entity_source

ENTITY, SUBJECT, ROWS = "__entity", "__subject", "__rows"


def hierarchies(policy: SourcePolicy, ctx: Context) -> dict[str, Hierarchy]:
    """Each quasi-identifier's hierarchy, built once per source and date."""
    return {c.name: c.operator.hierarchy.build(ctx) for c in policy.quasi_identifiers}


def stage(parsed: pa.Table, tokens: pa.Array | None, subject: np.ndarray, policy: SourcePolicy,
          link_keys: list[str] = ()) -> pa.Table:
    """What pass 2 needs of a batch: the columns some operator publishes from, each row's entity
    token and whether it names a subject to erase; also the columns other sources link to (for
    their look-ups). Raw values: it is kept in the restricted area."""
    keep = [c.name for c in policy.columns if not isinstance(c.operator, Drop) or c.name in link_keys]
    out = parsed.select(keep)
    out = out.append_column(ENTITY, tokens if tokens is not None else pa.nulls(parsed.num_rows, pa.string()))
    return out.append_column(SUBJECT, pa.array(subject, pa.bool_()))


@dataclass
class Tally:
    combos: pa.Table  # lowest-level QI labels, entity, subject flag, sensitive outputs, ROWS
    representatives: dict[str, pa.Table] = field(default_factory=dict)  # per QI: (label, value) first seen


def _lowest(column, values: pa.Array | pa.ChunkedArray, hierarchy: Hierarchy) -> pa.Array:
    return hierarchy.generalize(values, column.level_range[0])


def _sensitive(policy: SourcePolicy, staged: pa.Table, ctx: Context) -> dict[str, pa.Array]:
    return {policy.column(m.attribute).output_name: policy.column(m.attribute).operator.apply(staged[m.attribute], ctx)
            for m in policy.privacy.l_diversity}


def _keys(policy: SourcePolicy) -> list[str]:
    return [c.output_name for c in policy.quasi_identifiers] + [ENTITY, SUBJECT] + policy.sensitive_outputs


def tally(staged: pa.Table, policy: SourcePolicy, ctx: Context, built: dict[str, Hierarchy]) -> Tally:
    columns, representatives = {}, {}
    for c in policy.quasi_identifiers:
        labels = _lowest(c, staged[c.name], built[c.name])
        columns[c.output_name] = labels
        representatives[c.output_name] = _first(pa.table({"label": labels, "value": staged[c.name]}))
    columns |= {ENTITY: staged[ENTITY], SUBJECT: staged[SUBJECT]} | _sensitive(policy, staged, ctx)
    combos = pa.table(columns).group_by(_keys(policy), use_threads=False).aggregate([([], "count_all")])
    return Tally(combos.rename_columns([ROWS if n == "count_all" else n for n in combos.column_names]), representatives)


def _first(pairs: pa.Table) -> pa.Table:
    """One row per label: the first value seen with it."""
    first = pairs.group_by("label", use_threads=False).aggregate([("value", "first")])
    return first.rename_columns(["value" if n == "value_first" else n for n in first.column_names]).select(["label", "value"])


def merge(tallies: list[Tally], policy: SourcePolicy) -> Tally:
    """One tally from many (of batches, files or workers), in their order."""
    combos = pa.concat_tables([t.combos for t in tallies], promote_options="permissive")
    combos = combos.group_by(_keys(policy), use_threads=False).aggregate([(ROWS, "sum")])
    combos = combos.rename_columns([ROWS if n == f"{ROWS}_sum" else n for n in combos.column_names])
    representatives = {
        name: _first(pa.concat_tables([t.representatives[name] for t in tallies], promote_options="permissive"))
        for name in (tallies[0].representatives if tallies else {})}
    return Tally(combos.select(_keys(policy) + [ROWS]), representatives)


@dataclass(frozen=True)
class Level:
    """A quasi-identifier as published: lowest-level label -> code -> chosen level's label."""

    codebook: pa.Array  # lowest-level labels; a label's position is its code
    to_level: np.ndarray  # code -> code at the chosen level
    labels: pa.Array  # chosen-level code -> published value
    size: int  # number of codes at the chosen level


@dataclass(frozen=True)
class Plan:
    levels: dict[str, Level]  # by QI output name
    suppressed_keys: np.ndarray  # class keys of the classes whose records are suppressed
    solution: Solution | None
    erased: int  # rows of erased subjects (pass 2 drops them before anything else)
    suppressed: int  # rows the engine suppresses
    common: dict[str, pa.Array] = field(default_factory=dict)  # cell suppression: values kept, per column

    def with_counts(self, counts: dict[str, pa.Table], policy: SourcePolicy) -> Plan:
        """Cell suppression's global figures (value counts over the rows not erased)."""
        common = {name: counts[name]["value"].filter(pc.greater_equal(counts[name]["count"], policy.column(name).operator.min_count))
                  for name in counts}
        return dataclasses.replace(self, common=common)


def solve(merged: Tally, policy: SourcePolicy, built: dict[str, Hierarchy], erased: set[str]) -> Plan:
    """Levels and suppressed classes for a source, from its merged tally. Raises Unreachable."""
    combos = merged.combos
    gone = _erased(combos, erased)
    erased_rows = int(pc.sum(combos[ROWS].filter(pa.array(gone))).as_py() or 0)
    combos = combos.filter(pa.array(~gone))
    columns = policy.quasi_identifiers
    if not columns:
        return Plan({}, np.zeros(0, np.int64), None, erased_rows, 0)
    encoded = []
    for c in columns:
        reps = merged.representatives[c.output_name]
        e = encode(c.output_name, reps["value"], built[c.name])
        codes = pc.index_in(combos[c.output_name], reps["label"], skip_nulls=False)
        encoded.append(dataclasses.replace(e, codes=codes.to_numpy(zero_copy_only=False).astype(np.int64)))
    rows = combos[ROWS].to_numpy()
    if not combos.num_rows:  # nothing left to protect: an empty partition, at the lowest levels
        lowest = {c.output_name: c.level_range[0] for c in columns}
        solution = Solution(lowest, np.zeros(0, bool), 0, 0.0, dict.fromkeys(lowest, 0.0), 0, 0, np.zeros(0, np.int64), "empty")
    else:
        entity = pd.factorize(combos[ENTITY].to_numpy(zero_copy_only=False))[0] if policy.entity else None
        diversity = [Diversity(m.attribute, pd.factorize(combos[policy.column(m.attribute).output_name].to_numpy(
            zero_copy_only=False), use_na_sentinel=False)[0], m.l, m.measure) for m in policy.privacy.l_diversity]
        solution = search(encoded, {c.output_name: c.level_range for c in columns}, policy.privacy.k,
                          policy.privacy.max_suppression, entity, {c.output_name: c.operator.weight for c in columns},
                          diversity, counts=rows)
    levels = {e.name: Level(merged.representatives[e.name]["label"].combine_chunks(), e.maps[solution.levels[e.name]],
                            e.labels[solution.levels[e.name]], e.sizes[solution.levels[e.name]]) for e in encoded}
    keys = _class_keys([levels[e.name].to_level[e.codes] for e in encoded], levels)
    return Plan(levels, np.unique(keys[solution.suppressed]), solution, erased_rows, int(rows[solution.suppressed].sum()))


def _class_keys(codes: list[np.ndarray], levels: dict[str, Level]) -> np.ndarray:
    return class_keys(codes, [level.size for level in levels.values()])


def _erased(table: pa.Table, erased: set[str]) -> np.ndarray:
    gone = _mask(table[SUBJECT])
    if erased:
        gone |= _mask(pc.is_in(table[ENTITY], pa.array(sorted(erased), pa.string())))
    return gone


def count_values(staged: pa.Table, policy: SourcePolicy, erased: set[str]) -> dict[str, pa.Table]:
    """Value counts of each cell-suppressed column over the rows not erased (merge with
    merge_counts; Plan.with_counts takes the result)."""
    kept = staged.filter(pa.array(~_erased(staged, erased)))
    return {c.name: _value_counts(kept[c.name]) for c in policy.columns if isinstance(c.operator, Suppress)}


def merge_counts(parts: list[dict[str, pa.Table]]) -> dict[str, pa.Table]:
    names = parts[0].keys() if parts else []
    out = {}
    for name in names:
        merged = pa.concat_tables([p[name] for p in parts]).group_by("value", use_threads=False).aggregate([("count", "sum")])
        out[name] = merged.rename_columns(["count" if n == "count_sum" else n for n in merged.column_names])
    return out


def _value_counts(column) -> pa.Table:
    counts = pc.value_counts(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
    return pa.table({"value": counts.field("values"), "count": counts.field("counts")})


@dataclass
class Finished:
    table: pa.Table  # the published rows of the batch
    erased: int
    suppressed: int
    cells_suppressed: dict[str, int] = field(default_factory=dict)


def finish(staged: pa.Table, plan: Plan, policy: SourcePolicy, ctx: Context, built: dict[str, Hierarchy],
           erased: set[str]) -> Finished:
    """Pass 2 on one staged batch: erase, suppress the planned classes, apply every operator."""
    gone = _erased(staged, erased)
    table = staged.filter(pa.array(~gone))
    suppressed = 0
    codes = {}
    for c in policy.quasi_identifiers:
        level = plan.levels[c.output_name]
        found = pc.index_in(_lowest(c, table[c.name], built[c.name]), level.codebook, skip_nulls=False)
        if found.null_count:
            raise ValueError(f"{policy.source}: {c.name}: a value pass 1 did not count (the staged file changed?)")
        codes[c.output_name] = level.to_level[found.to_numpy(zero_copy_only=False)]
    if codes and len(plan.suppressed_keys):
        drop = np.isin(_class_keys(list(codes.values()), plan.levels), plan.suppressed_keys)
        suppressed = int(drop.sum())
        table = table.filter(pa.array(~drop))
        codes = {name: c[~drop] for name, c in codes.items()}
    outputs, cells = {}, {}
    for c in policy.columns:
        name = c.output_name
        if name is None:
            continue
        if name == policy.entity and (entity_source(policy) is not None or policy.link):
            outputs[name] = table[ENTITY]  # computed in pass 1 to link and erase
        elif c.quasi:
            outputs[name] = plan.levels[name].labels.take(pa.array(codes[name]))
        else:
            op = c.operator
            value = op.keep(table[c.name], plan.common[c.name]) if isinstance(op, Suppress) else op.apply(table[c.name], ctx)
            outputs[name] = value
            nulled = value.null_count - table[c.name].null_count
            if nulled > 0:
                cells[name] = nulled
    if policy.entity and policy.entity not in outputs:
        outputs[policy.entity] = table[ENTITY]
    return Finished(pa.table(outputs).select(policy.output_columns), int(gone.sum()), suppressed, cells)


def classes(published: pa.Table, policy: SourcePolicy) -> pa.Table:
    """The published rows as distinct (QI values, entity, sensitive values) with row counts: all
    that k, l and the risk figures depend on, a fraction of the rows' size."""
    keys = [c.output_name for c in policy.quasi_identifiers] + ([policy.entity] if policy.entity else []) + policy.sensitive_outputs
    keys = list(dict.fromkeys(keys))
    if not keys:
        return pa.table({ROWS: pa.array([published.num_rows], pa.int64())})
    out = published.select(keys).group_by(keys, use_threads=False).aggregate([([], "count_all")])
    return out.rename_columns([ROWS if n == "count_all" else n for n in out.column_names]).select(keys + [ROWS])


def merge_classes(parts: list[pa.Table]) -> pa.Table:
    keys = [n for n in parts[0].column_names if n != ROWS]
    if not keys:
        return pa.table({ROWS: pa.array([sum(p[ROWS].to_numpy().sum() for p in parts)], pa.int64())})
    merged = pa.concat_tables(parts, promote_options="permissive").group_by(keys, use_threads=False).aggregate([(ROWS, "sum")])
    return merged.rename_columns([ROWS if n == f"{ROWS}_sum" else n for n in merged.column_names]).select(keys + [ROWS])


def _mask(values) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def anonymize(parsed: pa.Table, tokens: pa.Array | None, policy: SourcePolicy, ctx: Context) -> tuple[Plan, Finished]:
    """Both passes over one table held in memory (for tests and small inputs)."""
    staged = stage(parsed, tokens, np.zeros(parsed.num_rows, bool), policy)
    built = hierarchies(policy, ctx)
    plan = solve(merge([tally(staged, policy, ctx, built)], policy), policy, built, set())
    if any(isinstance(c.operator, Suppress) for c in policy.columns):
        plan = plan.with_counts(count_values(staged, policy, set()), policy)
    return plan, finish(staged, plan, policy, ctx, built, set())
