"""The release as the intruder of ../shared/privacy-model.md holds it: `assess` (`tuomin risk`)
measures a release as published, `gate` refuses to publish one that fails. `assess` reads the
warehouse's files, their metadata and the analyst-visible ledger, nothing else (no raw data, no
key). The person-level measurements are in transforms/risk.py; this module reads the release and
adds what needs no rows: side channels in the metadata and the file layout.

A release passes when nobody is singled out, every person-level record is k^m-anonymous within
its relational class (so no re-identification probability exceeds 1/k), no token is shared across
datasets, dates or versions, no staff identifier or free text is published, no sensitive value is
certain in a class, no snapshot pair linked by a token shows a change, no two snapshots of
different dates chain without one (a tuple unique on both; a class in which fewer than k people
changed), no file's row order follows time, and no count below k can be read anywhere; and, given
an earlier copy (`against`), no version of a partition shares a token with the one it replaced
and no republication differs from the earlier copy by the records of fewer than k people. Counts
and shares only: it prints no value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from expectations.release import (
    ExpectEachPersonInOneUnit,
    ExpectPeopleToBeKmAnonymous,
    ExpectPeopleToBeLDiverse,
    failing_people,
)
from expectations.suite import Outcome, ReleaseGate, validate
from flows.runtime.memory import release_memory
from flows.storage.files import file_sha256
from flows.storage.footer import PartitionRecord, read_footer
from flows.storage.ledger import LEDGER
from flows.storage.warehouse import PERIOD, partition_files, period_of, read_fields
from transforms.risk import (
    CONTACTS,
    PURCHASES,
    Adversary,
    Check,
    Dataset,
    free_text,
    measure,
    person_frame,
    shared_tokens,
    snapshot_chains,
    spearman_p,
    staff_tokens,
)

COUNTS = {
    "read",
    "quarantined",
    "erased",
    "suppressed",
    "published",
    "records",
    "tokens",
    "members",
    "unreachable",
    "sms",
    "email",
    "classes_suppressed",
    "erasure_requests",
    "rows",
}  # keys whose integer values count people or their rows
COUNT_TABLES = {"cells_suppressed", "rows_erased"}  # keys whose values are tables of such counts (per column)
KM, L, UNIT = (e.expectation_type for e in (ExpectPeopleToBeKmAnonymous, ExpectPeopleToBeLDiverse, ExpectEachPersonInOneUnit))
ROW_ORDER_P = 1e-3  # a row order this unlikely under shuffling follows the column


@dataclass(frozen=True)
class PublishedFile:
    """One published file as the intruder holds it: its footer as stored (every key of it is
    read for counts below k), the same typed (flows/storage/footer.py), each column's field
    metadata, and its rows (None once they are no longer needed)."""

    path: str  # under the warehouse
    footer: dict[str, Any]
    record: PartitionRecord
    fields: dict[str, dict[str, str]]
    table: pa.Table | None


def read(warehouse: Path) -> tuple[list[Dataset], list[PublishedFile]]:
    """Every published dataset, and each file's facts for the side-channel checks."""
    datasets: list[Dataset] = []
    files: list[PublishedFile] = []
    for folder in sorted(warehouse.glob("dataset=*")):
        name = folder.name.split("=", 1)[1]
        found = _dataset(name, partition_files(warehouse, name), warehouse, files)
        if found:
            datasets.append(found)
    return datasets, files


def _dataset(name: str, paths: list[Path], root: Path, files: list[PublishedFile]) -> Dataset | None:
    """One dataset from its partitions' files (…/period=<label>/part-0.parquet), each file's facts
    appended to `files`; every row with its unit's period (`period`)."""
    tables: list[pa.Table] = []
    fields: dict[str, dict[str, str]] = {}
    record: PartitionRecord | None = None
    for path in paths:
        table = pq.read_table(path)
        fields = {f.name: {k.decode(): v.decode() for k, v in (f.metadata or {}).items()} for f in table.schema}
        footer = read_footer(path)
        record = PartitionRecord.model_validate(footer)
        files.append(PublishedFile(path.relative_to(root).as_posix(), footer, record, fields, table))
        tables.append(
            table.replace_schema_metadata(None).append_column(
                PERIOD, pa.repeat(pa.scalar(period_of(path), pa.string()), table.num_rows)
            )
        )
    if record is None:
        return None
    tokens = {c: m.group(1) for c, f in fields.items() if (m := re.search(r"domain '(\w+)'", f.get("tuomin.token", "")))}
    roles = record.roles()
    return Dataset(
        name=name,
        table=pa.concat_tables(tables, promote_options="permissive"),
        record=record.record,
        tokens=tokens,
        sensitive=[c for c, role in roles.items() if role == "sensitive_attribute"],
        free_text=[c for c, role in roles.items() if role == "free_text"],
    )


def changed_versions(earlier: Path, warehouse: Path) -> list[Dataset]:
    """The partitions of an earlier copy that the warehouse no longer holds as they were (replaced
    or removed): another version of a partition is what a token shared with it would link to. A
    partition the two copies hold byte for byte, or in the same version (the same `unit` in the
    footer: the same rows and tokens, written by another run), is one version, not two."""
    datasets: list[Dataset] = []
    files: list[PublishedFile] = []

    def another(path: Path) -> bool:
        now = warehouse / path.relative_to(earlier)
        if not now.is_file():
            return True
        return file_sha256(now) != file_sha256(path) and read_footer(now).get("unit") != read_footer(path).get("unit")

    for folder in sorted(earlier.glob("dataset=*")):
        paths = [p for p in partition_files(earlier, folder.name.split("=", 1)[1]) if another(p)]
        if found := _dataset(folder.name.split("=", 1)[1], paths, earlier, files):
            datasets.append(found)
    return datasets


def differences(earlier: Path, warehouse: Path) -> list[dict[str, Any]]:
    """What two copies of the same partitions differ by, as the intruder holding both sees it: per
    partition held in another version by each, the person-level records one copy has and the other
    has not (a record: its rows' values, tokens aside, as a bag; paired across the copies by those
    values, since no token is shared), and the run that wrote the newer version."""
    found = []
    con = duckdb.connect()
    try:
        for old in sorted(earlier.glob("dataset=*/period=*/part-0.parquet")):
            new = warehouse / old.relative_to(earlier)
            if not new.is_file() or file_sha256(new) == file_sha256(old):
                continue
            record = PartitionRecord.model_validate(read_footer(new))
            before, after = pq.read_table(old), pq.read_table(new)
            tokens = {f.name for f in after.schema if b"tuomin.token" in (f.metadata or {})}
            values = [c for c in after.column_names if c not in tokens and c in before.column_names]
            signatures = []
            for name, table in (("before", before), ("after", after)):
                con.register(name, table.replace_schema_metadata(None))
                who = f'coalesce("{record.entity_column}", ' if record.entity_column else "("
                quoted = ", ".join(f'"{c}"' for c in values) or "1"
                signatures.append(
                    f"SELECT hash(list_sort(list(h))) AS sig FROM (SELECT {who}'row:' || row_number() OVER ()) AS who, "
                    f"hash({quoted}) AS h FROM {name}) GROUP BY who"
                )
            [changed] = con.execute(
                f"SELECT (SELECT count(*) FROM ({signatures[0]} EXCEPT ALL {signatures[1]})), "
                f"(SELECT count(*) FROM ({signatures[1]} EXCEPT ALL {signatures[0]}))"
            ).fetchall()
            found.append(
                {
                    "partition": new.relative_to(warehouse).parent.as_posix(),
                    "run": record.run_id,
                    "records_gone": changed[0],
                    "records_new": changed[1],
                }
            )
    finally:
        con.close()
    return found


def by_version(found: list[dict[str, Any]]) -> dict[str, int]:
    """Person-level records that differ, per run that wrote newer versions (one republication)."""
    runs: dict[str, int] = {}
    for d in found:
        runs[d["run"]] = runs.get(d["run"], 0) + d["records_gone"] + d["records_new"]
    return runs


def snapshot_chain(dataset: str, staged: list[Path], published: list[Path], k: int) -> dict[str, Any]:
    """`snapshot_chains` between the staged snapshots of `dataset` and the published ones of other
    dates (paths `<root>/dataset=…/period=…/part-0.parquet`), as the intruder holding both would
    measure them."""
    files: list[PublishedFile] = []
    now = _dataset(dataset, staged, staged[0].parents[2], files) if staged else None
    before = _dataset(dataset, published, published[0].parents[2], files) if published else None
    if now is None or before is None:
        return {"pairs": 0, "unique_on_both": 0, "classes_changed_below_k": 0}
    return snapshot_chains([now], [before], k)[dataset]


def small_counts(document, k: int, where: str, path: str = "") -> list[str]:
    """Where a count of people or rows between 1 and k-1 is written in a JSON document."""
    found = []
    if isinstance(document, dict):
        for key, value in document.items():
            here = f"{path}.{key}" if path else str(key)
            if key in COUNTS and isinstance(value, int) and not isinstance(value, bool) and 0 < value < k:
                found.append(f"{where}: {here}")
            elif key in COUNT_TABLES and isinstance(value, dict):
                found += [f"{where}: {here}.{name}" for name, v in value.items() if isinstance(v, int) and 0 < v < k]
            else:
                found += small_counts(value, k, where, here)
    elif isinstance(document, list):
        for i, value in enumerate(document):
            found += small_counts(value, k, where, f"{path}[{i}]")
    return found


ROW_SUM = ("read", ("quarantined", "erased", "suppressed", "published"))  # read is the sum of the others


def coarsen(document, k: int, path: str = ""):
    """The document with every count of people or rows between 1 and k-1 written as "<k" (what a
    report may show; the exact figure stays in the ledger, in the restricted area). Where counts
    add up (a partition's rows: read = quarantined + erased + suppressed + published), one hidden
    term would come back by subtraction: the smallest other term is hidden too, as "≥k"."""
    if isinstance(document, dict):
        out: dict[str, object] = {}
        for key, value in document.items():
            if key in COUNTS and isinstance(value, int) and not isinstance(value, bool) and 0 < value < k:
                out[key] = f"<{k}"
            elif key in COUNT_TABLES and isinstance(value, dict):
                out[key] = {n: f"<{k}" if isinstance(v, int) and 0 < v < k else v for n, v in value.items()}
            else:
                out[key] = coarsen(value, k)
        return _complement(document, out, k)
    if isinstance(document, list):
        return [coarsen(value, k) for value in document]
    return document


def _complement(exact: dict, out: dict, k: int) -> dict:
    """`out` (coarsened `exact`) with a second term of a row sum hidden where only one is."""
    total, every = ROW_SUM
    terms = [key for key in every if isinstance(exact.get(key), int) and not isinstance(exact[key], bool)]
    if not isinstance(exact.get(total), int) or len(terms) < 2:
        return out
    hidden = [key for key in (total, *terms) if isinstance(out[key], str)]
    shown = [key for key in terms if not isinstance(out[key], str) and exact[key] > 0]
    if len(hidden) == 1 and shown:
        out[min(shown, key=lambda key: exact[key])] = f"≥{k}"
    return out


def row_order(files: list[PublishedFile]) -> list[dict]:
    """Files whose row order follows a published time column (the order would give times back)."""
    flagged = []
    for f in files:
        table = f.table
        if table is None:
            continue
        for column in table.column_names:
            field = table.schema.field(column)
            meaning = (field.metadata or {}).get(b"tuomin.level_meaning", b"")
            # time as published: a timestamp or DATE, or a period as text or a year (DatetimeHierarchy)
            if pa.types.is_timestamp(field.type) or pa.types.is_date(field.type) or meaning.startswith(b"truncated to the"):
                rho, p = spearman_p(table[column].to_pandas())
                if p < ROW_ORDER_P:
                    flagged.append({"file": f.path, "column": column, "rho": round(rho, 3)})
    return flagged


class Assessment(BaseModel):
    """`tuomin risk`: every measurement of a release against an intruder, and the checks it passes
    or fails (its JSON is the command's `--format json`, keys in this order). Counts and shares only."""

    warehouse: str
    adversary: Adversary
    datasets: dict[str, dict[str, Any]]  # per dataset: rows, record, tokens, relational, items, sensitive
    people: int  # person-level records
    relational_k: int  # the smallest relational class, in people
    max_risk: float
    average_risk: float
    singled_out_share: float
    below_k_share: float
    km_break_share: dict[str, float]  # by m
    km_break_share_items_alone: dict[str, float]
    sensitive: dict[str, dict[str, Any]]  # per dataset.column: the share of people whose value is certain
    shared_identifiers: dict[str, dict[str, int]]
    staff_identifiers: list[str]
    free_text: list[str]
    snapshots: dict[str, Any]
    versions: list[dict[str, Any]]  # per partition held in two versions (with --against): records that differ
    snapshot_chains: dict[str, dict[str, Any]]  # per profile dataset: snapshots of two dates linked without tokens
    row_order: list[dict[str, Any]]
    small_counts: list[Any]
    checks: list[Check]
    passed: bool

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


def assess(
    warehouse: Path, adversary: Adversary | None = None, against: Path | list[Path] | None = None, **knows: int | None
) -> Assessment:
    """Every measurement of the release, and the checks it passes or fails; by default against the
    intruder its files record they were protected from (recorded_adversary), with what `knows`
    sets (k, purchases, contacts) changed; `against`: the earlier copies the intruder keeps."""
    earlier = [against] if isinstance(against, Path) else list(against or [])
    datasets, files = read(warehouse)
    if not datasets:
        raise ValueError(f"{warehouse}: no published dataset to assess")
    adversary = adversary or replace(recorded_adversary(files), **{key: v for key, v in knows.items() if v is not None})
    previous = [d for copy in earlier for d in changed_versions(copy, warehouse)]
    figures = measure(datasets, adversary, where=warehouse.parent if warehouse.parent.exists() else None)
    snapshots = figures["snapshots"]
    counts = [hit for f in files for hit in small_counts(f.footer, adversary.k, f.path)]
    for ledger in (warehouse / "_ledger" / "ledger.jsonl", warehouse / LEDGER):  # a ledger left where analysts read
        if not ledger.is_file():
            continue
        for line in ledger.read_text("utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                counts += small_counts(entry["data"], adversary.k, f"ledger entry {entry['seq']} ({entry['kind']})")
    versions = [d for copy in earlier for d in differences(copy, warehouse)]
    chains = snapshot_chains(datasets, previous, adversary.k)
    shared = shared_tokens(datasets, previous)
    staff, text = staff_tokens(datasets), free_text(datasets)
    ordered = row_order(files)
    k, levels = adversary.k, str(adversary.purchases + adversary.contacts)
    linked = sum(v for stats in shared.values() for key, v in stats.items() if key != "values")
    certain = {name: s["certain_share"] for name, s in figures["sensitive"].items()}
    changed = {name: s["changed_share"] for name, s in snapshots.items() if s}
    checks = [
        Check("singling out", figures["singled_out_share"] == 0, f"{figures['singled_out_share']:.1%} of people", "0%"),
        Check(
            "re-identification",
            figures["max_risk"] <= 1 / k,
            f"max {figures['max_risk']:.3f}, average {figures['average_risk']:.4f}",
            f"max <= 1/{k}",
        ),
        Check(
            f"k^m (k={k}, m={levels}) within relational classes",
            figures["km_break_share"].get(levels, 0) == 0,
            ", ".join(f"m={m}: {v:.1%}" for m, v in figures["km_break_share"].items()) or "no items",
            "0% at every m",
        ),
        Check("identifiers shared", linked == 0, f"{linked} token value(s) across datasets, dates or versions", "none"),
        Check("staff identifiers", not staff, ", ".join(staff) or "none", "none"),
        Check("free text", not text, ", ".join(text) or "none", "none"),
        Check(
            "sensitive value certain",
            not any(certain.values()),
            ", ".join(f"{n}: {v:.1%}" for n, v in certain.items()) or "no sensitive attribute",
            "0% of people",
        ),
        Check(
            "snapshot differencing",
            not any(changed.values()),
            ", ".join(f"{n}: {v:.1%} of linked people" for n, v in changed.items()) or "no linked snapshots",
            "0%",
        ),
        _versions_check(versions, k),
        Check(
            "snapshot chaining",
            not any(c["unique_on_both"] or c["classes_changed_below_k"] for c in chains.values()),
            ", ".join(
                f"{n}: {c['unique_on_both']} tuple(s) unique on two dates, {c['classes_changed_below_k']} class(es) "
                f"changed by fewer than {k}"
                for n, c in chains.items()
                if c["pairs"]
            )
            or "one snapshot",
            "none",
        ),
        Check("row order", not ordered, f"{len(ordered)} file column(s) follow time" if ordered else "shuffled", "none"),
        Check(f"counts below k={k}", not counts, f"{len(counts)} place(s)" if counts else "none", "none"),
    ]
    return Assessment(
        warehouse=str(warehouse),
        adversary=adversary,
        datasets={
            d.name: {
                "rows": d.table.num_rows,
                "record": d.record,
                "tokens": d.tokens,
                "relational": figures["relational"][d.name],
                "items": figures["items"][d.name],
                "sensitive": d.sensitive,
            }
            for d in datasets
        },
        **{
            key: figures[key]
            for key in (
                "people",
                "relational_k",
                "max_risk",
                "average_risk",
                "singled_out_share",
                "below_k_share",
                "km_break_share",
                "km_break_share_items_alone",
                "sensitive",
            )
        },
        shared_identifiers=shared,
        staff_identifiers=staff,
        free_text=text,
        snapshots=snapshots,
        versions=versions,
        snapshot_chains=chains,
        row_order=ordered,
        small_counts=counts,
        checks=checks,
        passed=all(c.passed for c in checks),
    )


def _versions_check(versions: list[dict[str, Any]], k: int) -> Check:
    """Two copies of the release (`--against`): a republication whose difference is the records of
    fewer than k people is theirs, whatever else it does (an erasure of one person, say)."""
    runs = by_version(versions)
    changed = [v for v in runs.values() if v]
    one = [d["records_gone"] + d["records_new"] for d in versions if d["records_gone"] + d["records_new"]]
    detail = (
        f"{len(changed)} republication(s), the smallest differing by {min(changed)} person-level record(s) "
        f"({min(one)} in one partition)"
        if changed
        else "no two versions compared"
        if not versions
        else "versions differ in tokens and order only"
    )
    return Check("version differences", not any(0 < v < k for v in changed), detail, f"0 or >= {k} records per republication")


def recorded_adversary(files: list[PublishedFile]) -> Adversary:
    """The intruder the files' policies protected them against (their footers record k, m and
    what their rows are): the largest k, and each kind of item's largest m."""
    records = [f.record for f in files]
    m = {kind: max((r.m for r in records if r.record == kind), default=0) for kind in (PURCHASES, CONTACTS)}
    return Adversary(max(r.k or 2 for r in records), m[PURCHASES], m[CONTACTS])


@dataclass(frozen=True)
class Verdict:
    """What the release gate found: the GX outcome, every failure named, and how many people."""

    outcome: Outcome
    failures: list[str]
    people: int


GATE_ROWS = 1_000_000  # published rows the gate reads at once: units in groups of about this many rows


def gate(
    staged: dict[str, dict[str, Path]],
    root: Path,
    project: Path | None = None,
    run_name: str | None = None,
    where: Path | None = None,
    replaces: dict[str, dict[str, Path]] | None = None,
) -> Verdict:
    """The release's own checks on the partitions staged for it ({dataset: {period: file}}),
    before any is published, against what their metadata records (k, m, l): the person-level
    criteria (expectations/release.py, validated with GX once, on the person frame of every unit)
    and the side channels of `assess` that a release can carry (row order, counts below k, staff
    tokens, free text). Tokens are keyed to their unit, so a person's record lies within one unit:
    the frame is built for groups of units of about GATE_ROWS rows at a time (what a group's rows
    need is let go before the next; the frames kept are numbers in 4 bytes: ~60 bytes a person),
    and that no token is shared between units is checked over every file at once, first
    (`shared_between_units`, out of core), and that no staged unit shares a token with the
    published version it replaces (`replaces`, {dataset: {period: file}}: `carried_tokens`).
    Every failure names its criterion and datasets."""
    shared = shared_between_units(staged)
    carried = carried_tokens(staged, replaces or {})
    frames, failures, offset = [], [], 0
    all_files: list[PublishedFile] = []
    for group in _groups(staged):
        files: list[PublishedFile] = []
        datasets = [d for name, paths in group.items() if (d := _dataset(name, paths, root, files))]
        adversary = recorded_adversary(files)
        # The gate judges within classes only, and only against k: supports need be exact from the
        # smallest k up (an itemset held by fewer is never extended).
        smallest_k = min((f.record.k or adversary.k for f in files), default=adversary.k)
        frame = person_frame(datasets, adversary, where, items_alone=False, threshold=smallest_k)
        ids = frame.attrs["people"].ids
        # Each person's k, the largest of the datasets they are in, and those datasets' names
        # (a bit per dataset, named once per set of them).
        k, bits = np.zeros(len(frame), np.int64), np.zeros(len(frame), np.int64)
        for j, (d, f) in enumerate(zip(datasets, files)):
            present = np.zeros(len(frame), bool)
            present[ids[d.name]] = True
            k[present] = np.maximum(k[present], f.record.k or adversary.k)
            bits[present] |= 1 << j
        sets, which = np.unique(bits, return_inverse=True)
        names = ["".join(d.name + " " for j, d in enumerate(datasets) if int(b) >> j & 1) for b in sets]
        frame["k"] = k
        frame["datasets"] = pd.Categorical.from_codes(which.reshape(-1), categories=names)
        frame["person"] += offset
        offset += len(frame)
        frame.attrs.clear()
        frames.append(_narrow(frame))
        failures += _side_channels(files, datasets, adversary)
        all_files += [replace(f, table=None) for f in files]  # the rows are done with
        del frame, datasets, files
        release_memory()
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"person": [], "k": [], "units": []})
    adversary = recorded_adversary(all_files)
    for m in range(1, adversary.purchases + adversary.contacts + 1):
        # A group of one kind of item (purchases, or contacts) counts only the itemsets its kind
        # allows; a person there holds no larger one, so their crowd at m is their crowd at m - 1.
        column, below = f"support_{m}", f"support_{m - 1}"
        if below in frame:
            frame[column] = frame[column].fillna(frame[below]) if column in frame else frame[below]
    # Each sensitive attribute takes, in every person's class, the values its criteria imply (2 when none is declared).
    least: dict[str, int] = {}
    for f in all_files:
        for c in f.record.criteria():
            key = f"{f.record.dataset}.{c.column}"
            least[key] = max(least.get(key, 0), c.values_at_least)
    bounds = tuple((a, least.get(a, 2)) for a in sorted(_sensitive(frame)))
    release = ReleaseGate(adversary.purchases + adversary.contacts, bounds)
    outcome = validate(release, frame, project, run_name)
    found: list[str] = []
    for check in outcome.checks:
        # Supports only shrink as m grows: the smallest m that fails says it, the larger ones add nothing.
        if not check["success"] and not (check["expectation"] == KM and any(f.startswith("k^m") for f in found)):
            if check["exception"]:
                found.append(f"{_criterion(check)}: the check raised an exception")
                continue
            who = frame.loc[failing_people(frame, check).to_numpy(), "datasets"].astype(str)
            named = sorted({name for names in who for name in names.split()})
            found.append(f"{_criterion(check)}: {check['observed']} {_people(check)} in {', '.join(named)}")
    if shared and not any(f.startswith("a token shared") for f in found):  # between units read in different groups
        found.append(f"a token shared outside its unit: {shared} token value(s) in more than one unit")
    found += [f"a token shared with the version it replaces: {n} token value(s) in {unit}" for unit, n in carried.items()]
    return Verdict(outcome, found + failures, len(frame))


def _narrow(frame: pd.DataFrame) -> pd.DataFrame:
    """A group's person frame in the least memory that holds it exactly: counts and supports are
    whole numbers far below 2^24 (float32 holds them, and inf and NaN), ids below 2^31."""
    narrow: dict[str, Any] = {"datasets": "category"}
    for column, dtype in frame.dtypes.items():
        if dtype == np.float64:
            narrow[str(column)] = np.float32
        elif dtype == np.int64 and (frame[column].abs().max() if len(frame) else 0) < 2**31:
            narrow[str(column)] = np.int32
    return frame.astype(narrow)


def _groups(staged: dict[str, dict[str, Path]]) -> list[dict[str, list[Path]]]:
    """The staged files in groups of units (in period order, datasets together) of about
    GATE_ROWS published rows each; a unit larger than that is a group of its own."""
    units = sorted((label, name, path) for name, by_period in staged.items() for label, path in by_period.items())
    groups: list[dict[str, list[Path]]] = []
    rows = GATE_ROWS
    for _, name, path in units:
        size = pq.ParquetFile(path).metadata.num_rows
        if rows + size > GATE_ROWS and rows:
            groups.append({})
            rows = 0
        groups[-1].setdefault(name, []).append(path)
        rows += size
    return groups


def _sensitive(frame: pd.DataFrame) -> list[str]:
    return [c.removeprefix("l:") for c in frame.columns if c.startswith("l:")]


def _side_channels(files: list[PublishedFile], datasets: list[Dataset], adversary) -> list[str]:
    failures = [f"row order follows {o['column']} in {_name(o['file'])}" for o in row_order(files)]
    failures += [
        f"count below k={k} in the file metadata of {_name(f.path)} ({hit.split(': ', 1)[1]})"
        for f in files
        for k in [f.record.k or adversary.k]
        for hit in small_counts(f.footer, k, f.path)
    ]
    failures += [f"staff token published in {column}" for column in staff_tokens(datasets)]
    failures += [f"free text published in {column}" for column in free_text(datasets)]
    return failures


SHARED_COLUMNS = 64  # token columns (of files) whose hashes one query reads at once


def shared_between_units(staged: dict[str, dict[str, Path]]) -> int:
    """Token values found in more than one (dataset, unit), over every staged file: a token keyed
    to its unit appears in that unit only. Bounded by construction, as a GROUP BY over every
    token is not (DuckDB runs out of memory on it rather than spill): each unit's distinct 64-bit
    hashes of its tokens, read SHARED_COLUMNS token columns a query, are 8 bytes a token in memory;
    a hash found twice is a candidate (two units, a collision, or one unit's columns read by two
    queries), and the candidates (none in a passing release) are counted exactly on the tokens."""
    selects = [
        select
        for name, by_period in staged.items()
        for label, path in by_period.items()
        for select in _tokens_of(path, f"{name}/{label}")
    ]
    if not selects:
        return 0
    con = duckdb.connect(config={"threads": 1})
    try:
        hashes = [
            con.execute(
                f"SELECT DISTINCT u, hash(t) AS h FROM ({' UNION ALL '.join(selects[i : i + SHARED_COLUMNS])})"
            ).fetchnumpy()["h"]
            for i in range(0, len(selects), SHARED_COLUMNS)
        ]
        found, counts = np.unique(np.concatenate(hashes), return_counts=True)
        candidates = found[counts > 1]
        if not len(candidates):
            return 0
        con.register("candidates", pa.table({"h": pa.array(candidates, pa.uint64())}))
        every = " UNION ALL ".join(selects)
        shared = f"SELECT t FROM ({every}) WHERE hash(t) IN (SELECT h FROM candidates) GROUP BY t HAVING min(u) <> max(u)"
        return int(con.execute(f"SELECT count(*) FROM ({shared})").fetchall()[0][0])
    finally:
        con.close()


def carried_tokens(staged: dict[str, dict[str, Path]], replaces: dict[str, dict[str, Path]]) -> dict[str, int]:
    """Per staged unit (`dataset period`) that replaces a published one, the token values both
    versions hold (none: a version's tokens are keyed to it, so two versions join nothing)."""
    found = {}
    con = duckdb.connect(config={"threads": 1})
    try:
        for name, by_period in staged.items():
            for label, path in by_period.items():
                old = replaces.get(name, {}).get(label)
                if old is None:
                    continue
                versions = [
                    " UNION ".join(_tokens_of(file, "")) or "SELECT NULL::VARCHAR AS t WHERE false" for file in (path, old)
                ]
                n = con.execute(f"SELECT count(*) FROM ({versions[0]}) JOIN ({versions[1]}) USING (t)").fetchall()[0][0]
                if n:
                    found[f"{name} {label}"] = int(n)
    finally:
        con.close()
    return found


def _tokens_of(path: Path, unit: str) -> list[str]:
    """SQL reading each keyed-token column of a file: its values (t) not null, with `unit` (u)."""
    quoted, label = str(path).replace("'", "''"), unit.replace("'", "''")
    columns = [c for c, f in read_fields(path).items() if "keyed HMAC" in f.get("token", "")]
    return [f"SELECT \"{c}\" AS t, '{label}' AS u FROM read_parquet('{quoted}') WHERE \"{c}\" IS NOT NULL" for c in columns]


def _name(path: str) -> str:
    """The dataset of a file's path (`dataset=<name>/period=…/…`)."""
    return path.split("/")[0].removeprefix("dataset=")


def _criterion(check: dict) -> str:
    arguments = check.get("arguments", {})
    return {
        KM: f"k^m (m={arguments.get('m', 0)}) on the person-level record",
        L: f"l-diversity (l={arguments.get('l')}) of {arguments.get('attribute')}",
        UNIT: "a token shared outside its unit",
    }.get(check["expectation"], check["expectation"])


def _people(check: dict) -> str:
    return {
        KM: "people in a crowd smaller than their k",
        L: "people whose class holds fewer values",
        UNIT: "people whose rows span datasets or units",
    }.get(check["expectation"], "people")
