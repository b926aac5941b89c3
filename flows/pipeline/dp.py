"""dp-tables: the differentially private tables of policies/dp/tables.yaml (issue 22), computed
from the raw exports inside the restricted area and published beside the anonymized rows:

    <warehouse>/dataset=dp_<table>/release=<release_id>/part-0.parquet

One release covers the chosen export dates and every table at once. In order:

    check     the DP policy (budget, bounds, each grain against the shop's declared size:
              transforms/dp_review.py) and the ledger, before any file is read
    budget    what earlier releases spent: the same inputs and policies again is up to date (no new
              noise, nothing spent); anything else spends epsilon again, only when asked to, and
              never past the policy's lifetime ceiling
    read      the columns the tables need, every identifier, the erasure list (flows/storage/raw.py)
    people    one id per customer across the three sources (transforms/linkage.py); a customer
              on the erasure list is left out whole, and so is a row that holds no identifier
    release   OpenDP, one context for the release (transforms/dp_tables.py)
    record    a `dp_release` ledger entry first (the budget counts even if publishing fails),
              then each table staged and moved into place

No raw value and no count of the data is logged or written into a file's metadata: only the
policy's numbers, OpenDP's calibration and the number of public cells.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from flows.pipeline.parameters import LandingUrl, Policies, Restricted, Trigger, Warehouse, with_help
from flows.runtime import failpoints, paths
from flows.storage import intents, ledger, raw
from flows.storage import landing as landing_io
from flows.storage import warehouse as warehouse_io
from flows.storage.entries import Change, DPReleaseEntry
from flows.storage.files import file_sha256
from flows.storage.footer import DPTableRecord
from transforms import dp_policy, dp_review, dp_tables, linkage
from transforms.errors import Refused
from transforms.policy import SourcePolicy, load_policies

log = logging.getLogger("tuomin")
LIBRARY = f"opendp {version('opendp')}"


# What epsilon is per, exactly (the files' metadata, the dictionary, the evidence pack).
PRIVACY_UNIT = (
    "one customer as linked across every source and date of the release: rows sharing a normalized document, mobile "
    "or member number, or a case and its receipt; placeholders join no one and rows with no identifier are in no "
    "table; a person typed in g unlinkable ways is g units (g x epsilon)"
)


class DPRefused(Refused, ValueError):
    """A release that would spend budget it was not given, or cannot be computed; nothing was spent."""


def policy_path(policies: Path) -> Path:
    return policies / "dp" / "tables.yaml"


def load(policies_dir: Path) -> tuple[dp_policy.DPPolicy, dict[str, SourcePolicy]]:
    """The DP policy and the sources' policies it needs; DPRefused, in a line, if they cannot be used."""
    path = policy_path(policies_dir)
    try:
        policy = dp_policy.load(path)
        dp_review.review(policy, policies_dir / "hierarchies", path)  # a grain too fine for the shop's declared size
    except (OSError, dp_policy.DPPolicyError) as exc:
        raise DPRefused(f"the DP tables' policy cannot be used: {exc}; nothing was read or spent") from None
    policies = load_policies(policies_dir)
    missing = sorted({t.source for t in policy.tables.values()} - set(policies))
    if missing:
        raise DPRefused(f"{path}: no policy for source(s) {', '.join(missing)} under {policies_dir}; nothing was read or spent")
    return policy, policies


def policies_sha256(policies_dir: Path) -> str:
    """One hash of every policy file and hierarchy under `policies_dir` (names and contents): a
    release depends on the sources' policies and the public keys as much as on the DP policy."""
    found = sorted(p for p in policies_dir.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".csv"))
    listing = [{"path": p.relative_to(policies_dir).as_posix(), "sha256": file_sha256(p)} for p in found]
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


def inputs_digest(files: list[dict[str, str]], dates: list[dt.date], policy_sha: str, requests_sha: str) -> str:
    """What a release depends on, in one hash: the files, the dates, the policies (every one, with
    the hierarchies), the erasure list."""
    document = {"files": sorted(files, key=lambda f: f["path"]), "dates": [d.isoformat() for d in dates]}
    document.update(policy=policy_sha, requests=requests_sha)
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Budget:
    spent: float  # by every release the ledger records
    same: DPReleaseEntry | None  # the last release, if it had these inputs and its files are all in place


def budget(restricted: Path, warehouse: Path, digest: str) -> Budget:
    releases = [e.data for e in ledger.of_kind(restricted, DPReleaseEntry)]
    spent = sum(e.epsilon for e in releases)
    last = releases[-1] if releases else None
    same = None
    if last and last.inputs_sha256 == digest:
        files = [warehouse / t["path"] for t in last.tables]
        if all(f.is_file() and file_sha256(f) == t["sha256"] for f, t in zip(files, last.tables)):
            same = last
    return Budget(spent, same)


def _requests_sha(landing: landing_io.Landing) -> str:
    return landing_io.requests_sha256(landing_io.read_erasure_requests(landing)) or ""


def preflight(
    landing_url: str, warehouse: Path, restricted: Path, policies_dir: Path, start: dt.date | None, end: dt.date | None
) -> tuple[dp_policy.DPPolicy, dict[str, SourcePolicy], landing_io.Landing]:
    """What a DP release checks before it reads or spends anything (and `tuomin dp` before Prefect
    starts): a period that is one, the landing, the DP policy and its budget, and a ledger that can
    be trusted (budgets are counted in it). Refused otherwise, nothing spent."""
    if start and end and start > end:
        raise DPRefused(f"--start {start} is after --end {end}; nothing was read or spent")
    policy, policies = load(policies_dir)
    landing = landing_io.existing(landing_url)
    ledger.trusted(restricted, warehouse)
    return policy, policies, landing


class DPTable(BaseModel):
    """One table of a DP release, as a run reports it (the ledger's entry has its SHA-256 too)."""

    model_config = ConfigDict(frozen=True)
    name: str
    path: str  # under the warehouse
    epsilon: float
    margin_95: float
    cells: int


class DPRun(BaseModel):
    """What a DP release run did: published a release, or found its inputs' release in place."""

    model_config = ConfigDict(frozen=True)
    release_id: str
    status: Literal["published", "up to date"]
    epsilon: float
    spent_total: float  # on these customers, this release included
    lifetime_epsilon: float | None = None  # the policy's ceiling on spent_total
    tables: list[DPTable]
    ledger_seq: int | None = None  # the entry it recorded (none when up to date)

    @classmethod
    def of(cls, data: DPReleaseEntry, status: Literal["published", "up to date"], seq: int | None = None) -> DPRun:
        tables = [DPTable.model_validate({k: t[k] for k in DPTable.model_fields}) for t in data.tables]
        return cls(
            release_id=data.release_id,
            status=status,
            epsilon=data.epsilon,
            spent_total=data.spent_total,
            lifetime_epsilon=data.lifetime_epsilon,
            tables=tables,
            ledger_seq=seq,
        )

    def line(self) -> str:
        return (
            f"DP release {self.release_id} {self.status}: {len(self.tables)} table(s), "
            f"epsilon {self.epsilon:g} ({self.spent_total:g} spent in all"
            + (f", of a lifetime ceiling of {self.lifetime_epsilon:g})" if self.lifetime_epsilon is not None else ")")
        )


def release(
    landing_url: str,
    warehouse: Path,
    restricted: Path,
    policies_dir: Path,
    start: dt.date | None,
    end: dt.date | None,
    additional: bool,
    trigger: str,
    flow_run_id: str = "",
) -> DPRun:
    """One release of the DP tables (see the module's docstring); returns what it published."""
    path = policy_path(policies_dir)
    with warehouse_io.exclusive(warehouse):
        policy, policies, landing = preflight(landing_url, warehouse, restricted, policies_dir, start, end)
        chosen = [d for d in landing_io.export_dates(landing, policies) if (start or d) <= d <= (end or d)]
        if not chosen:
            raise DPRefused(
                f"no export date in {landing_url} from {start or 'the first'} to {end or 'the last'}; nothing was read or spent"
            )
        policy_sha, every_policy = file_sha256(path), policies_sha256(policies_dir)
        files = raw.listed(landing, policies, chosen)
        digest = inputs_digest(files, chosen, every_policy, _requests_sha(landing))
        found = budget(restricted, warehouse, digest)
        if found.same is not None:
            log.info(
                "DP release %s has these inputs and policy and is in place: up to date, nothing spent", found.same.release_id
            )
            return DPRun.of(found.same, "up to date")
        ceiling, total = policy.release.lifetime_epsilon, found.spent + policy.release.epsilon
        if total > ceiling + dp_policy.SHARE_TOLERANCE:
            raise DPRefused(
                f"this release would bring the epsilon spent on these customers to {total:g}, past the lifetime "
                f"ceiling of {ceiling:g} ({path}: release.lifetime_epsilon; {found.spent:g} spent by earlier releases); "
                "nothing was spent"
            )
        if found.spent > 0 and not additional:
            raise DPRefused(
                f"earlier DP releases spent epsilon {found.spent:g} on these customers; this one would bring it to "
                f"{found.spent + policy.release.epsilon:g}. Pass --additional to spend it (recorded); nothing was spent"
            )
        frames = raw.read(landing, policies, policy.tables, files)
        rows = linkage.people(frames)
        calendar = dp_tables.Calendar(chosen, policies_dir / "hierarchies")
        frame = pl.concat([dp_tables.contributions(name, t, rows[t.source], calendar) for name, t in policy.tables.items()])
        released = dp_tables.release(policy, frame, calendar)
        release_id = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        head = ledger.head(restricted)
        reviewed = {e.table: e.record(policy.review.max_expected_error) for e in dp_review.review(policy, calendar.hierarchies)}
        staged = [_stage(warehouse, release_id, r, policy, chosen, policy_sha, head, total, reviewed[r.name]) for r in released]
        then = DPReleaseEntry(
            release_id=release_id,
            flow_run_id=flow_run_id,
            triggered_by=trigger,
            dates=[d.isoformat() for d in chosen],
            inputs=files,
            inputs_sha256=digest,
            policy_file=path.name,
            policy_sha256=policy_sha,
            library=LIBRARY,
            epsilon=policy.release.epsilon,
            delta=policy.release.delta,
            spent_before=found.spent,
            spent_total=total,
            lifetime_epsilon=ceiling,
            policies_sha256=every_policy,
            rows=_rows(frames, rows),
            tables=[
                {
                    "name": r.name,
                    "path": (dp_tables_target(warehouse, release_id, r.name)).relative_to(warehouse).as_posix(),
                    "sha256": file_sha256(s),
                    "epsilon": r.epsilon,
                    "scale": r.scale,
                    "margin_95": r.margin,
                    "sensitivity_l1": r.sensitivity,
                    "cells": r.cells.num_rows,
                }
                for r, s in zip(released, staged)
            ],
        )
        # Intend, act, commit (flows/storage/intents.py): tables placed before a crash are recorded
        # by the next command if all are in place, taken out again if not (no epsilon spent).
        changes = [Change(path=t["path"], sha256=t["sha256"]) for t in then.tables]
        intent = intents.intend(restricted, "dp", changes, then)
        failpoints.hit("dp-intended")
        for r, s in zip(released, staged):
            warehouse_io.put(s, warehouse, dp_tables_target(warehouse, release_id, r.name))
            failpoints.hit("dp-placed-one")
            log.info(
                "%s: %d public cells, epsilon %.3g, %s noise of scale %s%.4g: within ±%.4g for 95%% of cells",
                r.name,
                r.cells.num_rows,
                r.epsilon,
                r.distribution,
                "up to " if r.by else "",  # clipped per category: the noisiest category's
                r.scale,
                r.margin,
            )
        entry = intents.commit(restricted, intent, then)
        warehouse_io.discard_staging(warehouse, release_id)
        return DPRun.of(entry.data, "published", entry.seq)


def dp_tables_target(warehouse: Path, release_id: str, table: str) -> Path:
    return warehouse_io.release_folder(warehouse, table, release_id) / warehouse_io.PART


def _stage(
    warehouse: Path,
    release_id: str,
    released: dp_tables.Released,
    policy: dp_policy.DPPolicy,
    dates: list[dt.date],
    policy_sha: str,
    head: ledger.Head,
    spent_total: float,
    review: dict[str, Any],
) -> Path:
    staged = dp_tables_target(warehouse_io.staging(warehouse, release_id), release_id, released.name)
    metadata = DPTableRecord(
        release_id=release_id,
        created_at=dt.datetime.now(dt.UTC).isoformat(),
        dates=[d.isoformat() for d in dates],
        privacy_unit=PRIVACY_UNIT,
        release_epsilon=policy.release.epsilon,
        spent_total=spent_total,
        lifetime_epsilon=policy.release.lifetime_epsilon,
        delta=policy.release.delta,
        library=LIBRARY,
        policy_sha256=policy_sha,
        ledger_head=head.record(),  # the ledger before this release's entry: `ledger verify` finds the entry after it
        **released.metadata(),
        review=review,
    )
    return warehouse_io.stage_at(staged, [released.cells], FIELDS, lambda: metadata, f"dp_{released.name}")


FIELDS = {column: {"meaning": meaning} for column, meaning in dp_policy.COLUMNS.items()}


def _rows(read_frames: dict[str, pl.DataFrame], kept: dict[str, pl.DataFrame]) -> dict[str, dict[str, int]]:
    """Rows read, left out as holding no identifier, and left out as an erased customer's, per
    source (in the restricted ledger only: exact counts)."""
    found = {}
    for source, frame in read_frames.items():
        unlinked = int((~linkage.identified(frame)).sum())
        found[source] = {"read": frame.height, "unlinked": unlinked, "erased": frame.height - unlinked - kept[source].height}
    return found


Start = Annotated[dt.date | None, Field(description="First export date the release covers (YYYY-MM-DD); none: the first found.")]
End = Annotated[dt.date | None, Field(description="Last export date the release covers (YYYY-MM-DD); none: the last found.")]
Additional = Annotated[
    bool, Field(description="Spend epsilon again when an earlier release covered these customers (the ledger adds it up).")
]


@flow(name="dp-tables", persist_result=False, log_prints=False)
@with_help
def dp_tables_flow(
    landing: LandingUrl = str(paths.SAMPLE_LANDING),
    warehouse: Warehouse = str(paths.WAREHOUSE),
    restricted: Restricted = str(paths.RESTRICTED),
    policies: Policies = str(paths.POLICIES),
    start: Start = None,
    end: End = None,
    additional: Additional = False,
    trigger: Trigger = "python",
) -> DPRun:
    """Compute and publish the differentially private tables (policies/dp/tables.yaml) for a release."""
    return release(
        landing,
        Path(warehouse),
        Path(restricted),
        Path(policies),
        start,
        end,
        additional,
        trigger,
        str(flow_run.get_id() or ""),
    )
