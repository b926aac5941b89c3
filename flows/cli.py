"""The `tuomin` command line. Every command that reads exports or the warehouse takes
--landing and --warehouse with the same defaults as `tuomin run`."""

from __future__ import annotations

import datetime as dt
import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flows import environment, paths

environment.configure()  # before Prefect is imported anywhere

app = typer.Typer(help="De-identify the shop's exports into validated, k-anonymous Parquet.", no_args_is_help=True)
key_app = typer.Typer(help="The pseudonym key and the backup key.", no_args_is_help=True)
app.add_typer(key_app, name="key")
ledger_app = typer.Typer(help="The append-only, hash-chained record of runs, partitions and key events.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
backup_app = typer.Typer(help="The encrypted backups of the raw exports.", no_args_is_help=True)
subjects_app = typer.Typer(help="Data subjects' requests: a copy of their records, or their erasure.", no_args_is_help=True)
app.add_typer(subjects_app, name="subjects")
app.add_typer(backup_app, name="backup")
console = Console(width=None if Console().is_terminal else 110)

Landing = Annotated[Path, typer.Option(help="Landing directory with pos/, membership/, after_sales/, requests/.")]
Warehouse = Annotated[Path, typer.Option(help="Warehouse directory for the anonymized Parquet.")]
Restricted = Annotated[Path, typer.Option(help="Restricted area (0700) for quarantined rows and backups.")]
Policies = Annotated[Path, typer.Option(help="Directory of reviewed policy files.")]
class RunnerKind(str, Enum):
    threads = "threads"
    dask = "dask"


Runner = Annotated[RunnerKind, typer.Option(help="Where per-file and per-partition work runs: a thread pool, or a Dask cluster.")]
DaskAddress = Annotated[str | None, typer.Option(help="An existing Dask scheduler (tcp://host:8786) for --runner dask; "
                                                      "default: a LocalCluster for the run.")]
AsOf = Annotated[str | None, typer.Option(help="Plan as if today were this date (YYYY-MM-DD, Shanghai); only with --dry-run.")]


@app.command()
def run(
    landing: Landing = paths.SAMPLE_LANDING,
    warehouse: Warehouse = paths.WAREHOUSE,
    date: Annotated[str | None, typer.Option(help="One export date (YYYY-MM-DD); default: every date found.")] = None,
    restricted: Restricted = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
    drop_unknown: Annotated[bool, typer.Option("--drop-unknown", help="Drop (and record) columns no policy covers instead of failing.")] = False,
    every: Annotated[bool, typer.Option("--all", help="Process every date found, even those already published and unchanged.")] = False,
    backup: Annotated[bool, typer.Option(help="Back up (encrypted) each date's raw files first; needs the backup key.")] = True,
    rotate_key: Annotated[bool, typer.Option("--rotate-key", help="Accept a pseudonym key other than the warehouse's (recorded in the ledger); every date is republished under it.")] = False,
    runner: Runner = RunnerKind.threads,
    dask_address: DaskAddress = None,
) -> None:
    """Run the anonymize-exports flow: by default on the dates not yet published or changed since."""
    if date is not None:
        _check_date(date)
    _run_flow(landing=landing, warehouse=warehouse, date=date, every=every, restricted=restricted, policies=policies,
              drop_unknown=drop_unknown, backup=backup, trigger="cli: tuomin run", runner=runner.value, dask_address=dask_address,
              rotate_key=rotate_key)


@app.command()
def backfill(
    start: Annotated[str, typer.Option(help="First export date (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option(help="Last export date (YYYY-MM-DD).")],
    landing: Landing = paths.SAMPLE_LANDING,
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Restricted = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
    verbose: Annotated[bool, typer.Option(help="Show the flow's log lines under the progress bar.")] = False,
    backup: Annotated[bool, typer.Option(help="Back up (encrypted) each date's raw files first; needs the backup key.")] = True,
    runner: Runner = RunnerKind.threads,
    dask_address: DaskAddress = None,
) -> None:
    """(Re)process every export date from START to END that has files, in one flow run."""
    if _check_date(start) > _check_date(end):
        raise typer.BadParameter(f"{start} is after {end}")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    _run_flow(landing=landing, warehouse=warehouse, start=start, end=end, restricted=restricted, policies=policies,
              backup=backup, trigger="cli: tuomin backfill", bar=True, runner=runner.value, dask_address=dask_address)


def _run_flow(bar: bool = False, **parameters) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flows import progress
    from flows.anonymize import anonymize_exports

    parameters = {k: str(v) if isinstance(v, Path) else v for k, v in parameters.items()}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=not bar) as shown:
        task = shown.add_task("export dates", total=None)

        def listener(event: str, info: dict) -> None:
            if event == "start":
                shown.update(task, total=len(info["dates"]))
            else:
                shown.update(task, advance=1, description=f"{info['date']} {'published' if info['ok'] else 'FAILED'}")

        progress.listen(listener)
        try:
            state = anonymize_exports(**parameters, return_state=True)
        finally:
            progress.listen(None)
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, dict):
        _print_summary(summary)
    if not state.is_completed():
        console.print(f"[bold red]FAILED[/]: {state.message}")
        raise typer.Exit(1)


def _print_summary(summary: dict) -> None:
    table = Table(title=f"run {summary['run_id']}  (key {summary['key_id']})")
    for header in ("date", "dataset", "read", "quarantined", "erased", "suppressed", "published", "k"):
        table.add_column(header, justify="left" if header in ("date", "dataset") else "right")
    for date, datasets in summary["dates"].items():
        if "error" in datasets:
            table.add_row(date, "[red]not published[/]", *[""] * 6)
            continue
        for name, info in datasets.items():
            c = info["counts"]
            table.add_row(date, name, *(str(c[x]) for x in ("read", "quarantined", "erased", "suppressed", "published")),
                          str(info["k"]))
    if summary["dates"]:
        console.print(table)
    if summary.get("not_run"):
        console.print(f"[bold red]not run[/] (the run stopped on a storage error): {', '.join(summary['not_run'])}")
    if summary.get("up_to_date"):
        console.print(f"already published and unchanged: {', '.join(summary['up_to_date'])} (use --all to redo)")
    console.print(f"output: {Path(summary['warehouse']).resolve()}/dataset=<name>/export_date=<date>/part-0.parquet")


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Landing directory to write.")],
    days: Annotated[int, typer.Option(min=1)] = 3,
    rows: Annotated[int, typer.Option(min=1, help="POS lines per day.")] = 1500,
    seed: int = 20260301,
    start: Annotated[str, typer.Option(help="First export date.")] = "2026-03-01",
    members: Annotated[int | None, typer.Option(help="CRM size (default grows with --rows).")] = None,
) -> None:
    """Generate sample exports exactly as the shop's systems write them."""
    import time

    from sample_data.generator import Config
    from sample_data.generator import generate as run_generator

    began = time.perf_counter()
    written = run_generator(out, Config(start=_check_date(start), days=days, rows=rows, members=members, seed=seed))
    seconds = time.perf_counter() - began
    pos = sum(n for path, n in written.items() if path.startswith("pos/"))
    console.print(f"wrote {len(written)} files under {out}: {pos} POS lines in {seconds:.1f} s ({pos / seconds:,.0f} lines/s)")


@app.command()
def classify(
    target: Annotated[Path, typer.Argument(help="An export file, or a directory of them.", exists=True)],
    format: Annotated[str, typer.Option("--format", help="yaml: a draft policy to review; json: role/kind/confidence per column.")] = "yaml",
    out: Annotated[Path | None, typer.Option(help="Write the draft policy here instead of printing it.")] = None,
    rows: Annotated[int, typer.Option(min=10, help="Rows sampled from the start of each file.")] = 5000,
    policies: Annotated[Path, typer.Option(help="Policy directory whose code tables the detectors use.")] = paths.POLICIES,
) -> None:
    """Propose what every column is; never prints a raw value (samples are masked)."""
    import json

    from flows import classify as profiler

    if format not in ("yaml", "json"):
        raise typer.BadParameter("use yaml or json", param_hint="--format")
    refs = profiler.references(policies)
    files = profiler.csv_files(target)
    root = target if target.is_dir() else target.parent
    if format == "json":
        result = {str(f): profiler.as_json(profiler.profile(f, rows, refs)[1]) for f in files}
        typer.echo(json.dumps(result[str(files[0])] if target.is_file() else result, ensure_ascii=False, indent=2))
        return
    drafts = [profiler.draft(f, root, rows, refs) for f in files]
    text = "\n".join(f"# --- {f}\n{d}" if len(files) > 1 else d for f, d in zip(files, drafts))
    if out:
        out.write_text(text, "utf-8")
        console.print(f"draft policy for {len(files)} file(s) written to {out}: review it before use")
    else:
        typer.echo(text, nl=False)


ASSESS_KEYS = ("k", "l_distinct", "l_entropy", "t_closeness", "classes", "avg_class_size", "discernibility",
               "prosecutor_risk_max", "prosecutor_risk_avg", "unique_share")


@app.command()
def assess(
    target: Annotated[Path, typer.Argument(help="A CSV or Parquet file, or a warehouse dataset directory (dataset=pos).")],
    qi: Annotated[str | None, typer.Option(help="Quasi-identifiers, comma-separated (default: from the files' tuomin metadata).")] = None,
    sensitive: Annotated[str | None, typer.Option(help="Sensitive attributes for l and t, comma-separated.")] = None,
    entity: Annotated[str | None, typer.Option(help="Count distinct values of this column per class, not rows.")] = None,
    population: Annotated[Path | None, typer.Option(help="CSV of QI combinations with a 'count' column: adds journalist and marketer risk.")] = None,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    warehouse: Warehouse = paths.WAREHOUSE,
) -> None:
    """k, l, t and re-identification risk of any table, with the code the pipeline's checks use."""
    import json

    from flows.tables import read_table
    from transforms.metrics import assess as measure
    from transforms.metrics import population_risk

    path = target if target.exists() else warehouse / target
    if not path.exists():
        raise typer.BadParameter(f"{target} is neither a file nor a dataset under {warehouse}")
    frame, metadata = read_table(path)
    qis = qi.split(",") if qi else metadata.get("quasi_identifiers")
    if not qis:
        raise typer.BadParameter("name the quasi-identifiers (--qi a,b,c); the input carries no tuomin metadata")
    entity = entity or (None if qi else metadata.get("entity_column"))
    missing = [c for c in [*qis, *(sensitive.split(",") if sensitive else []), *([entity] if entity else [])] if c not in frame]
    if missing:
        raise typer.BadParameter(f"no column(s) {missing} in {path}; it has {list(frame.columns)}")
    figures = measure(frame, qis, sensitive.split(",") if sensitive else [], entity)
    result = {key: figures[key] for key in ASSESS_KEYS}
    if population is not None:
        result |= population_risk(frame, qis, read_table(population)[0])
    if format == "json":
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    console.print(f"{path}: {figures['rows']} rows; quasi-identifiers {', '.join(qis)}" + (f"; counted per {entity}" if entity else ""))
    table = Table()
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


@app.command()
def docs(warehouse: Warehouse = paths.WAREHOUSE) -> None:
    """Build the Great Expectations Data Docs of every validation run against this warehouse."""
    project = warehouse / paths.GX_PROJECT
    if not (project / "gx").exists():
        console.print(f"no validations recorded under {project}: run `tuomin run` first")
        raise typer.Exit(1)
    from expectations.suite import build_docs

    console.print(f"Data Docs: {build_docs(project)}")


@app.command()
def serve() -> None:
    """Serve the daily anonymize and weekly review deployments to the Prefect server.

    The daily run is at 02:00, the review on Mondays at 03:00, Asia/Shanghai; the server is the one
    in PREFECT_API_URL (`make serve` starts it first). Runs until interrupted."""
    from prefect import serve as prefect_serve

    from flows.deploy import REVIEW_SCHEDULE, SCHEDULE, daily, weekly_review

    console.print(f"serving anonymize-exports/daily ({SCHEDULE['cron']}) and review/weekly ({REVIEW_SCHEDULE['cron']}), "
                  f"{SCHEDULE['timezone']}; Ctrl-C stops")
    prefect_serve(daily(), weekly_review())


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL over the views pos, membership, after_sales, ledger, partitions.")],
    warehouse: Warehouse = paths.WAREHOUSE,
    format: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
) -> None:
    """Query the anonymized warehouse with DuckDB."""
    import duckdb

    from flows.query import connect, spreadsheet_safe

    if format not in ("table", "csv", "json"):
        raise typer.BadParameter("use table, csv or json", param_hint="--format")
    try:
        result = connect(warehouse).sql(sql)
    except duckdb.Error as exc:
        console.print(f"[red]query failed[/]: {exc}")
        raise typer.Exit(2) from None
    frame = result.df() if result is not None else None
    if frame is None:
        return
    if format == "csv":
        typer.echo(spreadsheet_safe(frame).to_csv(index=False), nl=False)
    elif format == "json":
        typer.echo(frame.to_json(orient="records", force_ascii=False, date_format="iso"))
    else:
        table = Table()
        for column in frame.columns:
            table.add_column(str(column))
        for row in frame.itertuples(index=False):
            table.add_row(*("" if v is None or v != v else str(v) for v in row))
        console.print(table)


@ledger_app.command("verify")
def ledger_verify(warehouse: Warehouse = paths.WAREHOUSE) -> None:
    """Check the hash chain: exit 1 and name every edited, deleted or reordered entry."""
    from flows import ledger

    problems = ledger.verify(warehouse)
    count = len(ledger.entries(warehouse))
    if problems:
        for problem in problems:
            console.print(f"[red]{problem}[/]")
        console.print(f"[bold red]ledger NOT intact[/]: {len(problems)} problem(s) in {count} entries")
        raise typer.Exit(1)
    console.print(f"ledger intact: {count} entries, chain verified")


LEDGER_LINES = {
    "run": lambda d: f"{d['run_id']} {d['status']} ({d['triggered_by']['via']})",
    "partition": lambda d: f"{d['dataset']} {d['export_date']}: {d['rows']['published']} rows, k={d['k_achieved']}",
    "backup": lambda d: f"{d['export_date']}: {len(d['files'])} file(s) encrypted with {d['key_id']}",
    "deletion": lambda d: f"{d['export_date']}: {len(d['files'])} file(s), {d['bytes']} bytes deleted; replaced by "
                          + ", ".join(f"{r['dataset']} #{r['ledger_seq']}" for r in d["replaced_by"]),
    "partition_removed": lambda d: f"{d['dataset']} {d['export_date']}: {d['published_rows']} rows removed ({d['why'][:40]}…)",
    "review": lambda d: ("passed" if d["success"] else f"FAILED: {len(d['problems'])} problem(s)") + ": "
                        + ", ".join(f"{n} {x['partitions']} partitions" for n, x in d["datasets"].items()),
    "key_destroyed": lambda d: f"{d.get('key', 'pseudonym')} key {d['key_id']} destroyed ({d['method']})",
    "erasure_requested": lambda d: f"{d['kind']} {(d['subject'] or 'key destroyed')[:12]}: "
                                   + ("added" if d["added"] else "already listed")
                                   + f", {len(d.get('republished') or [])} partition(s) republished"
                                   + (f", FAILED: {d['failed']}" if d.get("failed") else ""),
}


@ledger_app.command("show")
def ledger_show(warehouse: Warehouse = paths.WAREHOUSE,
                kind: Annotated[str | None, typer.Option(help="Only entries of this kind (run, partition, key_destroyed …).")] = None) -> None:
    """The ledger's entries, one line each."""
    from flows import ledger

    table = Table()
    for header in ("seq", "at", "kind", "what", "hash"):
        table.add_column(header)
    for entry in ledger.entries(warehouse):
        if kind and entry["kind"] != kind:
            continue
        data = entry["data"]
        what = LEDGER_LINES.get(entry["kind"], lambda d: ", ".join(f"{k}={v}" for k, v in d.items() if isinstance(v, str | int)))(data)
        table.add_row(str(entry["seq"]), entry["at"], entry["kind"], what, entry["hash"][:12])
    console.print(table)


@key_app.command("init")
def key_init(
    path: Annotated[Path | None, typer.Option(help="Key file to create (default .secrets/pseudonym.key or .secrets/backup.key).")] = None,
    backup: Annotated[bool, typer.Option("--backup", help="The backup key instead of the pseudonym key.")] = False,
) -> None:
    """Create a random local demo key (mode 0600) unless one exists."""
    from flows.keys import BACKUP, PSEUDONYM, init_demo_key

    kind = BACKUP if backup else PSEUDONYM
    path = path or kind.demo
    if init_demo_key(path):
        console.print(f"created a local demo {kind.name} key at {path} (mode 0600). "
                      f"For real data use ${kind.env} or a Prefect Secret block (${kind.env}_BLOCK).")
    else:
        console.print(f"using the existing {kind.name} key file {path}")


@key_app.command("rotate")
def key_rotate(
    path: Annotated[Path, typer.Option(help="The pseudonym key file to replace.")] = Path(".secrets/pseudonym.key"),
    warehouse: Warehouse = paths.WAREHOUSE,
) -> None:
    """Replace the local pseudonym key with a new random one; recorded in the ledger (key_ids only)."""
    from flows import ledger
    from flows.keys import rotate_file

    old, new = rotate_file(path)
    entry = ledger.append(warehouse, "key_rotated", {"key": "pseudonym", "old_key_id": old, "new_key_id": new, "where": str(path)})
    console.print(f"rotated {path}: {old} -> {new} (ledger entry {entry['seq']}). Tokens made with {old} no longer "
                  "match new ones: re-run the dates you want linked under the new key.")


EFFECT = {"pseudonym": "tokens made with this key can no longer be linked to anyone (PIPL Art. 73)",
          "backup": "the backups encrypted with this key can no longer be read by anyone"}


@key_app.command("destroy")
def key_destroy(
    path: Annotated[Path | None, typer.Option(help="The key file to destroy (default .secrets/pseudonym.key or .secrets/backup.key).")] = None,
    block: Annotated[str | None, typer.Option(help="Destroy this Prefect Secret block instead of a file.")] = None,
    backup: Annotated[bool, typer.Option("--backup", help="The backup key instead of the pseudonym key.")] = False,
    warehouse: Warehouse = paths.WAREHOUSE,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Destroy a key for good, recorded in the ledger like a deletion.

    Without the pseudonym key no token can be linked back to a person; without the backup key no
    backup can be read."""
    from flows import ledger
    from flows.keys import BACKUP, PSEUDONYM, destroy_block, destroy_file

    kind = BACKUP if backup else PSEUDONYM
    path = path or kind.demo
    where = f"Prefect Secret block {block!r}" if block else str(path)
    if not yes:
        typer.confirm(f"Destroy the {kind.name} key in {where}? This cannot be undone", abort=True)
    try:
        key_id = destroy_block(block, kind) if block else destroy_file(path, kind)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    entry = ledger.append(warehouse, "key_destroyed", {
        "key": kind.name, "key_id": key_id, "where": where,
        "method": "Secret block deleted" if block else "overwritten, flushed, deleted", "effect": EFFECT[kind.name],
        "why": "PIPL Art. 47(1)(2): the company is closing; the key is no longer needed"})
    console.print(f"destroyed {kind.name} key {key_id} ({where}); ledger entry {entry['seq']} hash {entry['hash'][:16]}…")


@backup_app.command("verify")
def backup_verify(
    restricted: Restricted = paths.RESTRICTED,
    date: Annotated[str | None, typer.Option(help="Only this export date's backups.")] = None,
) -> None:
    """Decrypt every backup and check it against its manifest; exit 1 on any bad file."""
    from flows.backup import BackupError, manifests, verify
    from flows.keys import load_backup_key

    key = load_backup_key()
    found = manifests(restricted, _check_date(date) if date else None)
    if not found:
        console.print(f"no backups under {restricted / 'backups'}" + (f" for {date}" if date else ""))
        raise typer.Exit(1)
    failed = 0
    for manifest in found:
        try:
            files = verify(manifest, key)
            console.print(f"[green]ok[/] {manifest.parent}: {len(files)} file(s), {sum(f['bytes'] for f in files)} bytes")
        except BackupError as exc:
            failed += 1
            console.print(f"[bold red]BAD[/] {exc}")
    if failed:
        console.print(f"[bold red]{failed} of {len(found)} backup(s) failed verification[/]")
        raise typer.Exit(1)


@backup_app.command("restore")
def backup_restore(
    date: Annotated[str, typer.Option(help="The export date to restore.")],
    out: Annotated[Path, typer.Option(help="Directory to restore into (files keep their landing paths).")],
    restricted: Restricted = paths.RESTRICTED,
) -> None:
    """Restore a date's latest backup into a directory, checking every file against the manifest."""
    from flows.backup import BackupError, manifests, verify
    from flows.keys import load_backup_key

    found = manifests(restricted, _check_date(date))
    if not found:
        console.print(f"[red]no backup of {date} under {restricted / 'backups'}[/]")
        raise typer.Exit(1)
    latest = max(found, key=lambda m: m.stat().st_mtime)
    try:
        files = verify(latest, load_backup_key(), restore_to=out)
    except BackupError as exc:
        console.print(f"[bold red]restore failed[/]: {exc}")
        raise typer.Exit(1) from None
    console.print(f"restored {len(files)} file(s) of {date} into {out}, every SHA-256 as in the manifest")


@app.command()
def purge(
    landing: Annotated[Path, typer.Option(help="Landing directory to delete from (required: no default for deletions).")],
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Restricted = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be deleted and what is kept, and why; delete nothing.")] = False,
    as_of: AsOf = None,
) -> None:
    """Delete raw data that validated partitions replace, with a certificate per date.

    The raw exports, quarantined rows and backups of a date go once its partitions are published
    and validated and its grace period is over; each deletion is certified in the ledger."""
    from flows import landing as landing_io
    from flows.purge import plan
    from flows.purge import purge as purge_flow
    from flows.run import today
    from transforms.policy import load_policies

    day = _as_of(as_of, dry_run) or today()
    if dry_run:
        table = Table(title=f"purge plan as of {day}: nothing is deleted")
        for header in ("export date", "decision", "files (area, bytes, path)", "why"):
            table.add_column(header)
        for item in plan(landing_io.Landing(str(landing)), warehouse, restricted, load_policies(policies), day):
            files = "\n".join(f"{f['area']} {f['bytes']} {f['path']}" for f in item.files)
            table.add_row(item.export_date.isoformat(), "keep" if item.held else "[red]delete[/]", files,
                          item.held or " ".join(item.grounds))
        console.print(table)
        return
    state = purge_flow(landing=str(landing), warehouse=str(warehouse), restricted=str(restricted), policies=str(policies),
                       trigger="cli: tuomin purge", return_state=True)
    _finish(state, lambda done: f"{len(done)} date(s) purged" + "".join(
        f"\n  {d['export_date']}: {d['files']} file(s) deleted, certificate = ledger entry {d['ledger_seq']}" for d in done))


@app.command()
def retention(
    warehouse: Warehouse = paths.WAREHOUSE,
    policies: Policies = paths.POLICIES,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the partitions past their retention period; delete nothing.")] = False,
    as_of: AsOf = None,
) -> None:
    """Delete the published partitions past their dataset's retention period (recorded in the ledger)."""
    from flows.retention import expired
    from flows.retention import retention as retention_flow
    from flows.run import today

    day = _as_of(as_of, dry_run) or today()
    if dry_run:
        items, orphans = expired(warehouse, policies, day)
        for item in items:
            console.print(f"{item.entry['data']['dataset']} {item.entry['data']['export_date']}: kept until {item.keep_until}, would be removed")
        for orphan in orphans:
            console.print(f"[red]{orphan}: no policy, retention unknown[/]")
        console.print(f"{len(items)} partition(s) past retention as of {day}")
        return
    state = retention_flow(warehouse=str(warehouse), policies=str(policies), trigger="cli: tuomin retention", return_state=True)
    _finish(state, lambda removed: f"{len(removed)} partition(s) removed past their retention period")


@app.command()
def review(warehouse: Warehouse = paths.WAREHOUSE, policies: Policies = paths.POLICIES) -> None:
    """Re-validate every published dataset as a whole; exit 1 on any failure.

    Files against the ledger, policy hashes, k, l and the identifier scan over all partitions;
    the result is recorded in the ledger."""
    from flows.review import review as review_flow

    state = review_flow(warehouse=str(warehouse), policies=str(policies), trigger="cli: tuomin review", return_state=True)
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, dict):
        for name, result in summary["datasets"].items():
            linkage = result.get("linkage")
            console.print(f"{name}: {result['partitions']} partition(s), {result['rows']} rows: "
                          + ("[green]ok[/]" if result["success"] else "[bold red]FAILED[/]")
                          + (f"; {linkage['profile_unique_share']:.1%} of customers have a unique profile across partitions"
                             if linkage else ""))
        for problem in summary["problems"]:
            console.print(f"[red]{problem}[/]")
    _finish(state, lambda s: f"review passed (ledger entry {s['ledger_seq']})")


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="Directory for report.html and report.json.")],
    warehouse: Warehouse = paths.WAREHOUSE,
    policies: Policies = paths.POLICIES,
    start: Annotated[str | None, typer.Option(help="First export date of the period.")] = None,
    end: Annotated[str | None, typer.Option(help="Last export date of the period.")] = None,
) -> None:
    """Write the evidence pack: a self-contained HTML report and the same facts as JSON.

    Per dataset the policy, row counts, k and l, risk and loss, validation results, plots; the
    backups, deletions, key events and reviews with their ledger hashes; a draft impact assessment
    outline. No data value."""
    from flows.evidence import collect
    from flows.report import write

    facts = collect(warehouse, policies, _check_date(start) if start else None, _check_date(end) if end else None)
    page, data = write(facts, out)
    console.print(f"evidence pack: {page} and {data}")
    if facts["ledger"]["problems"]:
        console.print(f"[bold red]the ledger's chain is broken[/]: {len(facts['ledger']['problems'])} problem(s); the report says so")
        raise typer.Exit(1)


def _as_of(value: str | None, dry_run: bool) -> dt.date | None:
    if value is None:
        return None
    if not dry_run:
        raise typer.BadParameter("--as-of only plans (with --dry-run); deletions always use today's date")
    return _check_date(value)


def _finish(state, done) -> None:
    """Print a flow's outcome; a failed flow run exits 1."""
    if not state.is_completed():
        console.print(f"[bold red]FAILED[/]: {state.message}")
        raise typer.Exit(1)
    console.print(done(state.result()))


def _check_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


DocNo = Annotated[str | None, typer.Option("--doc-no", help="The person's document number (resident ID, passport, permit).")]
Mobile = Annotated[str | None, typer.Option("--mobile", help="The person's mobile (+86, spaces, dashes, full-width digits all fine).")]
MemberNo = Annotated[str | None, typer.Option("--member-no", help="The person's member number.")]


def _identifier(doc_no: str | None, mobile: str | None, member_no: str | None):
    from flows.subjects import Identifier, SubjectError

    given = [(k, v) for k, v in (("doc_no", doc_no), ("mobile", mobile), ("member_no", member_no)) if v]
    if len(given) != 1:
        raise typer.BadParameter("name the person by exactly one of --doc-no, --mobile, --member-no")
    try:
        return Identifier.parse(*given[0])
    except SubjectError as exc:
        raise typer.BadParameter(str(exc)) from None


@subjects_app.command("lookup")
def subjects_lookup(
    out: Annotated[Path, typer.Option(help="Folder for the person's file (created owner-only; the file is raw personal data).")],
    doc_no: DocNo = None, mobile: Mobile = None, member_no: MemberNo = None,
    landing: Landing = paths.SAMPLE_LANDING, warehouse: Warehouse = paths.WAREHOUSE, policies: Policies = paths.POLICIES,
) -> None:
    """Every record of one person in the raw exports still held, as one file (access request)."""
    from flows import ledger
    from flows.keys import load_pseudonymizer
    from flows.landing import Landing as LandingArea
    from flows.subjects import lookup, write_lookup
    from transforms.policy import load_policies

    who = _identifier(doc_no, mobile, member_no)
    pseudonymizer = load_pseudonymizer()
    found = lookup(LandingArea(landing), load_policies(policies), who)
    path = write_lookup(out, who, pseudonymizer, found) if found else None
    newest = max((f.date for f in found), default=None)
    entry = ledger.append(warehouse, "subject_lookup", {
        "kind": who.kind, "subject": who.keyed_hash(pseudonymizer), "key_id": pseudonymizer.key_id, "records": len(found),
        "file": str(path.resolve()) if path else None, "newest_date": newest})
    if path is None:
        console.print(f"no record of this person in the exports under {landing}; nothing written (ledger entry {entry['seq']})")
        return
    sources = sorted({f.source for f in found})
    console.print(f"{len(found)} record(s) ({', '.join(sources)}) -> {path} (owner-only: raw personal data, for the person "
                  f"only; `tuomin purge` deletes it with the raw data of {newest}, the newest date it copies). "
                  f"Ledger entry {entry['seq']}.")


@subjects_app.command("erase")
def subjects_erase(
    doc_no: DocNo = None, mobile: Mobile = None, member_no: MemberNo = None,
    landing: Landing = paths.SAMPLE_LANDING, warehouse: Warehouse = paths.WAREHOUSE, policies: Policies = paths.POLICIES,
) -> None:
    """Erase one person: put them on requests/erasure.csv (the next run leaves them out of everything
    it publishes) and, while the pseudonym key exists, remove them from every partition already
    published (each republished atomically, k and l validated again)."""
    from flows import ledger
    from flows.erasure import Sweep, erase_published
    from flows.keys import load_pseudonymizer
    from flows.landing import Landing as LandingArea
    from flows.record import triggered_by
    from flows.subjects import erase, tokens
    from flows.warehouse import WarehouseBusy, WarehouseUnwritable
    from transforms.policy import load_policies
    from transforms.pseudonymize import PseudonymKeyError

    who = _identifier(doc_no, mobile, member_no)
    try:
        pseudonymizer = load_pseudonymizer()
    except PseudonymKeyError as exc:
        if not any(e["kind"] == "key_destroyed" and e["data"].get("key", "pseudonym") == "pseudonym" for e in ledger.entries(warehouse)):
            console.print(f"[red]{exc}[/] (the request is recorded by a keyed hash of the identifier)")
            raise typer.Exit(2) from None
        pseudonymizer = None  # destroyed, as the ledger records
    area = LandingArea(landing)
    added = erase(area, who)
    console.print(("added to requests/erasure.csv" if added else "already on requests/erasure.csv") +
                  ". The erasure list is part of every date's fingerprint: the next `tuomin run` republishes each date "
                  "whose raw files are still held without this person.")
    if pseudonymizer is None:
        ledger.append(warehouse, "erasure_requested", {"kind": who.kind, "added": added, "subject": None, "key_id": None})
        console.print("The pseudonym key was destroyed (see the ledger): the published data can no longer be linked to this "
                      "person or anyone else, which is what anonymization means; nothing published needs removing.")
        return
    subject = who.keyed_hash(pseudonymizer)
    found = tokens(area, load_policies(policies), who, pseudonymizer)
    try:
        sweep = erase_published(Path(warehouse), found, pseudonymizer.key_id, subject, triggered_by("tuomin subjects erase"))
    except (WarehouseBusy, WarehouseUnwritable) as exc:
        sweep = Sweep(failed=f"{exc}: the published partitions were not searched")
    ledger.append(warehouse, "erasure_requested", {
        "kind": who.kind, "added": added, "subject": subject, "key_id": pseudonymizer.key_id, "tokens": len(found), "republished": sweep.republished, "not_searched": sweep.other_keys, "failed": sweep.failed})
    _print_sweep(who, found, sweep)
    if sweep.failed:
        raise typer.Exit(1)


def _print_sweep(who, found: set[str], sweep) -> None:
    if not found:
        console.print(f"Published data names customers only by the keyed token of their document number, and no raw record "
                      f"still held links this {who.kind} to one: the published partitions cannot be searched for this "
                      "person. Ask them for their document number and repeat with --doc-no.")
    for done in sweep.republished:
        console.print(f"{done['dataset']} {done['export_date']}: republished without this person: {done['erased']} row(s) "
                      f"erased, {done['suppressed']} more suppressed ({done['classes_suppressed']} class(es) left below k or l); "
                      f"ledger entry {done['ledger_seq']}")
    if found and not sweep.republished and not sweep.failed:
        console.print("No published partition holds this person.")
    for other in sweep.other_keys:
        console.print(f"[yellow]{other['dataset']} {other['export_date']}: published under key {other['key_id']}, not this "
                      "one: not searched[/]")
    if sweep.failed:
        console.print(f"[red]{sweep.failed}[/]. The person stays on the erasure list; fix the cause and repeat this command "
                      "(partitions already done are not redone).")


@subjects_app.command("notify")
def subjects_notify(
    out: Annotated[Path, typer.Option(help="Folder for sms.csv and email.csv (created owner-only: raw mobiles and e-mails).")],
    closing_date: Annotated[str, typer.Option(help="The day the shop stops trading, as the notice says it (e.g. 2026年12月31日).")],
    delete_by: Annotated[str, typer.Option(help="The day by which personal data is deleted.")],
    requests_by: Annotated[str, typer.Option(help="The last day to ask for a copy or for deletion.")],
    contact: Annotated[str, typer.Option(help="How to ask (a phone number, an address, an e-mail).")],
    shop: Annotated[str, typer.Option(help="The shop's name as customers know it.")] = "本公司",
    landing: Landing = paths.SAMPLE_LANDING, warehouse: Warehouse = paths.WAREHOUSE, policies: Policies = paths.POLICIES,
) -> None:
    """Closure notices for every member of the latest CRM snapshot with a mobile or an e-mail."""
    from flows import ledger
    from flows.landing import Landing as LandingArea
    from flows.subjects import Closure, SubjectError, notices
    from transforms.policy import load_policies

    try:
        counts = notices(LandingArea(landing), load_policies(policies), Closure(shop, closing_date, delete_by, requests_by, contact), out)
    except SubjectError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    entry = ledger.append(warehouse, "notices", counts)
    console.print(f"CRM snapshot {counts['snapshot']}: {counts['members']} member(s); {counts['sms']} SMS and {counts['email']} "
                  f"e-mail notice(s) -> {out} (owner-only; deleted by `tuomin purge` with that date's raw data); "
                  f"{counts['erased']} on the erasure list and {counts['unreachable']} without a mobile or e-mail not "
                  f"notified. Ledger entry {entry['seq']}.")


if __name__ == "__main__":
    app()
