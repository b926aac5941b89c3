"""What analysts use: `tuomin query`, `tuomin docs` and `tuomin dp`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from flows.cli.root import (
    Landing,
    Policies,
    Vault,
    Warehouse,
    app,
    check_date,
    console,
    finish,
    print_whole,
)
from flows.runtime import paths
from transforms.policy import load_policies


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
    timeout: Annotated[float, typer.Option("--timeout", help="Stop the query after this many seconds.")] = 300.0,
    memory: Annotated[
        str, typer.Option("--memory", help="Stop the query past this much memory (DuckDB's memory_limit).")
    ] = "2GB",
) -> None:
    """Query the anonymized warehouse with DuckDB: one SELECT, reading only the warehouse, within a
    time and a memory limit."""
    import duckdb

    from flows.storage import query as q

    if format not in ("table", "csv", "json"):
        raise typer.BadParameter("use table, csv or json", param_hint="--format")
    if out is not None and out.suffix not in q.OUTPUTS:
        raise typer.BadParameter(f"write a {', '.join(q.OUTPUTS)} file", param_hint="--out")
    try:
        limits = q.Limits(seconds=timeout, memory=memory)
        result = q.read_only(q.connect(warehouse, limits=limits), sql, limits)
    except (duckdb.Error, q.QueryRefused) as exc:
        console.print(f"[red]query failed[/]: {' '.join(str(exc).split())}")
        raise typer.Exit(2) from None
    if out is not None:
        q.write(result, out)
        console.print(f"{result.num_rows} row(s) -> {out}")
    elif format == "csv":
        typer.echo(q.to_csv(result), nl=False)
    elif format == "json":
        typer.echo(q.to_json(result))
    else:
        _print_rows(result)


def _print_rows(result) -> None:
    """A result as a table; piped, as wide as its widest rows need (never squeezed to fit 110 columns)."""
    table = Table()
    for name in result.column_names:
        table.add_column(name)
    for row in result.to_pylist():
        table.add_row(*(Text(_shown(v)) for v in row.values()))  # Text: a value is never read as markup
    print_whole(table)


def _shown(value) -> str:
    """A value as the table prints it: lists and structs as JSON (dates ISO), NULL as nothing."""
    from flows.storage import query as q

    if value is None:
        return ""
    return q.to_json_value(value) if isinstance(value, list | dict) else str(value)


@app.command()
def docs(
    restricted: Vault = paths.RESTRICTED,
    warehouse: Warehouse = paths.WAREHOUSE,
    policies: Policies = paths.POLICIES,
    out: Annotated[Path, typer.Option(help="Where the data dictionary is written.")] = Path("dictionary"),
) -> None:
    """The data dictionary of the warehouse (what each column means, its type, levels, values and the
    questions it answers), and the Great Expectations Data Docs of every validation recorded."""
    from flows.storage import dictionary, ledger

    runs = ledger.runs(restricted)
    page, _ = dictionary.write(dictionary.build(warehouse, load_policies(policies), runs=runs), out)
    console.print(f"data dictionary: {page}")
    project = restricted / paths.GX_PROJECT
    if not (project / "gx").exists():
        console.print(f"no validations recorded under {project}: run `tuomin run` first")
        raise typer.Exit(1)
    from expectations.suite import build_docs

    console.print(f"Data Docs: {build_docs(project)}")


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
    first, last = (check_date(d) if d else None for d in (start, end))  # before the slow imports
    from flows.pipeline import dp

    dp.preflight(landing, warehouse, restricted, policies, first, last)
    state = dp.dp_tables_flow(
        landing=landing,
        warehouse=str(warehouse),
        restricted=str(restricted),
        policies=str(policies),
        start=first,
        end=last,
        additional=additional,
        trigger="cli: tuomin dp",
        return_state=True,
    )
    finish(state, lambda done: done.line())
