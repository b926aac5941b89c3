"""The two secret keys, where they come from, and their life cycle (init, rotate, destroy), each
event recorded in the ledger by key_id, never by value.

    pseudonym  keyed hashing of identifiers (TUOMIN_PSEUDONYM_KEY…)
    backup     encryption of the raw-export backups (TUOMIN_BACKUP_KEY…)

They are separate so that destroying one does not depend on the other. Every command finds a key
the same way (`locate`): the variable itself (the key), <VAR>_FILE (a file holding it),
<VAR>_BLOCK (the name of a Prefect Secret block), then the local demo file `tuomin key init`
writes. A key is the UTF-8 bytes of the text, at least 32 of them. Errors say which source failed,
never what it held.

Rotating or destroying a key cannot be undone, so both check the key they found against what the
ledger records before touching it: a key no partition (or backup) was made with is refused, and
so is rotating any key but the one the warehouse is published with.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from pydantic import SecretStr

from flows.runtime import failpoints
from flows.storage import intents, ledger
from flows.storage.backup import BackupError, BackupKey
from flows.storage.entries import BackupEntry, Change, Entry, KeyDestroyedEntry, KeyRotatedEntry, PartitionEntry
from flows.storage.files import sync
from transforms.errors import Refused
from transforms.pseudonymize import Pseudonymizer, PseudonymKeyError


@dataclass(frozen=True)
class KeyKind:
    name: Literal["pseudonym", "backup"]
    env: str
    demo: Path  # the local key file `tuomin key init` writes
    build: Callable[[bytes], Pseudonymizer | BackupKey]  # has .key_id
    error: type[ValueError]
    made: str  # the ledger entries that record what was made with a key of this kind
    effect: str  # what destroying it does


PSEUDONYM = KeyKind(
    "pseudonym",
    "TUOMIN_PSEUDONYM_KEY",
    Path(".secrets") / "pseudonym.key",
    Pseudonymizer,
    PseudonymKeyError,
    "partition",
    "tokens made with this key can no longer be linked to anyone (PIPL Art. 73)",
)
BACKUP = KeyKind(
    "backup",
    "TUOMIN_BACKUP_KEY",
    Path(".secrets") / "backup.key",
    BackupKey,
    BackupError,
    "backup",
    "the backups encrypted with this key can no longer be read by anyone",
)


class KeyRefused(Refused, ValueError):
    """A key event that would act on the wrong key; nothing was changed."""


@dataclass(frozen=True)
class Location:
    """Where a key is held: in a variable, a file or a Prefect Secret block."""

    kind: KeyKind
    variable: str | None = None
    path: Path | None = None
    block: str | None = None

    def __str__(self) -> str:
        if self.variable:
            return f"${self.variable}"
        return f"Prefect Secret block {self.block!r}" if self.block else str(self.path)

    @property
    def file(self) -> Path:
        """The key file (a Location with neither a variable nor a block has one)."""
        if self.path is None:
            raise self.kind.error(f"{self}: no key file (a variable or a Secret block)")
        return self.path

    def text(self) -> str:
        if self.variable:
            return os.environ[self.variable]
        if self.block:
            from prefect.blocks.system import Secret

            try:
                return str(cast(Secret, Secret.load(self.block)).get())
            except ValueError:
                raise self.kind.error(f"Prefect Secret block {self.block!r} not found") from None
        if not self.file.is_file():
            raise self.kind.error(f"{self}: no key file there (destroyed key?)")
        return self.file.read_text("utf-8")

    def load(self):
        text = self.text()
        try:
            return self.kind.build(text.strip().encode("utf-8"))
        except self.kind.error as exc:
            raise self.kind.error(f"{self}: {exc}") from None


def locate(kind: KeyKind, path: Path | None = None, block: str | None = None) -> Location:
    """Where the key of this kind is: `path` or `block` if given, else the first of $VAR,
    $VAR_FILE, $VAR_BLOCK, then the local demo file."""
    if path is not None or block is not None:
        return Location(kind, path=path, block=block)
    if os.environ.get(kind.env):
        return Location(kind, variable=kind.env)
    if os.environ.get(f"{kind.env}_FILE"):
        return Location(kind, path=Path(os.environ[f"{kind.env}_FILE"]))
    if os.environ.get(f"{kind.env}_BLOCK"):
        return Location(kind, block=os.environ[f"{kind.env}_BLOCK"])
    if kind.demo.is_file():
        return Location(kind, path=kind.demo)
    raise kind.error(
        f"no {kind.name} key: set ${kind.env}, ${kind.env}_FILE or ${kind.env}_BLOCK "
        f"(`tuomin key init{' --backup' if kind is BACKUP else ''}` writes a local demo key, {kind.demo})"
    )


def load(kind: KeyKind):
    return locate(kind).load()


def load_pseudonymizer() -> Pseudonymizer:
    return load(PSEUDONYM)


def load_backup_key() -> BackupKey:
    return load(BACKUP)


def init_demo_key(path: Path) -> bool:
    """Create a random local key file (mode 0600 in a 0700 directory) unless one exists."""
    if path.exists():
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    _write_key(path, os.O_EXCL)
    return True


def _write_key(path: Path, flags: int = 0, value: str | None = None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write((value or secrets.token_urlsafe(48)) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def made_with(entries: list[ledger.Recorded[Entry]], kind: KeyKind) -> dict[str, int]:
    """{key_id: how many partitions (or backups) the ledger records as made with it}."""
    found: dict[str, int] = {}
    for entry in entries:
        if entry.kind == kind.made and isinstance(entry.data, PartitionEntry | BackupEntry):
            found[entry.data.key_id] = found.get(entry.data.key_id, 0) + 1
    return found


def warehouse_key(entries: list[ledger.Recorded[Entry]]) -> tuple[str | None, ledger.Recorded[Entry] | None]:
    """The pseudonym key_id the warehouse is published with (the latest partition's, or the new
    key of a later recorded rotation), and the entry that says so."""
    expected, said = None, None
    for entry in entries:
        if isinstance(entry.data, PartitionEntry):
            expected, said = entry.data.key_id, entry
        elif isinstance(entry.data, KeyRotatedEntry):
            expected, said = entry.data.new_key_id, entry
    return expected, said


def destroyed(entries: list[ledger.Recorded[Entry]], kind: KeyKind) -> set[str]:
    return {e.data.key_id for e in ledger.only(entries, KeyDestroyedEntry) if e.data.key == kind.name}


def record_rotation(restricted: Path, old: str, new: str, where: str) -> ledger.Recorded[KeyRotatedEntry]:
    """The one shape of a rotation in the ledger, whichever command made it."""
    return ledger.append(restricted, KeyRotatedEntry(key="pseudonym", key_id=new, old_key_id=old, new_key_id=new, where=where))


def check_continuity(restricted: Path, key_id: str, rotating: bool = False) -> None:
    """Refuse a pseudonym key other than the one the warehouse was published with (as the ledger
    in `restricted` records it): its tokens
    would not link to the published ones. With `rotating`, the change is recorded in the ledger
    instead (every date is then republished under the new key: the key is part of each
    fingerprint)."""
    expected, said = warehouse_key(ledger.read(restricted))
    if expected is None or expected == key_id:
        return
    if rotating:
        record_rotation(restricted, expected, key_id, "tuomin run --rotate-key")
        return
    raise PseudonymKeyError(
        f"the pseudonym key {key_id} is not the key the warehouse was published with ({expected}, ledger entry "
        f"{said.seq if said else '?'}): its tokens would not link to the published ones, so nothing is run. "
        "Load that key, or change keys on purpose: `tuomin key rotate` (a key file or Secret block) or "
        "`tuomin run --rotate-key`, both recorded in the ledger."
    )


def _writable(location: Location, verb: str) -> None:
    if location.variable:
        raise KeyRefused(
            f"the {location.kind.name} key is held in {location} itself, which tuomin cannot {verb}: "
            f"{verb} it where it is kept, or point ${location.kind.env}_FILE or _BLOCK at it"
        )


def rotation(location: Location, restricted: Path, warehouse: Path | None = None) -> str:
    """The key_id of the key to rotate, after checking that it is the warehouse's key (by the
    ledger in `restricted`, trusted against `warehouse`'s files); KeyRefused otherwise (nothing
    changed)."""
    _writable(location, "rotate")
    key_id = location.load().key_id
    expected, said = warehouse_key(ledger.trusted(restricted, warehouse))
    if expected is None:
        raise KeyRefused(
            f"the ledger in {restricted} records nothing published with a pseudonym key yet: there is "
            f"nothing to rotate away from ({location} holds {key_id}). Wrong --restricted?"
        )
    if expected != key_id:
        raise KeyRefused(
            f"{location} holds key {key_id}, but the warehouse is published with {expected} (ledger entry "
            f"{said.seq if said else '?'}): rotating it would not change the warehouse's key. Wrong key file or --restricted?"
        )
    return key_id


def rotate(
    location: Location, restricted: Path, warehouse: Path | None = None
) -> tuple[str, str, ledger.Recorded[KeyRotatedEntry]]:
    """Replace the warehouse's pseudonym key with a new random one (a file in one rename, or the
    Secret block's value); returns (old key_id, new key_id, ledger entry). Tokens made with the
    old key no longer match new ones."""
    old = rotation(location, restricted, warehouse)
    value = secrets.token_urlsafe(48)
    new = location.kind.build(value.encode("utf-8")).key_id
    then = KeyRotatedEntry(key="pseudonym", key_id=new, old_key_id=old, new_key_id=new, where=str(location))
    if location.block is None:  # staged beside the key, to replace it in one rename
        staged = location.file.with_name(location.file.name + ".new")
        _write_key(staged, os.O_TRUNC, value)
    # Intend, act, commit (flows/storage/intents.py): a rotation killed between the swap and its
    # entry is finished by the next command (the new key in place) or rolled back (the old one).
    intent = intents.intend(restricted, "rotate", [Change(path=_where(location), area="key", key_id=new)], then)
    failpoints.hit("rotate-intended")
    if location.block:
        from prefect.blocks.system import Secret

        Secret(value=SecretStr(value)).save(location.block, overwrite=True)
    else:
        os.replace(staged, location.file)
        sync(location.file.parent)
    failpoints.hit("rotate-swapped")
    return old, new, intents.commit(restricted, intent, then)


def _where(location: Location) -> str:
    """A key's place, as an intent names it (a file's path, or block:<name>)."""
    return f"{intents.BLOCK}{location.block}" if location.block else str(location.file)


def destruction(location: Location, restricted: Path, warehouse: Path | None = None) -> str:
    """The key_id of the key to destroy, after checking that the ledger records something made
    with it (partitions for the pseudonym key, backups for the backup key); KeyRefused otherwise."""
    _writable(location, "destroy")
    kind, key_id = location.kind, location.load().key_id
    made = made_with(ledger.trusted(restricted, warehouse), kind)
    if key_id not in made:
        raise KeyRefused(
            f"{location} holds {kind.name} key {key_id}, but the ledger in {restricted} records no {kind.made} "
            f"made with it (it records {', '.join(sorted(made)) or 'none'}): nothing destroyed. Wrong key file "
            "or --restricted?"
        )
    return key_id


def destroy(location: Location, restricted: Path, warehouse: Path | None = None) -> ledger.Recorded[KeyDestroyedEntry]:
    """Destroy a key the ledger vouches for (see `destruction`), then record it; returns the
    entry. A file is overwritten with random bytes, flushed and deleted; a Secret block is deleted.
    Overwriting is best effort on journaling or copy-on-write filesystems and SSDs: keep key files
    on encrypted storage so that deletion is final."""
    kind, key_id = location.kind, destruction(location, restricted, warehouse)
    entries = ledger.read(restricted)
    alive = (
        sorted(
            set(made_with(list(ledger.partition_entries(restricted, entries).values()), kind))
            - destroyed(entries, kind)
            - {key_id}
        )
        if kind is PSEUDONYM
        else []
    )
    then = KeyDestroyedEntry(
        key=kind.name,
        key_id=key_id,
        where=str(location),
        made_with_it=made_with(entries, kind)[key_id],
        method="Secret block deleted" if location.block else "overwritten, flushed, deleted",
        effect=kind.effect,
        published_under_other_keys=alive,
        why="PIPL Art. 47(1)(2): the company is closing; the key is no longer needed",
    )
    # Intend, act, commit (flows/storage/intents.py): a destruction killed before its entry is
    # recorded by the next command (the key gone) or rolled back (the key still there).
    intent = intents.intend(restricted, "destroy", [Change(path=_where(location), area="key")], then)
    failpoints.hit("destroy-intended")
    if location.block:
        from prefect.blocks.system import Secret

        Secret.delete(location.block)
    else:
        size = location.file.stat().st_size
        with location.file.open("r+b") as fh:
            fh.write(secrets.token_bytes(size))
            fh.flush()
            os.fsync(fh.fileno())
        failpoints.hit("destroy-overwritten")
        location.file.unlink()
        sync(location.file.parent)
    return intents.commit(restricted, intent, then)
