"""Encrypted backups: round trips, streaming memory, and every way a backup can be damaged."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import stat
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.storage import backup
from flows.storage.backup import BackupError, BackupKey
from flows.storage.landing import Landing
from tests.examples import examples

KEY = BackupKey(b"k" * 32)
DAY = dt.date(2026, 3, 1)


def _seal(plain: bytes, key: BackupKey = KEY) -> bytes:
    out = io.BytesIO()
    assert backup.encrypt_stream(io.BytesIO(plain), out, key)[0] == len(plain)
    return out.getvalue()


def _open(sealed: bytes, key: BackupKey = KEY) -> bytes:
    out = io.BytesIO()
    backup.decrypt_stream(io.BytesIO(sealed), out, key, "f.enc")
    return out.getvalue()


@given(st.binary(max_size=5000), st.sampled_from([1, 7, 1024]))
@examples(60)
def test_round_trip_for_any_content_and_chunk_size(plain, chunk):
    saved, backup.CHUNK = backup.CHUNK, chunk
    try:
        assert _open(_seal(plain)) == plain
    finally:
        backup.CHUNK = saved


def test_the_same_content_never_encrypts_the_same_way():
    assert _seal(b"same") != _seal(b"same")  # a fresh salt and nonce prefix per file


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(backup, "CHUNK", 16)
    plain = bytes(range(100))  # 7 chunks: 6 full and a short last one
    return plain, _seal(plain)


HEADER = len(backup.MAGIC) + 16 + 7
SEALED_CHUNK = 4 + 16 + 16  # length, 16 bytes, tag


def test_a_flipped_bit_anywhere_is_detected(small_chunks):
    _, sealed = small_chunks
    for position in range(len(sealed)):
        damaged = bytearray(sealed)
        damaged[position] ^= 0x01
        with pytest.raises(BackupError):
            _open(bytes(damaged))


def test_truncation_is_reported_as_such(small_chunks):
    _, sealed = small_chunks
    with pytest.raises(BackupError, match="truncated.*without its last chunk"):
        _open(sealed[: HEADER + 3 * SEALED_CHUNK])  # cut exactly between chunks
    with pytest.raises(BackupError, match="truncated.*cut short"):
        _open(sealed[:-5])


def test_reordered_dropped_or_appended_chunks_fail(small_chunks):
    _, sealed = small_chunks
    body = [sealed[HEADER + i * SEALED_CHUNK : HEADER + (i + 1) * SEALED_CHUNK] for i in range(6)]
    last = sealed[HEADER + 6 * SEALED_CHUNK :]
    with pytest.raises(BackupError, match="chunk 0 fails authentication"):
        _open(sealed[:HEADER] + body[1] + body[0] + b"".join(body[2:]) + last)
    with pytest.raises(BackupError, match="chunk 2 fails authentication"):
        _open(sealed[:HEADER] + b"".join(body[:2]) + b"".join(body[3:]) + last)
    with pytest.raises(BackupError, match="data after the last chunk"):
        _open(sealed + b"\x00")


def test_a_different_key_cannot_read_it(small_chunks):
    _, sealed = small_chunks
    with pytest.raises(BackupError, match="different backup key"):
        _open(sealed, BackupKey(b"x" * 32))


def test_short_keys_are_refused_and_never_shown():
    with pytest.raises(BackupError, match="31 bytes"):
        BackupKey(b"s" * 31)
    assert "kkkk" not in repr(KEY) and KEY.key_id.startswith("b1-")


def test_streaming_keeps_memory_flat(tmp_path):
    """64 MiB through encryption and decryption with Python allocations peaking near two chunks."""
    size = 64 << 20
    source = tmp_path / "big.bin"
    with source.open("wb") as fh:
        for _ in range(size >> 20):
            fh.write(os.urandom(1 << 20))
    tracemalloc.start()
    with source.open("rb") as src, (tmp_path / "big.enc").open("wb") as out:
        backup.encrypt_stream(src, out, KEY)
    with (tmp_path / "big.enc").open("rb") as src:
        assert backup.decrypt_stream(src, None, KEY, "big.enc")[0] == size
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * backup.CHUNK, peak  # a few 1 MiB buffers, not 64 MiB


@pytest.fixture
def backed_up(tmp_path):
    landing = tmp_path / "landing"
    (landing / "pos" / "2026-03-01").mkdir(parents=True)
    files = {"pos/2026-03-01/a.csv": "txn,amount\n1,2\n" * 1000, "pos/2026-03-01/b.csv": "证件,x\n310101,1\n"}
    for relative, text in files.items():
        (landing / relative).write_text(text, "utf-8")
    manifest, _, written = backup.backup_files(Landing(landing), _shas(landing, files), DAY, tmp_path / "restricted", KEY)
    assert written
    return landing, tmp_path / "restricted", manifest, files


def test_backup_verify_and_restore(backed_up, tmp_path):
    landing, restricted, manifest, files = backed_up
    assert backup.manifests(restricted, DAY) == [manifest]
    checked = backup.verify(manifest, KEY, restore_to=tmp_path / "restored")
    assert [c["path"] for c in checked] == sorted(files)
    for relative, text in files.items():
        restored = tmp_path / "restored" / relative
        assert restored.read_text("utf-8") == text and stat.S_IMODE(restored.stat().st_mode) == 0o600
    # The manifest names each encrypted file by its SHA-256 (hashed as it was written).
    for entry in json.loads(manifest.read_text())["files"]:
        assert entry["encrypted_sha256"] == hashlib.sha256((manifest.parent / entry["encrypted"]).read_bytes()).hexdigest()
    # Owner-only, and the raw text is nowhere in the clear.
    for path in [restricted, *restricted.rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    assert not any(b"310101" in p.read_bytes() for p in restricted.rglob("*") if p.is_file())
    # Backing up the same files again writes nothing.
    assert backup.backup_files(Landing(landing), _shas(landing, files), DAY, restricted, KEY)[2] is False


def _shas(landing, files) -> dict[str, str]:
    return {relative: Landing(landing).sha256(relative) for relative in files}


def test_a_file_changed_after_the_run_read_it_is_not_backed_up(tmp_path):
    """The backup must hold the bytes the run processed: a file edited in between is refused,
    and no manifest (nor its encrypted copy) is left."""
    landing = tmp_path / "landing"
    (landing / "pos").mkdir(parents=True)
    (landing / "pos" / "a.csv").write_text("txn,amount\n1,2\n", "utf-8")
    read = _shas(landing, ["pos/a.csv"])
    (landing / "pos" / "a.csv").write_text("txn,amount\n1,3\n", "utf-8")
    with pytest.raises(backup.BackupError, match="pos/a.csv: changed after this run read it"):
        backup.backup_files(Landing(landing), read, DAY, tmp_path / "restricted", KEY)
    assert not [p for p in (tmp_path / "restricted").rglob("*") if p.is_file()]


def test_an_edited_manifest_or_a_missing_file_is_named(backed_up):
    _, _, manifest, _ = backed_up
    data = json.loads(manifest.read_text())
    (manifest.parent / data["files"][1]["encrypted"]).unlink()
    with pytest.raises(BackupError, match=r"1\.enc: missing"):
        backup.verify(manifest, KEY)
    data["files"][0]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    with pytest.raises(BackupError, match="does not match its MAC"):
        backup.verify(manifest, KEY)


def test_a_swapped_encrypted_file_is_caught_by_its_hash(backed_up):
    """Both files are valid ciphertext under the key; only the manifest's SHA-256 tells them apart."""
    _, _, manifest, _ = backed_up
    files = manifest.parent / "files"
    a, b = (files / "0.enc").read_bytes(), (files / "1.enc").read_bytes()
    (files / "0.enc").write_bytes(b)
    (files / "1.enc").write_bytes(a)
    with pytest.raises(BackupError, match="another SHA-256 than the manifest"):
        backup.verify(manifest, KEY)


def test_a_bad_file_is_never_restored(backed_up, tmp_path):
    _, _, manifest, files = backed_up
    encrypted = manifest.parent / "files" / "0.enc"
    damaged = bytearray(encrypted.read_bytes())
    damaged[-1] ^= 0x01  # the last chunk's tag
    encrypted.write_bytes(bytes(damaged))
    with pytest.raises(BackupError, match="0.enc: chunk 0 fails authentication"):
        backup.verify(manifest, KEY, restore_to=tmp_path / "restored")
    assert not [p for p in (tmp_path / "restored").rglob("*") if p.is_file()]  # not even the part before the damage
