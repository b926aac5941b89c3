"""Erasure after publication (issue 10): `tuomin subjects erase` on a warehouse published from 1M
and 3M POS lines in one export date, next to the only other way to take a person out of a
published partition, measured in the same run on the same data: rerunning the date from its raw
files with the person on the erasure list (possible only while the raw files are held).

Both start from the same published warehouse (a copy each) and name the same person: a member
with purchases, so that every dataset's partition holds them. Each measurement runs in its own
process; peak RSS is that process's (Prefect's temporary server, started before the clock, is a
separate process and not counted). The inputs are benchmarks/scale.py's, generated once.

    make bench-erasure      # or: .venv/bin/python benchmarks/erasure.py --sizes 1000000 3000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.scale import generate  # noqa: E402  (after the path is set)


def child(kind: str, landing: Path, warehouse: Path, doc_no: str) -> dict:
    if kind == "pick":
        return {"doc_no": someone(landing)}
    if kind == "floor":
        import pyarrow.parquet as pq

        began = time.perf_counter()
        for index, path in enumerate(sorted(warehouse.glob("dataset=*/export_date=*/part-0.parquet"))):
            source = pq.ParquetFile(path)
            with pq.ParquetWriter(landing / f"{index}.parquet", source.schema_arrow, compression="zstd") as writer:
                for batch in source.iter_batches(batch_size=250_000):
                    writer.write_batch(batch)
        return {"seconds": time.perf_counter() - began}
    if kind == "erase":
        from flows.cli import app

        began = time.perf_counter()
        app(
            ["subjects", "erase", "--doc-no", doc_no, "--landing", str(landing), "--warehouse", str(warehouse)],
            standalone_mode=False,
        )
        return {"seconds": time.perf_counter() - began}
    from prefect import flow

    from flows.pipeline.anonymize import anonymize_exports
    from flows.pipeline.parameters import RunParameters

    @flow
    def warm_up() -> None:  # starts Prefect's temporary server before the clock does
        return None

    warm_up()
    began = time.perf_counter()
    chosen = RunParameters(
        landing=str(landing), warehouse=str(warehouse), restricted=str(warehouse.parent / "restricted"), every=True, backup=False
    )
    state = anonymize_exports(chosen, return_state=True)
    if not state.is_completed():
        raise SystemExit(f"the flow failed: {state.message}")
    return {"seconds": time.perf_counter() - began}


def measure(kind: str, landing: Path, warehouse: Path, doc_no: str = "") -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(landing), str(warehouse), doc_no],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if done.returncode:
        raise SystemExit(f"{kind} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def someone(landing: Path) -> str:
    """The first member (in the CRM export's order) who also bought something."""
    import pyarrow.csv as pcsv

    from flows.storage.landing import sniff_encoding

    def column(folder: str, name: str) -> list[str]:
        [path] = sorted((landing / folder).rglob("*.csv"))[:1]
        read = pcsv.ReadOptions(encoding={"gb18030": "gb18030"}.get(sniff_encoding(path), "utf8"))
        return pcsv.read_csv(path, read_options=read, convert_options=pcsv.ConvertOptions(include_columns=[name]))[
            name
        ].to_pylist()

    bought = set(column("pos", "doc_no"))
    return next(d for d in column("membership", "证件号码") if d in bought)


def with_request(landing: Path, out: Path, doc_no: str) -> Path:
    """The landing area with the person added to its erasure list (raw files hard-linked)."""
    subprocess.run(["cp", "-al", str(landing), str(out)], check=True)
    requests = out / "requests" / "erasure.csv"
    text = requests.read_text("utf-8")
    requests.unlink()  # a hard link: write a new file, not into the original
    requests.write_text(text + f"2026-11-30 00:00:00,{doc_no},,\n", "utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--root", type=Path, default=Path("/tmp/tuomin-bench-scale"))
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--child", nargs=4, metavar=("KIND", "LANDING", "WAREHOUSE", "DOC_NO"))
    args = parser.parse_args()
    if args.child:
        kind, landing, warehouse, doc_no = args.child
        result = child(kind, Path(landing), Path(warehouse), doc_no)
        print(json.dumps(result | {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    os.environ.setdefault("TUOMIN_PSEUDONYM_KEY", "bench-only pseudonym key, 32+ bytes long!!")
    rows = []
    for lines in args.sizes:
        landing, _ = generate(args.root, lines, args.seed)
        work = args.root / f"erasure-{lines}"
        shutil.rmtree(work, ignore_errors=True)
        measure("publish", landing, work / "published" / "warehouse")
        doc_no = measure("pick", landing, work)["doc_no"]  # in a child: what the parent reads, its children inherit as peak RSS
        purged = work / "purged"  # the raw exports deleted: only the requests remain
        shutil.copytree(landing / "requests", purged / "requests")
        erase_wh, rerun_wh = work / "erase" / "warehouse", work / "rerun" / "warehouse"
        shutil.copytree(work / "published" / "warehouse", erase_wh)
        shutil.copytree(work / "published" / "warehouse", rerun_wh)
        (work / "floor").mkdir()
        floor = measure("floor", work / "floor", work / "published" / "warehouse")
        erased = measure("erase", purged, erase_wh, doc_no)
        rerun = measure("rerun", with_request(landing, work / "landing", doc_no), rerun_wh)
        republished = [
            e["data"]
            for e in map(json.loads, (erase_wh / "_ledger" / "ledger.jsonl").read_text().splitlines())
            if e["kind"] == "erasure_requested"
        ][-1]["republished"]
        rows.append({"lines": lines, "erase": erased, "rerun": rerun, "floor": floor, "republished": republished})
        shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(rows[-1]), flush=True)
    print(
        "\n| POS lines | erase (raw purged) | peak RSS | rerun of the date from raw | peak RSS | rewrite floor"
        " | rows erased / suppressed |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        changed = ", ".join(f"{p['dataset']} {p['erased']}/{p['suppressed']}" for p in r["republished"])
        print(
            f"| {r['lines']:,} | {r['erase']['seconds']:.1f} s | {r['erase']['peak_rss_mib']:,.0f} MiB | "
            f"{r['rerun']['seconds']:.1f} s | {r['rerun']['peak_rss_mib']:,.0f} MiB | {r['floor']['seconds']:.1f} s | {changed} |"
        )


if __name__ == "__main__":
    main()
