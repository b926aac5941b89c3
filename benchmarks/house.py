"""The house's seams, counted the way issue 36 counts them (an AST count; the import graph is
tests/test_layers.py): functions in flows/ that return a bare dict, string-key reads of footers,
ledger entries and summaries outside flows/storage/, files that name l-diversity, files over 600
lines. `python benchmarks/house.py` prints them; `--list` names each."""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = ("flows", "transforms", "expectations")
# What a seam's value is called where it is read: a footer, a ledger entry, a run's summary.
SEAM = re.compile(r"entry|meta|head|footer|\bdata\b|found|record|partition|verdict|done|summary|release", re.I)
DIVERSITY = re.compile(r"l_diversity|LDiversity|l-diversity|\bDiversity\b")


def files(*roots: str) -> list[Path]:
    return sorted(p for root in roots for p in (ROOT / root).rglob("*.py"))


def bare_dict_returns() -> list[str]:
    found = []
    for path in files("flows"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
                returns = ast.unparse(node.returns)
                if returns == "dict" or returns.startswith("dict |") or returns.endswith("| dict"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    return found


def string_key_reads() -> list[str]:
    found = []
    for path in files(*CODE):
        if "storage" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            read = None
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and isinstance(node.slice, ast.Constant):
                if isinstance(node.slice.value, str):
                    read = node.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
                if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    read = node.func.value
            if read is not None and SEAM.search(ast.unparse(read)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    return found


def main() -> None:
    listing = "--list" in sys.argv
    dicts, reads = bare_dict_returns(), string_key_reads()
    diversity = [str(p.relative_to(ROOT)) for p in files(*CODE) if DIVERSITY.search(p.read_text())]
    long = {str(p.relative_to(ROOT)): n for p in files(*CODE) if (n := len(p.read_text().splitlines())) > 600}
    print(f"bare-dict returns in flows/: {len(dicts)} (target < 15)")
    print(f"string-key reads of footers, entries and summaries outside storage/: {len(reads)}")
    for where, n in Counter(r.split(":")[0] for r in reads).most_common():
        print(f"    {n:4d} {where}")
    print(f"files that name l-diversity: {len(diversity)} (target about 5)")
    print(f"files over 600 lines: {long or 'none'}")
    if listing:
        print("\n".join(["", *dicts, "", *reads, "", *diversity]))


if __name__ == "__main__":
    main()
