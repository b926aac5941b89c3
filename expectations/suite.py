"""The publication gate: a GX suite built from a source's policy and run on the anonymized batch.

Per partition (Gate):
    schema      ExpectTableColumnsToMatchSet: exactly the columns the policy publishes
    k           ExpectTableToBeKAnonymous over the quasi-identifiers, counted in entities
    criteria    per criterion on a sensitive column (transforms/criteria.py): the expectation
                partition.criterion_expectation gives it
    no PII      ExpectNoDirectIdentifiers over every published string column
Per release, on the person-level record (ReleaseGate):
    k^m         ExpectPeopleToBeKmAnonymous at every m from 0 (entity-level k) to the policy's m
    l           ExpectPeopleToBeLDiverse per sensitive attribute, with everything published beside it
    unit        ExpectEachPersonInOneUnit: no token joins two datasets or dates

Results are reduced to numbers and names (no data values) before anything stores or prints them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import logging
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import great_expectations as gx
import pandas as pd
import pyarrow as pa
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.execution_engine import pandas_execution_engine

import expectations  # noqa: F401  (registers the custom expectations before any suite is built)
from expectations.partition import ExpectNoDirectIdentifiers, ExpectTableToBeKAnonymous, criterion_expectation
from expectations.release import ExpectEachPersonInOneUnit, ExpectPeopleToBeKmAnonymous, ExpectPeopleToBeLDiverse
from transforms.criteria import PrivacyModel
from transforms.policy import SourcePolicy

# Only our table-level expectations and the column-set check run, and none of them reports
# values; partial_unexpected_count=0 keeps it so should a column-map expectation ever be added.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0, "include_unexpected_rows": False}

# GX fingerprints every pandas batch under 1 GB by hashing it whole (a batch marker nobody here
# reads): 8 bytes a cell at once, 0.7 GB on the person frame of a 10 M-line history, the gate's
# peak. No batch is fingerprinted.
pandas_execution_engine.HASH_THRESHOLD = 0


@dataclass(frozen=True)
class Gate:
    dataset: str
    columns: tuple[str, ...]
    quasi_identifiers: tuple[str, ...]
    entity: str | None
    model: PrivacyModel  # k, and the criteria on sensitive columns (transforms/criteria.py)
    string_columns: tuple[str, ...]
    count_column: str | None = None  # rows are distinct combinations with this many rows each
    size_column: str | None = None  # class sizes, spread over the class's rows (summed per class)

    @classmethod
    def of(cls, policy: SourcePolicy, schema: pa.Schema) -> Gate:
        """The gate a source's policy sets for a table with this schema."""
        return cls(
            dataset=policy.source,
            columns=tuple(policy.output_columns),
            quasi_identifiers=tuple(policy.published_name(c.name) for c in policy.quasi_identifiers),
            entity=policy.entity,
            model=policy.model,
            string_columns=_strings(schema),
        )

    @classmethod
    def recorded(
        cls, dataset: str, schema: pa.Schema, quasi_identifiers: list[str], entity: str | None, model: PrivacyModel
    ) -> Gate:
        """The gate a published partition passed, from what its file records
        (flows/storage/footer.PartitionRecord.gate), so that it holds even if the policy changed since."""
        return cls(
            dataset=dataset,
            columns=tuple(schema.names),
            quasi_identifiers=tuple(quasi_identifiers),
            entity=entity,
            model=model,
            string_columns=_strings(schema),
        )

    def expectations(self) -> list:
        found: list = []
        if self.columns:
            found.append(gx.expectations.ExpectTableColumnsToMatchSet(column_set=list(self.columns), exact_match=True))
        if self.quasi_identifiers:
            found.append(
                ExpectTableToBeKAnonymous(
                    quasi_identifiers=list(self.quasi_identifiers),
                    k=self.model.k,
                    entity_column=self.entity,
                    count_column=self.size_column or self.count_column,
                )
            )
        found += [criterion_expectation(c, list(self.quasi_identifiers), self.count_column) for c in self.model.columns]
        if self.string_columns:
            found.append(ExpectNoDirectIdentifiers(columns=list(self.string_columns)))
        return found

    def content(self) -> Gate:
        """The checks that hold batch by batch (schema, no identifier): run on every written batch."""
        return dataclasses.replace(self, quasi_identifiers=(), model=dataclasses.replace(self.model, columns=()))

    def classes(self, count_column: str, size_column: str) -> Gate:
        """The checks over the whole partition (k, l), run once on its classes (plan.classes_frame):
        k on the class sizes it carries, l on its rows."""
        return dataclasses.replace(
            self, columns=(), string_columns=(), entity=None, count_column=count_column, size_column=size_column
        )


@dataclass(frozen=True)
class ReleaseGate:
    """The person-level criteria of a release (expectations/release.py), run on its person frame
    (transforms/risk.person_frame) before any of its partitions is published."""

    m: int  # items the intruder may know of a person (purchases and contacts); each person's k is in the frame
    diversity: tuple[tuple[str, int], ...] = ()  # (dataset.column, l)
    dataset: str = "release"

    def expectations(self) -> list:
        return [
            *(ExpectPeopleToBeKmAnonymous(m=m) for m in range(self.m + 1)),
            *(ExpectPeopleToBeLDiverse(attribute=attribute, l=l) for attribute, l in self.diversity),
            ExpectEachPersonInOneUnit(),
        ]


def _strings(schema: pa.Schema) -> tuple[str, ...]:
    return tuple(f.name for f in schema if pa.types.is_string(f.type))


@dataclass(frozen=True)
class Outcome:
    success: bool
    checks: tuple[dict, ...]  # {expectation, success, observed, arguments, exception}; numbers and names only

    @classmethod
    def combine(cls, outcomes: list[Outcome]) -> Outcome:
        """One outcome for a partition validated in parts: a check passes if it passed on every
        part; the observed value kept is that of the first part it failed on (else the last)."""
        merged: dict[str, dict] = {}
        for outcome in outcomes:
            for check in outcome.checks:
                kept = merged.get(check["expectation"])
                if kept is None or kept["success"]:
                    merged[check["expectation"]] = check
        return cls(all(o.success for o in outcomes) and bool(merged), tuple(merged.values()))

    def failures(self) -> list[str]:
        return [
            f"{c['expectation']} (observed {c['observed']})" + (f": {c['exception']}" if c["exception"] else "")
            for c in self.checks
            if not c["success"]
        ]


_LOCK = threading.RLock()


@contextmanager
def _exclusive(project: Path | None) -> Iterator[None]:
    """One GX context user at a time: a thread lock (a context is not thread-safe) and, for a
    file project, a lock file, because GX rewrites great_expectations.yml when a process opens the
    project and two Dask workers doing so at once corrupt it."""
    with _LOCK:
        if project is None:
            yield
            return
        Path(project).mkdir(parents=True, exist_ok=True)
        with (Path(project) / ".tuomin.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


@cache
def _context(project: str | None):
    """An ephemeral context, or a file context whose stores keep every validation result (for
    Data Docs) under `project`."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral") if project is None else gx.get_context(mode="file", project_root_dir=project)
    if project is not None and context.variables.config_variables_file_path:
        # GX re-reads and re-parses that YAML file on every look-up of a store (hundreds per
        # release, a second or more of each run); tuomin's project substitutes no variables.
        # GX types the setting str; None turns it off.
        context.variables.config_variables_file_path = None  # type: ignore[assignment]
        context.variables.save()
        context = gx.get_context(mode="file", project_root_dir=project)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _get_or_add(store, name: str, make):
    try:
        return store.get(name)
    except Exception:  # noqa: BLE001  (GX raises its own not-found types; any miss means: create it)
        return store.add(make())


def _kind(gate: Gate | ReleaseGate) -> str:
    """What a gate checks, for the names Data Docs show."""
    if isinstance(gate, ReleaseGate):
        return "person-level"
    if not gate.quasi_identifiers:
        return "each-batch"  # schema and no identifier, on every written batch
    if not gate.columns:
        return "k-and-l"  # on the partition's classes
    return "whole-dataset"  # everything at once (review, tests)


def _checkpoint(gate: Gate | ReleaseGate, project: str | None):
    """The suite, validation definition and checkpoint for a gate; a changed policy makes a new
    gate and so new ones, named by a hash of the gate."""
    context = _context(project)
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(gate), sort_keys=True).encode()).hexdigest()[:8]
    name = f"{gate.dataset}-{_kind(gate)}-{digest}"  # e.g. pos-each-batch-3f2a1b9c: what it checks, then which version
    try:
        source = context.data_sources.get("tuomin")
    except (KeyError, ValueError, LookupError):
        source = context.data_sources.add_pandas("tuomin")
    try:
        asset = source.get_asset(gate.dataset)
    except LookupError:
        asset = source.add_dataframe_asset(gate.dataset)
    try:
        batch = asset.get_batch_definition("whole-batch")
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe("whole-batch")

    def suite():
        built = gx.ExpectationSuite(name=name)
        for expectation in gate.expectations():
            built.add_expectation(expectation)
        return built

    definition = _get_or_add(
        context.validation_definitions,
        name,
        lambda: gx.ValidationDefinition(name=name, data=batch, suite=_get_or_add(context.suites, name, suite)),
    )
    return _get_or_add(
        context.checkpoints,
        name,
        lambda: gx.Checkpoint(name=name, validation_definitions=[definition], actions=[], result_format=RESULT_FORMAT),
    )


def prepare(gate: Gate | ReleaseGate, project: Path | None = None) -> None:
    """Create the gate's suite and checkpoint ahead of validations on other workers (GX's file
    stores are not safe for two processes adding the same objects at once)."""
    with _exclusive(project):
        _checkpoint(gate, None if project is None else str(project))


def validate(gate: Gate | ReleaseGate, frame: pd.DataFrame, project: Path | None = None, run_name: str | None = None) -> Outcome:
    """Run the gate. With a project directory the result is stored there for Data Docs."""
    with _exclusive(project):
        checkpoint = _checkpoint(gate, None if project is None else str(project))
        # The time given: without it GX parses the run name as a date, and a run id whose six hex
        # digits are all decimal ("…Z-283746") reads as a UTC offset of 28 hours, which fails.
        when = dt.datetime.now(dt.UTC)
        run = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=run_name, run_time=when))
    checks = []
    for result in run.run_results.values():
        for r in result.results:
            raised = _raised(r.exception_info)
            checks.append(
                {
                    "expectation": r.expectation_config.type,
                    # An expectation that raised did not pass, whatever GX's success flag says.
                    "success": bool(r.success) and not raised,
                    "observed": (r.result or {}).get("observed_value"),
                    # The expectation's own arguments (k, m, l, column names), never data.
                    "arguments": {k: v for k, v in r.expectation_config.kwargs.items() if k != "batch_id"},
                    # GX's exception text can quote data, so only the fact is kept.
                    "exception": "raised an exception" if raised else None,
                }
            )
    return Outcome(all(c["success"] for c in checks) and bool(checks), tuple(checks))


def build_docs(project: Path) -> str:
    """Build the local Data Docs site from the stored results, with its assets local (offline.py);
    returns the index page's URL."""
    from expectations.offline import check_shipped, localize

    check_shipped()  # before GX rewrites the site with its CDN links
    with _exclusive(project):
        url = _context(str(project)).build_data_docs()["local_site"]
        localize(Path(urllib.parse.urlparse(url).path).parent)
        return url


def _raised(info) -> bool:
    """GX reports exceptions flat ({raised_exception: …}) or, when a metric failed, nested under
    each metric's configuration id; either way counts."""
    if not isinstance(info, dict):
        return False
    if "raised_exception" in info:
        return bool(info["raised_exception"])
    return any(_raised(v) for v in info.values())
