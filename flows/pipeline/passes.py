"""The two passes over a release's exports, as steps a runner may place on other workers (Dask):

    scan     pass 1 over one input file, batch by batch: conform and parse (bad rows to the
             quarantine), each row's unit from its own date (transforms/units.py), the customer
             token (own column or look-up), erasure flags and person names; each batch's rows
             are staged in the restricted work area by unit and tallied (the unit a key of the
             tally), the tally written beside them (the engine reads the tallies from there,
             out of core)
    write    pass 2 over one source's units: the plan applied to every unit's staged rows, all
             checked by one PartitionWriter as they pass (schema and no identifier every so many
             rows, then k and l once on the classes of every unit, counted out of core, the unit
             a column); then one staged Parquet file per unit. A unit published before from the
             same inputs at finer levels keeps only the rows that version published
             (earlier_versions): the new version is the old one generalized

A step receives paths and small values and loads the key itself, so neither the key nor raw
rows become task parameters (Prefect records those). Memory follows the batch size, never the
size of the export: tallies and classes go to the work area and are counted out of core.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from expectations.suite import Gate, Outcome, prepare
from flows.pipeline.quarantine import Quarantine
from flows.pipeline.record import Inputs, field_metadata, partition_metadata
from flows.pipeline.writer import ClassColumns, PartitionWriter
from flows.runtime import failpoints, paths
from flows.runtime.ahead import ahead
from flows.runtime.memory import release_memory
from flows.storage import landing as landing_io
from flows.storage import ledger
from flows.storage import warehouse as warehouse_io
from flows.storage.entries import Rows
from flows.storage.footer import PartitionRecord, read_footer
from flows.storage.keys import load_pseudonymizer
from flows.storage.spill import Spill, read_spill
from transforms import plan as planning
from transforms import shuffle, steps, workload
from transforms.operators import Context, Suppress
from transforms.parse import parse
from transforms.policy import SourcePolicy
from transforms.pseudonymize import Pseudonymizer, PseudonymKeyError, token_ids
from transforms.redact import NameMatcher
from transforms.units import UNIT
from transforms.units import labels as unit_labels
from transforms.units import periods as unit_periods

BATCH_BYTES = 16 << 20  # CSV bytes per pass-1 batch
BATCH_ROWS = 250_000  # staged rows per pass-2 batch (a row group of the output at most)


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
    max_unit_rows: int  # rows one unit may hold (the k^m count's memory); more is refused in pass 1

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

    def work(self, source: str) -> Path:
        """The restricted directory where a source's staged rows wait for pass 2 (0700), by unit."""
        return paths.restricted_dir(self.restricted, ".work", self.run_id, source)

    def context(self, policy: SourcePolicy, names: frozenset[str] | set[str] = frozenset(), unit: str = "") -> Context:
        """What the operators need for a source; `unit` keys what a partition publishes."""
        return Context(pseudonymizer(self.key_id), self.policy_dir, NameMatcher(names), policy.privacy.reference_date, unit)

    @property
    def gx_project(self) -> Path:
        return self.restricted / paths.GX_PROJECT


@dataclass
class Scanned:
    """Pass 1's result for one input file. Its rows are accounted for exactly: every data row is
    quarantined, placed in a unit (`placed`), or belongs to a unit this run does not rebuild
    (`elsewhere`: its published partition stands)."""

    file: landing_io.InputFile
    export_date: dt.date  # the landing folder that delivered it (backups, quarantine and purge go by it)
    staged: dict[str, list[Path]]  # unit label -> the file's staged rows in that unit
    placed: dict[str, int]  # unit label -> rows
    tally: planning.Tally
    names: set[str] = field(default_factory=set)  # person names seen (the redaction dictionary; a step's, on its first file)
    erased: set[str] = field(default_factory=set)  # tokens of rows naming a subject to erase (likewise)
    quarantined: int = 0
    elsewhere: int = 0
    dropped: list[str] = field(default_factory=list)  # unknown headers dropped on request
    # unit label -> a digest of its rows' customer tokens (a sum of their ids): a source that finds
    # its customers through others' exports (after-sales) makes other rows when those change
    linked: dict[str, int] = field(default_factory=dict)


class UnitSpills:
    """A file's staged rows, one spill per unit it has rows in. A closing dump holds every day of
    history: at most OPEN writers stay open, and a unit whose writer was closed continues in a
    file of its own (a unit's rows may be in several parts)."""

    OPEN = 256

    def __init__(self, work: Path, index: int):
        self.work, self.index = work, index
        self.open: dict[str, Spill] = {}
        self.parts: dict[str, list[Path]] = {}

    def write(self, label: str, rows: pa.Table) -> None:
        spill = self.open.pop(label, None)
        if spill is None:
            if len(self.open) >= self.OPEN:
                oldest = next(iter(self.open))
                self.open.pop(oldest).close()
            part = len(self.parts.setdefault(label, []))
            spill = Spill(self.work / label / f"{self.index}-{part}.staged.arrow")
            self.parts[label].append(spill.path)
        self.open[label] = spill  # the most recently written last
        spill.write(rows)

    def close(self) -> dict[str, list[Path]]:
        for spill in self.open.values():
            spill.close()
        self.open = {}
        return self.parts


def by_unit(table: pa.Table, labels: pa.Array) -> Iterator[tuple[str, pa.Table]]:
    """The rows of each unit in `table` (labels per row), one sort and a slice per unit."""
    encoded = pc.dictionary_encode(labels)
    order = pc.sort_indices(encoded.indices)
    codes = encoded.indices.take(order).to_numpy(zero_copy_only=False)
    ordered = table.take(order)
    bounds = np.flatnonzero(np.diff(codes)) + 1
    for start, end in zip(np.r_[0, bounds], np.r_[bounds, len(codes)]):
        if end > start:
            yield encoded.dictionary[int(codes[start])].as_py(), ordered.slice(int(start), int(end - start))


class UnitTooLarge(steps.ExportError):
    """A unit holds more rows than the run may count in its memory (Job.max_unit_rows); found in
    pass 1, before the privacy engine starts, and nothing is published."""


def census(landing: landing_io.Landing, policy: SourcePolicy, relative: str) -> dict[str, int]:
    """The units a file holds, with their rows, from a narrow read of its date column (what a run
    needs to know which units a new file touches); a snapshot's file is one unit, its date."""
    if policy.unit.column is None:
        return {landing_io.export_date_of(policy, relative).isoformat(): landing_io.count_rows(landing, relative, policy)}
    dated = policy.column(policy.unit.column)
    found: dict[str, int] = {}
    for table in landing_io.iter_csv(landing, relative, policy, [], [dated.name], block_size=BATCH_BYTES):
        typed, _ = parse(table[dated.name], dated.type, dated.formats)
        counts = pc.value_counts(pc.drop_null(unit_periods(typed, policy.unit.grain)))
        for label, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
            found[label] = found.get(label, 0) + n
    return found


def scan(
    landing: landing_io.Landing,
    policy: SourcePolicy,
    relative: str,
    index: int,
    job: Job,
    link_keys: list[str],
    lookups: list[tuple[pa.Array, pa.Array]],
    wanted: frozenset[str] | None,
) -> Scanned:
    """Pass 1 over one file (see the module's docstring): each row placed in the unit of its own
    date (transforms/units.py), only the units in `wanted` (None: all) kept; `lookups` are
    link_lookups' result for a source that links, `link_keys` the columns other sources link to
    (kept when staging)."""
    ctx = job.context(policy)
    built = planning.hierarchies(policy, ctx)
    export_date = landing_io.export_date_of(policy, relative)
    quarantine = Quarantine(job.restricted, job.run_id, policy.source, export_date, str(index))
    work = job.work(policy.source)
    spills, tally_file = UnitSpills(work, index), Spill(work / f"{index}.tally.parquet")
    ragged: list[str] = []
    names, erased = set(), set()
    placed: dict[str, int] = {}
    linked: dict[str, int] = {}
    labels, rows, elsewhere = [], 0, 0
    for raw in ahead(
        landing_io.iter_csv(landing, relative, policy, ragged, drop_unknown=job.drop_unknown, block_size=BATCH_BYTES)
    ):
        parsed = steps.parse_table(raw, policy)
        units = unit_labels(parsed.table, policy.unit, export_date)
        if units.null_count and policy.unit.column:  # a row with no date of its own belongs to no unit
            undated = units.is_null().to_numpy(zero_copy_only=False)
            parsed.invalid[policy.unit.column] = parsed.invalid.get(policy.unit.column, np.zeros(len(units), bool)) | undated
        bad = parsed.bad
        if bad.any():
            quarantine.unparseable(relative, rows + 1, raw, parsed)
        rows += raw.num_rows
        good, units = parsed.table.filter(pa.array(~bad)), units.filter(pa.array(~bad))
        if wanted is not None:
            kept = pc.is_in(units, pa.array(sorted(wanted), pa.string()))
            elsewhere += len(units) - pc.sum(kept).as_py() if len(units) else 0
            good, units = good.filter(kept), units.filter(kept)
        tokens = (
            steps.linked_tokens(good, policy, lookups) if policy.link else steps.entity_tokens(good, policy, ctx.pseudonymizer)
        )
        subject = steps.subject_rows(good, policy, job.subjects)
        if tokens is not None and subject.any():
            erased |= set(pc.drop_null(tokens.filter(pa.array(subject))).to_pylist())
        names.update(steps.person_names(good, policy))
        staged = planning.stage(good, tokens, subject, policy, units, link_keys)
        for label, part in by_unit(staged, units):
            spills.write(label, part)
            placed[label] = placed.get(label, 0) + part.num_rows
            ids = pc.fill_null(token_ids(part[planning.ENTITY]), 0).to_numpy(zero_copy_only=False)
            linked[label] = (linked.get(label, 0) + int(ids.astype(np.uint64).sum())) % (1 << 63)
            if placed[label] > job.max_unit_rows and policy.counts_itemsets:
                raise UnitTooLarge(too_large(policy, label, placed[label], job.max_unit_rows, relative))
        piece = planning.tally(staged, policy, ctx, built)
        tally_file.write(piece.parts[0])
        labels.append(planning.Tally([], piece.representatives))
        failpoints.hit("reading")  # a batch staged, the file not read to its end
    quarantine.ragged(relative, ragged, [c.name for c in policy.input_columns])
    quarantine.close()
    scanned = Scanned(
        landing_io.InputFile(relative, landing.sha256(relative), landing.size(relative), rows + len(ragged)),
        export_date,
        spills.close(),
        placed,
        planning.Tally([tally_file.close()], planning.concat(labels).representatives),
        names,
        erased,
        quarantine.count,
        elsewhere,
        landing_io.dropped_headers(landing, relative, policy, drop_unknown=job.drop_unknown),
        linked,
    )
    release_memory()
    return scanned


def too_large(policy: SourcePolicy, label: str, rows: int, limit: int, where: str) -> str:
    """The refusal of a unit too large to count, in one line: which, how large, what to change."""
    return (
        f"{policy.source} {label}: more than {limit:,} rows in one unit ({policy.unit.record}; {rows:,} read so far, "
        f"in {where}): more than the k^m count holds in its memory. Nothing is published. Raise the limit "
        f"(--max-unit-rows) on a machine with more memory, or choose a unit of a shorter period in the policy "
        f"(a decision for the privacy owner: a shorter unit splits a person's record)"
    )


def scan_many(
    landing: landing_io.Landing,
    policy: SourcePolicy,
    files: list[tuple[int, str]],
    job: Job,
    link_keys: list[str],
    lookups: list[tuple[pa.Array, pa.Array]],
    wanted: frozenset[str] | None,
) -> list[Scanned]:
    """scan() over several small files in one step: a history of daily files is thousands of
    files, and a step per file would cost more to schedule than to read. The person names and
    erased tokens of the step's files are gathered on its first (each file's repeat the same
    customers, and a history's would be millions of strings held until pass 1 ends)."""
    found = []
    for index, relative in files:
        found.append(scan(landing, policy, relative, index, job, link_keys, lookups, wanted))
        if len(found) > 1:
            found[0].names |= found[-1].names
            found[0].erased |= found[-1].erased
            found[-1].names, found[-1].erased = set(), set()
    return found


def link_lookups(
    landing: landing_io.Landing,
    policies: dict[str, SourcePolicy],
    policy: SourcePolicy,
    files: list[str],
    job: Job,
    same_run: dict[str, list[Path]],
    read: set[str],
) -> tuple[list, set[str], set[str]]:
    """For each link of the policy, (normalized keys, entity tokens) of the linked source's rows
    this source's `files` refer to: from this run's staged rows of that source (`same_run`) and
    the raw files the run did not read (`read`: the files it did) of its look-back window (the
    export dates of `files`, and `lookback_days` before), or of a snapshot source its latest snapshot.
    Also the person names and erased subjects' tokens found in the look-back window. Only the
    keys these files use are kept, so a look-up is as small as they are."""
    ctx = job.context(policy)
    wanted_keys = _keys_used(landing, policy, files)
    days = [landing_io.export_date_of(policy, f) for f in files]
    lookups, names, erased = [], set(), set()
    for link in policy.link:
        target = policies[link.source]
        wanted = wanted_keys[link.column]
        keys, tokens = [], []
        for path in same_run.get(link.source, []):
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
        delivered = landing_io.source_files(landing, target)
        if target.unit.snapshot:  # the latest snapshot: the one a release holds
            back = [f for f, day in delivered.items() if day == max(delivered.values())]
        else:
            window = (min(days) - dt.timedelta(days=link.lookback_days), max(days)) if days else None
            back = [f for f, day in delivered.items() if window and window[0] <= day <= window[1]]
        for relative in (f for f in back if f not in read):
            for table in landing_io.iter_csv(landing, relative, target, [], columns, block_size=BATCH_BYTES):
                names.update(steps.person_names(table, target))
                hit = steps.subject_rows(table, target, job.subjects)
                found = pc.or_(pc.fill_null(pc.is_in(steps.link_keys(table[link.key]), wanted), False), pa.array(hit))
                table = table.filter(found)
                day_tokens = steps.column_tokens(table, entity, ctx.pseudonymizer)
                erased |= set(pc.drop_null(day_tokens.filter(pa.array(hit[found.to_numpy(zero_copy_only=False)]))).to_pylist())
                keys.append(steps.link_keys(table[link.key]))
                tokens.append(day_tokens)
        lookups.append(
            (
                pa.concat_arrays(keys) if keys else pa.array([], pa.string()),
                pa.concat_arrays(tokens) if tokens else pa.array([], pa.string()),
            )
        )
    return lookups, names, erased


def _keys_used(landing: landing_io.Landing, policy: SourcePolicy, files: list[str]) -> dict[str, pa.Array]:
    """The distinct normalized link keys in a source's files (a narrow read)."""
    columns = sorted({link.column for link in policy.link})
    found: dict[str, list[pa.Array]] = {c: [] for c in columns}
    for relative in files:
        for table in landing_io.iter_csv(landing, relative, policy, [], columns, block_size=BATCH_BYTES):
            for column in columns:
                found[column].append(pc.unique(steps.link_keys(table[column])))
    return {c: pc.unique(pa.concat_arrays(parts)) if parts else pa.array([], pa.string()) for c, parts in found.items()}


@dataclass
class Partition:
    """One unit's staged file and what it holds."""

    path: Path
    counts: Rows  # exact (the ledger's, not the file's)
    metadata: PartitionRecord
    cells: dict = field(default_factory=dict)  # cells blanked per column
    inputs: list[dict] = field(default_factory=list)  # path, sha256, bytes, rows placed in this unit


@dataclass
class Written:
    """Pass 2's result for one dataset: every unit's staged file, and the checks they passed together."""

    partitions: dict[str, Partition]
    outcome: Outcome
    classes: str = ""  # where the classes were counted (for errors)
    questions: dict[str, workload.Score] = field(default_factory=dict)  # the policy's declared questions, scored


def gate(policy: SourcePolicy, job: Job, staged: Path, plan: planning.Plan) -> Gate:
    """The source's publication gate (it depends on the published schema, which the plan fixes),
    with its GX suites created before any worker validates against them."""
    with pa.ipc.open_file(staged) as source:
        empty = source.schema.empty_table()
    ctx = job.context(policy)
    schema = planning.finish(empty, plan, policy, ctx, planning.hierarchies(policy, ctx), set()).table.schema
    found = Gate.of(policy, schema)
    prepare(found.content(), job.gx_project)
    if found.quasi_identifiers:
        qis = ClassColumns.of_policy(policy, units=True).qis
        prepare(dataclasses.replace(found.classes(planning.ROWS, planning.PEOPLE), quasi_identifiers=qis), job.gx_project)
    return found


@dataclass(frozen=True)
class Unit:
    """What pass 2 needs of one unit besides the plan."""

    staged: tuple[Path, ...]
    inputs: Inputs
    ids: dict  # run_id, key_id, flow_run_id, fingerprint, unit (what its tokens are keyed to), ledger head
    counts: Rows  # read: rows placed in the unit


def write(
    policy: SourcePolicy,
    job: Job,
    units: dict[str, Unit],
    plan: planning.Plan,
    erased: set[str],
    names: set[str],
    gate: Gate,
) -> Written:
    """Pass 2 for one source: every unit's staged rows through the plan, checked by one
    PartitionWriter as they pass (content checks every CHECK_ROWS rows, k and l once with the unit
    a column of every class), kept in the run's staging area; then each unit's file, its rows in
    the published order and its metadata in the footer."""
    built = planning.hierarchies(policy, job.context(policy))
    if any(isinstance(c.operator, Suppress) for c in policy.columns):
        counted = [planning.count_values(b, policy, erased) for u in units.values() for b in _staged_batches(list(u.staged))]
        plan = plan.with_counts(planning.merge_counts(counted), policy)
    work = job.work(policy.source) / "pass2"
    writer = PartitionWriter(gate, ClassColumns.of_policy(policy, units=True), job.gx_project, job.run_id, work)
    held = warehouse_io.staging(job.warehouse, job.run_id) / ".rows" / policy.source
    passes: dict[str, _Pass2] = {}
    # A unit's tokens are keyed to its inputs (unit.ids) and to what the plan decided, so that a
    # version published at other levels joins nothing of the one it replaces.
    keyed = {label: unit.ids | {"unit": f"{unit.ids['unit']}/{plan.version()}"} for label, unit in units.items()}
    caps = earlier_versions(job, policy, units, plan)
    answers = workload.Answers(policy.questions)
    for label, unit in sorted(units.items()):
        ctx = job.context(policy, names, unit=keyed[label]["unit"])
        passes[label] = _Pass2(policy, plan, ctx, built, erased, unit.counts, caps.get(label), answers, label)
        rows = Spill(held / f"{label}.arrow")
        for table in writer.check(ahead(passes[label].batches(list(unit.staged))), label):
            rows.write(table)
        rows.close()
        answers.close_unit(label)
    frame, outcome = writer.close()
    levels = {k: v for k, v in (plan.solution.levels if plan.solution else {}).items() if k != UNIT}
    fields = field_metadata(policy, levels)
    written = {}
    of_unit = _rows_by_unit(frame)
    for label, unit in sorted(units.items()):
        partition = passes[label]
        classes = frame.iloc[of_unit.get(label, [])].drop(columns=[UNIT]) if UNIT in frame.columns else frame
        rows_file = held / f"{label}.arrow"
        path = warehouse_io.stage(
            job.warehouse,
            job.run_id,
            policy.source,
            label,
            ahead(shuffled(held_tables(rows_file), partition.counts.published, work / "shuffle")),
            fields,
            functools.partial(partition.metadata, classes, outcome, unit.inputs, label, keyed[label]),
        )
        rows_file.unlink()
        if partition.recorded is None:  # stage() calls metadata() after the last batch
            raise RuntimeError(f"{policy.source} {label}: staged without its metadata")
        inputs = [dict(f) for f in unit.inputs.files]
        written[label] = Partition(path, partition.counts, partition.recorded, partition.cells, inputs)
    release_memory()
    return Written(written, outcome, questions=answers.scores())


def earlier_versions(job: Job, policy: SourcePolicy, units: dict[str, Unit], plan: planning.Plan) -> dict[str, planning.Cap]:
    """Units published before from the same inputs at finer levels, now republished at the plan's
    (a later date needed them): each bounded by what its earlier version published (planning.Cap),
    so that an intruder who keeps both versions and pairs them by content learns nothing the earlier
    one did not tell. A unit whose inputs changed is solved afresh."""
    levels = {k: int(v) for k, v in (plan.solution.levels if plan.solution else {}).items() if k != UNIT}
    published = ledger.partition_entries(job.restricted)
    caps = {}
    for label, unit in units.items():
        entry = published.get((policy.source, label))
        if entry is None or entry.data.fingerprint != unit.ids["fingerprint"]:
            continue
        before = {k: int(v) for k, v in entry.data.levels.items()}
        if before == levels or any(before.get(n, 0) > lv for n, lv in levels.items()):
            continue  # the same version, or not a generalization of it
        at, path = plan.at(before), job.warehouse / entry.data.output.path
        if at is None or not path.is_file():
            continue
        old = pq.read_table(path)
        keys = [policy.entity or "", *(n for n in at if n != UNIT)]
        if not set(keys) <= set(old.column_names):
            continue
        counted = old.group_by(keys, use_threads=False).aggregate([([], "count_all")]).to_pylist()
        common = {
            c.name: pc.unique(pc.drop_null(old[c.output_name]))
            for c in policy.columns
            if isinstance(c.operator, Suppress) and c.output_name in old.column_names
        }
        allowance = {tuple(r[k] for k in keys): r["count_all"] for r in counted}
        caps[label] = planning.Cap(at, PartitionRecord.model_validate(read_footer(path)).unit, allowance, common)
    return caps


def _rows_by_unit(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The positions of each unit's rows in a frame of classes with a unit column (one sort, not a
    comparison of every row per unit: a history's classes are millions of rows in hundreds of units)."""
    if UNIT not in frame.columns:
        return {}
    codes, labels = pd.factorize(frame[UNIT])
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(labels) + 1))
    return {str(label): order[bounds[i] : bounds[i + 1]] for i, label in enumerate(labels)}


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
        counts: Rows,
        cap: planning.Cap | None = None,
        answers: workload.Answers | None = None,
        label: str = "",
    ):
        self.policy, self.plan, self.ctx, self.built, self.erased, self.cap = policy, plan, ctx, built, erased, cap
        self.answers, self.label = answers, label
        # (published column, level) -> {published value: value at that level}, None where published coarser
        self.maps = {(n, lv): planning.up_to(plan, n, lv) for q in policy.questions for n, lv in q.by.items()}
        self.counts = Rows(read=counts.read, erased=0, suppressed=0, published=0)
        self.cells: dict[str, int] = {}  # cells blanked per column
        self.outcome: Outcome | None = None
        self.recorded: PartitionRecord | None = None  # the footer, as the file holds it
        self.kept: dict[tuple[int, int], int] = {}  # rows kept so far of the items the plan cuts short

    def batches(self, staged: list[Path]) -> Iterator[pa.Table]:
        for batch in ahead(_staged_batches(staged)):
            done = planning.finish(batch, self.plan, self.policy, self.ctx, self.built, self.erased, self.kept, self.cap)
            if self.answers is not None:
                self.score(batch, done.table)
            self.counts.erased = (self.counts.erased or 0) + done.erased
            self.counts.suppressed = (self.counts.suppressed or 0) + done.suppressed
            self.counts.published += done.table.num_rows
            for name, n in done.cells_suppressed.items():
                self.cells[name] = self.cells.get(name, 0) + n
            yield done.table
        self.kept.clear()  # the unit's rows are through

    def score(self, staged: pa.Table, published: pa.Table) -> None:
        """One batch into the declared questions' tallies: as read, and as published (mapped up
        the hierarchy from the plan's levels; None where a column is published coarser). Each
        (column, level) is generalized and mapped once per batch, whatever the questions sharing it."""
        assert self.answers is not None
        wanted = {(n, lv) for q in self.policy.questions for n, lv in q.by.items()}
        read, people = planning.as_read(staged, self.policy, self.built, self.erased, wanted)
        mapped = {
            (n, lv): pd.Series(published[n].to_pandas(), dtype=object).map(up).to_numpy()
            for (n, lv), up in self.maps.items()
            if up is not None
        }
        entity = self.policy.entity
        whose = published[entity] if entity and entity in published.column_names else None
        levels = self.plan.solution.levels if self.plan.solution else {}
        for q in self.policy.questions:
            too_coarse = [n for n, lv in q.by.items() if self.maps[(n, lv)] is None]
            if too_coarse:
                self.answers.coarser.setdefault(
                    q.name,
                    ", ".join(f"{n} is published at level {levels.get(n)}; the question needs {q.by[n]}" for n in too_coarse),
                )
            ours = None if too_coarse else {n: mapped[(n, lv)] for n, lv in q.by.items()}
            self.answers.add(q, self.label, {n: read[(n, lv)] for n, lv in q.by.items()}, people, ours, whose)

    def metadata(self, classes: pd.DataFrame, outcome: Outcome, inputs: Inputs, period: str, run: dict) -> PartitionRecord:
        self.outcome = outcome
        published = self.counts.published
        self.recorded = partition_metadata(self.policy, inputs, self.plan, classes, outcome, published, period, run)
        return self.recorded


def held_tables(path: Path) -> Iterator[pa.Table]:
    """A unit's rows as pass 2 held them; one empty table when every row was suppressed or erased
    (the file then holds its schema and no batch), so that the unit is published empty."""
    with pa.ipc.open_file(path) as source:
        if not source.num_record_batches:
            yield source.schema.empty_table()
        for i in range(source.num_record_batches):
            yield pa.table(source.get_batch(i))


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
