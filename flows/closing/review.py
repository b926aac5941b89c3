"""review: re-check every published dataset as a whole (weekly, and on demand).

Each partition passed its gate when it was published; this checks what is there now, per dataset
over the union of its published partitions:

    files     every partition the ledger lists is in place with the SHA-256 it recorded, and the
              warehouse holds no partition file the ledger does not list
    policy    every partition was made under the dataset's current policy (same SHA-256)
    gate      the publication gate again, on the union, through the PartitionWriter as a run's
              pass 2 (batch by batch; classes counted out of core, never the dataset in memory):
              schema, no direct identifier in any string column, k counted in people, the criteria on sensitive columns
    linkage   profile uniqueness: the share of customers whose set of quasi-identifier
              combinations across partitions no other customer has. Reported, not gated: k holds
              per row, but a customer seen on many days can still stand out (see the README).

The result is a `review` entry in the ledger. Any failure fails the flow run, so a schedule shows
it red and `tuomin review` exits non-zero; so does a warehouse with nothing published (a check
that had nothing to check has not passed).
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow
from prefect.states import Failed
from pydantic import BaseModel

from expectations.suite import Gate
from flows.pipeline.parameters import Policies, Restricted, Trigger, Warehouse, with_help
from flows.pipeline.passes import BATCH_ROWS
from flows.pipeline.writer import ClassColumns, PartitionWriter
from flows.runtime import paths
from flows.storage import ledger
from flows.storage import warehouse as warehouse_io
from flows.storage.entries import PartitionEntry, ReviewEntry
from transforms.metrics import profile_uniqueness
from transforms.plan import ROWS
from transforms.policy import SourcePolicy, load_policies

log = logging.getLogger("tuomin")


class DatasetReview(BaseModel):
    """One dataset's review: its partitions and rows, every check's outcome, every problem."""

    partitions: int
    rows: int = 0
    checks: list[dict[str, Any]] = []
    problems: list[str] = []
    success: bool = False
    linkage: dict[str, Any] | None = None  # profile uniqueness (reported, not gated)

    def recorded(self) -> dict[str, Any]:
        """As the ledger's review entry holds it (its problems are listed once, for the review)."""
        return self.model_dump(exclude={"problems"}, exclude_unset=True)


class Review(BaseModel):
    """A review: whether everything held, every problem, per dataset, and its ledger entry."""

    success: bool
    problems: list[str]
    datasets: dict[str, DatasetReview]
    ledger_seq: int


def review_dataset(
    policy: SourcePolicy, entries: list[PartitionEntry], warehouse: Path, restricted: Path, run_name: str
) -> DatasetReview:
    """The checks of one dataset; `problems` lists every failure by partition and check."""
    problems, files = [], []
    for data in entries:
        where = f"{policy.source} {data.period}"
        path = warehouse / data.output.path
        if (wrong := ledger.out_of_place(warehouse, data)) is not None:
            problems.append(f"{where}: {wrong}")
            continue
        if data.policy_sha256 != policy.sha256:
            problems.append(
                f"{where}: made under another version of {policy.path.name} "
                f"(policy SHA-256 {(data.policy_sha256 or '?')[:12]}, current {policy.sha256[:12]}): rerun it (tuomin run --all)"
            )
        files.append(path)
    listed = {data.output.path for data in entries}
    for stray in warehouse_io.partition_files(warehouse, policy.source):
        if stray.relative_to(warehouse).as_posix() not in listed:
            problems.append(f"{policy.source}: {stray.relative_to(warehouse)} is not in the ledger")
    result: dict[str, Any] = {"partitions": len(entries), "rows": 0, "checks": []}
    if files:
        found = _gate_on_union(policy, files, restricted, run_name)
        problems += [f"{policy.source} (all partitions): {failure}" for failure in found.pop("failures")]
        result |= found
    return DatasetReview(**result, problems=problems, success=not problems)


def _gate_on_union(policy: SourcePolicy, files: list[Path], restricted: Path, run_name: str) -> dict[str, Any]:
    """The publication gate on every partition of the dataset as one, as a run checks them:
    through the PartitionWriter (batch by batch, classes counted out of core, the unit a column of
    every class), and the customers' profile uniqueness."""
    schema = pa.unify_schemas([pq.read_schema(f).remove_metadata() for f in files], promote_options="permissive")
    columns = ClassColumns.of_policy(policy, units=True)
    with tempfile.TemporaryDirectory(dir=paths.restricted_dir(restricted, ".work")) as work:
        writer = PartitionWriter(Gate.of(policy, schema), columns, restricted / paths.GX_PROJECT, run_name, Path(work))
        for path in files:
            for _ in writer.check(_batches([path], schema), warehouse_io.period_of(path)):
                pass
        _, outcome = writer.close()
        found: dict[str, Any] = {"rows": writer.rows, "checks": list(outcome.checks), "failures": outcome.failures()}
        if policy.entity and columns.qis:
            spilled = pq.read_table(writer.classes.path).to_pandas()
            found["linkage"] = profile_uniqueness(spilled, list(columns.qis), policy.entity, count=ROWS)
    return found


def _batches(files: list[Path], schema: pa.Schema):
    """Every partition's rows in batches, each in the union's schema (a column a partition lacks
    or holds as nulls only takes the union's type)."""
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            table = pa.Table.from_batches([batch])
            yield pa.Table.from_arrays(
                [
                    table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
                    for f in schema
                ],
                schema=schema,
            )


def preflight(policies: Path) -> dict[str, SourcePolicy]:
    """What a review needs before anything slow starts: the current policies."""
    return load_policies(policies)


def review_all(warehouse: Path, restricted: Path, policies: Path, trigger: str) -> Review:
    """The review itself, under the warehouse's lock (a consistent view: no run publishes
    meanwhile), recorded in the ledger whatever it finds; the summary, `success` False on any
    problem."""
    current = preflight(policies)
    run_name = f"review {dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"
    with warehouse_io.exclusive(warehouse):
        published: dict[str, list[PartitionEntry]] = {}
        for (dataset, _), made in sorted(ledger.partition_entries(restricted).items()):
            published.setdefault(dataset, []).append(made.data)
        chain = ledger.verify(restricted, warehouse)
        datasets = {
            name: review_dataset(current[name], published.get(name, []), warehouse, restricted, run_name)
            for name in sorted(current)
        }
        problems = [f"ledger: {p}" for p in chain]
        if not published:  # a review that had nothing to check has not passed
            problems.append(f"{warehouse}: no published partition: nothing to review (wrong --warehouse?)")
        problems += [f"{name}: published, but no policy covers it" for name in sorted(set(published) - set(current))]
        problems += [p for result in datasets.values() for p in result.problems]
        entry = ledger.append(
            restricted,
            ReviewEntry(
                success=not problems,
                problems=problems,
                triggered_by=trigger,
                policies={name: p.sha256 for name, p in current.items()},
                datasets={name: result.recorded() for name, result in datasets.items()},
            ),
        )
    for name, result in datasets.items():
        log.info("%s: %d partition(s), %d rows: %s", name, result.partitions, result.rows, "ok" if result.success else "FAILED")
    for problem in problems:
        log.error("%s", problem)
    return Review(success=not problems, problems=problems, datasets=datasets, ledger_seq=entry.seq)


@flow(name="review", persist_result=False, log_prints=False)
@with_help
def review(
    warehouse: Warehouse = str(paths.WAREHOUSE),
    restricted: Restricted = str(paths.RESTRICTED),
    policies: Policies = str(paths.POLICIES),
    trigger: Trigger = "python",
):
    """Re-validate every published dataset over all its partitions; recorded in the ledger. A
    review that found a problem is a failed flow run (red on a schedule), its summary the data."""
    summary = review_all(Path(warehouse), Path(restricted), Path(policies), trigger)
    if summary.problems:
        problems = summary.problems
        return Failed(message=f"review failed: {len(problems)} problem(s): " + " | ".join(problems), data=summary)
    return summary
