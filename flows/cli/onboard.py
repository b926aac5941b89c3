"""`tuomin generate` and `tuomin classify`: sample exports, and a draft policy for new ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.root import (
    app,
    check_date,
    console,
)
from flows.runtime import paths


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
    config = Config(start=check_date(start), days=days, rows=rows, members=members, seed=seed, snapshots=snapshots)
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
