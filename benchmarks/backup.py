"""Backup speed and memory (issue 7): one large export encrypted (AES-256-GCM, 1 MiB chunks) and
verified, next to two baselines measured in the same run: reading it once with SHA-256 (what
any verification must do) and a plain copy with SHA-256 (an unencrypted backup); with the peak
Python allocation and the growth of the process's resident set.

    make bench-backup       # or: .venv/bin/python benchmarks/backup.py --mib 2048
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.storage.backup import BackupKey, decrypt_stream, encrypt_stream  # noqa: E402
from flows.storage.files import file_sha256  # noqa: E402


def timed(fn, repeat: int = 3) -> tuple[float, int]:
    """(best seconds of `repeat`, peak Python allocation in bytes). Disk writes are noisy (the
    page cache flushes when it likes), so the best of three is reported."""
    runs = []
    for _ in range(repeat):
        tracemalloc.start()
        began = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - began, tracemalloc.get_traced_memory()[1]))
        tracemalloc.stop()
    return min(r[0] for r in runs), max(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=2048, help="size of the export in MiB")
    args = parser.parse_args()
    key = BackupKey(os.urandom(32))
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        plain, sealed = Path(tmp) / "export.csv", Path(tmp) / "export.enc"
        block = os.urandom(1 << 20)
        with plain.open("wb") as fh:
            for _ in range(args.mib):
                fh.write(block)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        baseline, base_peak = timed(lambda: file_sha256(plain))

        def copy():
            digest = hashlib.sha256()
            with plain.open("rb") as src, (Path(tmp) / "copy.csv").open("wb") as out:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            (Path(tmp) / "copy.csv").unlink()

        copied, copy_peak = timed(copy)

        def encrypt():
            with plain.open("rb") as src, sealed.open("wb") as out:
                encrypt_stream(src, out, key)

        def verify():
            with sealed.open("rb") as src:
                decrypt_stream(src, None, key, sealed.name)

        enc, enc_peak = timed(encrypt)
        dec, dec_peak = timed(verify)
        rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    mb = args.mib * 1.048576
    print(f"{args.mib:,} MiB export; best of three\n")
    print("| step | seconds | MB/s | vs baseline | peak Python allocation |\n|---|---|---|---|---|")
    print(f"| read + SHA-256 (baseline) | {baseline:.2f} | {mb / baseline:,.0f} | 1.00x | {base_peak / 2**20:.1f} MiB |")
    print(
        f"| plain copy + SHA-256 (unencrypted backup) | {copied:.2f} | {mb / copied:,.0f} | {copied / baseline:.2f}x | "
        f"{copy_peak / 2**20:.1f} MiB |"
    )
    print(
        f"| encrypt (AES-256-GCM) + SHA-256 | {enc:.2f} | {mb / enc:,.0f} | {enc / baseline:.2f}x | {enc_peak / 2**20:.1f} MiB |"
    )
    print(f"| verify (decrypt + SHA-256) | {dec:.2f} | {mb / dec:,.0f} | {dec / baseline:.2f}x | {dec_peak / 2**20:.1f} MiB |")
    print(f"\nresident set grew by {rss_growth:.1f} MiB over the whole run")


if __name__ == "__main__":
    main()
