"""Encrypted backups of the raw exports, taken before a date is processed.

Each file is encrypted in 1 MiB chunks with AES-256-GCM (the `cryptography` package), so a 5 GB
export never needs 5 GB of memory. The construction is the usual one for streaming AEAD (as in
the STREAM scheme and `age`): a fresh random salt per file derives that file's key from the backup
key (HKDF-SHA256), chunk i is sealed under nonce = prefix || i || last-flag with the file header
as associated data, so a changed, reordered, cut or extended file fails to decrypt, and a file
whose last chunk is missing is reported as truncated.

    <restricted>/backups/export_date=<date>/<version>/manifest.json
                                                      /files/<n>.enc

The manifest lists every file (path, bytes, SHA-256 of the plaintext and of the encrypted file)
and carries an HMAC under the backup key, so it cannot be edited unnoticed either. The backup key
is separate from the pseudonym key and comes from TUOMIN_BACKUP_KEY, TUOMIN_BACKUP_KEY_FILE or
TUOMIN_BACKUP_KEY_BLOCK.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import struct
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flows.runtime import failpoints
from flows.runtime.paths import restricted_dir
from flows.storage.entries import BackupRestoredEntry, BackupVerifiedEntry
from transforms.errors import Refused

MAGIC = b"TUOMINB1"
CHUNK = 1 << 20
FORMAT = "tuomin-backup-1"


class BackupError(Refused, ValueError):
    """A backup that cannot be trusted or read; the message says which file and why."""


@dataclass(frozen=True)
class BackupKey:
    """The backup key; repr never shows it."""

    secret: bytes

    def __post_init__(self):
        if len(self.secret) < 32:
            raise BackupError(f"the backup key has {len(self.secret)} bytes; at least 32 are required")

    def __repr__(self) -> str:
        return f"BackupKey(key_id={self.key_id!r})"

    @property
    def key_id(self) -> str:
        return "b1-" + hmac.new(self.secret, b"tuomin backup key fingerprint", hashlib.sha256).hexdigest()[:16]

    def file_key(self, salt: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"tuomin backup file v1").derive(self.secret)

    def mac(self, data: bytes) -> str:
        mac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=b"tuomin backup manifest v1").derive(self.secret)
        return hmac.new(mac_key, data, hashlib.sha256).hexdigest()


def encrypt_stream(source, target, key: BackupKey) -> tuple[int, str]:
    """Encrypt `source` (a binary file object) into `target`; returns (plaintext bytes, SHA-256)."""
    salt, prefix = os.urandom(16), os.urandom(7)
    header = MAGIC + salt + prefix
    aead = AESGCM(key.file_key(salt))
    target.write(header)
    digest, size, index = hashlib.sha256(), 0, 0
    chunk = source.read(CHUNK)
    while True:
        following = source.read(CHUNK) if chunk else b""
        last = not following
        sealed = aead.encrypt(prefix + struct.pack(">IB", index, last), chunk, header)
        target.write(struct.pack(">I", len(sealed)) + sealed)
        digest.update(chunk)
        size += len(chunk)
        if last:
            return size, digest.hexdigest()
        chunk, index = following, index + 1


def decrypt_stream(source, target, key: BackupKey, name: str) -> tuple[int, str]:
    """Decrypt into `target` (or only check, with target None); returns (bytes, SHA-256)."""
    header = source.read(len(MAGIC) + 16 + 7)
    if len(header) < len(MAGIC) + 23 or not header.startswith(MAGIC):
        raise BackupError(f"{name}: not a tuomin backup file (bad header)")
    salt, prefix = header[len(MAGIC) : len(MAGIC) + 16], header[len(MAGIC) + 16 :]
    aead = AESGCM(key.file_key(salt))
    digest, size, index = hashlib.sha256(), 0, 0
    while True:
        length = source.read(4)
        if len(length) < 4:
            raise BackupError(f"{name}: truncated (ends after chunk {index} without its last chunk)")
        expected = struct.unpack(">I", length)[0]
        sealed = source.read(expected)
        if len(sealed) < expected:
            raise BackupError(f"{name}: truncated (chunk {index} is cut short)")
        for last in (False, True):
            try:
                plain = aead.decrypt(prefix + struct.pack(">IB", index, last), sealed, header)
                break
            except InvalidTag:
                continue
        else:
            raise BackupError(f"{name}: chunk {index} fails authentication (tampered, or a different backup key)")
        digest.update(plain)
        size += len(plain)
        if target is not None:
            target.write(plain)
        if last:
            if source.read(1):
                raise BackupError(f"{name}: data after the last chunk (tampered)")
            return size, digest.hexdigest()
        index += 1


def backup_files(landing, shas: dict[str, str], date: dt.date, restricted: Path, key: BackupKey) -> tuple[Path, dict, bool]:
    """Back up a date's input files, given as {path: SHA-256 when the run read it} (skipped when
    the same files are already backed up); a file whose bytes are no longer those the run read
    is refused. Returns (manifest path, manifest, whether anything was written)."""
    version = hashlib.sha256(json.dumps(sorted(shas.items())).encode()).hexdigest()[:12]
    folder = restricted_dir(restricted, "backups", f"export_date={date.isoformat()}", version, "files")
    manifest_path = folder.parent / "manifest.json"
    if manifest_path.exists():
        return manifest_path, read_manifest(manifest_path, key), False
    files = []
    for number, relative in enumerate(sorted(shas)):
        encrypted = folder / f"{number}.enc"
        fd = os.open(encrypted, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with landing.open(relative) as source, os.fdopen(fd, "wb") as out:
            target = _Hashing(out)
            size, sha = encrypt_stream(source, target, key)
        if sha != shas[relative]:
            encrypted.unlink()
            raise BackupError(f"{relative}: changed after this run read it (SHA-256 differs); nothing is published")
        files.append(
            {
                "path": relative,
                "bytes": size,
                "sha256": sha,
                "encrypted": f"files/{encrypted.name}",
                "encrypted_sha256": target.digest.hexdigest(),
            }
        )
    manifest = {
        "format": FORMAT,
        "export_date": date.isoformat(),
        "key_id": key.key_id,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": files,
    }
    manifest["mac"] = key.mac(_canonical(manifest))
    staged = manifest_path.with_suffix(".tmp")
    staged.write_text(json.dumps(manifest, indent=1, ensure_ascii=False), "utf-8")
    staged.chmod(0o600)
    os.replace(staged, manifest_path)  # the manifest appears last: a backup without one is incomplete
    return manifest_path, manifest, True


class _Hashing:
    """A file that hashes what is written to it (the encrypted file's SHA-256, without reading it back)."""

    def __init__(self, out):
        self.out, self.digest = out, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.out.write(data)


def read_manifest(path: Path, key: BackupKey) -> dict:
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        raise BackupError(f"{path}: unreadable manifest") from None
    mac = manifest.pop("mac", None)
    if mac is None or not hmac.compare_digest(mac, key.mac(_canonical(manifest))):
        raise BackupError(f"{path}: the manifest does not match its MAC (edited, or a different backup key)")
    return manifest


def verify(manifest_path: Path, key: BackupKey, restore_to: Path | None = None) -> list[dict]:
    """Decrypt every file of a backup and check its size and SHA-256 against the manifest; with
    `restore_to`, write the files there (owner-only, as the raw data they are). A file appears
    only once it checks out. Raises BackupError naming the first bad file."""
    manifest = read_manifest(manifest_path, key)
    for entry in manifest["files"]:
        encrypted = manifest_path.parent / entry["encrypted"]
        if not encrypted.exists():
            raise BackupError(f"{encrypted}: missing")
        out = (
            None
            if restore_to is None
            else restricted_dir(restore_to, *Path(entry["path"]).parent.parts) / Path(entry["path"]).name
        )
        partial = None if out is None else out.with_name(out.name + ".partial")
        try:
            with encrypted.open("rb") as source, _private(partial) if partial else nullcontext() as target:
                size, sha = decrypt_stream(source, target, key, str(encrypted))
            if (size, sha) != (entry["bytes"], entry["sha256"]):
                raise BackupError(f"{encrypted}: decrypts to {size} bytes with another SHA-256 than the manifest records")
        except BackupError:
            if partial is not None:
                partial.unlink(missing_ok=True)
            raise
        if partial is not None and out is not None:
            os.replace(partial, out)
            failpoints.hit("restored-one", out)
    return manifest["files"]


def _private(path: Path):
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def manifests(restricted: Path, date: dt.date | None = None) -> list[Path]:
    pattern = f"export_date={date.isoformat()}" if date else "export_date=*"
    return sorted((restricted / "backups").glob(f"{pattern}/*/manifest.json"))


def _canonical(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, ensure_ascii=False).encode()


def check_all(restricted: Path, key: BackupKey, date: dt.date | None = None) -> list[dict]:
    """Decrypt every backup (of `date`, or all) and compare it with its manifest, and every backup
    the ledger records with what is on disk (unless a purge certificate deleted it); recorded in
    the ledger as `backup_verified`. One result per backup: {manifest, export_date, files,
    bytes, error}; a run with nothing to check is a failure too."""
    from flows.storage import ledger

    found = manifests(restricted, date)
    results = []
    for manifest in found:
        try:
            files = verify(manifest, key)
            results.append(
                {"manifest": str(manifest), "files": len(files), "bytes": sum(f["bytes"] for f in files), "error": None}
            )
        except BackupError as exc:
            results.append({"manifest": str(manifest), "files": None, "bytes": None, "error": str(exc)})

    def where(path: str) -> tuple[str, ...]:  # export_date=…/<version>/manifest.json: the same wherever the area is
        return Path(path).parts[-3:]

    entries = ledger.entries(restricted)
    deleted = {where(f["path"]) for e in entries if e["kind"] == "deletion" for f in e["data"]["files"] if f["area"] == "backup"}
    for entry in entries:
        data = entry["data"]
        if (
            entry["kind"] == "backup"
            and (date is None or data["export_date"] == date.isoformat())
            and where(data["manifest"]) not in deleted
            and not (restricted / "backups").joinpath(*where(data["manifest"])).is_file()
        ):
            results.append(
                {
                    "manifest": data["manifest"],
                    "files": None,
                    "bytes": None,
                    "error": f"{data['manifest']}: recorded by ledger entry {entry['seq']}, missing, and no purge "
                    "certificate deleted it",
                }
            )
    for result in results:
        result["export_date"] = Path(result["manifest"]).parent.parent.name.removeprefix("export_date=")
    ledger.append(
        restricted,
        BackupVerifiedEntry(
            export_date=date.isoformat() if date else None,
            key_id=key.key_id,
            backups=results,
            ok=sum(r["error"] is None for r in results),
            bad=sum(r["error"] is not None for r in results),
            nothing_to_check=not results,
        ),
    )
    return results


def restore(restricted: Path, key: BackupKey, date: dt.date, out: Path) -> BackupRestoredEntry:
    """Decrypt a date's latest backup into `out`, every file checked against the manifest; the
    ledger's `backup_restored` entry says where the raw files went (purge deletes them with the
    date's raw data) or why nothing was. Returns the entry's data; raises BackupError after
    recording a failure."""
    from flows.storage import intents, ledger
    from flows.storage.entries import Change

    ledger.trusted(restricted)  # what a crash left open is ended first; a broken ledger refuses here
    found = manifests(restricted, date)
    record = BackupRestoredEntry(
        export_date=date.isoformat(), key_id=key.key_id, out=str(out.resolve()), manifest=None, files=[], error=None
    )
    try:
        if not found:
            raise BackupError(f"no backup of {date} under {restricted / 'backups'}")
        latest = max(found, key=lambda m: m.stat().st_mtime)
        record = record.model_copy(update={"manifest": str(latest)})
        planned = [
            {"path": str((out / f["path"]).resolve()), "bytes": f["bytes"], "sha256": f["sha256"]}
            for f in read_manifest(latest, key)["files"]
        ]
    except BackupError as exc:
        ledger.append(restricted, record.model_copy(update={"error": str(exc)}))
        raise
    # Intend, act, commit (flows/storage/intents.py): raw files restored before a crash or a
    # failure are recorded either way, so that purge deletes them.
    record = record.model_copy(update={"files": planned})
    changes = [Change(path=f["path"], area="restored", sha256=f["sha256"]) for f in planned]
    intent = intents.intend(restricted, "restore", changes, record)
    try:
        verify(latest, key, restore_to=out)
    except (BackupError, OSError) as exc:
        there = [f for f in planned if Path(f["path"]).is_file()]
        error = str(exc) if isinstance(exc, BackupError) else f"{exc.strerror} writing {exc.filename}"
        intents.commit(restricted, intent, record.model_copy(update={"files": there, "error": error}))
        raise
    return intents.commit(restricted, intent, record).data
