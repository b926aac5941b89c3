"""Scale (issue 8): the whole anonymize flow on 1M, 3M and 10M POS lines in ONE export date (the
worst case: one partition, one plan, nothing split by day), with members and cases in
proportion, next to the I/O floor measured in the same run on the same files: a plain pyarrow
streaming CSV -> Parquet (zstd) conversion of every file, no transformation.

Each measurement runs in its own process; peak RSS is that process's (the pipeline's Prefect
temporary server is a separate process, started before the clock does, and not counted).
The pipeline's time is end to end for the date: backup (encrypted), both passes, the privacy
engine, every GX validation, publishing and the ledger.

    make bench-scale        # or: .venv/bin/python benchmarks/scale.py --sizes 1000000 3000000 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def generate(root: Path, lines: int, seed: int) -> tuple[Path, float | None]:
    """The benchmark input for `lines` POS lines, generated once and reused; and the seconds the
    generator took (None when reused)."""
    landing = root / f"landing-{lines}"
    if (landing / ".complete").exists():
        return landing, None
    began = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "generate",
            "--out",
            str(landing),
            "--days",
            "1",
            "--rows",
            str(lines),
            "--members",
            str(lines // 10),
            "--seed",
            str(seed),
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    (landing / ".complete").touch()
    return landing, time.perf_counter() - began


def measure(kind: str, landing: Path, out: Path, *extra: str) -> dict:
    """Run one measurement in a fresh process; it prints a JSON line last."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(landing), str(out), *extra], capture_output=True, text=True, cwd=REPO
    )
    if done.returncode:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline(landing: Path, out: Path) -> dict:
    """The I/O floor: every CSV streamed into Parquet as it is."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from flows.storage.landing import sniff_encoding

    out.mkdir(parents=True, exist_ok=True)
    began, rows = time.perf_counter(), 0
    for index, path in enumerate(sorted(landing.rglob("*.csv"))):
        if path.parent.name == "requests":
            continue
        encoding = {"gb18030": "gb18030"}.get(sniff_encoding(path), "utf8")
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(encoding=encoding),  # Arrow's defaults
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
        )
        with pq.ParquetWriter(out / f"{index}.parquet", reader.schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
    return {"seconds": time.perf_counter() - began, "rows": rows}


def pipeline(landing: Path, out: Path, runner: str) -> dict:
    from prefect import flow

    from flows.pipeline.anonymize import anonymize_exports
    from flows.pipeline.parameters import RunParameters

    @flow
    def warm_up() -> None:  # starts Prefect's temporary server before the clock does
        return None

    warm_up()
    began = time.perf_counter()
    chosen = RunParameters(
        landing=str(landing), warehouse=str(out / "warehouse"), restricted=str(out / "restricted"), every=True, runner=runner
    )
    state = anonymize_exports(chosen, return_state=True)
    seconds = time.perf_counter() - began
    summary = state.result(raise_on_failure=False)
    if not state.is_completed():
        raise SystemExit(f"the flow failed: {state.message}")
    counts = {name: info["counts"] for day in summary["dates"].values() for name, info in day.items()}
    return {"seconds": seconds, "rows": sum(c["read"] for c in counts.values()), "counts": counts}


def child(kind: str, landing: Path, out: Path, runner: str) -> None:
    result = baseline(landing, out / "baseline") if kind == "baseline" else pipeline(landing, out, runner)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--root", type=Path, default=Path("/tmp/tuomin-bench-scale"))
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--runner", default="threads", choices=["threads", "dask"])
    parser.add_argument("--child", nargs=3, metavar=("KIND", "LANDING", "OUT"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]), args.runner)
        return
    os.environ.setdefault("TUOMIN_PSEUDONYM_KEY", "bench-only pseudonym key, 32+ bytes long!!")
    os.environ.setdefault("TUOMIN_BACKUP_KEY", "bench-only backup key, at least 32 bytes long")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"{'POS lines':>10} {'rows in':>10} {'pipeline s':>10} {'rows/s':>9} {'RSS MiB':>8} "
        f"{'floor s':>8} {'rows/s':>9} {'RSS MiB':>8} {'ratio':>6}"
    )
    results = []
    for lines in args.sizes:
        landing, made = generate(args.root, lines, args.seed)
        out = args.root / f"run-{lines}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        floor = measure("baseline", landing, out)
        run = measure("pipeline", landing, out, "--runner", args.runner)
        ratio = run["seconds"] / floor["seconds"]
        results.append({"lines": lines, "pipeline": run, "baseline": floor, "ratio": ratio, "generate_seconds": made})
        print(
            f"{lines:>10,} {run['rows']:>10,} {run['seconds']:>10.1f} {run['rows'] / run['seconds']:>9,.0f} "
            f"{run['peak_rss_mib']:>8,.0f} {floor['seconds']:>8.1f} {floor['rows'] / floor['seconds']:>9,.0f} "
            f"{floor['peak_rss_mib']:>8,.0f} {ratio:>6.2f}",
            flush=True,
        )
        subprocess.run(["rm", "-rf", str(out)], check=True)
    if len(results) > 1:
        first, last = results[0], results[-1]
        scale = last["lines"] / first["lines"]
        print(
            f"from {first['lines']:,} to {last['lines']:,} lines (x{scale:g}): pipeline time "
            f"x{last['pipeline']['seconds'] / first['pipeline']['seconds']:.2f}, peak RSS "
            f"x{last['pipeline']['peak_rss_mib'] / first['pipeline']['peak_rss_mib']:.2f}"
        )
    (args.root / "results.json").write_text(json.dumps(results, indent=1))
    print(
        "\n| POS lines | rows in (3 sources) | pipeline | rows/s | peak RSS | floor | floor rows/s | floor RSS | ratio"
        " | generator |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        run, floor, made = r["pipeline"], r["baseline"], r["generate_seconds"]
        print(
            f"| {r['lines']:,} | {run['rows']:,} | {run['seconds']:.1f} s | {run['rows'] / run['seconds']:,.0f} | "
            f"{run['peak_rss_mib']:,.0f} MiB | {floor['seconds']:.1f} s | {floor['rows'] / floor['seconds']:,.0f} | "
            f"{floor['peak_rss_mib']:,.0f} MiB | {r['ratio']:.2f}x | "
            + (f"{made:.0f} s, {r['lines'] / made:,.0f} lines/s |" if made else "reused |")
        )


if __name__ == "__main__":
    main()
