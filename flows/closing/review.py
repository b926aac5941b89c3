"""review: re-check every published dataset as a whole (weekly, and on demand).

Each partition passed its gate when it was published; this checks what is there now, per dataset
over the union of its published partitions:

    files     every partition the ledger lists is in place with the SHA-256 it recorded, and the
              warehouse holds no partition file the ledger does not list
    policy    every partition was made under the dataset's current policy (same SHA-256)
    gate      the publication gate again, on the union: schema, k counted in entities,
              l-diversity, no direct identifier in any string column (the GX suite)
    linkage   profile uniqueness: the share of customers whose set of quasi-identifier
              combinations across partitions no other customer has. Reported, not gated: k holds
              per row, but a customer seen on many days can still stand out (see the README).

The result is a `review` entry in the ledger. Any failure fails the flow run, so a schedule shows
it red and `tuomin review` exits non-zero; so does a warehouse with nothing published (a check
that had nothing to check has not passed).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, get_run_logger
from prefect.states import Failed

from expectations.suite import Gate, validate
from flows.pipeline.record import file_sha256
from flows.runtime import paths
from flows.storage import ledger
from flows.storage import warehouse as warehouse_io
from flows.storage.entries import ReviewEntry
from transforms.metrics import profile_uniqueness
from transforms.policy import SourcePolicy, load_policies


def review_dataset(policy: SourcePolicy, entries: list[dict], warehouse: Path, restricted: Path, run_name: str) -> dict:
    """The checks of one dataset; `problems` lists every failure by partition and check."""
    problems, tables = [], []
    for entry in entries:
        data = entry["data"]
        where = f"{policy.source} {data['export_date']}"
        path = warehouse / data["output"]["path"]
        if not path.is_file():
            problems.append(f"{where}: the partition file {data['output']['path']} is missing")
            continue
        if file_sha256(path) != data["output"]["sha256"]:
            problems.append(
                f"{where}: the partition file differs from the SHA-256 the ledger recorded (changed after publishing)"
            )
            continue
        if data["policy_sha256"] != policy.sha256:
            problems.append(
                f"{where}: made under another version of {policy.path.name} "
                f"(policy SHA-256 {data['policy_sha256'][:12]}, current {policy.sha256[:12]}): rerun the date"
            )
        tables.append(pq.read_table(path).replace_schema_metadata(None))
    listed = {e["data"]["output"]["path"] for e in entries}
    for stray in sorted(warehouse.glob(f"dataset={policy.source}/export_date=*/*.parquet")):
        if stray.relative_to(warehouse).as_posix() not in listed:
            problems.append(f"{policy.source}: {stray.relative_to(warehouse)} is not in the ledger")
    result = {"partitions": len(entries), "rows": 0, "checks": [], "problems": problems}
    if tables:
        union = pa.concat_tables(tables, promote_options="permissive")
        frame = union.to_pandas()
        outcome = validate(Gate.of(policy, union.schema), frame, restricted / paths.GX_PROJECT, run_name)
        result |= {"rows": union.num_rows, "checks": list(outcome.checks)}
        problems += [f"{policy.source} (all partitions): {failure}" for failure in outcome.failures()]
        if policy.entity and policy.quasi_identifiers:
            names = [c.output_name for c in policy.quasi_identifiers if c.output_name]  # published, so named
            result["linkage"] = profile_uniqueness(frame, names, policy.entity)
    result["success"] = not problems
    return result


@flow(name="review", persist_result=False, log_prints=False)
def review(
    warehouse: str = str(paths.WAREHOUSE),
    restricted: str = str(paths.RESTRICTED),
    policies: str = str(paths.POLICIES),
    trigger: str = "python",
):
    """Re-validate every published dataset over all its partitions; recorded in the ledger."""
    log = get_run_logger()
    root, vault = Path(warehouse), Path(restricted)
    current = load_policies(Path(policies))
    run_name = f"review {dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"
    with warehouse_io.exclusive(root):  # a consistent view: no run publishes meanwhile
        published: dict[str, list[dict]] = {}
        for (dataset, _), entry in sorted(ledger.partition_entries(vault).items()):
            published.setdefault(dataset, []).append(entry)
        chain = ledger.verify(vault, root)
        datasets = {
            name: review_dataset(current[name], published.get(name, []), root, vault, run_name) for name in sorted(current)
        }
        problems = [f"ledger: {p}" for p in chain]
        if not published:  # a review that had nothing to check has not passed
            problems.append(f"{root}: no published partition: nothing to review (wrong --warehouse?)")
        problems += [f"{name}: published, but no policy covers it" for name in sorted(set(published) - set(current))]
        problems += [p for result in datasets.values() for p in result["problems"]]
        entry = ledger.append(
            vault,
            ReviewEntry(
                success=not problems,
                problems=problems,
                triggered_by=trigger,
                policies={name: p.sha256 for name, p in current.items()},
                datasets={name: {k: v for k, v in result.items() if k != "problems"} for name, result in datasets.items()},
            ),
        )
    for name, result in datasets.items():
        log.info(
            "%s: %d partition(s), %d rows: %s",
            name,
            result["partitions"],
            result["rows"],
            "ok" if result["success"] else "FAILED",
        )
    for problem in problems:
        log.error("%s", problem)
    summary = {"success": not problems, "problems": problems, "datasets": datasets, "ledger_seq": entry["seq"]}
    if problems:
        return Failed(message=f"review failed: {len(problems)} problem(s): " + " | ".join(problems), data=summary)
    return summary
