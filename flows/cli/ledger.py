"""`tuomin ledger`: verify and show the append-only, hash-chained record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli.root import (
    Vault,
    app,
    console,
)
from flows.runtime import paths

ledger_app = typer.Typer(help="The append-only, hash-chained record of runs, partitions and key events.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


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
    from flows.storage import intents, ledger

    repaired = ledger.repair(restricted, "tuomin ledger verify")
    if repaired is not None:
        console.print(f"[yellow]repaired: {repaired.data.line()} (entry {repaired.seq})[/]")
    if restricted.joinpath(ledger.LEDGER).is_file():
        for ended in intents.recover(restricted, warehouse, "tuomin ledger verify"):
            console.print(f"[yellow]recovered: {ended.data.line()} (entry {ended.seq})[/]")
    verdict = ledger.check(restricted, warehouse, expect_head)
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
    head = verdict.head or ledger.Head(0, ledger.GENESIS)  # intact: there is a head
    console.print(f"head: entry {head.seq} hash {head.hash}")
    if verdict.unreadable:
        console.print(
            f"[yellow]{len(verdict.unreadable)} partition file(s) could not be read, so vouch for nothing "
            f"({', '.join(verdict.unreadable)}): see `tuomin review`[/]"
        )
    if verdict.anchored_to < head.seq and not expect_head:
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
