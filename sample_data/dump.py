"""The same exports as a closing dump: what a shop that stops hands over instead of daily files.

    tuomin generate --out DIR --days N --dump

A dump holds the same rows as the daily files, in one file per system, under the last export
date: every POS line in `pos/<last>/pos_lines_<yyyymmdd>.csv`, every case in
`after_sales/<last>/cases_<yyyymmdd>.csv`, and the last CRM snapshot (a CRM exports its state,
not its history). The files are joined byte for byte (one header, the BOM kept where the system
writes one), so every row is exactly as the daily file had it. The erasure list is copied.
"""

from __future__ import annotations

import shutil
from pathlib import Path

BOM = b"\xef\xbb\xbf"
DAILY = {"pos": "pos_lines_{ymd}.csv", "after_sales": "cases_{ymd}.csv"}


def as_dump(daily: Path, out: Path) -> dict[str, int]:
    """Write the dump of the daily landing `daily` under `out`; returns {relative path: bytes}."""
    dates = sorted(p.name for p in (daily / "pos").iterdir() if p.is_dir())
    last = dates[-1]
    written: dict[str, int] = {}
    for source, pattern in DAILY.items():
        relative = f"{source}/{last}/{pattern.format(ymd=last.replace('-', ''))}"
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as sink:
            first = True
            for day in sorted(p.name for p in (daily / source).iterdir() if p.is_dir()):
                for part in sorted((daily / source / day).glob("*.csv")):
                    data = part.read_bytes()
                    if not first:  # one header for the whole dump
                        data = data[data.index(b"\n") + 1 :]
                    if not data.endswith(b"\n"):
                        data += b"\n"
                    sink.write(data)
                    first = False
        written[relative] = target.stat().st_size
    crm = sorted(p for p in (daily / "membership").iterdir() if p.is_dir())[-1]
    shutil.copytree(crm, out / "membership" / crm.name, dirs_exist_ok=True)
    shutil.copytree(daily / "requests", out / "requests", dirs_exist_ok=True)
    return written
