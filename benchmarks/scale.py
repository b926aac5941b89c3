"""Scale (issue 30): the whole anonymize flow at a closing shop's size, next to the I/O floor
measured in the same run on the same files (a plain pyarrow streaming CSV -> Parquet, zstd, of
every file, no transformation).

Cases (each measurement in its own process; peak RSS is that process's):

    history  D days of R POS lines (a CRM of M members delivered once, on the last day; cases in
             proportion) as daily files, then the same rows as one closing dump: both published
             with one `run --all`, and their rows compared (tokens aside)
    day      one business day of R POS lines in one export date
    refuse   one business day of R POS lines over --max-unit-rows: refused before the search

The pipeline's time is end to end: backup (encrypted), both passes, the privacy engine, every GX
validation, the release gate, publishing and the ledger. Prefect's temporary server starts
before the clock and its start is reported beside it (`with start`).

    make bench-scale
    .venv/bin/python benchmarks/scale.py --case history --days 365 --rows 27400 --members 1000000
    .venv/bin/python benchmarks/scale.py --case day --rows 2000000 --members 100000
    .venv/bin/python benchmarks/scale.py --case refuse --rows 10000000 --members 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def generate(root: Path, days: int, rows: int, members: int, seed: int) -> tuple[Path, float | None]:
    """The daily landing, generated once and reused; and the seconds the generator took."""
    landing = root / f"landing-{days}x{rows}-{members}"
    if (landing / ".complete").exists():
        return landing, None
    shutil.rmtree(landing, ignore_errors=True)
    began = time.perf_counter()
    snapshots = ["--snapshots", "last"] if days > 1 else []
    subprocess.run(
        [sys.executable, "-m", "flows.cli", "generate", "--out", str(landing), "--days", str(days), "--rows", str(rows)]
        + ["--members", str(members), "--seed", str(seed), *snapshots],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    (landing / ".complete").touch()
    return landing, time.perf_counter() - began


def dump_of(daily: Path) -> Path:
    from sample_data.dump import as_dump

    dump = daily.with_name(daily.name + "-dump")
    if not (dump / ".complete").exists():
        shutil.rmtree(dump, ignore_errors=True)
        as_dump(daily, dump)
        (dump / ".complete").touch()
    return dump


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


def pipeline(landing: Path, out: Path, max_unit_rows: int) -> dict:
    started = time.perf_counter()
    from prefect import flow

    from flows.pipeline.anonymize import anonymize_exports
    from flows.pipeline.parameters import RunParameters

    @flow
    def warm_up() -> None:  # starts Prefect's temporary server before the clock does
        return None

    warm_up()
    began = time.perf_counter()
    chosen = RunParameters(
        landing=str(landing),
        warehouse=str(out / "warehouse"),
        restricted=str(out / "restricted"),
        every=True,
        max_unit_rows=max_unit_rows,
    )
    state = anonymize_exports(chosen, return_state=True)
    seconds = time.perf_counter() - began
    summary = state.result(raise_on_failure=False)
    result = {"seconds": seconds, "with_start": time.perf_counter() - started, "completed": state.is_completed()}
    if not state.is_completed():
        return result | {"message": state.message}
    counts = {name: info.counts.model_dump(exclude_none=True) | {"units": info.units} for name, info in summary.datasets.items()}
    return result | {"rows": sum(c["read"] for c in counts.values()), "counts": counts}


def child(kind: str, landing: Path, out: Path, max_unit_rows: int) -> None:
    result = baseline(landing, out / "baseline") if kind == "baseline" else pipeline(landing, out, max_unit_rows)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def same_rows(one: Path, other: Path) -> dict[str, int]:
    """Rows in one warehouse and not the other (as bags, per dataset and period, tokens left out)."""
    import duckdb
    import pyarrow.parquet as pq

    differ = {}
    connection = duckdb.connect()
    connection.execute("SET enable_progress_bar = false")
    for path in sorted(one.rglob("part-0.parquet")):
        relative = path.relative_to(one)
        schema = pq.read_schema(path)
        kept = [
            f'"{f.name}"'
            for f in schema
            if (f.metadata or {}).get(b"tuomin.technique", b"").decode() not in ("pseudonymization",) and f.name != "customer_id"
        ]
        columns = ", ".join(kept)
        other_path = other / relative
        if not other_path.exists():
            differ[str(relative)] = pq.ParquetFile(path).metadata.num_rows
            continue
        query = (
            f"SELECT (SELECT count(*) FROM (SELECT {columns} FROM read_parquet('{path}') EXCEPT ALL "
            f"SELECT {columns} FROM read_parquet('{other_path}'))) + (SELECT count(*) FROM (SELECT {columns} FROM "
            f"read_parquet('{other_path}') EXCEPT ALL SELECT {columns} FROM read_parquet('{path}')))"
        )
        found = connection.execute(query).fetchone()
        if found and found[0]:
            differ[str(relative)] = found[0]
    for path in sorted(other.rglob("part-0.parquet")):
        if not (one / path.relative_to(other)).exists():
            differ[str(path.relative_to(other))] = pq.ParquetFile(path).metadata.num_rows
    return differ


def row(name: str, run: dict, floor: dict) -> str:
    if not run["completed"]:
        took = f"{run['seconds']:.1f} s ({run['with_start']:.1f} s with start)"
        how = "refused" if "in one unit" in run.get("message", "") else "FAILED"
        return f"| {name} | {how} after {took}, peak {run['peak_rss_mib']:,.0f} MiB | | | |"
    return (
        f"| {name} | {run['rows']:,} rows, {run['seconds']:.1f} s ({run['with_start']:.1f} s with start), peak "
        f"{run['peak_rss_mib']:,.0f} MiB | {floor['seconds']:.1f} s | {run['seconds'] / floor['seconds']:.1f}x | "
        f"{run['with_start'] / floor['seconds']:.1f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=["history", "day", "refuse"], default="day")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--rows", type=int, default=1_000_000, help="POS lines per day")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--max-unit-rows", type=int, default=2_000_000)
    parser.add_argument("--root", type=Path, default=Path("/tmp/tuomin-bench-scale"))
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "LANDING", "OUT"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]), args.max_unit_rows)
        return
    os.environ.setdefault("TUOMIN_PSEUDONYM_KEY", "bench-only pseudonym key, 32+ bytes long!!")
    os.environ.setdefault("TUOMIN_BACKUP_KEY", "bench-only backup key, at least 32 bytes long")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    days = args.days if args.case == "history" else 1
    landing, made = generate(args.root, days, args.rows, args.members, args.seed)
    print(
        f"{args.case}: {days} day(s) x {args.rows:,} POS lines, {args.members:,} members; generated in "
        + (f"{made:.0f} s" if made else "an earlier run"),
        flush=True,
    )
    landings = {"daily files": landing} | ({"one dump": dump_of(landing)} if args.case == "history" else {})
    results = {}
    print("\n| input | pipeline | floor | ratio | with start |\n|---|---|---|---|---|")
    for name, where in landings.items():
        out = args.root / f"run-{where.name}"
        shutil.rmtree(out, ignore_errors=True)
        floor = measure("baseline", where, out)
        run = measure("pipeline", where, out, "--max-unit-rows", str(args.max_unit_rows))
        results[name] = {"pipeline": run, "baseline": floor, "out": str(out)}
        print(row(name, run, floor), flush=True)
        if not run["completed"]:
            print(f"  {run['message']}")
        else:
            print(
                "  "
                + "; ".join(f"{n}: {c['units']} units, {c['published']:,} of {c['read']:,}" for n, c in run["counts"].items())
            )
    if len(results) == 2 and all(r["pipeline"]["completed"] for r in results.values()):
        daily, dump = (Path(r["out"]) / "warehouse" for r in results.values())
        differ = same_rows(daily, dump)
        print(
            f"\nthe dump against the daily files: {len(differ)} partition(s) differ (tokens aside)"
            + (f": {differ}" if differ else "")
        )
        results["differ"] = differ
    (args.root / f"results-{args.case}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
