"""The house's floors: a module imports only from its own package or from the floors below it
(an import that climbs back up makes a lower room depend on a higher one: the CLI, a flow)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = {
    "transforms": 0,  # pure transforms, the privacy engine, the error tree
    "expectations": 1,  # GX expectations over transformed tables
    "flows.runtime": 2,  # environment, clock, logging, failpoints
    "flows.storage": 3,  # landing, warehouse, ledger, keys, backups
    "flows.pipeline": 4,  # the run
    "flows.closing": 5,  # purge, erasure, retention, review
    "flows.evidence": 5,  # the compliance officer's pack
    "flows.onboarding": 5,  # drafting a policy
    "flows.cli": 6,  # the command line, over everything
}


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "flows" and len(parts) > 1 else parts[0]


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [f"flows.{a.name}" for a in node.names] if node.module == "flows" else [node.module]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [name for name in found if name.split(".")[0] in ("flows", "transforms", "expectations")]


def test_no_import_climbs_back_up():
    climbing, seen = [], 0
    for path in sorted([*ROOT.glob("transforms/**/*.py"), *ROOT.glob("expectations/**/*.py"), *ROOT.glob("flows/*/**/*.py")]):
        source = _package(".".join(path.relative_to(ROOT).with_suffix("").parts))
        assert source in FLOORS, f"{path}: a package with no floor"
        for name in _imports(path):
            target = _package(name)
            seen += 1
            if target != source and FLOORS.get(target, 99) >= FLOORS[source]:
                climbing.append(f"{path.relative_to(ROOT)} imports {name}")
    assert seen > 100  # the walk read the house
    assert not climbing, climbing
