"""Assessment speed (issue 5): every `tuomin assess` figure on 1,000,000 rows, next to a bare
pandas groupby(...).size() on the same frame (the baseline) and pycanon's k and l checks (in the
peers' environment, on the same rows written to CSV).

    make bench-assess       # or: .venv/bin/python benchmarks/assess.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from privacy import QIS, SENSITIVE, load_adult, peers_python, resample  # noqa: E402

from transforms.metrics import assess  # noqa: E402


def best(fn, repeat=3) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pycanon", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    frame = resample(load_adult(), args.rows)
    qis = list(QIS)
    baseline = best(lambda: frame.groupby(qis, dropna=False).size())
    k_only = best(lambda: assess(frame, qis))
    full = best(lambda: assess(frame, qis, [SENSITIVE]))
    print(f"{args.rows:,} rows, {len(qis)} quasi-identifiers, sensitive {SENSITIVE}; best of three\n")
    print("| computation | seconds | vs baseline |\n|---|---|---|")
    print(f"| pandas groupby(qis, dropna=False).size() (baseline) | {baseline:.3f} | 1.00x |")
    print(f"| tuomin assess: k, classes, risks, discernibility | {k_only:.3f} | {k_only / baseline:.2f}x |")
    print(f"| tuomin assess: all ten figures (k, l, entropy l, t, ...) | {full:.3f} | {full / baseline:.2f}x |")
    if args.pycanon:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rows.csv"
            frame.to_csv(path, index=False)
            done = subprocess.run(
                [
                    str(peers_python()),
                    str(Path(__file__).parent / "peers" / "run_pycanon.py"),
                    str(path),
                    ",".join(qis),
                    SENSITIVE,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            peer = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| pycanon k and l (its own environment) | {peer['seconds_k_l']:.3f} | {peer['seconds_k_l'] / baseline:.2f}x |")


if __name__ == "__main__":
    main()
