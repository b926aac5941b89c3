"""`tuomin assess` and `tuomin risk`: k, l, t of any table, and the release as an intruder sees it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli.root import (
    Warehouse,
    app,
    console,
)
from flows.runtime import paths

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

    from flows.storage.tables import read_table
    from transforms.metrics import assess as measure
    from transforms.metrics import population_risk

    path = target if target.exists() else warehouse / target
    if not path.exists():
        raise typer.BadParameter(f"{target} is neither a file nor a dataset under {warehouse}")
    frame, record = read_table(path)
    qis = qi.split(",") if qi else (record.quasi_identifiers if record else None)
    if not qis:
        raise typer.BadParameter("name the quasi-identifiers (--qi a,b,c); the input carries no tuomin metadata")
    entity = entity or (None if qi or record is None else record.entity_column)
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
        list[Path] | None,
        typer.Option(
            help="An earlier copy of the warehouse (repeat for each copy an intruder may keep): the tokens it shares, "
            "what its partitions differ by, the snapshots it holds."
        ),
    ] = None,
) -> None:
    """Measure the release as a motivated intruder would (the threat model in README); exit 1 if it fails.

    Singling out, re-identification probability and k^m over the person-level record (everything
    that shares a token), identifiers shared across datasets, dates and versions, sensitive values
    certain in a class, snapshot differencing and chaining, row order, counts below k; with
    --against, versions and what they differ by. Counts and shares only."""

    if format not in ("table", "json"):  # before the slow imports: a usage error is one line at once
        raise typer.BadParameter("use table or json", param_hint="--format")
    from flows.pipeline.intruder import assess

    found = assess(warehouse, against=against, k=k, purchases=purchases, contacts=contacts)
    if format == "json":
        typer.echo(found.model_dump_json(indent=2))
    else:
        knows = found.adversary
        console.print(
            f"{warehouse}: {found.people} person-level records; the intruder knows each person's own "
            f"attributes, {knows.purchases} purchase(s) and {knows.contacts} contact(s); k = {knows.k}"
        )
        table = Table()
        for header in ("check", "result", "measured", "required"):
            table.add_column(header)
        for check in found.checks:
            table.add_row(check.name, "[green]pass[/]" if check.passed else "[bold red]FAIL[/]", check.measured, check.required)
        console.print(table)
        console.print("release " + ("[green]passes[/]" if found.passed else "[bold red]FAILS[/]: de-identified, not anonymized"))
    if not found.passed:
        raise typer.Exit(1)
