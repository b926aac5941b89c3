"""`tuomin run` and `tuomin backfill`: one release over the export dates asked for."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from flows.cli.root import (
    Landing,
    Policies,
    Restricted,
    Warehouse,
    app,
    check_date,
    console,
)
from flows.runtime import paths
from transforms.errors import Refused
from transforms.workload import Score

if TYPE_CHECKING:
    from flows.pipeline.stages import RunSummary


class RunnerKind(str, Enum):
    threads = "threads"
    dask = "dask"


Runner = Annotated[RunnerKind, typer.Option(help="Where per-file and per-partition work runs: a thread pool, or a Dask cluster.")]
DaskAddress = Annotated[
    str | None,
    typer.Option(help="An existing Dask scheduler (tcp://host:8786) for --runner dask; default: a LocalCluster for the run."),
]

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
    from flows.cli import usage

    usage.run(landing, restricted, policies, backup, rotate_key)
    _run_flow(
        landing=landing,
        warehouse=warehouse,
        date=check_date(date) if date is not None else None,
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
    first, last = check_date(start), check_date(end)
    if first > last:
        raise typer.BadParameter(f"{start} is after {end}")
    from flows.cli import usage

    usage.run(landing, restricted, policies, backup, rotating=False)
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    _run_flow(
        landing=landing,
        warehouse=warehouse,
        start=first,
        end=last,
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
    from flows.pipeline.stages import RunSummary  # noqa: F811  (the class itself, at run time)
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
    if isinstance(summary, Refused):  # the run never started its work (another holds the warehouse, a read-only one)
        raise summary  # one line, exit 2 (75 to try again later): flows/cli/root.py
    if isinstance(summary, RunSummary):
        _print_summary(summary)
    if not state.is_completed():
        console.print(f"[bold red]FAILED[/]: {state.message}")
        raise typer.Exit(1)


def _print_summary(summary: RunSummary) -> None:
    table = Table(title=f"run {summary.run_id}  (key {summary.key_id})")
    for header in ("dataset", "periods", "units", "read", "erased", "suppressed", "published", "k"):
        table.add_column(header, justify="left" if header in ("dataset", "periods") else "right")
    for name, info in summary.datasets.items():
        c = info.counts
        periods = info.periods
        table.add_row(
            name,
            periods[0] if len(periods) == 1 else f"{periods[0]} … {periods[-1]}",
            str(info.units),
            *(str(x) for x in (c.read, c.erased, c.suppressed, c.published)),
            str(info.k),
        )
    if summary.datasets:
        console.print(table)
    if summary.error:
        console.print(f"[red]{summary.error}[/]")
    for name, info in summary.datasets.items():
        for question, score in info.questions.items():
            colour = "green" if score["answered"] else "yellow"
            console.print(f"[{colour}]{name} question {question}[/]: {Score(**score).line()}")
    if summary.republished:
        console.print(f"republished: {len(summary.republished)} unit(s) that had a partition before")
    if summary.up_to_date:
        console.print(f"unchanged since published: {', '.join(summary.up_to_date)} (use --all to redo)")
    for name, why in summary.snapshots_kept.items():
        console.print(f"[yellow]{name}: {why}; the published snapshot stays[/]")
    console.print(f"output: {Path(summary.warehouse).resolve()}/dataset=<name>/period=<unit>/part-0.parquet")
