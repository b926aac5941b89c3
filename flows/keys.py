"""The two secret keys, where they come from, and their life cycle (init, rotate, destroy), each
event recorded in the ledger by key_id, never by value.

    pseudonym  keyed hashing of identifiers (TUOMIN_PSEUDONYM_KEY…)
    backup     encryption of the raw-export backups (TUOMIN_BACKUP_KEY…)

They are separate so that destroying one does not depend on the other. For each, in order: the
variable itself (the key), <VAR>_FILE (a file holding it), <VAR>_BLOCK (the name of a Prefect
Secret block). A key is the UTF-8 bytes of the text, at least 32 of them. Errors say which source
failed, never what it held.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flows import ledger
from flows.backup import BackupError, BackupKey
from transforms.pseudonymize import Pseudonymizer, PseudonymKeyError


@dataclass(frozen=True)
class KeyKind:
    name: str
    env: str
    demo: Path  # the local key file `tuomin key init` writes
    build: Callable[[bytes], Pseudonymizer | BackupKey]  # has .key_id
    error: type[ValueError]


PSEUDONYM = KeyKind("pseudonym", "TUOMIN_PSEUDONYM_KEY", Path(".secrets") / "pseudonym.key", Pseudonymizer, PseudonymKeyError)
BACKUP = KeyKind("backup", "TUOMIN_BACKUP_KEY", Path(".secrets") / "backup.key", BackupKey, BackupError)


def load(kind: KeyKind):
    key, origin = _key_material(kind)
    try:
        return kind.build(key.strip().encode("utf-8"))
    except kind.error as exc:
        raise kind.error(f"{origin}: {exc}") from None


def load_pseudonymizer() -> Pseudonymizer:
    return load(PSEUDONYM)


def load_backup_key() -> BackupKey:
    return load(BACKUP)


def _key_material(kind: KeyKind) -> tuple[str, str]:
    file_var, block_var = f"{kind.env}_FILE", f"{kind.env}_BLOCK"
    if os.environ.get(kind.env):
        return os.environ[kind.env], f"${kind.env}"
    if os.environ.get(file_var):
        path = Path(os.environ[file_var])
        if not path.is_file():
            raise kind.error(f"${file_var} points to {path}, which does not exist (destroyed key?)")
        return path.read_text("utf-8"), str(path)
    if os.environ.get(block_var):
        from prefect.blocks.system import Secret

        name = os.environ[block_var]
        try:
            return Secret.load(name).get(), f"Prefect Secret block {name!r}"
        except ValueError:
            raise kind.error(f"Prefect Secret block {name!r} (${block_var}) not found") from None
    raise kind.error(f"no {kind.name} key: set ${kind.env}, ${file_var} or ${block_var} "
                     f"(`tuomin key init{' --backup' if kind is BACKUP else ''}` writes a local demo key)")


def init_demo_key(path: Path) -> bool:
    """Create a random local key file (mode 0600 in a 0700 directory) unless one exists."""
    if path.exists():
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    _write_key(path, os.O_EXCL)
    return True


def _write_key(path: Path, flags: int = 0) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(48) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def key_id_of_file(path: Path, kind: KeyKind = PSEUDONYM) -> str:
    if not path.is_file():
        raise kind.error(f"no key file at {path}")
    return kind.build(path.read_text("utf-8").strip().encode("utf-8")).key_id


def rotate_file(path: Path) -> tuple[str, str]:
    """Replace a pseudonym key file with a new random key in one rename; returns (old key_id, new
    key_id). Tokens made with the old key no longer match tokens made with the new one."""
    old = key_id_of_file(path)
    staged = path.with_name(path.name + ".new")
    _write_key(staged, os.O_TRUNC)
    os.replace(staged, path)
    return old, key_id_of_file(path)


def destroy_file(path: Path, kind: KeyKind = PSEUDONYM) -> str:
    """Overwrite a key file with random bytes, flush, delete; returns its key_id. Without the
    pseudonym key nobody can recompute a token from a value, so the published data can no longer
    be linked to anyone (PIPL Art. 73: anonymized); without the backup key the backups are
    unreadable. Overwriting is best effort on journaling or copy-on-write filesystems and SSDs;
    keep key files on encrypted storage so deletion is final."""
    key_id = key_id_of_file(path, kind)
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.write(secrets.token_bytes(size))
        fh.flush()
        os.fsync(fh.fileno())
    path.unlink()
    return key_id


def destroy_block(name: str, kind: KeyKind = PSEUDONYM) -> str:
    """Delete a Prefect Secret block holding a key; returns its key_id."""
    from prefect.blocks.system import Secret

    try:
        key_id = kind.build(Secret.load(name).get().strip().encode("utf-8")).key_id
    except ValueError:
        raise kind.error(f"Prefect Secret block {name!r} not found") from None
    Secret.delete(name)
    return key_id


def check_continuity(warehouse: Path, key_id: str, rotating: bool = False) -> None:
    """Refuse a pseudonym key other than the one the warehouse was published with (the latest
    published partition's, or the new key of a later recorded rotation): its tokens would not
    link to the published ones. With `rotating`, the change is recorded in the ledger instead
    (every date is then republished under the new key: the key is part of each fingerprint)."""
    expected, said = None, None
    for entry in ledger.entries(warehouse):
        data = entry["data"]
        if entry["kind"] == "partition" or (entry["kind"] == "key_rotated" and data.get("key") == "pseudonym"):
            expected, said = data.get("new_key_id", data.get("key_id")), entry
    if expected is None or expected == key_id:
        return
    if rotating:
        ledger.append(warehouse, "key_rotated", {"key": "pseudonym", "old_key_id": expected, "new_key_id": key_id,
                                                 "where": "tuomin run --rotate-key"})
        return
    raise PseudonymKeyError(
        f"the pseudonym key {key_id} is not the key {warehouse} was published with ({expected}, ledger entry "
        f"{said['seq']}): its tokens would not link to the published ones, so nothing is run. Load that key, or change "
        "keys on purpose: `tuomin key rotate` (a key file) or `tuomin run --rotate-key`, both recorded in the ledger.")
