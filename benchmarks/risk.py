"""The release measured by `tuomin risk` (issue 19): the bundled sample and a larger generated
landing (4 days x 50,000 POS lines, 100,000 members), each anonymized by `tuomin run` into a
fresh warehouse, then assessed as the motivated intruder of ../shared/privacy-model.md would. The
JSON of each assessment is written to benchmarks/risk/<name>.json and a summary table printed
(benchmarks/risk/aec0e43-<name>.json: the starting point, the release before issue 19's model).

    make bench-risk      # or: .venv/bin/python benchmarks/risk.py [--only sample]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TUOMIN = str(Path(sys.executable).parent / "tuomin")
LANDINGS = {
    "sample": None,  # the committed sample landing
    "larger": ["--days", "4", "--rows", "50000", "--members", "100000"],
}


def assess(name: str, work: Path) -> dict:
    landing = REPO / "sample_data" / "landing"
    if LANDINGS[name] is not None:
        landing = work / "landing"
        subprocess.run([TUOMIN, "generate", "--out", str(landing), *LANDINGS[name]], check=True, capture_output=True)
    warehouse = work / "warehouse"
    began = time.perf_counter()
    subprocess.run(
        [TUOMIN, "run", "--landing", str(landing), "--warehouse", str(warehouse), "--restricted", str(work / "r")],
        check=True,
        capture_output=True,
        env={**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"},
    )
    run_seconds = time.perf_counter() - began
    began = time.perf_counter()
    done = subprocess.run([TUOMIN, "risk", "--warehouse", str(warehouse), "--format", "json"], capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr)
    found = json.loads(done.stdout)
    found.pop("warehouse")
    found["seconds"], found["run_seconds"] = round(seconds, 1), round(run_seconds, 1)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=sorted(LANDINGS))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "risk")
    args = parser.parse_args()
    args.out.mkdir(exist_ok=True)
    results = {}
    for name in [args.only] if args.only else LANDINGS:
        with tempfile.TemporaryDirectory() as work:
            results[name] = assess(name, Path(work))
        (args.out / f"{name}.json").write_text(json.dumps(results[name], ensure_ascii=False, indent=1) + "\n")
    names = list(results)
    print("| measure | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    rows = [
        ("person-level records", lambda r: f"{r['people']:,}"),
        ("singled out", lambda r: f"{r['singled_out_share']:.1%}"),
        ("max / average re-identification probability", lambda r: f"{r['max_risk']:.2f} / {r['average_risk']:.3f}"),
        (
            "breaking k^m within relational classes, m=1/2/3",
            lambda r: " / ".join(f"{r['km_break_share'][m]:.1%}" for m in ("1", "2", "3")),
        ),
        (
            "breaking k^m on the items alone, m=1/2/3",
            lambda r: " / ".join(f"{r['km_break_share_items_alone'][m]:.1%}" for m in ("1", "2", "3")),
        ),
        (
            "customer tokens shared across datasets / dates",
            lambda r: "{across_datasets:,} / {across_dates:,}".format(
                **r["shared_identifiers"].get("customer", {"across_datasets": 0, "across_dates": 0})
            ),
        ),
        ("staff identifiers published", lambda r: ", ".join(r["staff_identifiers"]) or "none"),
        ("free text published", lambda r: ", ".join(r["free_text"]) or "none"),
        (
            "sensitive value certain in its class",
            lambda r: ", ".join(f"{n.split('.')[1]} {s['certain_share']:.0%}" for n, s in r["sensitive"].items()) or "none",
        ),
        (
            "linked snapshot pairs that change",
            lambda r: (
                ", ".join(f"{s['changed_share']:.0%} of {s['linked_people']:,}" for s in r["snapshots"].values() if s) or "none"
            ),
        ),
        ("files whose row order follows time", lambda r: str(len(r["row_order"]))),
        ("places holding a count below k", lambda r: str(len(r["small_counts"]))),
        ("checks failed", lambda r: f"{sum(not c['passed'] for c in r['checks'])} of {len(r['checks'])}"),
        ("`tuomin run` time (all dates, release gate included)", lambda r: f"{r.get('run_seconds', '-')} s"),
        ("`tuomin risk` time", lambda r: f"{r['seconds']} s"),
    ]
    for label, show in rows:
        print(f"| {label} | " + " | ".join(show(results[n]) for n in names) + " |")


if __name__ == "__main__":
    main()
