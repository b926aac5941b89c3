"""Anonymizing a source in two passes over batches, with compact state in between.

    pass 1  stage(batch)   parsed rows + entity token + erasure flag (the restricted work file)
            tally(staged)  its distinct (quasi-identifiers at their lowest allowed level, entity,
                           erasure flag, sensitive values) with row counts, and one input value
                           per lowest-level label
    merge   merge(tallies) tallies in one, in memory; or concat(tallies) side by side (the
                           pipeline writes each batch's tally to the work area and lists them)
    plan    solve(tally)   the privacy engine on the combinations (out of core in DuckDB, or in
                           memory when they are few): levels, and the classes whose records are
                           suppressed (by class key)
    pass 2  finish(staged) every operator, the planned levels, the suppressed classes removed;
                           or, for a unit republished coarser from the same inputs, the rows its
                           earlier version published and no others (Cap)
            classes(rows)  the published batch's classes; classes_frame counts them out of core
                           for the k/l checks and the figures

The engine never sees rows, only combinations (a class is a set of them), and holds those out of
core (transforms/outofcore.py), so its memory does not grow with the export; and because pass 2
derives codes and class keys exactly as the plan did, it suppresses exactly the records the
engine counted. Merging is associative and codes follow label order, so batches or files
processed on other machines give the same plan as one process reading them in turn. All
functions are pure, except that the engine and classes_frame may keep DuckDB's files in a
directory they are given (and remove it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.anonymity import (
    EXACT_COMBINATIONS,
    NO_QUESTIONS,
    Questions,
    Solution,
    Unreachable,
    confirmed,
    sampled,
    search_table,
    with_itemsets,
)
from transforms.combinations import Combinations, class_keys
from transforms.hierarchy import Encoded, Hierarchy, UnitHierarchy, encode
from transforms.operators import Context, Drop, Suppress
from transforms.outofcore import SAMPLE_COMBOS, OutOfCore, class_table
from transforms.parse import true_where
from transforms.policy import SourcePolicy
from transforms.pseudonymize import token_ids
from transforms.steps import entity_source
from transforms.units import UNIT, days_after, person_ids

ENTITY, SUBJECT, ROWS, PEOPLE = "__entity", "__subject", "__rows", "__people"
# A table with more combinations than this and no sample of units, where k^m follows, may choose
# its node on a sample of its people (anonymity.sampled) and count it once on everyone
# (anonymity.confirmed): each k^m count costs in proportion to the people it counts. Off (None)
# by default: measured at 500,000 it saves 18% of a 2 M-line day's search and half the 60-day
# history's, but what the sample leaves behind adds ~0.3 GiB to the count on everyone, and the 2 M
# day's peak went past 2 GiB (benchmarks/RESULTS.md).
PEOPLE_COMBOS: int | None = None
# The same for a table judged by k (and l) alone, with no k^m count to follow (the CRM's
# snapshot), where the exact search visits hundreds of nodes: on the 365-day history's 1 M-member
# CRM 45.6 -> 23.0 s, the same node (benchmarks/RESULTS.md). A count of k alone holds nothing the
# sample leaves behind: on by default.
PEOPLE_COMBOS_RELATIONAL: int | None = 500_000
# The sample's limit on suppression, as a multiple of everyone's: a class of k people holds k x
# share of them only on average, and at k = 5 the sample fails a third of the classes of 5 (a
# node just within everyone's limit looks past it); counted on everyone, a node past the limit is
# refused and the chain climbs (anonymity.confirmed). Measured: benchmarks/RESULTS.md.
PEOPLE_SLACK = 1.25


def hierarchies(policy: SourcePolicy, ctx: Context) -> dict[str, Hierarchy]:
    """Each quasi-identifier's hierarchy, built once per source and date."""
    return {c.name: c.generalization.hierarchy.build(ctx) for c in policy.quasi_identifiers}


def stage(
    parsed: pa.Table,
    tokens: pa.Array | None,
    subject: np.ndarray,
    policy: SourcePolicy,
    units: pa.Array,
    link_keys: Sequence[str] = (),
) -> pa.Table:
    """What pass 2 needs of a batch: the columns some operator publishes from, each row's entity
    token, whether it names a subject to erase and its unit's label; also the columns other
    sources link to (for their look-ups). A date a hierarchy counts from the row's own business
    date (a departure's lead time) is staged as those days. Raw values: it is kept in the
    restricted area."""
    keep = [c.name for c in policy.columns if not isinstance(c.operator, Drop) or c.name in link_keys]
    out = parsed.select(keep)
    for c in policy.quasi_identifiers:
        if c.generalization.hierarchy.days_after is not None and c.name in out.column_names and policy.unit.column:
            out = out.set_column(out.column_names.index(c.name), c.name, days_after(out[c.name], parsed[policy.unit.column]))
    out = out.append_column(ENTITY, tokens if tokens is not None else pa.nulls(parsed.num_rows, pa.string()))
    out = out.append_column(SUBJECT, pa.array(subject, pa.bool_()))
    return out.append_column(UNIT, units)


@dataclass
class Tally:
    parts: list[pa.Table | Path]  # lowest-level QI labels, entity, subject flag, sensitive outputs, ROWS
    representatives: dict[str, pa.Table] = field(default_factory=dict)  # per QI: (label, value) first seen


def _lowest(column, values: pa.Array | pa.ChunkedArray, hierarchy: Hierarchy) -> pa.Array:
    return hierarchy.generalize(values, column.level_range[0])


def _sensitive(policy: SourcePolicy, staged: pa.Table, ctx: Context) -> dict[str, pa.Array]:
    attributes = dict.fromkeys(c.column for c in policy.privacy.criteria)
    return {policy.published_name(a): policy.column(a).operator.apply(staged[a], ctx) for a in attributes}


def _keys(policy: SourcePolicy) -> list[str]:
    return [UNIT] + [c.published_name for c in policy.quasi_identifiers] + [ENTITY, SUBJECT] + policy.sensitive_outputs


def tally(staged: pa.Table, policy: SourcePolicy, ctx: Context, built: dict[str, Hierarchy]) -> Tally:
    """A batch's distinct (unit, quasi-identifiers at their lowest allowed level, person, subject
    flag, sensitive values) with row counts. The person is the record's id in its unit
    (transforms/units.person_ids): one customer in two units is two records."""
    labels_ = pc.unique(staged[UNIT])
    columns, representatives = {UNIT: _compact(staged[UNIT])}, {UNIT: pa.table({"label": labels_, "value": labels_})}
    for c in policy.quasi_identifiers:
        labels = _lowest(c, staged[c.name], built[c.name])
        columns[c.published_name] = _compact(labels)
        value = staged[c.name]
        if pa.types.is_decimal(value.type):  # Arrow has no `first` for decimals; bands compare floats anyway
            value = value.cast(pa.float64())
        representatives[c.published_name] = _first(pa.table({"label": labels, "value": value}))
    columns |= {ENTITY: person_ids(token_ids(staged[ENTITY]), staged[UNIT]), SUBJECT: staged[SUBJECT]}
    columns |= {name: _compact(values) for name, values in _sensitive(policy, staged, ctx).items()}
    return Tally([_count(pa.table(columns), _keys(policy))], representatives)


def _compact(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Text as a dictionary (the tallies hold millions of rows with a few distinct labels)."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return pc.dictionary_encode(values) if pa.types.is_string(values.type) else values


def _count(table: pa.Table, keys: list[str], rows: str | None = None) -> pa.Table:
    """Distinct key combinations with their row counts (summing `rows` when given). Their order
    is Arrow's (not first appearance); nothing downstream depends on it."""
    columns, dictionaries = _codes(table)
    out = pa.table(columns).group_by(keys, use_threads=False).aggregate([(rows, "sum") if rows else ([], "count_all")])
    out = out.rename_columns([ROWS if n in ("count_all", f"{ROWS}_sum") else n for n in out.column_names]).select(keys + [ROWS])
    for name, values in dictionaries.items():
        index = out.column_names.index(name)
        out = out.set_column(index, name, pa.DictionaryArray.from_arrays(out[name].combine_chunks(), values))
    return out


def _codes(table: pa.Table) -> tuple[dict[str, pa.ChunkedArray], dict[str, pa.Array]]:
    """The table's columns with each dictionary column as int32 codes into one dictionary of
    all its chunks' values (Arrow's own unify_dictionaries crashes on some layouts, pyarrow 26)."""
    columns, dictionaries = {}, {}
    for name in table.column_names:
        column = table[name]
        if pa.types.is_dictionary(column.type):
            chunks = column.chunks
            values = (
                pc.unique(pa.concat_arrays([c.dictionary for c in chunks])) if chunks else pa.array([], column.type.value_type)
            )
            columns[name] = pa.chunked_array([pc.index_in(c.dictionary, values).take(c.indices) for c in chunks], pa.int32())
            dictionaries[name] = values
        else:
            columns[name] = column
    return columns, dictionaries


def _first(pairs: pa.Table) -> pa.Table:
    """One row per label: the first value seen with it."""
    first = pairs.group_by("label", use_threads=False).aggregate([("value", "first")])
    return first.rename_columns(["value" if n == "value_first" else n for n in first.column_names]).select(["label", "value"])


def merge(tallies: list[Tally], policy: SourcePolicy) -> Tally:
    """One tally in one table from many held in memory (of batches, files or workers)."""
    combined = concat(tallies)
    return Tally(
        [_count(pa.concat_tables(combined.parts, promote_options="permissive"), _keys(policy), ROWS)], combined.representatives
    )


def concat(tallies: list[Tally]) -> Tally:
    """Tallies side by side, not merged: the engine merges equal combinations itself (out of
    core); representatives are merged."""
    representatives = {
        name: _first(pa.concat_tables([t.representatives[name] for t in tallies], promote_options="permissive"))
        for name in (tallies[0].representatives if tallies else {})
    }
    return Tally([part for t in tallies for part in t.parts], representatives)


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
    taken: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))  # (entity id, item key, rows kept) (k^m)
    every_level: dict[str, list[Level]] = field(default_factory=dict)  # each QI at each of its levels (`at`)

    @property
    def qis(self) -> list[str]:
        """The published quasi-identifiers (the levels' names but the unit's, which is the partition)."""
        return [name for name in self.levels if name != UNIT]

    def version(self) -> str:
        """What, beyond a unit's own inputs, decides what it publishes: the levels, and the values
        cell suppression keeps (16 hex digits of their SHA-256). A unit's tokens are keyed to it,
        so that a republication at other levels shares no token with the version it replaces."""
        levels = {name: int(level) for name, level in (self.solution.levels if self.solution else {}).items() if name != UNIT}
        common = {name: sorted(map(str, values.to_pylist())) for name, values in sorted(self.common.items())}
        return hashlib.sha256(json.dumps({"levels": levels, "common": common}, sort_keys=True).encode()).hexdigest()[:16]

    def at(self, levels: dict[str, int]) -> dict[str, Level] | None:
        """The quasi-identifiers as they publish at `levels` (another version's), from the same
        lowest-level codes; None if a level is not one this plan's hierarchies have."""
        found = {}
        for name in self.levels:
            level = levels.get(name, 0)
            every = self.every_level.get(name, [])
            if not 0 <= level < len(every):
                return None
            found[name] = every[level]
        return found

    def with_counts(self, counts: dict[str, pa.Table], policy: SourcePolicy) -> Plan:
        """Cell suppression's global figures (value counts over the rows not erased)."""
        common = {
            name: cast(Suppress, policy.column(name).operator).frequent(
                counts[name]["value"].combine_chunks(), counts[name]["count"].combine_chunks()
            )
            for name in counts
        }
        return dataclasses.replace(self, common=common)


@dataclass
class Problem:
    """What the engine needs of a tally: the encoded hierarchies and the table of combinations."""

    encoded: list[Encoded]  # per QI; codes index the codebook
    codebooks: dict[str, pa.Array]  # per QI: lowest-level labels in code order
    table: Combinations  # the combinations, erased subjects left out (out of core, or loaded when small)
    erased: int  # rows of erased subjects

    def __enter__(self) -> Problem:
        return self

    def __exit__(self, *exc) -> None:
        self.table.close()


def pose(
    tally: Tally,
    policy: SourcePolicy,
    built: dict[str, Hierarchy],
    erased: set[str],
    where: Path | None = None,
    leave_out: frozenset[str] | set[str] = frozenset(),
) -> Problem:
    """The engine's problem for a source: its tally (merged, or side by side: the engine counts
    equal combinations together) without the erased subjects and the units in `leave_out`, in
    DuckDB (in `where`, or in memory). Use it in a with block: leaving it removes the engine's files."""
    encoded, codebooks = [], {}
    # The unit first: a key of every class that the search never generalizes.
    for name, hierarchy in [(UNIT, UnitHierarchy())] + [(c.published_name, built[c.name]) for c in policy.quasi_identifiers]:
        # Codes in label order, so that they do not depend on how the rows were batched.
        reps = tally.representatives[name].sort_by("label")
        encoded.append(encode(name, reps["value"], hierarchy))
        codebooks[name] = reps["label"].combine_chunks()
    units = codebooks[UNIT]
    erased_ids = (
        person_ids(
            token_ids(pa.array(sorted(erased), pa.string()).take(np.repeat(np.arange(len(erased)), len(units)))),
            units.take(np.tile(np.arange(len(units)), len(erased))),
        )
        if erased and len(units)
        else pa.array([], pa.int64())
    )
    table = OutOfCore(
        tally.parts,
        encoded,
        list(codebooks),
        list(codebooks.values()),
        [(0, 0)] + [c.level_range for c in policy.quasi_identifiers],
        entity=ENTITY,
        by_entity=bool(policy.entity),
        subject=SUBJECT,
        rows=ROWS,
        model=policy.model,
        erased=erased_ids,
        where=where,
        left_out=(UNIT, sorted(leave_out)),
        grouped=True,
    )
    return Problem(encoded, codebooks, table.loaded(), table.erased_rows)


def decide(problem: Problem, policy: SourcePolicy) -> Plan:
    """Levels and suppressed classes (the privacy engine). Raises Unreachable."""
    columns = policy.quasi_identifiers
    table = problem.table
    if not columns:
        return Plan({}, np.zeros(0, np.int64), None, problem.erased, 0)
    encoded = problem.encoded
    if not table.rows:  # nothing left to protect: an empty partition, at the lowest levels
        lowest = {UNIT: 0} | {c.published_name: c.level_range[0] for c in columns}
        solution = Solution(lowest, np.zeros(0, bool), 0, 0.0, dict.fromkeys(lowest, 0.0), 0, 0, np.zeros(0, np.int64), "empty")
    else:
        # The unit: one level, no weight in the loss (it is never generalized), part of the person.
        ranges = {UNIT: (0, 0)} | {c.published_name: c.level_range for c in columns}
        weights = {UNIT: 0.0} | {c.published_name: c.generalization.weight for c in columns}
        items = [False] + [c.part == "item" for c in columns]
        km = any(items) and table.model.m > 1  # a person's items together, not only one at a time
        # A large table of many units chooses its node on a sample of whole units, then counts it
        # once on everyone (anonymity.confirmed): each count on everyone costs seconds a group.
        sample = table.sample(SAMPLE_COMBOS) if isinstance(table, OutOfCore) else None
        drawn, limit = "units", policy.privacy.max_suppression
        # One large unit (or a few), where k^m follows: a sample of its people at a scaled k.
        large = PEOPLE_COMBOS if km else PEOPLE_COMBOS_RELATIONAL
        people = large is not None and table.size > large
        if sample is None and people and (scaled := sampled(table.model)):
            sample, drawn, limit = table.people(scaled[1], scaled[0]), "people", min(1.0, limit * PEOPLE_SLACK)
        args = (items, policy.privacy.max_suppression, weights)
        # The declared questions first, the loss as the tie-break (anonymity.Questions).
        questions = Questions.of([e.name for e in encoded], [q.by for q in policy.questions])
        try:
            solution = _searched(sample or table, encoded, ranges, items, km, limit, weights, questions)
        except Unreachable:
            if sample is None:
                raise
            # A sample too thin to reach the model says nothing of everyone: search everyone.
            sample, limit = None, policy.privacy.max_suppression
            solution = _searched(table, encoded, ranges, items, km, limit, weights, questions)
        if sample is not None:
            solution = confirmed(table, encoded, ranges, solution, *args, drawn=drawn, questions=questions)
    levels = {
        e.name: Level(
            problem.codebooks[e.name],
            e.maps[solution.levels[e.name]],
            e.labels[solution.levels[e.name]],
            e.sizes[solution.levels[e.name]],
        )
        for e in encoded
    }
    every = {
        e.name: [Level(problem.codebooks[e.name], e.maps[lv], e.labels[lv], e.sizes[lv]) for lv in range(len(e.maps))]
        for e in encoded
    }
    codes, suppressed = table.codes(solution.suppressed)
    keys = _class_keys([levels[e.name].to_level[c] for e, c in zip(encoded, codes)], levels)
    return Plan(levels, np.unique(keys), solution, problem.erased, suppressed, taken=solution.taken, every_level=every)


def _searched(
    table: Combinations,
    encoded: list[Encoded],
    ranges: dict[str, tuple[int, int]],
    items: list[bool],
    km: bool,
    limit: float,
    weights: dict[str, float],
    questions: Questions = NO_QUESTIONS,
) -> Solution:
    """The search's node on `table`: then, where k^m follows, the node its itemsets allow. Where
    k^m follows on a large table, its start need not be the exact optimum at m = 1 (k^m ends far
    above it): the first feasible node of the least-loss chain will do."""
    strategy = "chain" if km and table.size > EXACT_COMBINATIONS else "auto"
    solution = search_table(table, encoded, ranges, limit, weights, strategy, questions)
    return with_itemsets(table, encoded, ranges, solution, items, limit, weights, questions) if km else solution


def solve(
    tally: Tally,
    policy: SourcePolicy,
    built: dict[str, Hierarchy],
    erased: set[str],
    where: Path | None = None,
    leave_out: frozenset[str] | set[str] = frozenset(),
) -> Plan:
    """pose, then decide."""
    with pose(tally, policy, built, erased, where, leave_out) as problem:
        return decide(problem, policy)


def _class_keys(codes: list[np.ndarray], levels: dict[str, Level]) -> np.ndarray:
    return class_keys(codes, [level.size for level in levels.values()])


def _taken(
    table: pa.Table, codes: dict[str, np.ndarray], plan: Plan, policy: SourcePolicy, kept: dict[tuple[int, int], int]
) -> np.ndarray:
    """Rows the engine took (k^m): of a person's rows of an item (the item key as the engine made
    it), those past the number the plan keeps of them (none, or the first few: they publish the
    same values). `kept` counts the rows kept so far across a unit's batches, and is updated."""
    items = [c.published_name for c in policy.item_attributes]
    key = class_keys([codes[n] for n in items], [plan.levels[n].size for n in items])
    people = pc.fill_null(person_ids(token_ids(table[ENTITY]), table[UNIT]), -1)
    # One hash join (a MultiIndex's isin is ten times slower), on the items of this batch's people.
    mine = plan.taken[np.isin(plan.taken[:, 0], people.to_numpy())]
    hit = np.zeros(len(key), bool)
    if len(mine):
        rows = pa.table({"e": people, "item": pa.array(key, pa.int64()), "row": pa.array(np.arange(len(key)))})
        taken = pa.table({"e": pa.array(mine[:, 0], pa.int64()), "item": pa.array(mine[:, 1], pa.int64())})
        found = np.sort(rows.join(taken, ["e", "item"], join_type="left semi", use_threads=False)["row"].to_numpy())
        # The rows of each (person, item) in turn, the first `keep` of them kept (few rows: plain Python).
        keep: dict[tuple[int, int], int] = {}
        for e, item, n in mine.tolist():  # the fewest, should a person's item be cut short in two classes
            keep[(e, item)] = min(n, keep.get((e, item), n))
        for row, e, item in zip(found.tolist(), people.take(found).to_pylist(), key[found].tolist()):
            pair = (e, item)
            seen = kept.get(pair, 0)
            if seen >= keep[pair]:
                hit[row] = True
            else:
                kept[pair] = seen + 1
    return hit


def _erased(table: pa.Table, erased: pa.Array) -> np.ndarray:
    """Rows naming a subject, or whose entity (token, or token id) is an erased subject's."""
    gone = true_where(table[SUBJECT])
    if len(erased):
        gone |= true_where(pc.is_in(table[ENTITY], erased))
    return gone


def _tokens(erased: set[str]) -> pa.Array:
    return pa.array(sorted(erased), pa.string())


def count_values(staged: pa.Table, policy: SourcePolicy, erased: set[str]) -> dict[str, pa.Table]:
    """Value counts of each cell-suppressed column over the rows not erased (merge with
    merge_counts; Plan.with_counts takes the result)."""
    kept = staged.filter(pa.array(~_erased(staged, _tokens(erased))))
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


@dataclass
class Cap:
    """A unit published before at finer levels, from the same inputs, republished at the plan's:
    a person keeps no row the earlier version did not publish (`allowance`: rows of each
    (token, quasi-identifier values) as that version published them, used up as rows pass), so
    the new version is the earlier one generalized and the two together hold nothing the earlier
    did not. The plan's own suppression is not applied: generalizing a release that passed k, l
    and k^m passes them (classes only merge)."""

    levels: dict[str, Level]  # the quasi-identifiers at the earlier version's levels
    unit: str  # what the earlier version's tokens are keyed to
    allowance: dict[tuple, int]
    common: dict[str, pa.Array] = field(default_factory=dict)  # cell suppression: the values it kept

    def allowed(self, table: pa.Table, lowest: dict[str, np.ndarray], ctx: Context) -> np.ndarray:
        """Rows of `table` the earlier version published (allowance used up in row order)."""
        tokens = ctx.pseudonymizer.unit_tokens(table[ENTITY], self.unit).to_pylist()
        names = [n for n in self.levels if n != UNIT]
        values = [self.levels[n].labels.take(pa.array(self.levels[n].to_level[lowest[n]])).to_pylist() for n in names]
        keep = np.zeros(table.num_rows, bool)
        for row, key in enumerate(zip(tokens, *values)):
            left = self.allowance.get(key, 0)
            if left:
                self.allowance[key] = left - 1
                keep[row] = True
        return keep


def finish(
    staged: pa.Table,
    plan: Plan,
    policy: SourcePolicy,
    ctx: Context,
    built: dict[str, Hierarchy],
    erased: set[str],
    kept: dict[tuple[int, int], int] | None = None,
    cap: Cap | None = None,
) -> Finished:
    """Pass 2 on one staged batch: erase, suppress the planned classes, apply every operator.
    `kept`: the rows of each item the plan cuts short kept in the unit's batches before this one
    (updated; a unit's batches go through in turn). `cap`: the unit's earlier version, whose rows
    bound this one's (Cap), instead of the plan's suppression."""
    gone = _erased(staged, _tokens(erased))
    table = staged.filter(pa.array(~gone))
    suppressed = 0
    codes, found_codes = {}, {}
    lowest = [(UNIT, UNIT, table[UNIT])] + [
        (c.published_name, c.name, _lowest(c, table[c.name], built[c.name])) for c in policy.quasi_identifiers
    ]
    for name, column, values in lowest if plan.levels else []:
        level = plan.levels[name]
        found = pc.index_in(values, level.codebook, skip_nulls=False)
        if found.null_count:
            raise ValueError(f"{policy.source}: {column}: a value pass 1 did not count (the staged file changed?)")
        found_codes[name] = found.to_numpy(zero_copy_only=False)
        codes[name] = level.to_level[found_codes[name]]
    if cap is not None:
        drop = ~cap.allowed(table, found_codes, ctx)
        suppressed = int(drop.sum())
        table = table.filter(pa.array(~drop))
        codes = {name: c[~drop] for name, c in codes.items()}
    elif codes and (len(plan.suppressed_keys) or len(plan.taken)):
        drop = np.isin(_class_keys(list(codes.values()), plan.levels), plan.suppressed_keys)
        if len(plan.taken):  # items taken from people whose itemsets too few others share (k^m)
            drop |= _taken(table, codes, plan, policy, {} if kept is None else kept)
        suppressed = int(drop.sum())
        table = table.filter(pa.array(~drop))
        codes = {name: c[~drop] for name, c in codes.items()}
    outputs, cells = {}, {}
    for c in policy.columns:
        if c.output_name is None:
            continue
        name = c.output_name
        if name == policy.entity and (entity_source(policy) is not None or policy.link):
            outputs[name] = ctx.pseudonymizer.unit_tokens(table[ENTITY], ctx.unit)  # pass 1's, keyed to this partition
        elif c.quasi:
            outputs[name] = plan.levels[name].labels.take(pa.array(codes[name], pa.int64()))
        else:
            op = c.operator
            if isinstance(op, Suppress):
                value = op.keep(table[c.name], cap.common[c.name] if cap and c.name in cap.common else plan.common[c.name])
            else:
                value = op.apply(table[c.name], ctx)
            if value is None:  # only `drop` gives nothing, and a dropped column has no output name
                raise ValueError(f"{policy.source}: {c.name}: its operator published nothing")
            outputs[name] = value
            nulled = value.null_count - table[c.name].null_count
            if nulled > 0:
                cells[name] = nulled
    if policy.entity and policy.entity not in outputs:
        outputs[policy.entity] = ctx.pseudonymizer.unit_tokens(table[ENTITY], ctx.unit)
    return Finished(pa.table(outputs).select(policy.output_columns), int(gone.sum()), suppressed, cells)


def as_read(
    staged: pa.Table, policy: SourcePolicy, built: dict[str, Hierarchy], erased: set[str], wanted: set[tuple[str, int]]
) -> tuple[dict[tuple[str, int], pa.Array], pa.Array]:
    """A staged batch as the declared questions read it (transforms/workload.py): the rows not
    erased, each (published column, level) in `wanted` generalized once, and each row's person
    (its entity token; null, a person of its own)."""
    kept = staged.filter(pa.array(~_erased(staged, _tokens(erased))))
    named = {c.published_name: c for c in policy.quasi_identifiers}
    return {(n, lv): built[named[n].name].generalize(kept[named[n].name], lv) for n, lv in sorted(wanted)}, kept[ENTITY]


def up_to(plan: Plan, name: str, level: int) -> dict | None:
    """How a quasi-identifier's published values map to `level` of its hierarchy ({published
    value: value at level}), or None where the plan publishes it coarser than that."""
    chosen = plan.levels.get(name)
    every = plan.every_level.get(name, [])
    at = int((plan.solution.levels if plan.solution else {}).get(name, 0))
    if chosen is None or at > level or not every:
        return None
    want = every[min(level, len(every) - 1)]
    published = chosen.labels.take(pa.array(chosen.to_level, pa.int64())).to_pylist()
    wanted = want.labels.take(pa.array(want.to_level, pa.int64())).to_pylist()
    return dict(zip(published, wanted))


def distinct_values(published: pa.Table) -> pa.Table:
    """Each column's distinct values, padded with nulls to one length: every value the batch
    publishes, once. What the content checks (schema, no identifier) need, at a fraction of the
    rows (most published columns repeat a few values)."""
    uniques = [pc.unique(published[name]) for name in published.column_names]
    length = max((len(u) for u in uniques), default=0)
    return pa.table([pa.concat_arrays([u, pa.nulls(length - len(u), u.type)]) for u in uniques], names=published.column_names)


def classes(published: pa.Table, policy: SourcePolicy) -> pa.Table:
    """The published rows as distinct (QI values, entity id, sensitive values) with row counts:
    all that k, l and the risk figures depend on, a fraction of the rows' size."""
    return count_classes(published, class_columns(policy), policy.entity)


def count_classes(published: pa.Table, keys: list[str], entity: str | None) -> pa.Table:
    """`classes` for class columns named outright (a published file's, as it records them)."""
    if not keys:
        return pa.table({ROWS: pa.array([published.num_rows], pa.int64())})
    columns = {k: token_ids(published[k]) if k == entity else _compact(published[k]) for k in keys}
    return _count(pa.table(columns), keys)


def class_columns(policy: SourcePolicy) -> list[str]:
    keys = [c.published_name for c in policy.quasi_identifiers] + ([policy.entity] if policy.entity else [])
    return list(dict.fromkeys(keys + policy.sensitive_outputs))


def classes_frame(parts: list[pa.Table | Path], policy: SourcePolicy, where: Path | None = None) -> pd.DataFrame:
    """Pieces of classes (tables, or Parquet files of them; a combination may recur across
    pieces) as the frame the k/l checks and the figures run on: one row per distinct
    (QI values, sensitive values) with its ROWS, and the class's distinct customers in PEOPLE on
    one of its rows (0 on the others). Counted out of core in DuckDB (in `where`)."""
    qis = [c.published_name for c in policy.quasi_identifiers]
    sensitive = [s for s in policy.sensitive_outputs if s not in qis]
    return class_table(parts, qis, policy.entity, sensitive, ROWS, PEOPLE, where).to_pandas()
