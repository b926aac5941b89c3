"""What the release is still good for (issue 19): the analysts' usual questions answered from the
anonymized rows, against the same questions on the raw exports, for the release tuomin publishes
and for a naive baseline that passes the same model (every quasi-identifier at one fixed coarse
level a reviewer might pick, NAIVE below; the engine still suppresses what the model requires).

    lines     POS lines by product category x week x store channel (revenue is published only as
              bands, so lines stand for it)
    buyers    POS buyer-days by nationality continent x month (customer tokens are keyed to their
              partition: a buyer on two days is two buyer-days in the raw answer too)
    cases     after-sales cases by case type x week
and two finer ones, which show what the detail kept is for:
    stores    POS lines by store x day
    countries POS buyer-days by nationality (country) x month

A published value at a level finer than the question's is mapped up its hierarchy (per file, at
the level the file's field metadata records); a value coarser than the question's cannot be
attributed. Per question: the share of raw rows the release attributes to a cell, and over the
raw answer's cells with at least 20 rows the median relative error and the share within 10%.
Information loss per dataset is the engine's (file metadata), averaged over dates; it is relative
to the range the policy allows, so the naive baseline's (a range of one level) is not comparable.

    make bench-utility     # or: .venv/bin/python benchmarks/utility.py [--landing DIR] [--rows N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
TUOMIN = str(Path(sys.executable).parent / "tuomin")
HIERARCHIES = REPO / "policies" / "hierarchies"
# The naive baseline: one level per quasi-identifier, coarse enough to pass without search.
NAIVE = {
    "pos": {
        "store_code": 1,
        "sku": 2,
        "nationality": 2,
        "txn_time": 2,
        "doc_type": 1,
        "destination": 4,
        "departure_date": 4,
        "amount": 4,
        "payment_method": 2,
    },
    "after_sales": {"case_type": 0},
}
MIN_ROWS = 20  # cells with fewer raw rows are not scored (their relative error says little)


def hierarchy(name: str) -> pd.DataFrame:
    with (HIERARCHIES / name).open(encoding="utf-8") as f:
        return pd.DataFrame(list(csv.reader(f)))


def up(values: pd.Series, level: int, table: pd.DataFrame, target: int) -> pd.Series:
    """Values published at `level`, at `target` (NaN where they are coarser than it or unknown)."""
    if level > target:
        return pd.Series(np.nan, index=values.index, dtype=object)
    return values.map(dict(zip(table[level], table[target])))


def published(warehouse: Path, dataset: str) -> pd.DataFrame:
    """Every partition of a dataset, with `period` and each column's level (from its file)."""
    frames = []
    for path in sorted(warehouse.glob(f"dataset={dataset}/period=*/*.parquet")):
        table = pq.read_table(path)
        frame = table.to_pandas()
        frame["period"] = pd.Timestamp(path.parent.name.split("=", 1)[1])
        for field in table.schema:
            level = (field.metadata or {}).get(b"tuomin.level")
            frame[f"level:{field.name}"] = int(level) if level is not None else 0
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def attributed(frame: pd.DataFrame, column: str, table: pd.DataFrame, target: int) -> pd.Series:
    out = pd.Series(np.nan, index=frame.index, dtype=object)
    for level, rows in frame.groupby(f"level:{column}").groups.items():
        out.loc[rows] = up(frame.loc[rows, column], int(level), table, target)
    return out


def anonymized_answers(warehouse: Path) -> dict[str, pd.Series]:
    product, store, nationality = hierarchy("product.csv"), hierarchy("store.csv"), hierarchy("nationality.csv")
    case_type = hierarchy("case_type.csv")
    pos, cases = published(warehouse, "pos"), published(warehouse, "after_sales")
    week = pos["period"].dt.to_period("W").dt.start_time
    lines = pd.DataFrame(
        {"category": attributed(pos, "product", product, 2), "week": week, "channel": attributed(pos, "store_code", store, 1)}
    )
    buyers = pd.DataFrame(
        {
            "continent": attributed(pos, "nationality", nationality, 2),
            "month": pos["period"].dt.to_period("M").dt.start_time,
            "buyer": pos["customer_id"].fillna(pd.Series(pos.index.astype(str), index=pos.index)),
        }
    )
    stores = pd.DataFrame({"store": attributed(pos, "store_code", store, 0), "day": pos["period"]})
    countries = buyers.assign(country=attributed(pos, "nationality", nationality, 0)).drop(columns="continent")
    typed = pd.DataFrame(
        {"case_type": attributed(cases, "case_type", case_type, 0), "week": cases["period"].dt.to_period("W").dt.start_time}
    )
    return {
        "lines": lines.dropna().groupby(["category", "week", "channel"]).size(),
        "buyers": buyers.dropna().groupby(["continent", "month"])["buyer"].nunique(),
        "cases": typed.dropna().groupby(["case_type", "week"]).size(),
        "stores": stores.dropna().groupby(["store", "day"]).size(),
        "countries": countries.dropna().groupby(["country", "month"])["buyer"].nunique(),
    }


def raw_answers(landing: Path) -> dict[str, pd.Series]:
    con = duckdb.connect()
    for name in ("store", "nationality"):
        con.register(name, hierarchy(f"{name}.csv").rename(columns=str).rename(columns=lambda c: f"l{c}"))
    date = "CAST(regexp_extract(filename, '(\\d{4}-\\d{2}-\\d{2})', 1) AS DATE)"
    pos = f"read_csv('{landing}/pos/*/*.csv', all_varchar=true, filename=true, header=true)"
    cases = f"read_csv('{landing}/after_sales/*/*.csv', all_varchar=true, filename=true, header=true)"

    def series(sql: str, keys: list[str]) -> pd.Series:
        frame = con.sql(sql).df()
        dates = [key for key in keys if key in ("day", "week", "month")]
        frame[dates] = frame[dates].apply(pd.to_datetime)
        return frame.set_index(keys)["n"]

    return {
        "lines": series(
            f"""SELECT category, date_trunc('week', {date}) AS week, s.l1 AS channel, count(*) AS n
                            FROM {pos} p JOIN store s ON p.store_code = s.l0 GROUP BY ALL""",
            ["category", "week", "channel"],
        ),
        "buyers": series(
            f"""SELECT c.l2 AS continent, date_trunc('month', {date}) AS month,
                                    count(DISTINCT (upper(replace(doc_no, ' ', '')), {date})) AS n
                             FROM {pos} p JOIN nationality c ON p.nationality = c.l0 GROUP BY ALL""",
            ["continent", "month"],
        ),
        "cases": series(
            f"SELECT case_type, date_trunc('week', {date}) AS week, count(*) AS n FROM {cases} GROUP BY ALL",
            ["case_type", "week"],
        ),
        "stores": series(f"SELECT store_code AS store, {date} AS day, count(*) AS n FROM {pos} GROUP BY ALL", ["store", "day"]),
        "countries": series(
            f"""SELECT nationality AS country, date_trunc('month', {date}) AS month,
                                       count(DISTINCT (upper(replace(doc_no, ' ', '')), {date})) AS n FROM {pos} GROUP BY ALL""",
            ["country", "month"],
        ),
    }


def score(raw: pd.Series, anonymized: pd.Series) -> dict:
    joined = pd.concat([raw.rename("raw"), anonymized.rename("anon")], axis=1).fillna(0)
    scored = joined[joined["raw"] >= MIN_ROWS]
    error = (scored["anon"] - scored["raw"]).abs() / scored["raw"]
    return {
        "attributed_share": round(float(min(anonymized.sum(), raw.sum()) / raw.sum()), 4) if raw.sum() else None,
        "cells": int(len(scored)),
        "median_relative_error": round(float(error.median()), 4) if len(error) else None,
        "within_10pct": round(float((error <= 0.10).mean()), 4) if len(error) else None,
    }


def loss(warehouse: Path) -> dict[str, float]:
    found: dict[str, list[float]] = {}
    for path in warehouse.glob("dataset=*/period=*/*.parquet"):
        meta = json.loads(pq.ParquetFile(path).metadata.metadata[b"tuomin"])
        found.setdefault(meta["dataset"], []).append(meta["metrics"].get("loss") or 0.0)
    return {name: round(float(np.mean(v)), 4) for name, v in sorted(found.items())}


def naive_policies(target: Path) -> Path:
    """The policies with every quasi-identifier fixed at NAIVE's level (or its coarsest allowed)."""
    target.mkdir(parents=True)
    (target / "hierarchies").symlink_to(HIERARCHIES)
    for path in sorted((REPO / "policies").glob("*.yaml")):
        policy = yaml.safe_load(path.read_text(encoding="utf-8"))
        for name, column in policy["columns"].items():
            levels = (column.get("params") or {}).get("levels")
            if column.get("transform") == "generalize" and levels:
                fixed = NAIVE.get(policy["source"], {}).get(name, levels[1])
                column["params"]["levels"] = [max(levels[0], min(fixed, levels[1]))] * 2
        (target / path.name).write_text(yaml.safe_dump(policy, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target


def loss_only_policies(target: Path) -> Path:
    """The policies without their declared questions: the engine's generic loss alone (the
    objective before issue 32), the baseline the questions' objective is measured against."""
    target.mkdir(parents=True)
    (target / "hierarchies").symlink_to(HIERARCHIES)
    for path in sorted((REPO / "policies").glob("*.yaml")):
        policy = yaml.safe_load(path.read_text(encoding="utf-8"))
        policy.pop("questions", None)
        (target / path.name).write_text(yaml.safe_dump(policy, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target


RELEASES = {"tuomin": None, "loss only": loss_only_policies, "naive": naive_policies}


def run(landing: Path, warehouse: Path, policies: Path | None = None) -> None:
    command = [
        TUOMIN,
        "run",
        "--landing",
        str(landing),
        "--warehouse",
        str(warehouse),
        "--restricted",
        str(warehouse.parent / "r"),
        "--all",
    ] + (["--policies", str(policies)] if policies else [])
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"})
    if done.returncode != 0:
        print(f"{warehouse.name}: tuomin run failed: {done.stdout[-600:]}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--landing", type=Path, help="an existing landing (default: generate one)")
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--rows", type=int, default=50_000, help="POS lines per day when generating")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "utility")
    parser.add_argument("--work", type=Path, help="keep the landing and warehouses here (reused when present)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        landing = args.landing
        if landing is None and (work / "landing").is_dir():
            landing = work / "landing"
        elif landing is None:
            landing = work / "landing"
            subprocess.run(
                [
                    TUOMIN,
                    "generate",
                    "--out",
                    str(landing),
                    "--days",
                    str(args.days),
                    "--rows",
                    str(args.rows),
                    "--members",
                    str(args.members),
                ],
                check=True,
                capture_output=True,
            )
        raw = raw_answers(landing)
        results = {
            "landing": {"days": args.days, "rows": args.rows, "members": args.members}
            if args.landing is None
            else str(args.landing)
        }
        for name, policies in RELEASES.items():
            folder = work / name.replace(" ", "-")
            warehouse = folder / "warehouse"
            if not warehouse.is_dir():
                run(landing, warehouse, policies(folder / "policies") if policies else None)
            if not any(warehouse.glob("dataset=*/period=*/*.parquet")):
                results[name] = None  # the release failed: nothing published, nothing answered
                continue
            answers = anonymized_answers(warehouse)
            results[name] = {"loss": loss(warehouse), **{q: score(raw[q], answers[q]) for q in raw}}
    args.out.mkdir(exist_ok=True)
    label = f"{args.days}x{args.rows}" if args.landing is None else args.landing.name
    (args.out / f"{label}.json").write_text(json.dumps(results, indent=1) + "\n")
    print("| question: attributed / median error / within 10% | " + " | ".join(RELEASES) + " |\n|---|---|---|---|")
    for q in raw:
        print(
            f"| {q} | "
            + " | ".join(
                "{attributed_share:.1%} / {median_relative_error:.1%} / {within_10pct:.0%}".format(**results[n][q])
                if results[n]
                else "nothing published"
                for n in RELEASES
            )
            + " |"
        )
    print(
        "| information loss per dataset | "
        + " | ".join(", ".join(f"{d} {v:.3f}" for d, v in results[n]["loss"].items()) if results[n] else "-" for n in RELEASES)
        + " |"
    )


if __name__ == "__main__":
    main()
