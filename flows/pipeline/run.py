"""What one run shares, and what it reads and rebuilds.

The Run object holds the key and the erasure list, so it never becomes a Prefect parameter (flow
parameters are stored by the Prefect server); flows receive paths and labels only.

A run is one release over the files it reads: every row goes to the unit of its own date
(transforms/units.py), whichever file delivered it. What to read (`select`):

    every        every file of every source (a snapshot source: its latest snapshot's files);
                 every unit they hold is (re)published
    dates        the files of the export dates named (`date`, or `start` to `end`): the units
                 those files hold are rebuilt, from them and from every other file the ledger
                 says those units were made from
    default      the files not yet read, or changed since (by SHA-256), and everything when a
                 source's policy, the key or the erasure list changed: the units they hold, as above

A unit depends on the files that placed rows in it, its policy, the key and the erasure list (its
formed batches: a held request changes nothing published, flows/closing/erasure.py); its
fingerprint, a SHA-256 over those, keys its tokens and is recorded with it. Units whose partitions
are below their dataset's release levels (flows/pipeline/release_levels.py) are rebuilt too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from flows.pipeline import record, release_levels
from flows.pipeline.parameters import RunParameters
from flows.pipeline.passes import Job, census
from flows.storage import intents, ledger
from flows.storage import landing as landing_io
from flows.storage.backup import BackupKey
from flows.storage.entries import Entry, PartitionEntry, RunEntry
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
    max_unit_rows: int = RunParameters.model_fields["max_unit_rows"].default
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
        max_unit_rows: int = RunParameters.model_fields["max_unit_rows"].default,
    ) -> Run:
        """The run's inputs, keys and erasure list; a pseudonym key other than the warehouse's is
        refused unless `rotate_key` (see keys.check_continuity)."""
        area = landing_io.Landing(landing)
        pseudonymizer = load_pseudonymizer()
        check_continuity(Path(restricted), pseudonymizer.key_id, rotate_key)
        requests = landing_io.read_erasure_requests(area)
        return cls(
            run_id=dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
            landing=area,
            warehouse=Path(warehouse),
            restricted=Path(restricted),
            policy_dir=Path(policies),
            policies=load_policies(Path(policies)),
            pseudonymizer=pseudonymizer,
            backup_key=load_backup_key() if backup else None,
            subjects=Subjects.from_requests(landing_io.applied_requests(requests)),
            erasure_sha256=landing_io.requests_sha256(requests),
            drop_unknown=drop_unknown,
            triggered_by=record.triggered_by(trigger),
            max_unit_rows=max_unit_rows,
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
            self.max_unit_rows,
        )

    def fingerprint(self, policy: SourcePolicy, inputs: list[tuple[str, str]], linked: int | None = None) -> str:
        """SHA-256 of what a unit depends on: (path, SHA-256) of the files that placed rows in it,
        its policy, the key and the erasure list; for a source that finds its customers through
        other exports, a digest of the customers its rows were linked to (`linked`)."""
        basis = {
            "inputs": sorted(inputs),
            "policy": policy.sha256,
            "key": self.pseudonymizer.key_id,
            "erasure": self.erasure_sha256,
        } | ({"linked": linked} if linked is not None else {})
        return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()

    def files(self, policy: SourcePolicy) -> dict[str, dt.date]:
        """A source's files in the landing (path: export date): all of them, or for a snapshot
        source those of its latest snapshot only."""
        found = landing_io.source_files(self.landing, policy)
        if policy.unit.snapshot and found:
            latest = max(found.values())
            return {path: day for path, day in found.items() if day == latest}
        return found


@dataclass
class Selection:
    """What a run reads and rebuilds: per source, the landing files to read, and the units to
    (re)publish from them (None: every unit they hold)."""

    files: dict[str, list[str]] = field(default_factory=dict)
    units: dict[str, frozenset[str] | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.files.values())

    def widened(self, run: Run, sources: list[str]) -> Selection:
        """This selection with every unit of `sources` (all their files still held)."""
        files = dict(self.files) | {name: list(run.files(run.policies[name])) for name in sources}
        units = dict(self.units) | dict.fromkeys(sources)
        return Selection(files, units)


def recover(run: Run) -> list[str]:
    """What a crash left half done, finished or rolled back before anything is selected (a torn
    ledger line set aside, open intents ended: flows/storage/ledger.py), each recorded: its lines."""
    done = []
    repaired = ledger.repair(run.restricted, "tuomin run")
    ledger.writable(run.restricted)  # a ledger that does not verify stops the run here, in one line
    if repaired is not None:
        done.append(f"repaired: {repaired.data.line()}")
    done += [f"recovered: {r.data.line()}" for r in intents.recover(run.restricted, run.warehouse, "tuomin run")]
    return done


def select(
    run: Run, date: dt.date | None, start: dt.date | None, end: dt.date | None, every: bool
) -> tuple[Selection, list[str]]:
    """(what to read and rebuild, the sources left as they are because nothing of theirs changed)."""
    entries = ledger.read(run.restricted)
    current = ledger.partition_entries(run.restricted, entries)
    below = release_levels.stale(run.restricted, run.policies)  # a run that died before republishing them
    read = _read_before(entries)
    picked: dict[str, list[str]] = {}
    for name, policy in run.policies.items():
        held = run.files(policy)
        if every:
            chosen = list(held)
        elif date or start or end:
            low, high = date or start or dt.date.min, date or end or dt.date.max
            chosen = [path for path, day in held.items() if low <= day <= high]
        else:
            ours = {key: entry.data for key, entry in current.items() if key[0] == name}
            basis = {(d.policy_sha256, d.key_id, d.erasure_sha256) for d in ours.values()}
            fresh = basis <= {(policy.sha256, run.pseudonymizer.key_id, run.erasure_sha256)}
            chosen = list(held) if not fresh else [p for p in held if read.get(p) != run.landing.sha256(p)]
            if policy.unit.snapshot:  # the latest snapshot, unless it is the one published under this basis
                published = {period for (_, period) in ours}
                same = fresh and not chosen and {day.isoformat() for day in held.values()} <= published
                chosen = [] if same else list(held)
            chosen += [path for key in below.get(name, []) for path in _made_from(current[(name, key)]) if path in held]
        picked[name] = sorted(set(chosen))
    _follow_links(run, picked)
    selection = Selection({name: files for name, files in picked.items() if files})
    unchanged = [name for name, files in picked.items() if not files]
    if every or landing_io.check_headers(run.landing, run.policies, selection.files, run.drop_unknown):
        selection.units = dict.fromkeys(selection.files)  # all they hold; or refused, naming them, before a row is read
        return selection, unchanged
    for name, files in list(selection.files.items()):
        if run.policies[name].unit.snapshot:
            selection.units[name] = None
            continue
        # The units these files hold, and every other file the ledger says those units were made
        # from (rows of one unit may come from several files: a late line, a dump beside dailies).
        held = run.files(run.policies[name])
        units = set(below.get(name, []))
        for path in files:
            units |= set(census(run.landing, run.policies[name], path))
            units |= {period for (dataset, period), entry in current.items() if dataset == name and path in _made_from(entry)}
        made_from = {path for label in units if (name, label) in current for path in _made_from(current[(name, label)])}
        selection.files[name] = sorted(set(files) | {path for path in made_from if path in held})
        selection.units[name] = frozenset(units)
    return selection, unchanged


def out_of_place(run: Run, selection: Selection) -> list[str]:
    """Every published partition this run leaves as it is whose file is not the one the ledger
    records (missing, swapped, damaged): a warehouse that no longer holds what the ledger says
    it published, which no run may build on unnoticed. One line each, with the way back."""
    found = []
    for (name, period), entry in ledger.partition_entries(run.restricted).items():
        units = selection.units.get(name, frozenset())
        if (name in selection.units and units is None) or period in (units or ()):
            continue  # republished by this run
        if (wrong := ledger.out_of_place(run.warehouse, entry.data)) is not None:
            found.append(
                f"{name} {period}: {wrong} (ledger entry {entry.seq}); republish it from the landing with "
                f"`tuomin run --date <its export date>`, or put the recorded file back"
            )
    return found


def _follow_links(run: Run, picked: dict[str, list[str]]) -> None:
    """A source that finds its customers through another's exports (after-sales cases through the
    CRM's member numbers and the tills' receipts) is read again where that other one changed:
    every file, when a snapshot changed; else its files from the first changed export date to
    `lookback_days` after the last. Its units are rewritten only where the customers found differ
    (the unit's fingerprint holds them)."""
    for name, policy in run.policies.items():
        extra: set[str] = set()
        for link in policy.link:
            changed = picked.get(link.source, [])
            if not changed:
                continue
            held = run.files(policy)
            if run.policies[link.source].unit.snapshot:
                extra |= set(held)
                continue
            days = [landing_io.date_in_path(path) for path in changed]
            last = max(days) + dt.timedelta(days=link.lookback_days)
            extra |= {path for path, day in held.items() if min(days) <= day <= last}
        picked[name] = sorted(set(picked.get(name, [])) | extra)


def _made_from(entry: ledger.Recorded[PartitionEntry]) -> list[str]:
    return [f.path for f in entry.data.inputs] + [c.file for c in entry.data.copies_not_read]


def _read_before(entries: list[ledger.Recorded[Entry]]) -> dict[str, str]:
    """Every landing file a run that published read (path: SHA-256 as read), and every input a
    published partition records: a file changed since is read again."""
    found: dict[str, str] = {}
    for entry in entries:
        if isinstance(entry.data, RunEntry) and entry.data.status == "published":
            found |= {path: f["sha256"] for path, f in entry.data.files.items()}
        elif isinstance(entry.data, PartitionEntry):
            found |= {f.path: f.sha256 for f in entry.data.inputs}
    return found
