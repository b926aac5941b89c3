"""The privacy owner's trade-off in numbers (issue 32): which declared questions the release answers
at each k, m and unit grain, each release a real `tuomin run` of the policies with those values
(for every events source: POS and after-sales), scored by the run itself (its ledger entry: the
questions' attributed share and median error, transforms/workload.py). The shipped policies
(k = 5, m = 3, buyer-days) are the first row, the baseline of the others.

    make bench-tradeoff       # or: .venv/bin/python benchmarks/tradeoff.py [--landing DIR] [--k 5 3 2] ...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TUOMIN = str(Path(sys.executable).parent / "tuomin")


def policies(target: Path, k: int, m: int, grain: str) -> Path:
    """The shipped policies with k, m and the unit's grain set for every source of events."""
    target.mkdir(parents=True)
    (target / "hierarchies").symlink_to(REPO / "policies" / "hierarchies")
    for path in sorted((REPO / "policies").glob("*.yaml")):
        policy = yaml.safe_load(path.read_text(encoding="utf-8"))
        if (policy.get("unit") or {}).get("column"):
            policy.setdefault("privacy", {}).update({"k": k, "m": m})
            policy["unit"]["grain"] = grain
        (target / path.name).write_text(yaml.safe_dump(policy, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target


def release(landing: Path, work: Path, k: int, m: int, grain: str) -> dict:
    folder = work / f"k{k}-m{m}-{grain}"
    shutil.rmtree(folder, ignore_errors=True)
    chosen = policies(folder / "policies", k, m, grain)
    command = [TUOMIN, "run", "--landing", str(landing), "--warehouse", str(folder / "w"), "--restricted", str(folder / "r")]
    began = time.perf_counter()
    done = subprocess.run(
        [*command, "--all", "--no-backup", "--policies", str(chosen)],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"},
    )
    seconds = time.perf_counter() - began
    ledger = folder / "r" / "ledger" / "ledger.jsonl"
    runs = [json.loads(line) for line in ledger.read_text().splitlines() if '"kind": "run"' in line] if ledger.exists() else []
    found = {"k": k, "m": m, "grain": grain, "seconds": round(seconds, 1), "published": done.returncode == 0}
    if not runs or done.returncode != 0:
        return found | {"error": done.stdout.strip().splitlines()[-1][:300] if done.stdout.strip() else done.stderr[-300:]}
    datasets = runs[-1]["data"]["datasets"]
    found["questions"] = {q: s for d in datasets.values() for q, s in (d.get("questions") or {}).items()}
    found["suppressed"] = {n: round(d["counts"]["suppressed"] / max(d["counts"]["read"], 1), 4) for n, d in datasets.items()}
    found["levels"] = {n: d["levels"] for n, d in datasets.items() if n != "membership"}
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--landing", type=Path, default=REPO / "sample_data" / "landing")
    parser.add_argument("--k", type=int, nargs="+", default=[5, 3, 2])
    parser.add_argument("--m", type=int, nargs="+", default=[3, 2, 1])
    parser.add_argument("--grain", nargs="+", default=["day", "week"])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "utility")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for grain in args.grain:
            for k in args.k:
                for m in args.m:
                    results.append(release(args.landing, Path(scratch), k, m, grain))
    args.out.mkdir(exist_ok=True)
    label = "sample" if args.landing.resolve() == (REPO / "sample_data" / "landing").resolve() else args.landing.name
    (args.out / f"tradeoff-{label}.json").write_text(json.dumps(results, indent=1) + "\n")
    names = sorted({q for r in results for q in r.get("questions", {})})
    print("| k | m | unit | answered | " + " | ".join(names) + " | rows suppressed (POS) | run |")
    print("|---" * (len(names) + 6) + "|")
    for r in results:
        if "questions" not in r:
            print(
                f"| {r['k']} | {r['m']} | {r['grain']} | nothing published | "
                + " | ".join("–" for _ in names)
                + f" | – | {r['seconds']} s |"
            )
            continue
        cells = []
        for q in names:
            s = r["questions"].get(q)
            cells.append(
                "–"
                if s is None
                else f"{'**yes**' if s['answered'] else 'no'} {s['attributed']:.0%}"
                + (f" / {s['median_error']:.0%}" if s["median_error"] is not None else "")
            )
        answered = sum(bool(s["answered"]) for s in r["questions"].values())
        pos = r["suppressed"].get("pos", 0.0)
        print(
            f"| {r['k']} | {r['m']} | {r['grain']} | {answered} of {len(names)} | "
            + " | ".join(cells)
            + f" | {pos:.1%} | {r['seconds']} s |"
        )


if __name__ == "__main__":
    main()
