"""The two passes over a date's exports, as steps a runner may place on other workers (Dask):

    scan     pass 1 over one input file, batch by batch: conform and parse (bad rows to the
             quarantine), the customer token (own column or look-up), erasure flags and person
             names; each batch is staged in the restricted work area and tallied, its tally
             written beside it (the engine reads the tallies from there, out of core)
    write    pass 2 over one source's staged batches: the plan applied, every batch validated
             (schema, no identifier) as it is written and its classes written to the work
             area, then k and l validated once on the partition's classes, counted out of
             core; one staged Parquet file

A step receives paths and small values and loads the key itself, so neither the key nor raw
rows become task parameters (Prefect records those). Memory follows the batch size, never the
size of the export: tallies and classes go to the work area and are counted out of core.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import functools
import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from expectations.suite import Gate, Outcome, prepare
from flows.pipeline.quarantine import Quarantine
from flows.pipeline.record import Inputs, field_metadata, partition_metadata
from flows.pipeline.writer import ClassColumns, PartitionWriter
from flows.runtime import failpoints, paths
from flows.runtime.ahead import ahead
from flows.storage import landing as landing_io
from flows.storage import warehouse as warehouse_io
from flows.storage.keys import load_pseudonymizer
from flows.storage.spill import Spill, read_spill
from transforms import plan as planning
from transforms import shuffle, steps
from transforms.operators import Context, Suppress
from transforms.policy import SourcePolicy
from transforms.pseudonymize import Pseudonymizer, PseudonymKeyError
from transforms.redact import NameMatcher

BATCH_BYTES = 16 << 20  # CSV bytes per pass-1 batch
BATCH_ROWS = 250_000  # staged rows per pass-2 batch (a row group of the output at most)


def release_memory() -> None:
    """Hand freed memory back to the system between the passes: Arrow's allocator and glibc's
    keep freed pages for reuse, and a pass's leftovers would add to the next one's peak."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, looked up once (find_library runs ldconfig), or None elsewhere."""
    libc = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None


@functools.lru_cache(maxsize=4)
def pseudonymizer(key_id: str) -> Pseudonymizer:
    """The run's key, loaded where the task runs (env, file or Secret block) and checked."""
    loaded = load_pseudonymizer()
    if loaded.key_id != key_id:
        raise PseudonymKeyError(
            f"the pseudonym key changed during the run (expected key_id {key_id}, found {loaded.key_id}); nothing is published"
        )
    return loaded


@dataclass(frozen=True)
class Job:
    """What the tasks of one run share: small and picklable, no key, no rows."""

    run_id: str
    restricted: Path
    warehouse: Path
    policy_dir: Path
    key_id: str
    subjects: steps.Subjects
    drop_unknown: bool

    @property
    def work_root(self) -> Path:
        return self.restricted / ".work" / self.run_id

    def clear_stale_work(self) -> None:
        """Remove what runs on this warehouse that died left in the work area (raw rows). Called
        under the warehouse lock, so no other run on this warehouse is alive; runs on other
        warehouses sharing the restricted area are left alone (each work dir names its owner)."""
        owner = str(self.warehouse.resolve())
        for folder in (self.restricted / ".work").glob("*"):
            marker = folder / "warehouse"
            if folder.name != self.run_id and marker.is_file() and marker.read_text() == owner:
                shutil.rmtree(folder, ignore_errors=True)
        paths.restricted_dir(self.restricted, ".work", self.run_id)
        (self.work_root / "warehouse").write_text(owner)

    def work(self, source: str, date: dt.date) -> Path:
        """The restricted directory where a source's staged batches wait for pass 2 (0700)."""
        return paths.restricted_dir(self.restricted, ".work", self.run_id, source, date.isoformat())

    def context(
        self, date: dt.date, policy: SourcePolicy, names: frozenset[str] | set[str] = frozenset(), unit: str = ""
    ) -> Context:
        """What the operators need for a source and date; `unit` keys what a partition publishes."""
        return Context(pseudonymizer(self.key_id), date, self.policy_dir, NameMatcher(names), policy.privacy.reference_date, unit)

    @property
    def gx_project(self) -> Path:
        return self.restricted / paths.GX_PROJECT


@dataclass
class Scanned:
    """Pass 1's result for one input file."""

    file: landing_io.InputFile
    staged: Path
    tally: planning.Tally
    names: set[str] = field(default_factory=set)  # person names seen (the redaction dictionary)
    erased: set[str] = field(default_factory=set)  # tokens of rows naming a subject to erase
    quarantined: int = 0
    dropped: list[str] = field(default_factory=list)  # unknown headers dropped on request


def scan(
    landing: landing_io.Landing,
    policy: SourcePolicy,
    relative: str,
    index: int,
    date: dt.date,
    job: Job,
    link_keys: list[str],
    lookups: list[tuple[pa.Array, pa.Array]],
) -> Scanned:
    """Pass 1 over one file (see the module's docstring); `lookups` are link_lookups' result for
    a source that links, `link_keys` the columns other sources link to (kept when staging)."""
    ctx = job.context(date, policy)
    built = planning.hierarchies(policy, ctx)
    quarantine = Quarantine(job.restricted, job.run_id, policy.source, date, str(index))
    work = job.work(policy.source, date)
    staged_file, tally_file = Spill(work / f"{index}.staged.arrow"), Spill(work / f"{index}.tally.parquet")
    ragged: list[str] = []
    names, erased = set(), set()
    labels, rows = [], 0
    for raw in ahead(
        landing_io.iter_csv(landing, relative, policy, ragged, drop_unknown=job.drop_unknown, block_size=BATCH_BYTES)
    ):
        parsed = steps.parse_table(raw, policy)
        bad = parsed.bad
        if bad.any():
            quarantine.unparseable(relative, rows + 1, raw, parsed)
        rows += raw.num_rows
        good = parsed.table.filter(pa.array(~bad))
        tokens = (
            steps.linked_tokens(good, policy, lookups) if policy.link else steps.entity_tokens(good, policy, ctx.pseudonymizer)
        )
        subject = steps.subject_rows(good, policy, job.subjects)
        if tokens is not None and subject.any():
            erased |= set(pc.drop_null(tokens.filter(pa.array(subject))).to_pylist())
        names.update(steps.person_names(good, policy))
        staged = planning.stage(good, tokens, subject, policy, link_keys)
        staged_file.write(staged)
        piece = planning.tally(staged, policy, ctx, built)
        tally_file.write(piece.parts[0])
        labels.append(planning.Tally([], piece.representatives))
        failpoints.hit("reading")  # a batch staged, the file not read to its end
    quarantine.ragged(relative, ragged, [c.name for c in policy.input_columns])
    quarantine.close()
    scanned = Scanned(
        landing_io.InputFile(relative, landing.sha256(relative), landing.size(relative), rows + len(ragged)),
        staged_file.close(),
        planning.Tally([tally_file.close()], planning.concat(labels).representatives),
        names,
        erased,
        quarantine.count,
        landing_io.dropped_headers(landing, relative, policy, drop_unknown=job.drop_unknown),
    )
    release_memory()
    return scanned


def link_lookups(
    landing: landing_io.Landing,
    policies: dict[str, SourcePolicy],
    policy: SourcePolicy,
    date: dt.date,
    job: Job,
    same_day: dict[str, list[Path]],
) -> tuple[list, set[str], set[str]]:
    """For each link of the policy, (normalized keys, entity tokens) of the linked source's rows
    this source refers to: from the same day's staged batches and the look-back window's raw
    files. Also the person names and erased subjects' tokens found in the look-back window.
    Only the keys this source uses are kept, so a look-up is as small as the source."""
    ctx = job.context(date, policy)
    wanted_keys = _keys_used(landing, policy, date)
    lookups, names, erased = [], set(), set()
    for link in policy.link:
        target = policies[link.source]
        wanted = wanted_keys[link.column]
        keys, tokens = [], []
        for path in same_day.get(link.source, []):
            for batch in read_spill(path):
                found = pc.is_in(steps.link_keys(batch[link.key]), wanted)
                keys.append(steps.link_keys(batch[link.key].filter(found)))
                tokens.append(batch[planning.ENTITY].filter(found))
        entity = steps.entity_source(target)
        if entity is None:
            raise ValueError(f"{policy.source} links to {target.source}, which pseudonymizes no entity of its own")
        columns = sorted(
            {
                link.key,
                entity.name,
                *target.subject_keys.values(),
                *(c.name for c in target.columns if c.kind == "person_name"),
            }
        )
        for back in range(1, link.lookback_days + 1):
            day = date - dt.timedelta(days=back)
            for relative in landing_io.files_for(landing, target, day):
                for table in landing_io.iter_csv(landing, relative, target, [], columns, block_size=BATCH_BYTES):
                    names.update(steps.person_names(table, target))
                    hit = steps.subject_rows(table, target, job.subjects)
                    found = pc.or_(pc.fill_null(pc.is_in(steps.link_keys(table[link.key]), wanted), False), pa.array(hit))
                    table = table.filter(found)
                    day_tokens = steps.column_tokens(table, entity, ctx.pseudonymizer)
                    erased |= set(
                        pc.drop_null(day_tokens.filter(pa.array(hit[found.to_numpy(zero_copy_only=False)]))).to_pylist()
                    )
                    keys.append(steps.link_keys(table[link.key]))
                    tokens.append(day_tokens)
        lookups.append(
            (
                pa.concat_arrays(keys) if keys else pa.array([], pa.string()),
                pa.concat_arrays(tokens) if tokens else pa.array([], pa.string()),
            )
        )
    return lookups, names, erased


def _keys_used(landing: landing_io.Landing, policy: SourcePolicy, date: dt.date) -> dict[str, pa.Array]:
    """The distinct normalized link keys in a source's files for a date (a narrow read)."""
    columns = sorted({link.column for link in policy.link})
    found: dict[str, list[pa.Array]] = {c: [] for c in columns}
    for relative in landing_io.files_for(landing, policy, date):
        for table in landing_io.iter_csv(landing, relative, policy, [], columns, block_size=BATCH_BYTES):
            for column in columns:
                found[column].append(pc.unique(steps.link_keys(table[column])))
    return {c: pc.unique(pa.concat_arrays(parts)) if parts else pa.array([], pa.string()) for c, parts in found.items()}


@dataclass
class Written:
    """Pass 2's result for one source and date: the staged file and what it holds."""

    path: Path
    counts: dict  # read, quarantined, erased, suppressed, published: exact (the ledger's, not the file's)
    metadata: dict
    outcome: Outcome
    cells: dict = field(default_factory=dict)  # cells blanked per column
    inputs: list[dict] = field(default_factory=list)  # path, sha256, bytes, rows


def gate(policy: SourcePolicy, date: dt.date, job: Job, staged: list[Path], plan: planning.Plan) -> Gate:
    """The source's publication gate (it depends on the published schema, which the plan fixes),
    with its GX suites created before any worker validates against them."""
    with pa.ipc.open_file(staged[0]) as source:
        empty = source.schema.empty_table()
    ctx = job.context(date, policy)
    schema = planning.finish(empty, plan, policy, ctx, planning.hierarchies(policy, ctx), set()).table.schema
    found = Gate.of(policy, schema)
    prepare(found.content(), job.gx_project)
    if found.quasi_identifiers:
        prepare(found.classes(planning.ROWS, planning.PEOPLE), job.gx_project)
    return found


def write(
    policy: SourcePolicy,
    date: dt.date,
    job: Job,
    staged: list[Path],
    plan: planning.Plan,
    erased: set[str],
    names: set[str],
    inputs: Inputs,
    counts: dict,
    run: dict,
    gate: Gate,
) -> Written:
    """Pass 2 for one source: every staged batch through the plan into one staged partition.
    `counts` holds read and quarantined from pass 1; `run` the ids recorded with the file."""
    ctx = job.context(date, policy, names, unit=run["unit"])
    built = planning.hierarchies(policy, ctx)
    if any(isinstance(c.operator, Suppress) for c in policy.columns):
        plan = plan.with_counts(
            planning.merge_counts([planning.count_values(b, policy, erased) for b in _staged_batches(staged)]), policy
        )
    run_name = f"{job.run_id} {date}"
    work = job.work(policy.source, date)
    writer = PartitionWriter(gate, ClassColumns.of_policy(policy), job.gx_project, run_name, work)
    partition = _Pass2(policy, plan, ctx, built, erased, counts)
    levels = plan.solution.levels if plan.solution else {}
    staged_rows = counts["read"] - counts["quarantined"]
    path = writer.stage(
        job.warehouse,
        job.run_id,
        policy.source,
        date,
        ahead(partition.batches(staged)),
        field_metadata(policy, levels),
        lambda classes, outcome: partition.metadata(classes, outcome, inputs, date, run),
        arrange=lambda checked: ahead(shuffled(checked, staged_rows, work / "shuffle")),
    )
    release_memory()
    if partition.recorded is None or partition.outcome is None:  # stage() calls metadata() after the last batch
        raise RuntimeError(f"{policy.source} {date}: staged without its metadata")
    return Written(
        path, partition.counts, partition.recorded, partition.outcome, partition.cells, [dict(f) for f in inputs.files]
    )


class _Pass2:
    """One partition's pass 2, batch by batch: each staged batch through the plan, counted as it
    goes (the PartitionWriter checks it); after the last batch, the file's metadata from the
    writer's classes and outcome."""

    def __init__(
        self,
        policy: SourcePolicy,
        plan: planning.Plan,
        ctx: Context,
        built: dict,
        erased: set[str],
        counts: dict,
    ):
        self.policy, self.plan, self.ctx, self.built, self.erased = policy, plan, ctx, built, erased
        self.counts = {**counts, "erased": 0, "suppressed": 0, "published": 0}
        self.cells: dict[str, int] = {}  # cells blanked per column
        self.outcome: Outcome | None = None
        self.recorded: dict | None = None  # the metadata as the file holds it

    def batches(self, staged: list[Path]) -> Iterator[pa.Table]:
        for batch in ahead(_staged_batches(staged)):
            done = planning.finish(batch, self.plan, self.policy, self.ctx, self.built, self.erased)
            for key, value in (("erased", done.erased), ("suppressed", done.suppressed), ("published", done.table.num_rows)):
                self.counts[key] += value
            for name, n in done.cells_suppressed.items():
                self.cells[name] = self.cells.get(name, 0) + n
            yield done.table

    def metadata(self, classes: pd.DataFrame, outcome: Outcome, inputs: Inputs, date: dt.date, run: dict) -> dict:
        self.outcome = outcome
        found = partition_metadata(self.policy, inputs, self.plan, classes, outcome, self.counts["published"], date, run)
        self.recorded = json.loads(warehouse_io.metadata_json(found))
        return found


def shuffled(tables: Iterable[pa.Table], rows: int, work: Path) -> Iterator[pa.Table]:
    """The rows of `tables` (at most `rows` of them) in the published order (transforms/shuffle.py):
    in memory when they fit one batch, else through one spill file per bucket of BATCH_ROWS or
    so. One empty table if there are none, so that an empty partition has its schema."""
    buckets = max(1, -(-rows // BATCH_ROWS))
    spills = [Spill(work / f"{i}.arrow") for i in range(buckets)]
    held, schema = [], None
    for table in tables:
        schema = table.schema
        if buckets == 1:
            held.append(table)
            continue
        hashes = shuffle.keys(table)
        which = shuffle.buckets_of(hashes, buckets)
        with_order = table.append_column(shuffle.ORDER, pa.array(hashes))
        for i in np.unique(which):
            spills[i].write(with_order.filter(pa.array(which == i)))
    if schema is None:
        raise ValueError("shuffled: no table at all (an empty partition is one empty table)")
    if buckets == 1:
        yield shuffle.in_order(pa.concat_tables(held) if held else schema.empty_table())
        return
    yielded = False
    for spill in spills:
        if spill.opened:
            bucket = pa.Table.from_batches(list(read_spill(spill.close())))
            yield shuffle.in_order(bucket.drop_columns([shuffle.ORDER]), bucket[shuffle.ORDER].to_numpy())
            spill.path.unlink()
            yielded = True
    if not yielded:
        yield schema.empty_table()


def _staged_batches(staged: list[Path]):
    """The staged rows in file order, as tables of BATCH_ROWS or a little more (pass 1's batches
    joined); one empty table if there are none (so that an empty partition has its schema)."""
    pending, rows, schema, yielded = [], 0, None, False
    for path in staged:
        for batch in read_spill(path):
            schema = batch.schema
            pending.append(batch)
            rows += batch.num_rows
            if rows >= BATCH_ROWS:
                yield pa.Table.from_batches(pending).combine_chunks()
                pending, rows, yielded = [], 0, True
    if rows or not yielded:
        yield pa.Table.from_batches(pending, schema).combine_chunks()
