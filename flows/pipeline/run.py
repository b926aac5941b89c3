"""What one run shares across its export dates, and which dates it should process.

The Run object holds the key and the erasure list, so it never becomes a Prefect parameter (flow
parameters are stored by the Prefect server); flows receive dates only.

A partition depends on its input files, its policy, the key and the erasure list. Its
fingerprint, a SHA-256 over those, is recorded in the ledger when it is published; by default a
run processes only the dates whose current fingerprint differs from the last one published (new
dates, re-exported files, a changed policy or key, a new erasure request), and the dates left below
their dataset's release levels (flows/pipeline/release_levels.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from flows.pipeline import record, release_levels
from flows.pipeline.passes import Job
from flows.runtime.clock import today
from flows.storage import landing as landing_io
from flows.storage import ledger
from flows.storage.backup import BackupKey
from flows.storage.keys import check_continuity, load_backup_key, load_pseudonymizer
from transforms.policy import SourcePolicy, load_policies
from transforms.pseudonymize import Pseudonymizer
from transforms.steps import Subjects


@dataclass
class Run:
    run_id: str
    landing: landing_io.Landing
    warehouse: Path
    restricted: Path
    policy_dir: Path
    policies: dict[str, SourcePolicy]
    pseudonymizer: Pseudonymizer
    backup_key: BackupKey | None  # None: the run was asked not to back up
    subjects: Subjects
    erasure_sha256: str | None
    drop_unknown: bool
    triggered_by: dict
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @classmethod
    def start(
        cls,
        landing: str,
        warehouse: str,
        restricted: str,
        policies: str,
        drop_unknown: bool,
        trigger: str,
        backup: bool = True,
        rotate_key: bool = False,
    ) -> Run:
        """The run's inputs, keys and erasure list; a pseudonym key other than the warehouse's is
        refused unless `rotate_key` (see keys.check_continuity)."""
        area = landing_io.Landing(landing)
        pseudonymizer = load_pseudonymizer()
        check_continuity(Path(restricted), pseudonymizer.key_id, rotate_key)
        has_requests = area.exists(landing_io.ERASURE_REQUESTS)
        return cls(
            run_id=dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
            landing=area,
            warehouse=Path(warehouse),
            restricted=Path(restricted),
            policy_dir=Path(policies),
            policies=load_policies(Path(policies)),
            pseudonymizer=pseudonymizer,
            backup_key=load_backup_key() if backup else None,
            subjects=Subjects.from_requests(landing_io.read_erasure_requests(area)),
            erasure_sha256=area.sha256(landing_io.ERASURE_REQUESTS) if has_requests else None,
            drop_unknown=drop_unknown,
            triggered_by=record.triggered_by(trigger),
        )

    def job(self) -> Job:
        """What the run's tasks need, without the key (they load it, and check its key_id)."""
        return Job(
            self.run_id,
            self.restricted,
            self.warehouse,
            self.policy_dir,
            self.pseudonymizer.key_id,
            self.subjects,
            self.drop_unknown,
        )

    def fingerprint(self, policy: SourcePolicy, inputs: list[tuple[str, str]]) -> str:
        """SHA-256 of what a partition depends on: (path, SHA-256) of its input files, its
        policy, the key and the erasure list."""
        basis = {
            "inputs": sorted(inputs),
            "policy": policy.sha256,
            "key": self.pseudonymizer.key_id,
            "erasure": self.erasure_sha256,
        }
        return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()

    def sources_for(self, date: dt.date) -> list[str]:
        """The sources that delivered files for a date and are still within their retention
        period (an expired date is never published again)."""
        return [
            name
            for name, policy in self.policies.items()
            if not policy.retention.expired(date, today()) and landing_io.files_for(self.landing, policy, date)
        ]

    def nothing_for(self, date: dt.date) -> str | None:
        """Why a requested date has nothing to process, if it has not."""
        if self.sources_for(date):
            return None
        if any(landing_io.files_for(self.landing, policy, date) for policy in self.policies.values()):
            return f"{date}: past the retention period of every source that delivered files; never published again"
        return f"{date}: no export files for this date under {self.landing.url}; nothing published"

    def current_fingerprint(self, policy: SourcePolicy, date: dt.date) -> str | None:
        if policy.retention.expired(date, today()):
            return None
        files = landing_io.files_for(self.landing, policy, date)
        return self.fingerprint(policy, [(f, self.landing.sha256(f)) for f in files]) if files else None


def select_dates(
    run: Run, date: str | None, start: str | None, end: str | None, every: bool
) -> tuple[list[dt.date], list[dt.date]]:
    """(dates to process, dates skipped as already published and unchanged). A named date, a
    range (a backfill) or `every` forces processing; otherwise only new or changed dates run."""
    if date:
        return [dt.date.fromisoformat(date)], []
    found = landing_io.export_dates(run.landing, run.policies)
    if start or end:
        low = dt.date.fromisoformat(start) if start else dt.date.min
        high = dt.date.fromisoformat(end) if end else dt.date.max
        return [d for d in found if low <= d <= high], []
    if every:
        return found, []
    published = {(e["dataset"], e["export_date"]): e.get("fingerprint") for e in ledger.partitions(run.restricted)}
    below = release_levels.stale(run.restricted, run.policies)  # a run that died before republishing them
    todo: list[dt.date] = []
    skipped: list[dt.date] = []
    for day in found:
        current = {name: run.current_fingerprint(policy, day) for name, policy in run.policies.items()}
        fresh = day not in below and all(
            published.get((name, day.isoformat())) == fp for name, fp in current.items() if fp is not None
        )
        (skipped if fresh else todo).append(day)
    return todo, skipped
