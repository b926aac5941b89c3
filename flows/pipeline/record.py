"""What is recorded with every published partition: its file metadata, each column's field
metadata, and its ledger entry. Counts, names, levels and hashes only, never a data value.

The file's metadata is what analysts (and anyone holding a copy) read: it says how to read and
re-check the file, and holds no count below k (rows erased, suppressed or quarantined, cells
blanked, rows per input file: a small one can point at a person). Those exact counts are in the
partition's ledger entry, in the restricted area, where the pipeline checks that they reconcile."""

from __future__ import annotations

import datetime as dt
import getpass
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.storage.entries import PartitionEntry, Rows
from flows.storage.footer import PartitionRecord, footer_json
from flows.storage.ledger import HEAD_KEY
from transforms import metrics
from transforms.criteria import COLUMN_CRITERIA
from transforms.hierarchy import TableHierarchy
from transforms.operators import Generalize, Pseudonymize
from transforms.plan import PEOPLE, ROWS, Plan
from transforms.policy import SourcePolicy
from transforms.units import UNIT


def partition_metadata(
    policy: SourcePolicy, inputs: Inputs, plan: Plan, classes, outcome, published: int, period: str, run: dict
) -> PartitionRecord:
    """The footer of a unit's file (flows/storage/footer.py): enough to re-check k and trace the run.
    Privacy figures are measured on `classes` (the unit's published rows' distinct combinations
    with counts). `run`: run_id, key_id, flow_run_id, fingerprint, unit, ledger_head (the ledger's
    last entry before this partition's, see flows/storage/ledger.py)."""
    solution = plan.solution
    qis = plan.qis
    measured = metrics.summary(classes, qis, None, policy.privacy.k, policy.sensitive_outputs, count=ROWS, people=PEOPLE)
    document = {
        "dataset": policy.source,
        "period": period,
        "grain": "snapshot" if policy.unit.snapshot else policy.unit.grain,
        "person_record": policy.unit.record,  # what one person-level record spans
        "quasi_identifiers": qis,
        "k": policy.privacy.k,
        **on_columns(policy),
        "entity_column": policy.entity,
        "policy_file": policy.path.name,
        "policy_sha256": policy.sha256,
        "key_id": run["key_id"],
        "run_id": run["run_id"],
        "flow_run_id": run["flow_run_id"],
        "fingerprint": run["fingerprint"],
        "unit": run["unit"],  # the partition version its tokens are keyed to (see Pseudonymizer.unit_tokens)
        "record": policy.record,
        "m": policy.privacy.m,
        "reference_date": policy.privacy.reference_date,
        HEAD_KEY: run[HEAD_KEY],
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "levels": {k: v for k, v in solution.levels.items() if k != UNIT} if solution else {},
        "search": {"method": solution.method, "nodes_evaluated": solution.nodes_evaluated, "nodes": solution.nodes_total}
        if solution
        else None,
        "max_suppression": policy.privacy.max_suppression,
        "rows": {"published": published},
        "metrics": {
            **measured,
            "loss": solution.loss if solution else 0.0,
            "loss_by_attribute": {k: v for k, v in solution.loss_by_attribute.items() if k != UNIT} if solution else {},
        },
        "columns": {
            c.name: {
                "input": c.input_name,
                "output": c.output_name,
                "role": c.role,
                "pipl": c.pipl,
                "transform": c.transform,
                "technique": c.family,
            }
            | ({"part": c.part} if c.quasi else {})
            for c in policy.columns
        },
        "validation": {"success": outcome.success, "checks": list(outcome.checks)},
        "inputs": [{"path": f["path"], "sha256": f["sha256"]} for f in inputs.files],
        "dropped_columns": [{"file": f, "column": c} for f, c in inputs.dropped],
        "copies_not_read": [{"file": f, "copy_of": o} for f, o in inputs.copies],
    }
    return PartitionRecord.model_validate_json(footer_json(document))  # as the file will hold it: JSON types


@dataclass(frozen=True)
class Inputs:
    """What a partition was made from: files (path, sha256, bytes, rows), columns dropped on
    request, and files not read because they are byte-identical copies of one that was."""

    files: tuple[dict, ...]
    dropped: tuple[tuple[str, str], ...] = ()
    copies: tuple[tuple[str, str], ...] = ()  # (copy, original)


def on_columns(policy: SourcePolicy) -> dict[str, list[dict]]:
    """The criteria on sensitive columns, as a footer records them: under each kind's key, the
    policy's attribute, its published column and the criterion's parameters. A kind every file
    has said since it was first checked is there if only as []; another where the policy declares it."""
    found: dict[str, list[dict]] = {kind: [] for kind, c in COLUMN_CRITERIA.items() if c.always_recorded}
    for c in policy.privacy.criteria:
        found.setdefault(c.kind, []).append({"attribute": c.column, "column": policy.published_name(c.column), **c.parameters()})
    return found


def field_metadata(policy: SourcePolicy, levels: dict[str, int]) -> dict[str, dict[str, str]]:
    """Per published column: what it is and what was done to it, so a value can be read right."""
    out: dict[str, dict[str, str]] = {}
    for column in policy.columns:
        name = column.output_name
        if name is None:
            continue
        info = {
            "source_column": column.input_name,
            "role": column.role,
            "pipl": column.pipl,
            "purpose": column.purpose,
            "transform": column.transform,
            "technique": column.family,
        }
        op = column.operator
        if isinstance(op, Generalize):
            level = levels.get(name, op.level if op.level is not None else 0)
            table = op.hierarchy.table
            top = TableHierarchy.from_csv(policy.path.parent / table).top if table else None
            info |= {"level": str(level), "level_meaning": op.hierarchy.describe(level, top)}
        if isinstance(op, Pseudonymize):
            info |= {"token": f"keyed HMAC-SHA256, domain '{op.domain}'"}
        out[name] = info
    if policy.entity and policy.entity not in out:
        out[policy.entity] = {
            "role": "entity_key",
            "purpose": "The customer the row belongs to, found through the linked exports; a token keyed to the partition.",
            "technique": "pseudonymization",
            "token": "keyed HMAC-SHA256, domain 'customer', linked through "
            + ", ".join(f"{link.column} -> {link.source}" for link in policy.link),
        }
    return out


def triggered_by(via: str) -> dict[str, str]:
    """Who set something going, as the ledger records it: how, as which user, on which host."""
    return {"via": via, "user": getpass.getuser(), "host": socket.gethostname()}


def ledger_entry(
    metadata: PartitionRecord,
    rows: Rows,
    cells: dict[str, int],
    inputs: list[dict],
    output: Path,
    warehouse: Path,
    sha256: str,
    triggered_by: dict[str, str],
    started: dt.datetime,
    size: int | None = None,
    **more: Any,
) -> PartitionEntry:
    """The ledger's record of one published partition: the file's metadata, and the exact counts
    it leaves out (`rows`: read, quarantined, erased, suppressed, published; `cells` blanked per
    column; `inputs` with their bytes and rows); `more`: the release's verdict, the erasure list's
    hash, what an erasure changed. `size`: the file's bytes, where `output` is where it will be
    (its entry is written, as an intent, before the file is put in place)."""
    keep = (
        "dataset",
        "period",
        "run_id",
        "flow_run_id",
        "fingerprint",
        "unit",
        "policy_file",
        "policy_sha256",
        "key_id",
        "k",
        "levels",
        "dropped_columns",
        "copies_not_read",
    )
    footer = metadata.footer()
    document = {
        **{key: footer.get(key) for key in keep},
        "criteria": {kind: footer[kind] for kind in COLUMN_CRITERIA if kind in footer},
        "rows": rows,
        "cells_suppressed": cells,
        "inputs": inputs,
        "k_achieved": metadata.metrics.k,
        "l_achieved": metadata.metrics.l_distinct,
        "validation": {
            "success": metadata.validation.success,
            "checks": {c["expectation"]: c["success"] for c in metadata.validation.checks},
        },
        "output": {
            "path": output.relative_to(warehouse).as_posix(),
            "sha256": sha256,
            "bytes": output.stat().st_size if size is None else size,
            "rows": metadata.published_rows,
        },
        "started_at": started.isoformat(timespec="seconds"),
        "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "triggered_by": triggered_by,
    }
    return PartitionEntry.model_validate(document | more)
