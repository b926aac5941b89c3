"""anonymize-exports: the three systems' exports in, validated anonymized Parquet out.

For each export date, every source goes through

    extract    read the files as text; headers must match the policy (unknown column: fail)
    parse      typed values; rows that do not parse -> restricted quarantine (counted)
    link       the customer token of each row (own document, or via member number / receipt)
    erase      rows of subjects on requests/erasure.csv are dropped (counted)
    anonymize  the policy's operators, then the privacy engine (levels + record suppression)
    validate   the GX suite: schema, k-anonymity in customers, no identifier anywhere
    publish    only if every source of the date passed: staged, then renamed into place

and the counts must reconcile: read = published + suppressed + quarantined + erased. A date that
fails anywhere publishes nothing; the run goes on with the other dates and ends Failed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed

from expectations.suite import Gate, validate
from flows import landing as landing_io
from flows import paths, warehouse as warehouse_io
from flows.keys import load_pseudonymizer
from flows.quarantine import quarantine_rows
from transforms import metrics, steps
from transforms.operators import Context
from transforms.anonymity import Unreachable
from transforms.policy import SourcePolicy, load_policies
from transforms.pseudonymize import Pseudonymizer
from transforms.redact import NameMatcher

# Tasks pass raw data in memory only: no result persistence, no input hashing for caches.
raw_task = task(cache_policy=NO_CACHE, persist_result=False)


class DateFailed(RuntimeError):
    """A date that cannot be published; the message names source, file or check, never values."""


@dataclass
class Prepared:
    """A source's rows after parsing, linking and erasure, ready to anonymize."""

    policy: SourcePolicy
    export: landing_io.Export
    table: pa.Table
    tokens: pa.Array | None
    quarantined: int
    erased: int


def source_order(policies: dict[str, SourcePolicy]) -> list[str]:
    """Sources whose rows others link to come first."""
    return sorted(policies, key=lambda s: (bool(policies[s].link), s))


@raw_task(task_run_name="extract-{policy.source}-{date}", retries=2, retry_delay_seconds=[2, 10],
          retry_condition_fn=lambda task, run, state: not isinstance(state.result(raise_on_failure=False), steps.ExportError))
def extract(landing: Path, policy: SourcePolicy, date: dt.date) -> landing_io.Export:
    return landing_io.read_export(landing, policy, date)


@raw_task(task_run_name="link-{policy.source}-{date}")
def link_lookups(landing: Path, policies: dict[str, SourcePolicy], policy: SourcePolicy, date: dt.date,
                 same_day: dict[str, pa.Table], pseudonymizer: Pseudonymizer) -> tuple[list, list[str], list[pa.Table]]:
    """For each link of the policy: (normalized keys, entity tokens) from the linked source over
    its look-back window; also the person names and raw rows read, for the redaction dictionary
    and for erasure."""
    lookups, names, tables = [], [], []
    for link in policy.link:
        target = policies[link.source]
        wanted = sorted({link.key, steps.entity_source(target).name, *target.subject_keys.values(),
                         *(c.name for c in target.columns if c.kind == "person_name")})
        parts = [same_day[link.source].select(wanted)] if link.source in same_day else []
        for back in range(1, link.lookback_days + 1):
            day = date - dt.timedelta(days=back)
            if landing_io.files_for(landing, target, day):
                parts.append(landing_io.read_export(landing, target, day, wanted).table.select(wanted))
        table = pa.concat_tables(parts) if parts else pa.table({c: pa.array([], pa.string()) for c in wanted})
        tokens = steps.entity_tokens(table, target, pseudonymizer)
        lookups.append((steps.link_keys(table[link.key]), tokens))
        names += steps.person_names(table, target)
        tables.append((target, table, tokens))
    return lookups, names, tables


@raw_task(task_run_name="validate-{policy.source}-{date}")
def validate_dataset(policy: SourcePolicy, date: dt.date, anonymized: steps.Anonymized):
    table = anonymized.table
    gate = Gate(
        dataset=policy.source,
        columns=tuple(policy.output_columns),
        quasi_identifiers=tuple(anonymized.quasi_identifiers),
        entity=policy.entity,
        k=policy.privacy.k,
        string_columns=tuple(f.name for f in table.schema if pa.types.is_string(f.type)),
    )
    return validate(gate, table.to_pandas())


def process_date(landing: Path, warehouse: Path, restricted: Path, policy_dir: Path, policies: dict[str, SourcePolicy],
                 date: dt.date, pseudonymizer: Pseudonymizer, subjects: steps.Subjects, run_id: str) -> dict:
    log = get_run_logger()
    order = [s for s in source_order(policies) if landing_io.files_for(landing, policies[s], date)]
    exports = {s: extract(landing, policies[s], date) for s in order}

    # Parse; rows that do not parse go to the restricted quarantine.
    parsed, tables = {}, {}
    for s in order:
        parsed[s] = steps.parse_table(exports[s].table, policies[s])
        if parsed[s].bad.any() or exports[s].ragged:
            where = quarantine_rows(restricted, run_id, s, date, exports[s], parsed[s])
            problems = {c: int(m.sum()) for c, m in parsed[s].invalid.items()} | ({"ragged rows": len(exports[s].ragged)} if exports[s].ragged else {})
            log.warning("%s %s: rows quarantined (%s) -> %s", s, date, ", ".join(f"{c}: {n}" for c, n in problems.items()), where)
        tables[s] = parsed[s].table.filter(pa.array(~parsed[s].bad))

    # Link every row to its customer token, and collect the run's person names for redaction.
    names = [n for s in order for n in steps.person_names(tables[s], policies[s])]
    ctx_tokens: dict[str, pa.Array | None] = {}
    extra: list[tuple[SourcePolicy, pa.Table, pa.Array]] = []
    for s in order:
        policy = policies[s]
        if policy.link:
            lookups, link_names, link_tables = link_lookups(landing, policies, policy, date, tables, pseudonymizer)
            ctx_tokens[s] = steps.linked_tokens(tables[s], policy, lookups)
            names += link_names
            extra += link_tables
        else:
            ctx_tokens[s] = steps.entity_tokens(tables[s], policy, pseudonymizer)
    ctx = Context(pseudonymizer, date, policy_dir, NameMatcher(names))

    # Erasure: a subject found in any table of the date (or a linked one) is erased everywhere.
    erased_tokens: set[str] = set()
    for policy, table, tokens in [(policies[s], tables[s], ctx_tokens[s]) for s in order] + extra:
        if tokens is not None:
            hit = steps.subject_rows(table, policy, subjects)
            erased_tokens |= {t for t in tokens.filter(pa.array(hit)).to_pylist() if t}
    prepared = {}
    for s in order:
        policy, tokens = policies[s], ctx_tokens[s]
        erase = steps.subject_rows(tables[s], policy, subjects)
        if tokens is not None:
            erase |= steps.token_rows(tokens, erased_tokens)
        keep = pa.array(~erase)
        prepared[s] = Prepared(policy, exports[s], tables[s].filter(keep), None if tokens is None else tokens.filter(keep),
                               int(parsed[s].bad.sum()) + len(exports[s].ragged), int(erase.sum()))

    # Anonymize and validate every source before publishing any.
    results, failures = {}, []
    for s, p in prepared.items():
        try:
            anonymized = anonymize(p, ctx, date)
        except Unreachable as exc:
            failures.append(f"{s}: {exc}")
            continue
        outcome = validate_dataset(p.policy, date, anonymized)
        if not outcome.success:
            failures.append(f"{s}: validation failed: {'; '.join(outcome.failures())}")
        results[s] = (anonymized, outcome)
    if failures:
        raise DateFailed(f"{date}: nothing published. " + " | ".join(failures))

    summary = {}
    for s, (anonymized, outcome) in results.items():
        p = prepared[s]
        counts = {"read": p.export.rows_read, "quarantined": p.quarantined, "erased": p.erased,
                  "suppressed": anonymized.suppressed, "published": anonymized.table.num_rows}
        if counts["read"] != counts["published"] + counts["suppressed"] + counts["quarantined"] + counts["erased"]:
            raise DateFailed(f"{date}: {s}: row counts do not reconcile {counts}; nothing published")
        metadata = partition_metadata(p, anonymized, outcome, counts, date, run_id, pseudonymizer.key_id)
        staged = warehouse_io.stage(warehouse, run_id, s, date, anonymized.table, metadata)
        summary[s] = {"counts": counts, "k": metadata["metrics"].get("k"), "levels": metadata["levels"], "staged": staged}
    for s, info in summary.items():
        info["path"] = str(warehouse_io.publish(info.pop("staged"), warehouse, s, date))
        log.info("%s %s: published %d of %d rows (k=%s) -> %s", s, date, info["counts"]["published"],
                 info["counts"]["read"], info["k"], info["path"])
    return summary


@raw_task(task_run_name="anonymize-{p.policy.source}-{date}")
def anonymize(p: Prepared, ctx: Context, date: dt.date) -> steps.Anonymized:
    return steps.anonymize(p.table, p.tokens, p.policy, ctx)


def partition_metadata(p: Prepared, anonymized: steps.Anonymized, outcome, counts: dict, date: dt.date,
                       run_id: str, key_id: str) -> dict:
    """What is recorded with every published file: enough to re-check k and trace the run."""
    policy, solution = p.policy, anonymized.solution
    measured = metrics.summary(anonymized.table.to_pandas(), anonymized.quasi_identifiers, policy.entity, policy.privacy.k)
    return {
        "dataset": policy.source,
        "export_date": date.isoformat(),
        "quasi_identifiers": anonymized.quasi_identifiers,
        "k": policy.privacy.k,
        "entity_column": policy.entity,
        "policy_file": policy.path.name,
        "policy_sha256": policy.sha256,
        "key_id": key_id,
        "run_id": run_id,
        "flow_run_id": str(flow_run.get_id() or ""),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "levels": solution.levels if solution else {},
        "max_suppression": policy.privacy.max_suppression,
        "rows": counts,
        "metrics": {**measured, "loss": solution.loss if solution else 0.0,
                    "loss_by_attribute": solution.loss_by_attribute if solution else {}},
        "columns": {c.name: {"output": c.output_name, "role": c.role, "pipl": c.pipl, "transform": c.transform,
                             "technique": c.family} for c in policy.columns},
        "validation": {"success": outcome.success, "checks": list(outcome.checks)},
        "inputs": [f.__dict__ for f in p.export.files],
    }


@flow(name="anonymize-exports", persist_result=False, log_prints=False)
def anonymize_exports(landing: str = str(paths.SAMPLE_LANDING), warehouse: str = str(paths.WAREHOUSE),
                      date: str | None = None, restricted: str = str(paths.RESTRICTED), policies: str = str(paths.POLICIES)):
    """Anonymize every export date found in `landing` (or only `date`) into `warehouse`."""
    log = get_run_logger()
    landing_path, warehouse_path, restricted_path, policy_dir = Path(landing), Path(warehouse), Path(restricted), Path(policies)
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    policy_set = load_policies(policy_dir)
    pseudonymizer = load_pseudonymizer()
    subjects = steps.Subjects.from_requests(landing_io.read_erasure_requests(landing_path))
    dates = [dt.date.fromisoformat(date)] if date else landing_io.export_dates(landing_path, policy_set)
    log.info("run %s: %d export date(s), %d erasure request(s), key %s", run_id, len(dates), len(subjects), pseudonymizer.key_id)
    summary = {"run_id": run_id, "warehouse": str(warehouse_path), "key_id": pseudonymizer.key_id, "dates": {}}
    failed = []
    for day in dates:
        try:
            summary["dates"][day.isoformat()] = process_date(
                landing_path, warehouse_path, restricted_path, policy_dir, policy_set, day, pseudonymizer, subjects, run_id)
        except (DateFailed, steps.ExportError) as exc:
            log.error("%s", exc)
            summary["dates"][day.isoformat()] = {"error": str(exc)}
            failed.append(day.isoformat())
        finally:
            warehouse_io.discard_staging(warehouse_path, run_id)
    if not dates:
        return Failed(message=f"no export files found under {landing_path}", data=summary)
    if failed:
        return Failed(message=f"{len(failed)} of {len(dates)} export date(s) failed: {', '.join(failed)}", data=summary)
    return summary


