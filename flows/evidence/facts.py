"""The facts of the evidence pack, gathered from the ledger, the published files' metadata and the
policies: what was done to which data, when, with what result. Counts, names, levels, hashes and
measured figures only; nothing here reads a data value.

`collect` returns one JSON-ready document, typed section by section (`Facts`: the ledger, each
dataset and its partitions; a ledger event is its kind, time, seq, hash and the named fields of its
data); `tuomin report` writes it as report.json and renders the same document as HTML
(flows/evidence/report.py), so the two never disagree.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, TypedDict, cast

from flows.pipeline.intruder import assess, coarsen
from flows.storage import ledger
from flows.storage.dictionary import Answer, answers
from flows.storage.entries import (
    BackupEntry,
    BackupRestoredEntry,
    BackupVerifiedEntry,
    DeletionEntry,
    DPReleaseEntry,
    Entry,
    ErasureRequestedEntry,
    KeyDestroyedEntry,
    KeyRotatedEntry,
    NoticesEntry,
    PartitionEntry,
    PartitionRemovedEntry,
    ReviewEntry,
    RunEntry,
    SubjectLookupEntry,
)
from flows.storage.footer import read_record
from flows.storage.landing import date_in_path
from flows.storage.ledger import E, Recorded
from transforms.policy import SourcePolicy, load_policies
from transforms.units import first_day, last_day

ROW_COUNTS = ("read", "quarantined", "erased", "suppressed", "published")

# A ledger event as the pack shows it: kind, at, ledger_seq, ledger_hash and the named fields of its
# data (which fields depends on the kind). Counts in it may be "<k" once coarsened.
Event = dict[str, Any]


class Period(TypedDict):
    start: str | None
    end: str | None
    first: str | None  # the first and last unit the pack covers, when no period was given
    last: str | None


class LedgerFacts(TypedDict):
    entries: int
    intact: bool
    problems: list[str]
    head: dict[str, int | str] | None
    anchors: int
    anchored_to: int


class PartitionFacts(TypedDict):
    period: str
    rows: dict[str, Any]  # ROW_COUNTS; a count may be None (not recorded) or "<k" once coarsened
    k_required: int | None
    k: int | None
    reconciled: bool
    l: int | None
    levels: dict[str, int]
    cells_suppressed: dict[str, int]
    validation: dict[str, Any]
    policy_sha256: str | None
    key_id: str | None
    path: str
    sha256: str
    in_place: bool
    metrics: dict[str, Any]
    published_at: str | None
    ledger_seq: int
    ledger_hash: str


class DatasetFacts(TypedDict):
    description: str
    policy: dict[str, Any]
    columns: list[dict[str, Any]]
    partitions: list[PartitionFacts]
    totals: dict[str, Any]
    removed: list[Event]
    questions: list[Answer]  # the declared questions, as the latest run that published the dataset scored them


class Facts(TypedDict):
    generated_at: str
    period: Period
    warehouse: str
    ledger: LedgerFacts
    datasets: dict[str, DatasetFacts]
    runs: list[Event]
    backups: list[Event]
    deletions: list[Event]
    key_events: list[Event]
    backup_checks: list[Event]
    restores: list[Event]
    reviews: list[Event]
    subject_requests: list[Event]
    notices: list[Event]
    erasure_list: dict[str, Any]
    release: dict[str, Any] | None
    dp_releases: list[Event]
    pia: dict[str, Any]


def collect(
    warehouse: Path, restricted: Path, policies_dir: Path, start: dt.date | None = None, end: dt.date | None = None
) -> Facts:
    policies = load_policies(policies_dir)
    recorded = ledger.read(restricted)

    def of_kind(model: type[E], dated: bool = True) -> list[Recorded[E]]:
        found = ledger.only(recorded, model)
        return [e for e in found if not dated or _in_period(_dated(e.data), start, end)]

    runs = of_kind(RunEntry, dated=False)
    read = _files_read(runs, start, end)
    datasets = {
        name: _dataset(policy, warehouse, of_kind(PartitionEntry), of_kind(PartitionRemovedEntry), read)
        | {"questions": answers([r.data.model_dump() for r in runs], name)}
        for name, policy in sorted(policies.items())
    }
    units = sorted(p["period"] for d in datasets.values() for p in d["partitions"])
    facts = Facts(
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        period=Period(
            start=start.isoformat() if start else None,
            end=end.isoformat() if end else None,
            first=units[0] if units else None,
            last=units[-1] if units else None,
        ),
        warehouse=str(warehouse.resolve()),
        ledger=_ledger(restricted, warehouse),
        datasets=datasets,
        runs=[
            _event(e, ("run_id", "status", "message", "key_id", "backup_key_id", "erasure_requests", "triggered_by"))
            | {
                "files": len(e.data.files) or len(e.data.dates),
                "units": sum(d.get("units", 0) for d in e.data.datasets.values()),
                "republished": e.data.republished,
            }
            for e in runs
        ],
        backups=[_event(e, ("export_date", "key_id", "manifest")) | _files(e.data.files) for e in of_kind(BackupEntry)],
        deletions=[
            _event(e, ("export_date", "why", "replaced_by", "rows", "bytes", "method", "landing"))
            | {"areas": _areas(e.data)}
            | _files(e.data.files)
            | {"not_deleted": e.data.not_deleted}
            for e in of_kind(DeletionEntry)
        ],
        key_events=[_key_event(e) for e in ledger.only(recorded, KeyRotatedEntry, KeyDestroyedEntry)],
        backup_checks=[
            _event(e, ("export_date", "ok", "bad", "nothing_to_check")) for e in of_kind(BackupVerifiedEntry, dated=False)
        ],
        restores=[
            _event(e, ("export_date", "out", "error")) | {"files": len(e.data.files)} for e in of_kind(BackupRestoredEntry)
        ],
        reviews=[_event(e, ("success", "problems", "datasets")) for e in of_kind(ReviewEntry, dated=False)],
        # Requests name the person by a keyed hash only; what was found and done, in counts.
        subject_requests=[
            _event(
                e,
                (
                    "subject",
                    "key_id",
                    "records",
                    "added",
                    "tokens",
                    "republished",
                    "not_searched",
                    "failed",
                    "status",
                    "listed",
                    "retry_of",
                ),
            )
            for e in ledger.only(recorded, SubjectLookupEntry, ErasureRequestedEntry)
        ],
        notices=[
            _event(e, ("snapshot", "members", "sms", "email", "erased", "unreachable", "closure", "texts"))
            for e in of_kind(NoticesEntry, dated=False)
        ],
        # The erasure list (requests/erasure.csv) acts in every run: its subjects' rows are left out.
        erasure_list={
            "subjects": runs[-1].data.erasure_requests if runs else None,
            "rows_erased": {name: d["totals"]["erased"] for name, d in datasets.items()},
        },
        release=_release(warehouse),
        dp_releases=[_dp_release(e, warehouse) for e in of_kind(DPReleaseEntry, dated=False)],
        pia={},
    )
    facts["pia"] = impact_assessment(facts, policies)
    # The pack is read beyond the restricted area: no count below k in it (the ledger has them).
    return cast(Facts, coarsen(facts, min(p.privacy.k for p in policies.values())))


def _dp_release(entry: Recorded[DPReleaseEntry], warehouse: Path) -> Event:
    """A DP release as the pack shows it: its budget, and per table the noise and what a cell needs
    for its 95% error bar to be within 10% (public numbers: no count of the data)."""
    data = entry.data
    return _event(
        entry, ("release_id", "epsilon", "delta", "spent_before", "spent_total", "lifetime_epsilon", "library", "triggered_by")
    ) | {
        "dates": {"count": len(data.dates), "first": min(data.dates), "last": max(data.dates)},
        "tables": [
            {k: t[k] for k in ("name", "epsilon", "scale", "margin_95", "sensitivity_l1", "cells")}
            | {"ten_percent_at": t["margin_95"] / 0.1, "in_place": (warehouse / t["path"]).is_file()}
            for t in data.tables
        ],
    }


def _release(warehouse: Path) -> dict[str, Any] | None:
    """`tuomin risk` on the warehouse as it stands, against the intruder its files record: the
    checks and the headline figures (shares and probabilities only)."""
    try:
        found = assess(warehouse)
    except ValueError:  # nothing published
        return None
    return found.model_dump(mode="json", include={"passed", "adversary", "people", "max_risk", "singled_out_share", "checks"})


def _ledger(restricted: Path, warehouse: Path) -> LedgerFacts:
    """The ledger as verified now: the head the pack records (so that a later `tuomin ledger
    verify --expect-head` can show nothing was cut off since), and whether it is intact; never
    "intact" when there was nothing to verify."""
    verdict = ledger.check(restricted, warehouse)
    return LedgerFacts(
        entries=verdict.entries,
        intact=verdict.intact,
        problems=verdict.problems,
        head=verdict.head.record() if verdict.head else None,
        anchors=verdict.anchors,
        anchored_to=verdict.anchored_to,
    )


def _dated(data: Entry) -> str | None:
    """The day or period an entry is about: a partition's unit, or an export date."""
    return getattr(data, "period", None) or getattr(data, "export_date", None)


def _in_period(label: str | None, start: dt.date | None, end: dt.date | None) -> bool:
    """Whether a day or a unit's period (a week, a month) overlaps the report's dates."""
    if label is None:
        return start is None and end is None
    return (start is None or last_day(label) >= start) and (end is None or first_day(label) <= end)


def _key_event(entry: Recorded[Entry]) -> Event:
    """Rotations and destructions in one shape (a rotation names two keys)."""
    data = entry.data
    assert isinstance(data, KeyRotatedEntry | KeyDestroyedEntry)
    return (
        _event(entry, ())
        | {
            name: getattr(data, name, None)
            for name in ("where", "method", "effect", "made_with_it", "published_under_other_keys", "old_key_id", "new_key_id")
        }
        | {"key": data.key, "key_id": data.key_id}
    )


def _areas(certificate: DeletionEntry) -> dict[str, dict[str, int]]:
    """Per area, what a certificate deleted and did not (older certificates list files only)."""
    if certificate.areas:
        return certificate.areas
    areas: dict[str, dict] = {}
    for f in certificate.files:
        area = areas.setdefault(f["area"], {"deleted": 0, "bytes": 0, "not_deleted": 0})
        area["deleted"] += 1
        area["bytes"] += f["bytes"]
    for f in certificate.not_deleted:
        areas.setdefault(f["area"], {"deleted": 0, "bytes": 0, "not_deleted": 0})["not_deleted"] += 1
    return areas


def _files_read(runs: list[Recorded[RunEntry]], start: dt.date | None, end: dt.date | None) -> dict[str, dict]:
    """Every landing file of the report's dates as the last run that read it recorded it (its rows,
    quarantined and placed): the quarantine belongs to a file, not to a unit."""
    found: dict[str, dict] = {}
    for run in runs:
        if run.data.status == "published":
            found |= {p: f for p, f in run.data.files.items() if _in_period(date_in_path(p).isoformat(), start, end)}
    return found


def _dataset(
    policy: SourcePolicy,
    warehouse: Path,
    published: list[Recorded[PartitionEntry]],
    removed: list[Recorded[PartitionRemovedEntry]],
    read: dict[str, dict],
) -> DatasetFacts:
    latest = {}
    for entry in published:
        if entry.data.dataset == policy.source:
            latest[entry.data.period] = entry  # a rerun replaces the unit's partition
    partitions = [_partition(entry, warehouse) for _, entry in sorted(latest.items())]
    return {
        "description": policy.description,
        "policy": {
            "file": policy.path.name,
            "sha256": policy.sha256,
            "k": policy.privacy.k,
            "max_suppression": policy.privacy.max_suppression,
            "criteria": [c.sentence() for c in policy.model.columns],  # on sensitive columns, in words
            "retention": policy.retention.model_dump(),
            "unit": {"record": policy.unit.record, "why": policy.unit.why},
        },
        "columns": [
            {
                "column": c.name,
                "published_as": c.output_name,
                "role": c.role,
                "pipl": c.pipl,
                "technique": c.family,
                "transform": c.transform,
                "purpose": c.purpose,
            }
            for c in policy.columns
        ],
        "partitions": partitions,
        "totals": {key: sum(p["rows"].get(key) or 0 for p in partitions) for key in ROW_COUNTS}
        | {"quarantined": sum(f.get("quarantined", 0) for path, f in read.items() if path.startswith(f"{policy.source}/"))},
        "removed": [
            _event(e, ("period", "path", "sha256", "published_rows", "why")) for e in removed if e.data.dataset == policy.source
        ],
        "questions": [],
    }


def _partition(entry: Recorded[PartitionEntry], warehouse: Path) -> PartitionFacts:
    data = entry.data
    path = warehouse / data.output.path
    try:
        figures = read_record(path).metrics if path.is_file() else None
    except (OSError, ValueError, KeyError):  # a damaged file: its figures are unknown (`tuomin review` names it)
        figures = None
    return {
        "period": data.period,
        "rows": {key: getattr(data.rows, key) for key in ROW_COUNTS},  # a unit's rows are placed: quarantine is its files'
        "k_required": data.k,
        "k": data.k_achieved,
        "reconciled": data.rows.reconciles(),
        "l": data.l_achieved,
        "levels": data.levels,
        "cells_suppressed": data.cells_suppressed,
        "validation": data.validation.model_dump(),
        "policy_sha256": data.policy_sha256,
        "key_id": data.key_id,
        "path": data.output.path,
        "sha256": data.output.sha256,
        "in_place": path.is_file(),
        "metrics": {
            k: getattr(figures, k, None)
            for k in (
                "prosecutor_risk_max",
                "prosecutor_risk_avg",
                "unique_share",
                "classes",
                "avg_class_size",
                "discernibility",
                "loss",
                "loss_by_attribute",
                "class_size_histogram",
                "l_entropy",
            )
        },
        "published_at": data.published_at,
        "ledger_seq": entry.seq,
        "ledger_hash": entry.hash,
    }


def _event(entry: Recorded, keys: tuple[str, ...]) -> Event:
    data = entry.data.record()
    return {
        "kind": entry.kind,
        "at": entry.at,
        "ledger_seq": entry.seq,
        "ledger_hash": entry.hash,
        **{k: data[k] for k in keys if k in data},
    }


def _files(files: list[dict]) -> dict[str, Any]:
    return {
        "files": len(files),
        "bytes": sum(f["bytes"] for f in files),
        "file_list": [{k: f[k] for k in ("area", "path", "bytes", "sha256") if k in f} for f in files],
    }


def impact_assessment(facts: Facts, policies: dict[str, SourcePolicy]) -> dict[str, Any]:
    """A draft outline of the personal-information protection impact assessment (PIPL Art. 55
    and 56), filled from the facts; the protection officer completes and signs it."""
    sensitive = sorted({f"{name}.{c.name}" for name, p in policies.items() for c in p.columns if c.pipl == "sensitive"})
    parts = [p for d in facts["datasets"].values() for p in d["partitions"]]
    destroyed = [e for e in facts["key_events"] if e["kind"] == "key_destroyed"]
    latest_review = facts["reviews"][-1] if facts["reviews"] else None
    return {
        "status": "DRAFT outline generated from recorded facts; to be completed and signed by the personal-information "
        "protection officer. Keep the assessment and the processing records for at least three years (Art. 56).",
        "why_required": [
            f"Art. 55(1) processing of sensitive personal information: {len(sensitive)} column(s) classed sensitive "
            f"({', '.join(sensitive) or 'none'}).",
            "Art. 55(5) other processing with a major impact on individuals: deletion of the raw exports and retention "
            "of an anonymized copy on closing the business.",
        ],
        "purpose_and_means": {
            "purposes": {name: d["description"] for name, d in facts["datasets"].items()},
            "columns_kept": {
                name: [f"{c['published_as']}: {c['purpose']}" for c in d["columns"] if c["published_as"]]
                for name, d in facts["datasets"].items()
            },
            "retention": {name: d["policy"]["retention"] for name, d in facts["datasets"].items()},
            "means": "Keyed pseudonymization (HMAC-SHA256), generalization along reviewed hierarchies, record and cell "
            "suppression, redaction of free text; published only after a Great Expectations gate.",
        },
        "risks": {
            "rows_published": sum(p["rows"]["published"] for p in parts),
            "smallest_k": min((p["k"] for p in parts if p["k"] is not None), default=None),
            "max_prosecutor_risk": max((p["metrics"]["prosecutor_risk_max"] or 0 for p in parts), default=None),
            "partitions_failing_validation": sum(not p["validation"]["success"] for p in parts),
            "linkage_across_partitions": {
                name: d.get("linkage") for name, d in (latest_review or {}).get("datasets", {}).items()
            },
            "release": facts["release"],
            "residual": [
                "No free text is published; after-sales text is kept, redacted, only in the restricted tier.",
                "Each partition (a dataset on a date) is its own unit: its tokens join nothing outside it. An "
                "intruder who knows more than m items of a person in one partition is outside the model.",
                "Two copies of the release from before and after an erasure differ by the rows of a batch of at "
                "least k requesters (unless flushed early, as the ledger records); within one partition, by "
                "fewer: an intruder who knows that a person asked for erasure, and their purchases on a day, "
                "can tell their record of that day apart.",
            ],
        },
        # Who receives what; the officer checks it against the actual access rights before signing.
        "recipients": [
            {
                "who": "Analysts",
                "receives": "the anonymized warehouse, read-only (tuomin query: no file outside it, no writes)",
                "basis": "de-identified (去标识化) while a pseudonym key lives; anonymized information (PIPL Art. 73(4)) once "
                "the release passes and the keys are destroyed; no raw data, no key",
            },
            {
                "who": "Personal-information protection officer",
                "receives": "the restricted area: ledger, evidence packs, quarantined rows, GX results",
                "basis": "Art. 52: supervises the processing; holds exact counts, some below k",
            },
            {
                "who": "Pipeline operators",
                "receives": "the raw exports until purged, the encrypted backups, the keys until destroyed",
                "basis": "Art. 51: the processing itself, under access control; every action recorded in the ledger",
            },
        ],
        "sign_off": ["Personal-information protection officer", "Data owner (the business)", "Security lead"],
        "measures": {
            "partitions_published": len(parts),
            "backups_encrypted": len(facts["backups"]),
            "deletion_certificates": len(facts["deletions"]),
            "keys_destroyed": [f"{e['key']} {e['key_id']}" for e in destroyed],
            # Partitions made with a key not destroyed can still be linked to people by whoever holds it.
            "pseudonym_keys_alive": sorted(
                {p["key_id"] for p in parts} - {e["key_id"] for e in destroyed if e["key"] == "pseudonym"}
            ),
            "reviews": len(facts["reviews"]),
            "access_requests": sum(r["kind"] == "subject_lookup" for r in facts["subject_requests"]),
            "erasure_requests": sum(r["kind"] == "erasure_requested" for r in facts["subject_requests"]),
            "partitions_republished_for_erasure": sum(len(r.get("republished") or []) for r in facts["subject_requests"]),
            "last_review_passed": latest_review["success"] if latest_review else None,
            "ledger_intact": facts["ledger"]["intact"],
            "ledger_head": facts["ledger"]["head"],
        },
    }
