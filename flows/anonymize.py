"""anonymize-exports: the three systems' exports in, validated anonymized Parquet out.

For each export date (one subflow run each), every source goes through

    backup     the date's raw files, encrypted, into the restricted area (flows/backup.py)
    extract    read the files as text; headers must match the policy (unknown column: fail)
    parse      typed values; rows that do not parse -> restricted quarantine (counted)
    link       the customer token of each row (own document, or via member number / receipt)
    erase      rows of subjects on requests/erasure.csv are dropped (counted)
    anonymize  the policy's operators, then the privacy engine (levels + record suppression)
    validate   the GX suite: schema, k-anonymity in customers, l-diversity, no identifier anywhere
    publish    only if every source of the date passed: staged, then renamed into place, then
               recorded in the ledger

and the counts must reconcile: read = published + suppressed + quarantined + erased. A date that
fails anywhere publishes nothing; the run goes on with the other dates and ends Failed. Which
dates: a named one, a range (backfill), all, or by default those new or changed since published.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import deployment, flow_run
from prefect.states import Failed

from expectations.suite import Gate, validate
from flows import backup as backup_io
from flows import failpoints, ledger, paths, progress
from flows import landing as landing_io
from flows import warehouse as warehouse_io
from flows.quarantine import quarantine_batch, quarantine_rows
from flows.record import field_metadata, file_sha256, ledger_entry, partition_metadata
from flows.run import Run, select_dates
from transforms import steps
from transforms.anonymity import Unreachable
from transforms.operators import Context
from transforms.policy import SourcePolicy
from transforms.pseudonymize import Pseudonymizer
from transforms.redact import NameMatcher

# Tasks pass raw data in memory only: no result persistence, no input hashing for caches.
raw_task = task(cache_policy=NO_CACHE, persist_result=False)


def _transient(task, task_run, state) -> bool:
    """Retry a read that failed for a passing reason (network, share, storage: an OSError), never
    one that failed on the data itself."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:  # noqa: BLE001  (any other failure is about the data: do not retry)
        return False
    return False


# Reads from the landing area: retried twice, after 2 and 10 seconds, when the failure is transient.
io_task = task(cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=[2, 10],
               retry_condition_fn=_transient)


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


@io_task(task_run_name="extract-{policy.source}-{date}")
def extract(landing: landing_io.Landing, policy: SourcePolicy, date: dt.date, drop_unknown: bool) -> landing_io.Export:
    export = landing_io.read_export(landing, policy, date, drop_unknown=drop_unknown)
    for file, header in export.dropped:
        get_run_logger().warning("%s: column %r is not in policy %s; dropped (--drop-unknown)", file, header, policy.path.name)
    return export


@io_task(task_run_name="link-{policy.source}-{date}")
def link_lookups(landing: landing_io.Landing, policies: dict[str, SourcePolicy], policy: SourcePolicy, date: dt.date,
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
    return validate(Gate.of(policy, anonymized.table.schema), anonymized.table.to_pandas(), project, run_name)


@io_task(task_run_name="backup-{date}")
def back_up(run: Run, names: list[str], date: dt.date) -> None:
    """Encrypt the date's raw files before anything reads them; recorded in the ledger once per
    distinct set of files (a rerun on the same files does not back them up again)."""
    files = [f for name in names for f in landing_io.files_for(run.landing, run.policies[name], date)]
    if not files:
        return
    manifest_path, manifest, written = backup_io.backup_files(run.landing, files, date, run.restricted, run.backup_key)
    if written:
        ledger.append(run.warehouse, "backup", {
            "export_date": date.isoformat(), "run_id": run.run_id, "manifest": str(manifest_path), "key_id": manifest["key_id"],
            "files": [{k: f[k] for k in ("path", "bytes", "sha256")} for f in manifest["files"]]})
        get_run_logger().info("%s: %d file(s) backed up, encrypted, -> %s", date, len(files), manifest_path.parent)


def process_date(run: Run, date: dt.date) -> dict:
    began = dt.datetime.now(dt.timezone.utc)
    names = [s for s in source_order(run.policies) if s in run.sources_for(date)]
    if run.backup_key is not None:
        back_up(run, names, date)
    sources = {s: parse_and_quarantine(extract(run.landing, run.policies[s], date, run.drop_unknown), run.policies[s],
                                       run.restricted, run.run_id) for s in names}
    failpoints.hit("extracted")
    linked, person_names = link(run.landing, run.policies, sources, date, run.pseudonymizer)
    erase(sources, linked, run.subjects)
    ctx = Context(run.pseudonymizer, date, run.policy_dir, NameMatcher(person_names))
    results = anonymize_and_validate(sources, ctx, date, run.warehouse, run.restricted, run.run_id)
    failpoints.hit("validated")
    return publish(run, sources, results, date, began)


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


def link(landing: landing_io.Landing, policies: dict[str, SourcePolicy], sources: dict[str, Source], date: dt.date,
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
        outcome = validate_dataset(source.policy, date, anonymized, warehouse / paths.GX_PROJECT, f"{run_id} {date}")
        if not outcome.success:
            where = quarantine_batch(restricted, run_id, name, date, anonymized.table)
            failures.append(f"{name}: validation failed: {'; '.join(outcome.failures())}; batch set aside in {where}")
        results[name] = (anonymized, outcome)
    if failures:
        raise DateFailed(f"{date}: nothing published. " + " | ".join(failures))
    return results


def publish(run: Run, sources: dict[str, Source], results: dict, date: dt.date, began: dt.datetime) -> dict:
    """Check that every row is accounted for and stage every partition; then move each into place
    and record it in the ledger."""
    summary, staged = {}, {}
    for name, (anonymized, outcome) in results.items():
        source = sources[name]
        counts = {"read": source.export.rows_read, "quarantined": source.quarantined, "erased": source.erased,
                  "suppressed": anonymized.suppressed, "published": anonymized.table.num_rows}
        if counts["read"] != counts["published"] + counts["suppressed"] + counts["quarantined"] + counts["erased"]:
            raise DateFailed(f"{date}: {name}: row counts do not reconcile {counts}; nothing published")
        fingerprint = run.fingerprint(source.policy, [(f.path, f.sha256) for f in source.export.files])
        metadata = partition_metadata(source.policy, source.export, anonymized, outcome, counts, date, run.run_id,
                                      run.pseudonymizer.key_id, str(flow_run.get_id() or ""), fingerprint)
        path = warehouse_io.stage(run.warehouse, run.run_id, name, date, anonymized.table, metadata,
                                  field_metadata(source.policy, anonymized))
        staged[name] = (path, metadata, file_sha256(path))
        summary[name] = {"counts": counts, "k": metadata["metrics"].get("k"), "levels": metadata["levels"],
                         "policy_sha256": source.policy.sha256, "inputs": metadata["inputs"],
                         "dropped_columns": metadata["dropped_columns"]}
    for name, (path, metadata, sha256) in staged.items():
        target = warehouse_io.publish(path, run.warehouse, name, date)
        ledger.append(run.warehouse, "partition", ledger_entry(metadata, target, run.warehouse, sha256, run.triggered_by, began))
        summary[name]["path"] = str(target)
        get_run_logger().info("%s %s: published %d of %d rows (k=%s) -> %s", name, date, summary[name]["counts"]["published"],
                              summary[name]["counts"]["read"], summary[name]["k"], target)
    return summary


@raw_task(task_run_name="anonymize-{source.policy.source}-{date}")
def anonymize(source: Source, ctx: Context, date: dt.date) -> steps.Anonymized:
    return steps.anonymize(source.table, source.tokens, source.policy, ctx)


@flow(name="anonymize-exports", persist_result=False, log_prints=False)
def anonymize_exports(landing: str = str(paths.SAMPLE_LANDING), warehouse: str = str(paths.WAREHOUSE),
                      date: str | None = None, start: str | None = None, end: str | None = None, every: bool = False,
                      restricted: str = str(paths.RESTRICTED), policies: str = str(paths.POLICIES),
                      drop_unknown: bool = False, backup: bool = True, trigger: str | None = None):
    """Anonymize the export dates of `landing` into `warehouse`: `date` alone; every date from
    `start` to `end` (a backfill); every date (`every`); by default the dates not yet published or
    whose inputs, policy, key or erasure list changed since. With drop_unknown, columns no policy
    covers are dropped (and recorded) instead of failing. Unless `backup` is off, each date's raw
    files are backed up (encrypted) first, and a missing backup key fails the run."""
    with warehouse_io.exclusive(Path(warehouse)):
        return _anonymize(landing, warehouse, date, start, end, every, restricted, policies, drop_unknown, backup, trigger)


def _anonymize(landing: str, warehouse: str, date: str | None, start: str | None, end: str | None, every: bool,
               restricted: str, policies: str, drop_unknown: bool, backup: bool, trigger: str | None):
    log = get_run_logger()
    via = trigger or (f"deployment {deployment.name}" if deployment.get_id() else "python")
    run = io_task(Run.start, name="start-run")(landing, warehouse, restricted, policies, drop_unknown, via, backup)
    dates, skipped = io_task(select_dates, name="select-dates")(run, date, start, end, every)
    log.info("run %s: %d export date(s) to process, %d up to date, %d erasure request(s), key %s", run.run_id,
             len(dates), len(skipped), len(run.subjects), run.pseudonymizer.key_id)
    summary = {"run_id": run.run_id, "warehouse": str(run.warehouse), "key_id": run.pseudonymizer.key_id, "dates": {},
               "up_to_date": [d.isoformat() for d in skipped]}
    failed = []
    # A file whose columns the policy does not cover stops the whole run before anything is written.
    problems = io_task(landing_io.check_headers, name="check-headers")(run.landing, run.policies, dates, drop_unknown)
    for problem in problems:
        log.error("%s", problem)
    if problems:
        summary["errors"] = problems
        dates, failed = [], [f"{len(problems)} file(s) do not match their policy"]

    @flow(name="anonymize-date", flow_run_name="{date}", persist_result=False, log_prints=False)
    def one_date(date: str) -> dict:  # the run (key, erasure list) stays in the closure, out of Prefect's records
        return process_date(run, dt.date.fromisoformat(date))

    progress.report("start", dates=[d.isoformat() for d in dates])
    for day in dates:
        try:
            summary["dates"][day.isoformat()] = one_date(day.isoformat())
            progress.report("date", date=day.isoformat(), ok=True)
        except (DateFailed, steps.ExportError) as exc:
            log.error("%s", exc)
            summary["dates"][day.isoformat()] = {"error": str(exc)}
            failed.append(day.isoformat())
            progress.report("date", date=day.isoformat(), ok=False)
        finally:
            warehouse_io.discard_staging(run.warehouse, run.run_id)
    message = ("nothing published: " + " | ".join(problems) if problems else
               f"no export files found under {landing}" if not dates and not skipped else
               f"{len(failed)} of {len(dates)} export date(s) failed: {', '.join(failed)}" if failed else None)
    ledger.append(run.warehouse, "run", {
        "run_id": run.run_id, "flow_run_id": str(flow_run.get_id() or ""), "started_at": run.started.isoformat(timespec="seconds"),
        "ended_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "status": "failed" if message else "published",
        "message": message, "triggered_by": run.triggered_by,
        "parameters": {"landing": landing, "warehouse": warehouse, "date": date, "start": start, "end": end, "every": every,
                       "drop_unknown": drop_unknown, "backup": backup},
        "policies": {s: {"file": p.path.name, "sha256": p.sha256} for s, p in run.policies.items()},
        "key_id": run.pseudonymizer.key_id, "backup_key_id": run.backup_key.key_id if run.backup_key else None,
        "erasure_requests": len(run.subjects), "dates": summary["dates"],
        "up_to_date": summary["up_to_date"], "errors": problems,
    })
    return Failed(message=message, data=summary) if message else summary
