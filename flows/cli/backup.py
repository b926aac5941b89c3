"""`tuomin backup`: verify and restore the encrypted backups of the raw exports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.root import (
    Vault,
    app,
    check_date,
    console,
)
from flows.runtime import paths

backup_app = typer.Typer(help="The encrypted backups of the raw exports.", no_args_is_help=True)
app.add_typer(backup_app, name="backup")


@backup_app.command("verify")
def backup_verify(
    restricted: Vault = paths.RESTRICTED,
    date: Annotated[str | None, typer.Option(help="Only this export date's backups.")] = None,
) -> None:
    """Decrypt every backup and check it against its manifest and the ledger; exit 1 on any bad or
    missing backup, or if there is none to check. Recorded in the ledger."""
    from flows.storage.backup import check_all
    from flows.storage.keys import load_backup_key

    results = check_all(restricted, load_backup_key(), check_date(date) if date else None)
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
        done = restore(restricted, key, check_date(date), out)
    except BackupError as exc:
        console.print(f"[bold red]restore failed[/]: {exc} (recorded in the ledger)")
        raise typer.Exit(1) from None
    console.print(
        f"restored {len(done.files)} file(s) of {date} into {out}, every SHA-256 as in the manifest; "
        "raw personal data: `tuomin purge` deletes them with the date's raw data"
    )
