"""The `tuomin` command line. Every command that reads exports, the warehouse or the restricted
area takes --landing, --warehouse and --restricted with the same defaults as `tuomin run`."""

from __future__ import annotations

import datetime as dt
import json
import os
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, cast

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from flows.runtime import environment, paths
from transforms.errors import Refused, Transient

environment.configure()  # before Prefect is imported anywhere


TEMPORARY = 75  # the exit code of a refusal that may not recur (transforms.errors.Transient)


class Commands(TyperGroup):
    """How every command fails: a refusal (transforms.errors.Refused: a wrong key, policy, path or
    date, a ledger that cannot be trusted, a destructive step that does not match what the ledger
    recorded) is one line and exit code 2, with nothing changed (75 where it is Transient: another
    run holds the warehouse); anything else is a traceback with identifier-shaped text masked, and
    exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:  # a bad value: one line, like the refusals
            _refuse(exc.format_message())
        except (typer.Exit, typer.Abort, typer.TyperException):  # usage, confirmation, exit codes: typer's own
            raise
        except BrokenPipeError:  # the reader stopped reading (`| head`): stop quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing more reaches the closed pipe at exit
            raise typer.Exit(141) from None
        except Exception as exc:  # noqa: BLE001  (sorted below: a refusal, or a failure)
            if isinstance(exc, Refused):  # not done, nothing changed (transforms/errors.py)
                _refuse(exc)
            from flows.runtime.logfilter import mask

            errors.print(mask(traceback.format_exc()), markup=False, highlight=False)
            raise typer.Exit(1) from None


def _refuse(reason: Exception | str) -> NoReturn:
    from flows.runtime.logfilter import mask

    errors.print(f"[bold red]refused[/]: {mask(str(reason))}", highlight=False, soft_wrap=True)
    # EX_TEMPFAIL (sysexits.h) where the same command may succeed later unchanged: what a cron
    # wrapper retries; 2 where the command itself must change.
    raise typer.Exit(TEMPORARY if isinstance(reason, Transient) else 2)


app = typer.Typer(
    help="De-identify the shop's exports into validated, k-anonymous Parquet.",
    no_args_is_help=True,
    cls=Commands,
    pretty_exceptions_show_locals=False,
)
key_app = typer.Typer(help="The pseudonym key and the backup key.", no_args_is_help=True)
app.add_typer(key_app, name="key")
ledger_app = typer.Typer(help="The append-only, hash-chained record of runs, partitions and key events.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
backup_app = typer.Typer(help="The encrypted backups of the raw exports.", no_args_is_help=True)
subjects_app = typer.Typer(help="Data subjects' requests: a copy of their records, or their erasure.", no_args_is_help=True)
app.add_typer(subjects_app, name="subjects")
app.add_typer(backup_app, name="backup")
# Tables fit 110 columns when piped; lines of text are never wrapped (a path cut in two cannot be pasted).
console = Console(width=None if Console().is_terminal else 110, soft_wrap=True)
errors = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 110, soft_wrap=True)

# A path or any fsspec URL (s3://…, sftp://…, memory://…): a string, so that a URL is not made a local path.
Landing = Annotated[
    str, typer.Option(help="Landing area (a directory or an fsspec URL) with pos/, membership/, after_sales/, requests/.")
]
Warehouse = Annotated[
    Path, typer.Option("--warehouse", help="Warehouse directory of the anonymized Parquet (what analysts read).")
]
Restricted = Annotated[
    Path,
    typer.Option(
        "--restricted", help="Restricted area (0700): the ledger, GX results, quarantined rows, backups (created if new)."
    ),
]


def _with_ledger(path: Path) -> Path:
    from flows.cli import usage

    return usage.restricted(path)


# Commands that act on what the ledger records, or record what they do in it, need one that exists.
Vault = Annotated[
    Path,
    typer.Option(
        "--restricted",
        callback=_with_ledger,
        help="Restricted area holding the ledger (0700), GX results, quarantine and backups.",
    ),
]
Policies = Annotated[Path, typer.Option(help="Directory of reviewed policy files.")]


class RunnerKind(str, Enum):
    threads = "threads"
    dask = "dask"


Runner = Annotated[RunnerKind, typer.Option(help="Where per-file and per-partition work runs: a thread pool, or a Dask cluster.")]
DaskAddress = Annotated[
    str | None,
    typer.Option(help="An existing Dask scheduler (tcp://host:8786) for --runner dask; default: a LocalCluster for the run."),
]
AsOf = Annotated[str | None, typer.Option(help="Plan as if today were this date (YYYY-MM-DD, Shanghai); only with --dry-run.")]
MaxUnitRows = Annotated[
    int,
    typer.Option(min=1, help="Rows one unit (a day of purchases) may hold; a larger one is refused before the search."),
]


@app.command()
def run(
    landing: Landing = str(paths.SAMPLE_LANDING),
    warehouse: Warehouse = paths.WAREHOUSE,
    date: Annotated[str | None, typer.Option(help="One export date (YYYY-MM-DD); default: every date found.")] = None,
    restricted: Restricted = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
    drop_unknown: Annotated[
        bool, typer.Option("--drop-unknown", help="Drop (and record) columns no policy covers instead of failing.")
    ] = False,
    every: Annotated[
        bool, typer.Option("--all", help="Process every date found, even those already published and unchanged.")
    ] = False,
    backup: Annotated[bool, typer.Option(help="Back up (encrypted) each date's raw files first; needs the backup key.")] = True,
    rotate_key: Annotated[
        bool,
        typer.Option(
            "--rotate-key",
            help="Accept a pseudonym key other than the warehouse's (recorded in the ledger); "
            "every date is republished under it.",
        ),
    ] = False,
    runner: Runner = RunnerKind.threads,
    dask_address: DaskAddress = None,
    max_unit_rows: MaxUnitRows = 2_000_000,
) -> None:
    """Run the anonymize-exports flow, one release: by default over the files not yet read or changed since."""
    if date is not None:
        _check_date(date)
    from flows.cli import usage

    usage.run(landing, restricted, policies, backup, rotate_key)
    _run_flow(
        landing=landing,
        warehouse=warehouse,
        date=date,
        every=every,
        restricted=restricted,
        policies=policies,
        drop_unknown=drop_unknown,
        backup=backup,
        trigger="cli: tuomin run",
        runner=runner.value,
        dask_address=dask_address,
        rotate_key=rotate_key,
        max_unit_rows=max_unit_rows,
    )


@app.command()
def backfill(
    start: Annotated[str, typer.Option(help="First export date (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option(help="Last export date (YYYY-MM-DD).")],
    landing: Landing = str(paths.SAMPLE_LANDING),
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
    from flows.cli import usage

    usage.run(landing, restricted, policies, backup, rotating=False)
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    _run_flow(
        landing=landing,
        warehouse=warehouse,
        start=start,
        end=end,
        restricted=restricted,
        policies=policies,
        backup=backup,
        trigger="cli: tuomin backfill",
        bar=True,
        runner=runner.value,
        dask_address=dask_address,
    )


def _run_flow(bar: bool = False, **parameters) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flows.pipeline.anonymize import anonymize_exports
    from flows.pipeline.parameters import RunParameters
    from flows.runtime import progress

    chosen = RunParameters.model_validate({k: str(v) if isinstance(v, Path) else v for k, v in parameters.items()})
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, disable=not bar
    ) as shown:
        task = shown.add_task("release", total=None)

        def listener(event: str, info: dict) -> None:
            if event == "start":
                shown.update(task, total=1, completed=0, description=f"release of {', '.join(info['sources'])}")
            else:
                shown.update(task, completed=1, description=f"release {'published' if info['ok'] else 'FAILED'}")

        progress.listen(listener)
        try:
            state = anonymize_exports(chosen, return_state=True)
        finally:
            progress.listen(None)
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, Transient):  # the run never started its work (another holds the warehouse)
        raise summary
    if isinstance(summary, dict):
        _print_summary(summary)
    if not state.is_completed():
        console.print(f"[bold red]FAILED[/]: {state.message}")
        raise typer.Exit(1)


def _print_summary(summary: dict) -> None:
    table = Table(title=f"run {summary['run_id']}  (key {summary['key_id']})")
    for header in ("dataset", "periods", "units", "read", "erased", "suppressed", "published", "k"):
        table.add_column(header, justify="left" if header in ("dataset", "periods") else "right")
    for name, info in summary["datasets"].items():
        c = info["counts"]
        periods = info["periods"]
        table.add_row(
            name,
            periods[0] if len(periods) == 1 else f"{periods[0]} … {periods[-1]}",
            str(info["units"]),
            *(str(c[x]) for x in ("read", "erased", "suppressed", "published")),
            str(info["k"]),
        )
    if summary["datasets"]:
        console.print(table)
    if summary.get("error"):
        console.print(f"[red]{summary['error']}[/]")
    if summary.get("republished"):
        console.print(f"republished: {len(summary['republished'])} unit(s) that had a partition before")
    if summary.get("up_to_date"):
        console.print(f"unchanged since published: {', '.join(summary['up_to_date'])} (use --all to redo)")
    console.print(f"output: {Path(summary['warehouse']).resolve()}/dataset=<name>/period=<unit>/part-0.parquet")


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Landing directory to write.")],
    days: Annotated[int, typer.Option(min=1)] = 3,
    rows: Annotated[int, typer.Option(min=1, help="POS lines per day.")] = 1500,
    seed: int = 20260301,
    start: Annotated[str, typer.Option(help="First export date.")] = "2026-03-01",
    members: Annotated[int | None, typer.Option(help="CRM size (default grows with --rows).")] = None,
    snapshots: Annotated[
        str, typer.Option(help="daily: the CRM's snapshot every day; last: on the last day only (a long history).")
    ] = "daily",
    dump: Annotated[
        bool, typer.Option("--dump", help="Deliver the same rows as a closing dump: one file per system, the last snapshot.")
    ] = False,
) -> None:
    """Generate sample exports exactly as the shop's systems write them."""
    import tempfile
    import time

    from sample_data.dump import as_dump
    from sample_data.generator import Config
    from sample_data.generator import generate as run_generator

    if snapshots not in ("daily", "last"):
        raise typer.BadParameter("use daily or last", param_hint="--snapshots")
    began = time.perf_counter()
    config = Config(start=_check_date(start), days=days, rows=rows, members=members, seed=seed, snapshots=snapshots)
    if dump:
        with tempfile.TemporaryDirectory(prefix=".daily-", dir=out.parent if out.parent.exists() else None) as daily:
            written = run_generator(Path(daily), config)
            as_dump(Path(daily), out)
    else:
        written = run_generator(out, config)
    seconds = time.perf_counter() - began
    pos = sum(n for path, n in written.items() if path.startswith("pos/"))
    console.print(f"wrote {len(written)} files under {out}: {pos} POS lines in {seconds:.1f} s ({pos / seconds:,.0f} lines/s)")


@app.command()
def classify(
    target: Annotated[Path, typer.Argument(help="An export file, or a directory of them.", exists=True)],
    format: Annotated[
        str, typer.Option("--format", help="yaml: a draft policy to review; json: role/kind/confidence per column.")
    ] = "yaml",
    out: Annotated[Path | None, typer.Option(help="Write the draft policy here instead of printing it.")] = None,
    rows: Annotated[int, typer.Option(min=10, help="Rows sampled from the start of each file.")] = 5000,
    policies: Annotated[Path, typer.Option(help="Policy directory whose code tables the detectors use.")] = paths.POLICIES,
) -> None:
    """Propose what every column is; never prints a raw value (samples are masked)."""
    import json

    from flows.onboarding import propose as profiler

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


ASSESS_KEYS = (
    "k",
    "l_distinct",
    "l_entropy",
    "t_closeness",
    "classes",
    "avg_class_size",
    "discernibility",
    "prosecutor_risk_max",
    "prosecutor_risk_avg",
    "unique_share",
)


@app.command()
def assess(
    target: Annotated[Path, typer.Argument(help="A CSV or Parquet file, or a warehouse dataset directory (dataset=pos).")],
    qi: Annotated[
        str | None, typer.Option(help="Quasi-identifiers, comma-separated (default: from the files' tuomin metadata).")
    ] = None,
    sensitive: Annotated[str | None, typer.Option(help="Sensitive attributes for l and t, comma-separated.")] = None,
    entity: Annotated[str | None, typer.Option(help="Count distinct values of this column per class, not rows.")] = None,
    population: Annotated[
        Path | None, typer.Option(help="CSV of QI combinations with a 'count' column: adds journalist and marketer risk.")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    warehouse: Annotated[Path, typer.Option(help="Where a dataset target (dataset=pos) is looked for.")] = paths.WAREHOUSE,
) -> None:
    """k, l, t and re-identification risk of any table, with the code the pipeline's checks use."""
    import json

    from flows.storage.tables import read_table
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
    console.print(
        f"{path}: {figures['rows']} rows; quasi-identifiers {', '.join(qis)}" + (f"; counted per {entity}" if entity else "")
    )
    table = Table()
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


@app.command()
def risk(
    warehouse: Warehouse = paths.WAREHOUSE,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    k: Annotated[
        int | None, typer.Option(min=2, help="The smallest crowd a person must hide in [default: the files' k].")
    ] = None,
    purchases: Annotated[
        int | None, typer.Option(min=0, help="Purchases the intruder knows of the target [default: the POS policy's m].")
    ] = None,
    contacts: Annotated[
        int | None,
        typer.Option(min=0, help="Service contacts the intruder knows of the target [default: the after-sales policy's m]."),
    ] = None,
    against: Annotated[
        Path | None, typer.Option(help="An earlier copy of the warehouse: tokens shared with it are links too.")
    ] = None,
) -> None:
    """Measure the release as a motivated intruder would (../shared/privacy-model.md); exit 1 if it fails.

    Singling out, re-identification probability and k^m over the person-level record (everything
    that shares a token), identifiers shared across datasets, dates and versions, sensitive values
    certain in a class, snapshot differencing, row order, counts below k. Counts and shares only."""
    import json

    from flows.pipeline.release import assess

    if format not in ("table", "json"):
        raise typer.BadParameter("use table or json", param_hint="--format")
    found = assess(warehouse, against=against, k=k, purchases=purchases, contacts=contacts)
    if format == "json":
        typer.echo(json.dumps(found, ensure_ascii=False, indent=2))
    else:
        knows = found["adversary"]
        console.print(
            f"{warehouse}: {found['people']} person-level records; the intruder knows each person's own "
            f"attributes, {knows['purchases']} purchase(s) and {knows['contacts']} contact(s); k = {knows['k']}"
        )
        table = Table()
        for header in ("check", "result", "measured", "required"):
            table.add_column(header)
        for check in found["checks"]:
            table.add_row(
                check["name"], "[green]pass[/]" if check["passed"] else "[bold red]FAIL[/]", check["measured"], check["required"]
            )
        console.print(table)
        console.print(
            "release " + ("[green]passes[/]" if found["passed"] else "[bold red]FAILS[/]: de-identified, not anonymized")
        )
    if not found["passed"]:
        raise typer.Exit(1)


@app.command()
def docs(
    restricted: Vault = paths.RESTRICTED,
    warehouse: Warehouse = paths.WAREHOUSE,
    policies: Policies = paths.POLICIES,
    out: Annotated[Path, typer.Option(help="Where the data dictionary is written.")] = Path("dictionary"),
) -> None:
    """The data dictionary of the warehouse (what each column means, its type, levels, values and the
    questions it answers), and the Great Expectations Data Docs of every validation recorded."""
    from flows.cli import usage
    from flows.storage import dictionary

    page, _ = dictionary.write(dictionary.build(warehouse, usage.policies(policies)), out)
    console.print(f"data dictionary: {page}")
    project = restricted / paths.GX_PROJECT
    if not (project / "gx").exists():
        console.print(f"no validations recorded under {project}: run `tuomin run` first")
        raise typer.Exit(1)
    from expectations.suite import build_docs

    console.print(f"Data Docs: {build_docs(project)}")


@app.command()
def serve(
    pid_file: Annotated[
        Path | None, typer.Option(help="Write this process's id here while serving (`make stop` reads it).")
    ] = None,
) -> None:
    """Serve the daily anonymize, weekly review and daily retention deployments to the Prefect server.

    The daily run is at 02:00, the review on Mondays at 03:00, retention daily at 04:00, Asia/Shanghai; the server is the one
    in PREFECT_API_URL (`make serve` starts it first). Runs until interrupted (Ctrl-C or SIGTERM);
    on the way out the schedules are paused on the server."""
    import asyncio
    import threading
    import time

    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    from flows.cli.deploy import RETENTION_SCHEDULE, REVIEW_SCHEDULE, SCHEDULE, deployments

    runner = Runner(pause_on_shutdown=True)
    for deployment in deployments():
        runner.add_deployment(deployment)

    def announce() -> None:
        # Only a started runner stops gracefully on SIGTERM (pausing the schedules): the id is
        # written for `make stop` from then on.
        while not runner.started:
            time.sleep(0.1)
        if pid_file is not None:
            pid_file.parent.mkdir(parents=True, exist_ok=True)
            pid_file.write_text(f"{os.getpid()}\n")
        console.print(
            f"serving anonymize-exports/daily ({SCHEDULE['cron']}), review/weekly ({REVIEW_SCHEDULE['cron']}) and "
            f"retention/daily ({RETENTION_SCHEDULE['cron']}), {SCHEDULE['timezone']}; Ctrl-C stops"
        )

    threading.Thread(target=announce, daemon=True).start()
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        pass
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
    console.print("stopped serving")


@app.command()
def query(
    sql: Annotated[
        str, typer.Argument(help="SQL over the views pos, membership, after_sales, partitions, each dp_<table> and dp_tables.")
    ],
    warehouse: Warehouse = paths.WAREHOUSE,
    format: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the result to this .csv, .json or .parquet file instead.")
    ] = None,
) -> None:
    """Query the anonymized warehouse with DuckDB (reads only, and only the warehouse)."""
    import duckdb

    from flows.storage import query as q

    if format not in ("table", "csv", "json"):
        raise typer.BadParameter("use table, csv or json", param_hint="--format")
    if out is not None and out.suffix not in q.OUTPUTS:
        raise typer.BadParameter(f"write a {', '.join(q.OUTPUTS)} file", param_hint="--out")
    try:
        relation = q.read_only(q.connect(warehouse), sql)
        result = q.arrow(relation) if relation is not None else None
    except (duckdb.Error, q.QueryRefused) as exc:
        console.print(f"[red]query failed[/]: {exc}")
        raise typer.Exit(2) from None
    if result is None:
        return
    if out is not None:
        q.write(result, out)
        console.print(f"{result.num_rows} row(s) -> {out}")
    elif format == "csv":
        typer.echo(q.to_csv(result), nl=False)
    elif format == "json":
        typer.echo(q.to_json(result))
    else:
        _print_rows(result)


def _print_whole(table: Table) -> None:
    """A table on the terminal as usual; piped, as wide as its widest row (never squeezed to 110
    columns, where a path or a value would be cut)."""
    width = None if console.is_terminal else max(110, Console(width=1 << 16).measure(table).maximum)
    Console(width=width, soft_wrap=True).print(table)


def _print_rows(result) -> None:
    """A result as a table; piped, as wide as its widest rows need (never squeezed to fit 110 columns)."""
    table = Table()
    for name in result.column_names:
        table.add_column(name)
    for row in result.to_pylist():
        table.add_row(*(Text(_shown(v)) for v in row.values()))  # Text: a value is never read as markup
    _print_whole(table)


def _shown(value) -> str:
    """A value as the table prints it: lists and structs as JSON (dates ISO), NULL as nothing."""
    from flows.storage import query as q

    if value is None:
        return ""
    return q.to_json_value(value) if isinstance(value, list | dict) else str(value)


@ledger_app.command("verify")
def ledger_verify(
    restricted: Vault = paths.RESTRICTED,
    warehouse: Annotated[
        Path, typer.Option("--warehouse", help="The warehouse whose partition files record heads of this ledger.")
    ] = paths.WAREHOUSE,
    expect_head: Annotated[
        str | None,
        typer.Option(
            help="A head hash taken earlier (from `ledger verify` or an evidence pack): "
            "it must still be in the chain, else entries were cut off."
        ),
    ] = None,
) -> None:
    """Check the hash chain and every head recorded outside it; print the head. Exit 1 when the
    ledger is missing, empty, edited, reordered or cut short."""
    from flows.storage import ledger

    verdict = ledger.check(restricted, warehouse if warehouse.is_dir() else None, expect_head)
    for problem in verdict.problems:
        console.print(f"[red]{problem}[/]")
    if not verdict.intact:
        console.print(f"[bold red]ledger NOT verified[/]: {len(verdict.problems)} problem(s) in {verdict.entries} entries")
        raise typer.Exit(1)
    console.print(
        f"ledger intact: {verdict.entries} entries, hash chain verified; "
        + (
            f"{verdict.anchors} partition file(s) vouch for entries up to {verdict.anchored_to}"
            if verdict.anchors
            else "no partition file records a head (truncation not checked against files)"
        )
        + (f"; expected head {expect_head} found" if expect_head else "")
    )
    head = verdict.head or {"seq": 0, "hash": ""}  # intact: there is a head
    console.print(f"head: entry {head['seq']} hash {head['hash']}")
    if verdict.unreadable:
        console.print(
            f"[yellow]{len(verdict.unreadable)} partition file(s) could not be read, so vouch for nothing "
            f"({', '.join(verdict.unreadable)}): see `tuomin review`[/]"
        )
    if verdict.anchored_to < head["seq"] and not expect_head:
        console.print(
            f"entries after {verdict.anchored_to} are checked against truncation only with --expect-head "
            "(keep this head hash, e.g. in the evidence pack)"
        )


@ledger_app.command("show")
def ledger_show(
    restricted: Vault = paths.RESTRICTED,
    kind: Annotated[str | None, typer.Option(help="Only entries of this kind (run, partition, key_destroyed …).")] = None,
    seq: Annotated[int | None, typer.Option(help="One entry in full, by its sequence number.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, one entry each, instead of a table.")] = False,
) -> None:
    """The ledger's entries, one line each (the line each kind's model writes), or in full."""
    from flows.storage import ledger
    from flows.storage.entries import KINDS

    if kind and kind not in KINDS:
        raise typer.BadParameter(f"unknown kind {kind!r}; known: {', '.join(KINDS)}", param_hint="--kind")
    chosen = [e for e in ledger.read(restricted) if (kind is None or e.kind == kind) and (seq is None or e.seq == seq)]
    if seq is not None and not chosen:
        raise typer.BadParameter(f"no entry {seq} in {restricted / ledger.LEDGER}", param_hint="--seq")
    if as_json or seq is not None:
        for e in chosen:
            whole = {"seq": e.seq, "at": e.at, "kind": e.kind, "data": e.data.record(), "hash": e.hash}
            if as_json:
                print(json.dumps(whole, ensure_ascii=False))
            else:
                console.print_json(data=whole)
        return
    table = Table()
    for header in ("seq", "at", "kind", "what", "hash"):
        table.add_column(header)
    for e in chosen:
        table.add_row(str(e.seq), e.at, e.kind, e.data.line(), e.hash[:12])
    console.print(table)


@key_app.command("init")
def key_init(
    path: Annotated[
        Path | None, typer.Option(help="Key file to create (default .secrets/pseudonym.key or .secrets/backup.key).")
    ] = None,
    backup: Annotated[bool, typer.Option("--backup", help="The backup key instead of the pseudonym key.")] = False,
) -> None:
    """Create a random local demo key (mode 0600) unless one exists."""
    from flows.storage.keys import BACKUP, PSEUDONYM, init_demo_key

    kind = BACKUP if backup else PSEUDONYM
    path = path or kind.demo
    if init_demo_key(path):
        console.print(
            f"created a local demo {kind.name} key at {path} (mode 0600). "
            f"For real data use ${kind.env} or a Prefect Secret block (${kind.env}_BLOCK)."
        )
    else:
        console.print(f"using the existing {kind.name} key file {path}")


KeyPath = Annotated[
    Path | None,
    typer.Option("--path", help="The key file (default: where every command finds the key: $…_FILE, $…_BLOCK, then .secrets/)."),
]
KeyBlock = Annotated[str | None, typer.Option("--block", help="A Prefect Secret block holding the key, instead of a file.")]


@key_app.command("rotate")
def key_rotate(
    path: KeyPath = None, block: KeyBlock = None, restricted: Vault = paths.RESTRICTED, warehouse: Warehouse = paths.WAREHOUSE
) -> None:
    """Replace the warehouse's pseudonym key with a new random one; recorded in the ledger (key_ids only).

    Refused unless the key found is the one the warehouse is published with."""
    from flows.storage import keys

    old, new, entry = keys.rotate(keys.locate(keys.PSEUDONYM, path, block), restricted, warehouse)
    console.print(
        f"rotated: {old} -> {new} (ledger entry {entry['seq']}). Tokens made with {old} no longer "
        "match new ones: re-run the dates you want linked under the new key."
    )


@key_app.command("destroy")
def key_destroy(
    path: KeyPath = None,
    block: KeyBlock = None,
    backup: Annotated[bool, typer.Option("--backup", help="The backup key instead of the pseudonym key.")] = False,
    restricted: Vault = paths.RESTRICTED,
    warehouse: Warehouse = paths.WAREHOUSE,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Destroy a key for good, recorded in the ledger like a deletion.

    Without the pseudonym key no token can be linked back to a person; without the backup key no
    backup can be read. Refused for a key the ledger records nothing made with."""
    from flows.storage import keys

    kind = keys.BACKUP if backup else keys.PSEUDONYM
    location = keys.locate(kind, path, block)
    key_id = keys.destruction(location, restricted, warehouse)
    if not yes:
        typer.confirm(f"Destroy the {kind.name} key {key_id} in {location}? This cannot be undone", abort=True)
    entry = keys.destroy(location, restricted, warehouse)
    console.print(f"destroyed {kind.name} key {key_id} ({location}); ledger entry {entry['seq']} hash {entry['hash'][:16]}…")
    if entry["data"]["published_under_other_keys"]:
        console.print(
            f"[yellow]partitions published under {', '.join(entry['data']['published_under_other_keys'])} stay "
            "linkable until that key is destroyed too[/]"
        )


@backup_app.command("verify")
def backup_verify(
    restricted: Vault = paths.RESTRICTED,
    date: Annotated[str | None, typer.Option(help="Only this export date's backups.")] = None,
) -> None:
    """Decrypt every backup and check it against its manifest and the ledger; exit 1 on any bad or
    missing backup, or if there is none to check. Recorded in the ledger."""
    from flows.storage.backup import check_all
    from flows.storage.keys import load_backup_key

    results = check_all(restricted, load_backup_key(), _check_date(date) if date else None)
    for result in results:
        if result["error"] is None:
            console.print(f"[green]ok[/] {Path(result['manifest']).parent}: {result['files']} file(s), {result['bytes']} bytes")
        else:
            console.print(f"[bold red]BAD[/] {result['error']}")
    bad = sum(r["error"] is not None for r in results)
    if not results:
        console.print(
            f"[bold red]no backups under {restricted / 'backups'}" + (f" for {date}" if date else "") + ": nothing verified[/]"
        )
    elif bad:
        console.print(f"[bold red]{bad} of {len(results)} backup(s) failed verification[/]")
    if bad or not results:
        raise typer.Exit(1)


@backup_app.command("restore")
def backup_restore(
    date: Annotated[str, typer.Option(help="The export date to restore.")],
    out: Annotated[Path, typer.Option(help="Directory to restore into (files keep their landing paths).")],
    restricted: Vault = paths.RESTRICTED,
) -> None:
    """Restore a date's latest backup into a directory, checking every file against the manifest.

    The files are raw personal data: owner-only, recorded in the ledger, and deleted by
    `tuomin purge` with the date's raw data."""
    from flows.storage.backup import BackupError, restore
    from flows.storage.keys import load_backup_key

    key = load_backup_key()
    try:
        done = restore(restricted, key, _check_date(date), out)
    except BackupError as exc:
        console.print(f"[bold red]restore failed[/]: {exc} (recorded in the ledger)")
        raise typer.Exit(1) from None
    console.print(
        f"restored {len(done['files'])} file(s) of {date} into {out}, every SHA-256 as in the manifest; "
        "raw personal data: `tuomin purge` deletes them with the date's raw data"
    )


@app.command()
def purge(
    landing: Annotated[
        str, typer.Option(help="Landing area to delete from, a directory or an fsspec URL (required: no default for deletions).")
    ],
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Vault = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be deleted and what is kept, and why; delete nothing.")
    ] = False,
    as_of: AsOf = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: the plan and its totals as JSON.")] = False,
) -> None:
    """Delete raw data that validated partitions replace, with a certificate per date.

    The raw exports, quarantined rows, work files and backups of a date go once its partitions are
    published and validated and its grace period is over; backups last, once the raw files are
    verified gone. Refused, with nothing deleted, when the landing does not hold the files the
    ledger records the partitions as made from, or the ledger cannot be trusted."""
    from flows.cli import usage
    from flows.closing.purge import check_landing, mismatches, plan, report
    from flows.closing.purge import purge as purge_flow
    from flows.runtime.clock import today
    from flows.storage import ledger

    if as_json and not dry_run:
        raise typer.BadParameter("--json goes with --dry-run (a purge prints its certificates)", param_hint="--json")
    day = _as_of(as_of, dry_run) or today()
    area, rules = usage.landing(landing), usage.policies(policies)
    if dry_run:
        planned = report(plan(area, warehouse, restricted, rules, day), day)
        if as_json:
            print(json.dumps(planned, ensure_ascii=False))
        else:
            _print_plan(planned)
        check_landing(area, mismatches(area, restricted))
        return
    ledger.trusted(restricted, warehouse)
    check_landing(area, mismatches(area, restricted))
    state = purge_flow(
        landing=str(landing),
        warehouse=str(warehouse),
        restricted=str(restricted),
        policies=str(policies),
        trigger="cli: tuomin purge",
        return_state=True,
    )
    _finish(
        state,
        lambda done: (
            f"{len(done)} date(s) purged"
            + "".join(
                f"\n  {d['export_date']}: {d['files']} file(s) deleted ("
                + ", ".join(
                    f"{a} {x['deleted']}" + (f", {x['not_deleted']} not" if x["not_deleted"] else "")
                    for a, x in d["areas"].items()
                )
                + f"), certificate = ledger entry {d['ledger_seq']}"
                for d in done
            )
        ),
    )


def _print_plan(planned: dict) -> None:
    """A purge plan as a table, every path whole (a path cut with … cannot be checked), then its totals."""
    table = Table(title=f"purge plan as of {planned['as_of']}: nothing is deleted")
    for header in ("export date", "decision", "files (area, bytes, path)", "why"):
        table.add_column(header, overflow="fold")
    for d in planned["dates"]:
        files = "\n".join(f"{f['area']} {f['bytes']} {f['path']}" for f in d["files"]) or "\n".join(d["not_in_landing"])
        table.add_row(d["export_date"], "keep" if d["decision"] == "keep" else "[red]delete[/]", files, d["why"])
    _print_whole(table)
    t = planned["totals"]
    console.print(
        f"to delete: {t['files_to_delete']} file(s), {t['bytes_to_delete']} bytes, in {t['dates_to_delete']} date(s); "
        f"{t['dates_kept']} date(s) kept"
    )


@app.command()
def retention(
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Vault = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the partitions past their retention period; delete nothing.")
    ] = False,
    as_of: AsOf = None,
) -> None:
    """Delete the published partitions past their dataset's retention period (recorded in the ledger).

    Refused, with nothing removed, if the ledger cannot be trusted or a partition to remove is not
    the file the ledger recorded."""
    from flows.cli import usage
    from flows.closing.retention import check_files, expired
    from flows.closing.retention import retention as retention_flow
    from flows.runtime.clock import today
    from flows.storage import ledger

    day = _as_of(as_of, dry_run) or today()
    usage.policies(policies)
    if not dry_run:
        ledger.trusted(restricted, warehouse)
        check_files(expired(restricted, policies, day)[0], warehouse)
    if dry_run:
        items, orphans = expired(restricted, policies, day)
        for item in items:
            console.print(
                f"{item.entry['data']['dataset']} {item.entry['data'].get('period') or item.entry['data']['export_date']}: "
                f"kept until {item.keep_until}, would be removed"
            )
        for orphan in orphans:
            console.print(f"[red]{orphan}: no policy, retention unknown[/]")
        console.print(f"{len(items)} partition(s) past retention as of {day}")
        return
    state = retention_flow(
        warehouse=str(warehouse),
        restricted=str(restricted),
        policies=str(policies),
        trigger="cli: tuomin retention",
        return_state=True,
    )
    _finish(state, lambda removed: f"{len(removed)} partition(s) removed past their retention period")


@app.command("dp")
def dp_tables(
    landing: Landing = str(paths.SAMPLE_LANDING),
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Vault = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
    start: Annotated[str | None, typer.Option(help="First export date (YYYY-MM-DD); default: the first found.")] = None,
    end: Annotated[str | None, typer.Option(help="Last export date (YYYY-MM-DD); default: the last found.")] = None,
    additional: Annotated[
        bool,
        typer.Option(
            "--additional", help="Spend epsilon again when an earlier release covered these customers (the ledger adds it up)."
        ),
    ] = False,
) -> None:
    """Publish the differentially private tables of policies/dp/tables.yaml (dataset=dp_<table>).

    Computed from the raw exports, one customer the privacy unit across every source and date; the
    same inputs again are up to date and spend nothing. See `tuomin query "select * from dp_tables"`."""
    from flows.pipeline.dp import dp_tables_flow, load
    from flows.storage import ledger

    if start and end and _check_date(start) > _check_date(end):
        raise typer.BadParameter(f"{start} is after {end}")
    load(policies)  # the policy and its budget, before Prefect starts
    ledger.trusted(restricted, warehouse)
    state = dp_tables_flow(
        landing=landing,
        warehouse=str(warehouse),
        restricted=str(restricted),
        policies=str(policies),
        start=start,
        end=end,
        additional=additional,
        trigger="cli: tuomin dp",
        return_state=True,
    )
    _finish(
        state,
        lambda done: (
            f"DP release {done['release_id']} {done['status']}: {len(done['tables'])} table(s), "
            f"epsilon {done['epsilon']:g} ({done['spent_total']:g} spent in all)"
        ),
    )


@app.command()
def review(
    warehouse: Warehouse = paths.WAREHOUSE, restricted: Vault = paths.RESTRICTED, policies: Policies = paths.POLICIES
) -> None:
    """Re-validate every published dataset as a whole; exit 1 on any failure.

    Files against the ledger, policy hashes, k, l and the identifier scan over all partitions;
    the result is recorded in the ledger."""
    from prefect.client.schemas.objects import State

    from flows.closing.review import review as review_flow

    state = cast(
        State,
        review_flow(
            warehouse=str(warehouse),
            restricted=str(restricted),
            policies=str(policies),
            trigger="cli: tuomin review",
            return_state=True,
        ),
    )
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, dict):
        for name, result in summary["datasets"].items():
            linkage = result.get("linkage")
            console.print(
                f"{name}: {result['partitions']} partition(s), {result['rows']} rows: "
                + ("[green]ok[/]" if result["success"] else "[bold red]FAILED[/]")
                + (
                    f"; {linkage['profile_unique_share']:.1%} of customers have a unique profile across partitions"
                    if linkage
                    else ""
                )
            )
        for problem in summary["problems"]:
            console.print(f"[red]{problem}[/]")
    _finish(state, lambda s: f"review passed (ledger entry {s['ledger_seq']})")


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="Directory for report.html and report.json.")],
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Vault = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
    start: Annotated[str | None, typer.Option(help="First export date of the period.")] = None,
    end: Annotated[str | None, typer.Option(help="Last export date of the period.")] = None,
) -> None:
    """Write the evidence pack: a self-contained HTML report and the same facts as JSON.

    Per dataset the policy, row counts, k and l, risk and loss, validation results, plots; the
    backups, deletions, key events and reviews with their ledger hashes; a draft impact assessment
    outline. No data value."""
    from flows.evidence.facts import collect
    from flows.evidence.report import write

    facts = collect(warehouse, restricted, policies, _check_date(start) if start else None, _check_date(end) if end else None)
    page, data = write(facts, out)
    console.print(f"evidence pack: {page} and {data}")
    if not facts["ledger"]["intact"]:
        console.print(f"[bold red]the ledger is NOT verified[/]: {'; '.join(facts['ledger']['problems'])}; the report says so")
        raise typer.Exit(1)
    console.print(
        f"ledger head recorded in the pack: entry {facts['ledger']['head']['seq']} hash {facts['ledger']['head']['hash']}"
    )


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
Mobile = Annotated[
    str | None, typer.Option("--mobile", help="The person's mobile (+86, spaces, dashes, full-width digits all fine).")
]
MemberNo = Annotated[str | None, typer.Option("--member-no", help="The person's member number.")]


def _identifier(doc_no: str | None, mobile: str | None, member_no: str | None):
    from flows.closing.subjects import Identifier, SubjectError
    from transforms.identifiers import SUBJECT_IDENTIFIERS

    given = [(k, v) for k, v in zip(SUBJECT_IDENTIFIERS, (doc_no, mobile, member_no)) if v]
    if len(given) != 1:
        raise typer.BadParameter("name the person by exactly one of --doc-no, --mobile, --member-no")
    try:
        return Identifier.parse(*given[0])
    except SubjectError as exc:
        raise typer.BadParameter(str(exc)) from None


@subjects_app.command("lookup")
def subjects_lookup(
    out: Annotated[Path, typer.Option(help="Folder for the person's file (created owner-only; the file is raw personal data).")],
    doc_no: DocNo = None,
    mobile: Mobile = None,
    member_no: MemberNo = None,
    landing: Landing = str(paths.SAMPLE_LANDING),
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Vault = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
) -> None:
    """Every record of one person in the raw exports still held, as one file (access request)."""
    from flows.cli import usage
    from flows.closing.subjects import access
    from flows.storage.keys import load_pseudonymizer

    who = _identifier(doc_no, mobile, member_no)
    done = access(usage.landing(landing), usage.policies(policies), restricted, who, out, load_pseudonymizer())
    found, path, entry, newest = done.found, done.path, done.entry, done.newest
    if path is None:
        console.print(f"no record of this person in the exports under {landing}; nothing written (ledger entry {entry['seq']})")
        return
    sources = sorted({f.source for f in found})
    console.print(
        f"{len(found)} record(s) ({', '.join(sources)}) -> {path} (owner-only: raw personal data, for the person "
        f"only; `tuomin purge` deletes it with the raw data of {newest}, the newest date it copies). "
        f"Ledger entry {entry['seq']}."
    )


@subjects_app.command("erase")
def subjects_erase(
    doc_no: DocNo = None,
    mobile: Mobile = None,
    member_no: MemberNo = None,
    landing: Landing = str(paths.SAMPLE_LANDING),
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Vault = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
) -> None:
    """Erase one person: put them on requests/erasure.csv (the next run leaves them out of everything
    it publishes) and, while the pseudonym key exists, remove them from every partition already
    published (each republished atomically, k and l validated again). Recorded in the ledger
    whatever happens (done, partial or failed); repeating it finishes what is left."""
    from pydantic import SecretStr

    from flows.cli import usage
    from flows.closing.erasure import erase_subject

    who = _identifier(doc_no, mobile, member_no)
    usage.landing(landing)  # both checked before Prefect starts: a mistyped path fails in a line
    usage.policies(policies)
    state = erase_subject(
        who.kind,
        SecretStr(who.value),
        str(landing),
        str(warehouse),
        str(restricted),
        str(policies),
        "tuomin subjects erase",
        return_state=True,
    )
    entry = state.result()  # a failure the request could not record (no key) is raised as it was
    done = entry["data"]
    if done["listed"]:
        console.print(
            ("added to" if done["added"] else "already on")
            + " requests/erasure.csv. The erasure list is part of every date's fingerprint: the "
            "next `tuomin run` republishes each date whose raw files are still held without this person."
        )
    if done["subject"] is None:
        console.print(
            "The pseudonym key was destroyed (see the ledger): the published data can no longer be linked to this "
            "person or anyone else, which is what anonymization means; nothing published needs removing."
        )
    else:
        _print_sweep(who, done)
    if done["retry_of"] and done["status"] == "done":
        console.print(
            f"This completes the request of ledger entr{'y' if len(done['retry_of']) == 1 else 'ies'} "
            f"{', '.join(map(str, done['retry_of']))}."
        )
    console.print(f"Request {done['status']}: ledger entry {entry['seq']}.")
    if done["failed"]:
        raise typer.Exit(1)


def _print_sweep(who, done: dict) -> None:
    if done["tokens"] == 0:
        console.print(
            f"Published data names customers only by the keyed token of their document number, and no raw record "
            f"still held links this {who.kind} to one: the published partitions cannot be searched for this "
            "person. Ask them for their document number and repeat with --doc-no."
        )
    for x in done["republished"]:
        console.print(
            f"{x['dataset']} {x.get('period') or x['export_date']}: republished without this person: {x['erased']} row(s) "
            f"erased, {x['suppressed']} more suppressed ({x['classes_suppressed']} class(es) left below k or l); "
            f"ledger entry {x['ledger_seq']}"
        )
    if done["tokens"] and not done["republished"] and not done["failed"]:
        console.print("No published partition holds this person.")
    for other in done["not_searched"]:
        console.print(
            f"[yellow]{other['dataset']} {other.get('period') or other['export_date']}: "
            f"published under key {other['key_id']}, not this "
            "one: not searched[/]"
        )
    if done["failed"]:
        console.print(
            f"[red]{done['failed']}[/]. "
            + ("The person stays on the erasure list; fix" if done["listed"] else "Nothing was changed; fix")
            + " the cause and repeat this command (partitions already done are not redone)."
        )


@subjects_app.command("notify")
def subjects_notify(
    out: Annotated[Path, typer.Option(help="Folder for sms.csv and email.csv (created owner-only: raw mobiles and e-mails).")],
    closing_date: Annotated[str, typer.Option(help="The day the shop stops trading (2026-12-31 or 2026年12月31日).")],
    delete_by: Annotated[
        str, typer.Option(help="The day by which personal data is deleted: after --requests-by, not before the closing.")
    ],
    requests_by: Annotated[str, typer.Option(help="The last day to ask for a copy or for deletion: after today.")],
    contact: Annotated[str, typer.Option(help="How to ask (a phone number, an address, an e-mail).")],
    shop: Annotated[str, typer.Option(help="The shop's name as customers know it.")] = "本公司",
    landing: Landing = str(paths.SAMPLE_LANDING),
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Vault = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
) -> None:
    """Closure notices for every member of the latest CRM snapshot with a mobile or an e-mail."""
    from flows.cli import usage
    from flows.closing.subjects import Closure, notify
    from flows.runtime.clock import today

    closure = Closure.parse(shop, closing_date, delete_by, requests_by, contact, today())
    counts, entry = notify(usage.landing(landing), usage.policies(policies), restricted, closure, out)
    console.print(
        f"CRM snapshot {counts['snapshot']}: {counts['members']} member(s); {counts['sms']} SMS and {counts['email']} "
        f"e-mail notice(s) -> {out} (owner-only; deleted by `tuomin purge` with that date's raw data); "
        f"{counts['erased']} on the erasure list and {counts['unreachable']} without a mobile or e-mail not "
        f"notified. Ledger entry {entry['seq']}."
    )


if __name__ == "__main__":
    app()
