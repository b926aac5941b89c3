"""`tuomin key`: the pseudonym key and the backup key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.root import (
    Vault,
    Warehouse,
    app,
    console,
)
from flows.runtime import paths

key_app = typer.Typer(help="The pseudonym key and the backup key.", no_args_is_help=True)
app.add_typer(key_app, name="key")


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
    from flows.storage import warehouse as warehouse_io

    with warehouse_io.exclusive(warehouse):  # not while a run publishes under the old key
        old, new, entry = keys.rotate(keys.locate(keys.PSEUDONYM, path, block), restricted, warehouse)
    console.print(
        f"rotated: {old} -> {new} (ledger entry {entry.seq}). Tokens made with {old} no longer "
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
    from flows.storage import warehouse as warehouse_io

    with warehouse_io.exclusive(warehouse):  # not while a run or an erasure still uses the key
        entry = keys.destroy(location, restricted, warehouse)
    console.print(f"destroyed {kind.name} key {key_id} ({location}); ledger entry {entry.seq} hash {entry.hash[:16]}…")
    if entry.data.published_under_other_keys:
        console.print(
            f"[yellow]partitions published under {', '.join(entry.data.published_under_other_keys)} stay "
            "linkable until that key is destroyed too[/]"
        )
