"""`tuomin classify`: profile exports and propose policy entries (I/O around transforms.classify)."""

from __future__ import annotations

import re
from pathlib import Path

from flows.runtime.paths import POLICIES
from flows.storage.landing import sample_csv, sniff_encoding
from transforms.classify import Proposal, References, classify_table
from transforms.draft import draft_policy

_DATE_DIR = re.compile(r"\d{4}-\d{2}-\d{2}")


def references(policies: Path = POLICIES) -> References:
    """The country and airport codes the policy's own hierarchy tables know."""

    def first_column(name: str) -> frozenset[str]:
        path = policies / "hierarchies" / name
        return (
            frozenset(line.split(",", 1)[0] for line in path.read_text("utf-8").splitlines() if line)
            if path.exists()
            else frozenset()
        )

    return References(first_column("nationality.csv"), first_column("destination.csv"))


def csv_files(target: Path) -> list[Path]:
    return [target] if target.is_file() else sorted(p for p in target.rglob("*.csv") if p.is_file())


def profile(path: Path, rows: int, refs: References) -> tuple[str, list[Proposal], set[str]]:
    """(encoding, a proposal per column, columns holding y/m/d dates) for one export."""
    encoding = sniff_encoding(path)
    table = sample_csv(path, encoding, rows)
    proposals = classify_table(table, refs)
    slashed = {
        p.column
        for p in proposals
        if p.kind in ("date", "birth_date") and any("/" in (v or "") for v in table[p.column].to_pylist())
    }
    return encoding, proposals, slashed


def source_and_pattern(path: Path, root: Path) -> tuple[str, str]:
    """A source name and files pattern: landing/pos/2026-03-01/pos_lines_20260301.csv gives
    ('pos', 'pos/{date}/pos_lines_{yyyymmdd}*.csv'); any other file is its own source."""
    if _DATE_DIR.fullmatch(path.parent.name):
        day = path.parent.name.replace("-", "")
        stem = re.sub(r"_part\d+$", "", path.stem).replace(day, "{yyyymmdd}")
        return path.parent.parent.name, f"{path.parent.parent.name}/{{date}}/{stem}*.csv"
    source = re.sub(r"[^a-z0-9]+", "_", re.sub(r"\d{6,}", "", path.stem).lower()).strip("_") or "export"
    return source, path.relative_to(root).as_posix() if root in path.parents else path.name


def draft(path: Path, root: Path, rows: int, refs: References) -> str:
    encoding, proposals, slashed = profile(path, rows, refs)
    source, pattern = source_and_pattern(path, root)
    return draft_policy(source, pattern, encoding, proposals, str(path), slashed)


def as_json(proposals: list[Proposal]) -> dict:
    return {p.column: {"role": p.role, "kind": p.kind, "confidence": p.confidence} for p in proposals}
