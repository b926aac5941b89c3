"""The `tuomin` command line. Every command that reads exports or the warehouse takes
--landing and --warehouse with the same defaults as `tuomin run`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flows import environment, paths

environment.configure()  # before Prefect is imported anywhere

app = typer.Typer(help="De-identify the shop's exports into validated, k-anonymous Parquet.", no_args_is_help=True)
key_app = typer.Typer(help="The pseudonym key.", no_args_is_help=True)
app.add_typer(key_app, name="key")
console = Console(width=None if Console().is_terminal else 110)

Landing = Annotated[Path, typer.Option(help="Landing directory with pos/, membership/, after_sales/, requests/.")]
Warehouse = Annotated[Path, typer.Option(help="Warehouse directory for the anonymized Parquet.")]


@app.command()
def run(
    landing: Landing = paths.SAMPLE_LANDING,
    warehouse: Warehouse = paths.WAREHOUSE,
    date: Annotated[str | None, typer.Option(help="One export date (YYYY-MM-DD); default: every date found.")] = None,
    restricted: Annotated[Path, typer.Option(help="Restricted area for quarantined rows (0700).")] = paths.RESTRICTED,
    policies: Annotated[Path, typer.Option(help="Directory of reviewed policy files.")] = paths.POLICIES,
    drop_unknown: Annotated[bool, typer.Option("--drop-unknown", help="Drop (and record) columns no policy covers instead of failing.")] = False,
) -> None:
    """Run the anonymize-exports flow and print what was published."""
    if date is not None:
        _check_date(date)
    from flows.anonymize import anonymize_exports

    state = anonymize_exports(landing=str(landing), warehouse=str(warehouse), date=date, restricted=str(restricted),
                              policies=str(policies), drop_unknown=drop_unknown, return_state=True)
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
    console.print(table)
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
    from flows.anonymize import GX_PROJECT

    project = warehouse / GX_PROJECT
    if not (project / "gx").exists():
        console.print(f"no validations recorded under {project}: run `tuomin run` first")
        raise typer.Exit(1)
    from expectations.suite import build_docs

    console.print(f"Data Docs: {build_docs(project)}")


@key_app.command("init")
def key_init(path: Annotated[Path, typer.Option(help="Key file to create.")] = Path(".secrets/pseudonym.key")) -> None:
    """Create a random local demo key (mode 0600) unless one exists."""
    from flows.keys import init_demo_key

    if init_demo_key(path):
        console.print(f"created a local demo pseudonym key at {path} (mode 0600). "
                      "For real data use TUOMIN_PSEUDONYM_KEY or a Prefect Secret block.")
    else:
        console.print(f"using the existing key file {path}")


@key_app.command("rotate")
def key_rotate(
    path: Annotated[Path, typer.Option(help="The key file to replace.")] = Path(".secrets/pseudonym.key"),
    warehouse: Warehouse = paths.WAREHOUSE,
) -> None:
    """Replace the local key with a new random one; recorded in the ledger (key_ids only)."""
    from flows import ledger
    from flows.keys import rotate_file

    old, new = rotate_file(path)
    entry = ledger.append(warehouse, "key_rotated", {"old_key_id": old, "new_key_id": new, "where": str(path)})
    console.print(f"rotated {path}: {old} -> {new} (ledger entry {entry['seq']}). Tokens made with {old} no longer "
                  "match new ones: re-run the dates you want linked under the new key.")


@key_app.command("destroy")
def key_destroy(
    path: Annotated[Path, typer.Option(help="The key file to destroy.")] = Path(".secrets/pseudonym.key"),
    block: Annotated[str | None, typer.Option(help="Destroy this Prefect Secret block instead of a file.")] = None,
    warehouse: Warehouse = paths.WAREHOUSE,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Destroy the pseudonym key: afterwards no token can be linked back to a person."""
    from flows import ledger
    from flows.keys import destroy_block, destroy_file

    where = f"Prefect Secret block {block!r}" if block else str(path)
    if not yes:
        typer.confirm(f"Destroy the pseudonym key in {where}? This cannot be undone", abort=True)
    key_id = destroy_block(block) if block else destroy_file(path)
    entry = ledger.append(warehouse, "key_destroyed", {
        "key_id": key_id, "where": where, "method": "Secret block deleted" if block else "overwritten, flushed, deleted",
        "effect": "tokens made with this key can no longer be linked to anyone (PIPL Art. 73)"})
    console.print(f"destroyed key {key_id} ({where}); ledger entry {entry['seq']} hash {entry['hash'][:16]}…")


def _check_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


if __name__ == "__main__":
    app()
