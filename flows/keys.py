"""The pseudonym key: where it comes from, the local demo key `make run` creates, and its
rotation and destruction (both recorded in the ledger by key_id, never by value).

Order: TUOMIN_PSEUDONYM_KEY (the key itself), TUOMIN_PSEUDONYM_KEY_FILE (a file holding it),
TUOMIN_PSEUDONYM_KEY_BLOCK (the name of a Prefect Secret block). The key is the UTF-8 bytes of
the text, at least 32 of them. Errors say which source failed, never what it held.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from transforms.pseudonymize import Pseudonymizer, PseudonymKeyError

ENV_KEY = "TUOMIN_PSEUDONYM_KEY"
ENV_FILE = "TUOMIN_PSEUDONYM_KEY_FILE"
ENV_BLOCK = "TUOMIN_PSEUDONYM_KEY_BLOCK"
DEMO_KEY = Path(".secrets") / "pseudonym.key"


def load_pseudonymizer() -> Pseudonymizer:
    key, origin = _key_material()
    try:
        return Pseudonymizer(key.strip().encode("utf-8"))
    except PseudonymKeyError as exc:
        raise PseudonymKeyError(f"{origin}: {exc}") from None


def _key_material() -> tuple[str, str]:
    if os.environ.get(ENV_KEY):
        return os.environ[ENV_KEY], f"${ENV_KEY}"
    if os.environ.get(ENV_FILE):
        path = Path(os.environ[ENV_FILE])
        if not path.is_file():
            raise PseudonymKeyError(f"${ENV_FILE} points to {path}, which does not exist (destroyed key?)")
        return path.read_text("utf-8"), str(path)
    if os.environ.get(ENV_BLOCK):
        from prefect.blocks.system import Secret

        name = os.environ[ENV_BLOCK]
        try:
            return Secret.load(name).get(), f"Prefect Secret block {name!r}"
        except ValueError:
            raise PseudonymKeyError(f"Prefect Secret block {name!r} (${ENV_BLOCK}) not found") from None
    raise PseudonymKeyError(
        f"no pseudonym key: set ${ENV_KEY}, ${ENV_FILE} or ${ENV_BLOCK} (`tuomin key init` writes a local demo key)")


def init_demo_key(path: Path = DEMO_KEY) -> bool:
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


def key_id_of_file(path: Path) -> str:
    if not path.is_file():
        raise PseudonymKeyError(f"no key file at {path}")
    return Pseudonymizer(path.read_text("utf-8").strip().encode("utf-8")).key_id


def rotate_file(path: Path) -> tuple[str, str]:
    """Replace a key file with a new random key in one rename; returns (old key_id, new key_id).
    Tokens made with the old key no longer match tokens made with the new one."""
    old = key_id_of_file(path)
    staged = path.with_name(path.name + ".new")
    _write_key(staged, os.O_TRUNC)
    os.replace(staged, path)
    return old, key_id_of_file(path)


def destroy_file(path: Path) -> str:
    """Overwrite a key file with random bytes, flush, delete; returns its key_id. Without the key,
    nobody can recompute a token from a value: the published data can no longer be linked to
    anyone (PIPL Art. 73: anonymized). Overwriting is best effort on journaling or copy-on-write
    filesystems and SSDs; keep key files on encrypted storage so deletion is final."""
    key_id = key_id_of_file(path)
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.write(secrets.token_bytes(size))
        fh.flush()
        os.fsync(fh.fileno())
    path.unlink()
    return key_id


def destroy_block(name: str) -> str:
    """Delete a Prefect Secret block holding the key; returns its key_id."""
    from prefect.blocks.system import Secret

    try:
        key_id = Pseudonymizer(Secret.load(name).get().strip().encode("utf-8")).key_id
    except ValueError:
        raise PseudonymKeyError(f"Prefect Secret block {name!r} not found") from None
    Secret.delete(name)
    return key_id
