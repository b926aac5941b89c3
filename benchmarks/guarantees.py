"""The release's own guarantees across versions (issue 31), measured on the published files as
an intruder who keeps every earlier copy holds them, each beside its baseline in the same run:

    snapshots   daily operation on the bundled sample: 2026-03-01..02 published, then 2026-03-03
                arrives. Baseline: the later snapshot published over the first (what a fresh
                release of all three dates publishes); now: the run keeps the first
    erasure     one member erased alone (`--flush`: a batch of one, what every erasure was
                before batches) against five erased as one batch (four held, the fifth forms it);
                each from a copy of the same warehouse

Each figure is `tuomin risk --against` on the two copies (benchmarks measure with the product's
own code): tuples unique on both snapshot dates, classes in which fewer than k changed; the
person-level records a republication differs by, in all and in the one partition where fewest
differ; and the footers that name an erasure. Every step is a CLI call in a process of its own.

    .venv/bin/python benchmarks/guarantees.py [--out /tmp/guarantees]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TUOMIN = str(REPO / ".venv" / "bin" / "tuomin")
KEYS = {
    "TUOMIN_PSEUDONYM_KEY": "bench-only pseudonym key, 32+ bytes long!!",
    "TUOMIN_BACKUP_KEY": "bench-only backup key, at least 32 bytes long",
}
SOURCES = ("pos", "membership", "after_sales")
LAST = "2026-03-03"


def tuomin(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([TUOMIN, *args], capture_output=True, text=True, env=os.environ | KEYS, cwd=REPO)
    if check and done.returncode:
        raise SystemExit(f"tuomin {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return done


def area(root: Path) -> list[str]:
    return ["--warehouse", str(root / "warehouse"), "--restricted", str(root / "restricted")]


def risk(root: Path, against: Path) -> dict:
    found = json.loads(
        tuomin("risk", "--warehouse", str(root / "warehouse"), "--against", str(against), "--format", "json", check=False).stdout
    )
    gone = [v["records_gone"] + v["records_new"] for v in found["versions"] if v["records_gone"] + v["records_new"]]
    stamped = sum(
        "erasure" in json.dumps(json.loads(pq_footer(p))) for p in (root / "warehouse").glob("dataset=*/period=*/part-0.parquet")
    )
    return {
        "checks": {c["name"]: c["passed"] for c in found["checks"]},
        "chains": found["snapshot_chains"].get("membership", {}),
        "partitions_differing": len(gone),
        "records_differing": sum(gone),
        "fewest_in_one_partition": min(gone) if gone else 0,
        "footers_naming_an_erasure": stamped,
    }


def order_kept(before: Path, after: Path) -> float | None:
    """The rank correlation between a row's position in the copy before and in the copy after, over
    the partitions republished (rows paired through the key, which the bench holds: new tokens are
    a keyed function of the old); 1.0 is the old order kept, ~0 an order of its own."""
    import pyarrow.parquet as pq
    from scipy.stats import spearmanr

    os.environ.update(KEYS)
    sys.path.insert(0, str(REPO))
    from flows.storage.footer import read_footer
    from flows.storage.keys import load_pseudonymizer

    pseudonymizer, found = load_pseudonymizer(), []
    for old in sorted(before.glob("dataset=pos/period=*/part-0.parquet")):
        new = after / old.relative_to(before)
        unit, again = read_footer(old)["unit"], read_footer(new)["unit"]
        if not again.startswith(unit + "|"):
            continue
        a, b = pq.read_table(old), pq.read_table(new)
        values = [c for c in a.column_names if c != "customer_id"]
        mapped = pseudonymizer.unit_tokens(a["customer_id"], again[len(unit) + 1 :]).to_pylist()
        where: dict[tuple, list[int]] = {}
        for i, key in enumerate(zip(mapped, (json.dumps(r, default=str) for r in a.select(values).to_pylist()))):
            where.setdefault(key, []).append(i)
        keys = zip(b["customer_id"].to_pylist(), (json.dumps(r, default=str) for r in b.select(values).to_pylist()))
        pairs = [(where[key].pop(0), j) for j, key in enumerate(keys)]
        found.append(spearmanr(*zip(*pairs)).statistic)
    return round(float(sum(found) / len(found)), 4) if found else None


def pq_footer(path: Path) -> str:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).metadata[b"tuomin"].decode()


def members(landing: Path, n: int) -> list[str]:
    """`n` members who also bought (document numbers from the raw exports, never printed)."""
    [crm] = sorted((landing / "membership" / LAST).glob("*.csv"))[:1]
    with crm.open(encoding="gb18030", newline="") as fh:
        docs = [r["证件号码"] for r in csv.DictReader(fh) if r["证件号码"]]
    bought = set()
    for path in (landing / "pos").glob("*/*.csv"):
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            column = next(c for c in reader.fieldnames or [] if "证件" in c or c == "doc_no")
            bought |= {r[column].upper() for r in reader if r[column]}
    return [d for d in docs if d.upper() in bought][:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/tuomin-guarantees"))
    out = parser.parse_args().out
    shutil.rmtree(out, ignore_errors=True)
    sample = REPO / "sample_data" / "landing"
    landing = out / "landing"
    shutil.copytree(sample, landing, ignore=shutil.ignore_patterns(LAST))
    daily = out / "daily"
    tuomin("run", "--landing", str(landing), *area(daily))
    before = out / "before"
    shutil.copytree(daily / "warehouse", before)
    for source in SOURCES:
        shutil.copytree(sample / source / LAST, landing / source / LAST)
    tuomin("run", "--landing", str(landing), *area(daily))
    fresh = out / "fresh"  # what publishing the later snapshot over the first gives
    tuomin("run", "--landing", str(landing), *area(fresh))
    results = {
        "snapshots": {"baseline (latest published over the first)": risk(fresh, before), "now (kept)": risk(daily, before)}
    }

    people = members(landing, 5)
    results["erasure"] = {}
    for name, who, flush in (("one alone (--flush)", people[:1], True), ("five as one batch", people, False)):
        copy = out / name.split()[0]
        for part in ("warehouse", "restricted"):
            shutil.copytree(daily / part, copy / part)
        requests = landing / "requests" / "erasure.csv"
        kept = requests.read_bytes()
        for doc in who:
            tuomin("subjects", "erase", "--doc-no", doc, "--landing", str(landing), *area(copy), *(["--flush"] if flush else []))
        requests.write_bytes(kept)
        results["erasure"][name] = risk(copy, daily / "warehouse") | {
            "order_kept": order_kept(daily / "warehouse", copy / "warehouse")
        }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    json.dump(results, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
