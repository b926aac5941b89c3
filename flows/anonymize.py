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
from flows import ledger, paths
from flows import warehouse as warehouse_io
from flows.keys import load_pseudonymizer
from flows.quarantine import quarantine_batch, quarantine_rows
from transforms import metrics, steps
from transforms.anonymity import Unreachable
from transforms.operators import Context
from transforms.policy import SourcePolicy, load_policies
from transforms.pseudonymize import Pseudonymizer
from transforms.redact import NameMatcher

GX_PROJECT = "_gx"  # the warehouse's GX project: suites, validation results, Data Docs (no data values)

# Tasks pass raw data in memory only: no result persistence, no input hashing for caches.
raw_task = task(cache_policy=NO_CACHE, persist_result=False)


class DateFailed(RuntimeError):
    """A date that cannot be published; the message names source, file or check, never values."""


@dataclass
class Source:
    """One source's rows for one date as they move through the stages."""

    policy: SourcePolicy
    export: landing_io.Export
    table: pa.Table  # parsed rows still in play
    tokens: pa.Array | None = None  # the entity token of each row
    quarantined: int = 0
    erased: int = 0


def source_order(policies: dict[str, SourcePolicy]) -> list[str]:
    """Sources whose rows others link to come first."""
    return sorted(policies, key=lambda s: (bool(policies[s].link), s))


@raw_task(task_run_name="extract-{policy.source}-{date}", retries=2, retry_delay_seconds=[2, 10],
          retry_condition_fn=lambda task, run, state: not isinstance(state.result(raise_on_failure=False), steps.ExportError))
def extract(landing: Path, policy: SourcePolicy, date: dt.date, drop_unknown: bool) -> landing_io.Export:
    export = landing_io.read_export(landing, policy, date, drop_unknown=drop_unknown)
    for file, header in export.dropped:
        get_run_logger().warning("%s: column %r is not in policy %s; dropped (--drop-unknown)", file, header, policy.path.name)
    return export


@raw_task(task_run_name="link-{policy.source}-{date}")
def link_lookups(landing: Path, policies: dict[str, SourcePolicy], policy: SourcePolicy, date: dt.date,
                 same_day: dict[str, pa.Table], pseudonymizer: Pseudonymizer) -> tuple[list, list[str], list]:
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
def validate_dataset(policy: SourcePolicy, date: dt.date, anonymized: steps.Anonymized, project: Path, run_name: str):
    table = anonymized.table
    gate = Gate(
        dataset=policy.source,
        columns=tuple(policy.output_columns),
        quasi_identifiers=tuple(anonymized.quasi_identifiers),
        entity=policy.entity,
        k=policy.privacy.k,
        string_columns=tuple(f.name for f in table.schema if pa.types.is_string(f.type)),
        diversity=tuple((policy.column(m.attribute).output_name, m.l, m.measure) for m in policy.privacy.l_diversity),
    )
    return validate(gate, table.to_pandas(), project, run_name)


def process_date(landing: Path, warehouse: Path, restricted: Path, policy_dir: Path, policies: dict[str, SourcePolicy],
                 date: dt.date, pseudonymizer: Pseudonymizer, subjects: steps.Subjects, run_id: str,
                 drop_unknown: bool = False) -> dict:
    names = [s for s in source_order(policies) if landing_io.files_for(landing, policies[s], date)]
    sources = {s: parse_and_quarantine(extract(landing, policies[s], date, drop_unknown), policies[s], restricted, run_id)
               for s in names}
    linked, person_names = link(landing, policies, sources, date, pseudonymizer)
    erase(sources, linked, subjects)
    ctx = Context(pseudonymizer, date, policy_dir, NameMatcher(person_names))
    results = anonymize_and_validate(sources, ctx, date, warehouse, restricted, run_id)
    return publish(sources, results, warehouse, date, run_id, pseudonymizer.key_id)


def parse_and_quarantine(export: landing_io.Export, policy: SourcePolicy, restricted: Path, run_id: str) -> Source:
    """Typed rows; those that do not parse (and ragged ones) go to the restricted quarantine."""
    parsed = steps.parse_table(export.table, policy)
    bad = parsed.bad
    if bad.any() or export.ragged:
        where = quarantine_rows(restricted, run_id, policy.source, export.date, export, parsed)
        problems = [f"{c}: {int(m.sum())}" for c, m in parsed.invalid.items()]
        problems += [f"wrong field count: {len(export.ragged)}"] if export.ragged else []
        get_run_logger().warning("%s %s: rows quarantined (%s) -> %s", policy.source, export.date, ", ".join(problems), where)
    return Source(policy, export, parsed.table.filter(pa.array(~bad)), quarantined=int(bad.sum()) + len(export.ragged))


def link(landing: Path, policies: dict[str, SourcePolicy], sources: dict[str, Source], date: dt.date,
         pseudonymizer: Pseudonymizer) -> tuple[list, list[str]]:
    """Give every row its customer token; returns the linked sources' rows (for erasure) and all
    person names seen (the redaction dictionary)."""
    linked, names = [], []
    for source in sources.values():
        names += steps.person_names(source.table, source.policy)
        if source.policy.link:
            lookups, link_names, link_tables = link_lookups(
                landing, policies, source.policy, date, {s: x.table for s, x in sources.items()}, pseudonymizer)
            source.tokens = steps.linked_tokens(source.table, source.policy, lookups)
            names += link_names
            linked += link_tables
        else:
            source.tokens = steps.entity_tokens(source.table, source.policy, pseudonymizer)
    return linked, names


def erase(sources: dict[str, Source], linked: list, subjects: steps.Subjects) -> None:
    """Drop every row of every subject on the erasure list, wherever the subject was recognized."""
    erased = steps.erased_tokens([(x.policy, x.table, x.tokens) for x in sources.values()] + linked, subjects)
    for source in sources.values():
        rows = steps.erasure_rows(source.table, source.policy, source.tokens, subjects, erased)
        keep = pa.array(~rows)
        source.table = source.table.filter(keep)
        source.tokens = None if source.tokens is None else source.tokens.filter(keep)
        source.erased = int(rows.sum())


def anonymize_and_validate(sources: dict[str, Source], ctx: Context, date: dt.date, warehouse: Path, restricted: Path,
                           run_id: str) -> dict:
    """Every source of the date is anonymized and passes the gate, or the date fails as a whole.
    A batch that fails the gate is set aside in the restricted quarantine (it may hold exactly the
    identifiers that made it fail) for someone to look at; nothing of the date is published."""
    results, failures = {}, []
    for name, source in sources.items():
        try:
            anonymized = anonymize(source, ctx, date)
        except Unreachable as exc:
            failures.append(f"{name}: {exc}")
            continue
        outcome = validate_dataset(source.policy, date, anonymized, warehouse / GX_PROJECT, f"{run_id} {date}")
        if not outcome.success:
            where = quarantine_batch(restricted, run_id, name, date, anonymized.table)
            failures.append(f"{name}: validation failed: {'; '.join(outcome.failures())}; batch set aside in {where}")
        results[name] = (anonymized, outcome)
    if failures:
        raise DateFailed(f"{date}: nothing published. " + " | ".join(failures))
    return results


def publish(sources: dict[str, Source], results: dict, warehouse: Path, date: dt.date, run_id: str, key_id: str) -> dict:
    """Check that every row is accounted for, stage every partition, then move them into place."""
    summary = {}
    for name, (anonymized, outcome) in results.items():
        source = sources[name]
        counts = {"read": source.export.rows_read, "quarantined": source.quarantined, "erased": source.erased,
                  "suppressed": anonymized.suppressed, "published": anonymized.table.num_rows}
        if counts["read"] != counts["published"] + counts["suppressed"] + counts["quarantined"] + counts["erased"]:
            raise DateFailed(f"{date}: {name}: row counts do not reconcile {counts}; nothing published")
        metadata = partition_metadata(source, anonymized, outcome, counts, date, run_id, key_id)
        staged = warehouse_io.stage(warehouse, run_id, name, date, anonymized.table, metadata)
        summary[name] = {"counts": counts, "k": metadata["metrics"].get("k"), "levels": metadata["levels"],
                         "policy_sha256": source.policy.sha256, "inputs": metadata["inputs"],
                         "dropped_columns": metadata["dropped_columns"], "staged": staged}
    for name, info in summary.items():
        info["path"] = str(warehouse_io.publish(info.pop("staged"), warehouse, name, date))
        get_run_logger().info("%s %s: published %d of %d rows (k=%s) -> %s", name, date, info["counts"]["published"],
                              info["counts"]["read"], info["k"], info["path"])
    return summary


@raw_task(task_run_name="anonymize-{source.policy.source}-{date}")
def anonymize(source: Source, ctx: Context, date: dt.date) -> steps.Anonymized:
    return steps.anonymize(source.table, source.tokens, source.policy, ctx)


def partition_metadata(source: Source, anonymized: steps.Anonymized, outcome, counts: dict, date: dt.date,
                       run_id: str, key_id: str) -> dict:
    """What is recorded with every published file: enough to re-check k and trace the run."""
    policy, solution = source.policy, anonymized.solution
    measured = metrics.summary(anonymized.table.to_pandas(), anonymized.quasi_identifiers, policy.entity, policy.privacy.k,
                               policy.sensitive_outputs)
    return {
        "dataset": policy.source,
        "export_date": date.isoformat(),
        "quasi_identifiers": anonymized.quasi_identifiers,
        "k": policy.privacy.k,
        "l_diversity": [m.model_dump() | {"column": policy.column(m.attribute).output_name} for m in policy.privacy.l_diversity],
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
        "cells_suppressed": anonymized.cells_suppressed,
        "metrics": {**measured, "loss": solution.loss if solution else 0.0,
                    "loss_by_attribute": solution.loss_by_attribute if solution else {}},
        "columns": {c.name: {"input": c.input_name, "output": c.output_name, "role": c.role, "pipl": c.pipl,
                             "transform": c.transform, "technique": c.family} for c in policy.columns},
        "validation": {"success": outcome.success, "checks": list(outcome.checks)},
        "inputs": [f.__dict__ for f in source.export.files],
        "dropped_columns": [{"file": f, "column": c} for f, c in source.export.dropped],
    }


@flow(name="anonymize-exports", persist_result=False, log_prints=False)
def anonymize_exports(landing: str = str(paths.SAMPLE_LANDING), warehouse: str = str(paths.WAREHOUSE),
                      date: str | None = None, restricted: str = str(paths.RESTRICTED), policies: str = str(paths.POLICIES),
                      drop_unknown: bool = False):
    """Anonymize every export date found in `landing` (or only `date`) into `warehouse`.
    With drop_unknown, columns no policy covers are dropped (and recorded) instead of failing."""
    log = get_run_logger()
    started = dt.datetime.now(dt.timezone.utc)
    landing_path, warehouse_path, restricted_path, policy_dir = Path(landing), Path(warehouse), Path(restricted), Path(policies)
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    policy_set = load_policies(policy_dir)
    pseudonymizer = load_pseudonymizer()
    subjects = steps.Subjects.from_requests(landing_io.read_erasure_requests(landing_path))
    dates = [dt.date.fromisoformat(date)] if date else landing_io.export_dates(landing_path, policy_set)
    log.info("run %s: %d export date(s), %d erasure request(s), key %s", run_id, len(dates), len(subjects), pseudonymizer.key_id)
    summary = {"run_id": run_id, "warehouse": str(warehouse_path), "key_id": pseudonymizer.key_id, "dates": {}}
    failed = []
    # A file whose columns the policy does not cover stops the whole run before anything is written.
    problems = landing_io.check_headers(landing_path, policy_set, dates, drop_unknown)
    for problem in problems:
        log.error("%s", problem)
    if problems:
        summary["errors"] = problems
        dates, failed = [], [f"{len(problems)} file(s) do not match their policy"]
    for day in dates:
        try:
            summary["dates"][day.isoformat()] = process_date(
                landing_path, warehouse_path, restricted_path, policy_dir, policy_set, day, pseudonymizer, subjects, run_id,
                drop_unknown)
        except (DateFailed, steps.ExportError) as exc:
            log.error("%s", exc)
            summary["dates"][day.isoformat()] = {"error": str(exc)}
            failed.append(day.isoformat())
        finally:
            warehouse_io.discard_staging(warehouse_path, run_id)
    message = ("nothing published: " + " | ".join(problems) if problems else
               f"no export files found under {landing_path}" if not dates else
               f"{len(failed)} of {len(dates)} export date(s) failed: {', '.join(failed)}" if failed else None)
    ledger.append(warehouse_path, "run", {
        "run_id": run_id, "flow_run_id": str(flow_run.get_id() or ""), "started_at": started.isoformat(timespec="seconds"),
        "ended_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "status": "failed" if message else "published",
        "message": message, "parameters": {"landing": landing, "warehouse": warehouse, "date": date, "drop_unknown": drop_unknown},
        "policies": {s: {"file": p.path.name, "sha256": p.sha256} for s, p in policy_set.items()},
        "key_id": pseudonymizer.key_id, "erasure_requests": len(subjects), "dates": summary["dates"],
        "errors": problems,
    })
    return Failed(message=message, data=summary) if message else summary


