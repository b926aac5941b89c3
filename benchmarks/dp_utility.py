"""What the DP tables are good for (issue 22): each table of policies/dp/tables.yaml released from
a landing, against the exact answer on the same rows, and the same question answered from the
anonymized rows of a warehouse published from that landing (where its levels allow it at all).

Per table, over the cells with at least 20 people (the exact answer's): the median relative error
and the share within 10%, each the median over `--repeats` releases; the 95% error bar and the
cell size at which it is 10%; the coverage of the published 95% bars (the share of every public
cell, over every repeat, whose bar holds the exact, unbounded value); and what bounding costs
before any noise: the share of a table's person-cells dropped by the cells-per-person limit, and
the share of a sum clipped away.

    .venv/bin/python benchmarks/dp_utility.py --landing DIR [--warehouse W] [--repeats 3] [--out F.json]

The anonymized answer: buyers are distinct customer tokens of a partition (a day's buyers), lines
and cases are rows, revenue is the sum of band midpoints; a grain attribute published coarser than the
question needs (hour when time is at days, a country when nationality is at continents, an amount
band suppressed whole) makes the question unanswerable from the rows, and says why.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parent))  # after the repo: benchmarks/transforms.py is not transforms/

from utility import attributed, hierarchy, published  # noqa: E402

from flows.pipeline import dp  # noqa: E402
from flows.runtime.paths import POLICIES  # noqa: E402
from flows.storage import raw  # noqa: E402
from flows.storage.landing import Landing, export_dates  # noqa: E402
from transforms import dp_tables, linkage  # noqa: E402
from transforms.dp_policy import DPPolicy  # noqa: E402

MIN_PEOPLE = 20


def exact(table, rows: pl.DataFrame, calendar) -> pd.DataFrame:
    """Per cell of a table: the exact value and its people (the raw rows, nothing bounded)."""
    found = dp_tables.placed(table, rows, calendar)
    value = {"sum": pl.col("value").sum(), "rows": pl.len(), "distinct_people": pl.col("person").n_unique()}
    return (
        found.group_by("cell")
        .agg(value[table.measure.kind].cast(pl.Float64).alias("exact"), pl.col("person").n_unique().alias("people"))
        .to_pandas()
        .set_index("cell")
    )


def bounding(frame: pl.DataFrame, name: str, table, rows: pl.DataFrame, calendar) -> dict:
    """What bounding drops before any noise: the share of a table's contributions beyond a
    person's limit and, for a sum, the share of revenue clipped away."""
    mine = frame.filter(pl.col("table") == name)
    per_person = mine.group_by("person").len()["len"].cast(pl.Int64).to_numpy()
    allowed = table.cells_per_person * table.rows_per_cell
    out = {"rows_beyond_limit": round(float(np.maximum(per_person - allowed, 0).sum() / max(per_person.sum(), 1)), 4)}
    if table.measure.kind == "sum":
        sums = dp_tables.placed(table, rows, calendar).group_by("person", "cell").agg(pl.col("value").sum())
        factor = dict(zip(dp_tables.keys(table, calendar)["cell"], dp_tables.factors(table, calendar)))
        kept = mine.with_columns(pl.col("cell").replace_strict(factor, return_dtype=pl.Float64).alias("f"))
        out["clipped_share"] = round(float(1 - (kept["value"] * kept["f"]).sum() / sums["value"].sum()), 4)
    return out


def score(noisy: pd.Series, truth: pd.DataFrame) -> tuple[float, float]:
    scored = truth[truth["people"] >= MIN_PEOPLE]
    error = (noisy.reindex(scored.index).fillna(0) - scored["exact"]).abs() / scored["exact"]
    return float(error.median()), float((error <= 0.1).mean())


def width(cells: pd.DataFrame, noisy: pd.Series, truth: pd.DataFrame) -> float:
    """The median width of the 95% interval (high_95 - low_95) relative to the exact value, over the scored cells."""
    scored = truth[truth["people"] >= MIN_PEOPLE]
    span = pd.Series((cells["high_95"] - cells["low_95"]).to_numpy(), index=noisy.index).reindex(scored.index)
    return float((span / scored["exact"]).median())


def covered(cells: pd.DataFrame, noisy: pd.Series, truth: pd.DataFrame) -> tuple[int, int, int]:
    """(cells whose published 95% interval holds the exact value, whose noise's margin alone does,
    public cells): every cell, an empty one's truth 0."""
    exact = truth["exact"].reindex(noisy.index).fillna(0).to_numpy()
    interval = (cells["low_95"].to_numpy() <= exact) & (exact <= cells["high_95"].to_numpy())
    margin = np.abs(noisy.to_numpy() - exact) <= cells["margin_95"].to_numpy()
    return int(interval.sum()), int(margin.sum()), len(exact)


def _cells(frame: pd.DataFrame, grain: list[str]) -> pd.Series:
    return frame[grain].astype(str).agg(dp_tables.SEPARATOR.join, axis=1)


def anonymized(warehouse: Path, name: str, table, truth: pd.DataFrame) -> dict:
    """The table's question answered from the published rows, or why it cannot be."""
    if table.source == "pos":
        rows = published(warehouse, "pos")
        levels = {c[len("level:") :]: int(rows[c].max()) for c in rows.columns if c.startswith("level:")}
        frame = _periods(rows["period"])
        needs = {
            "store": ("store_code", "store.csv", 0),
            "channel": ("store_code", "store.csv", 1),
            "nationality": ("nationality", "nationality.csv", 0),
            "category": ("product", "product.csv", 2),
        }
        for g in table.grain:
            if g == "hour":
                if levels.get("txn_time", 0) > 1:
                    return {"answerable": False, "why": f"txn_time published at level {levels['txn_time']} (day), not hours"}
                frame["hour"] = pd.to_datetime(rows["txn_time"]).dt.hour.astype(str)
            elif g in needs:
                column, file, level = needs[g]
                frame[g] = attributed(rows, column, hierarchy(file), level)
                if frame[g].isna().all():
                    return {"answerable": False, "why": f"{column} published at level {levels.get(column)}, coarser than {g}"}
        if table.measure.kind == "sum":
            bands = rows["amount_band"].astype(str)
            if (bands == "*").all() or levels.get("amount_band", 0) >= 5:
                return {"answerable": False, "why": "amount bands suppressed whole (level 5)"}
            frame["v"] = bands.map(_midpoint)
            if frame["v"].isna().mean() > 0.5:
                return {
                    "answerable": False,
                    "why": f"amount published at level {levels['amount_band']} ({', '.join(sorted(set(bands)))})",
                }
        elif table.measure.kind == "rows":
            frame["v"] = 1
        else:
            frame["v"] = rows["customer_id"].fillna(pd.Series(rows.index.astype(str), index=rows.index))
    else:
        rows = published(warehouse, "after_sales")
        frame = _periods(rows["period"]).assign(
            case_type=attributed(rows, "case_type", hierarchy("case_type.csv"), 0).to_numpy(), v=1
        )
    frame = frame.dropna()
    cells = _cells(frame, table.grain)
    grouped = frame.groupby(cells)["v"]
    answer = grouped.sum() if table.measure.kind in ("sum", "rows") else grouped.nunique()
    median, within = score(answer.astype(float), truth)
    return {"answerable": True, "median_relative_error": round(median, 4), "within_10pct": round(within, 4)}


def _periods(dates: pd.Series) -> pd.DataFrame:
    """A published row's day, ISO week and month, as the DP tables key them."""
    return pd.DataFrame(
        {"day": dates.dt.date.astype(str), "week": dates.dt.strftime("%G-W%V"), "month": dates.dt.strftime("%Y-%m")}
    )


def _midpoint(label: str) -> float:
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", label)]
    if label.startswith(">="):
        return numbers[0] * 1.5 if numbers[0] > 0 else float("nan")  # '>=0' says nothing of the amount
    if label.startswith("<"):
        return numbers[0] / 2
    return sum(numbers[:2]) / 2 if len(numbers) >= 2 else float("nan")


CELLS = (1, 2, 3, 4, 6)
CLIPS = (3000, 5000, 10000, 20000, 50000)


def sweep(policy, rows: dict, calendar, truths: dict, repeats: int, cells_tried=CELLS) -> dict:
    """Each table alone at its share of epsilon, with other bounds: cells per person (and, for a
    sum, one clip for every cell or the policy's clips). What the policy's choices rest on."""
    found: dict[str, list[dict]] = {}
    for name, table in policy.tables.items():
        clips = (*CLIPS, "policy") if table.measure.kind == "sum" else (None,)
        for cells in cells_tried:
            for clip in clips:
                changed = table.model_dump()
                changed.update(cells_per_person=cells, share=1.0)
                if isinstance(clip, int):
                    changed["measure"].update(clip=[0, clip], clip_by=None)
                alone = DPPolicy.model_validate(
                    {"release": {"epsilon": policy.epsilon(name)}, "review": policy.review, "tables": {name: changed}}
                )
                mine = dp_tables.contributions(name, alone.tables[name], rows[table.source], calendar)
                runs = []
                for _ in range(repeats):
                    (r,) = dp_tables.release(alone, mine, calendar)
                    cells_ = r.cells.to_pandas()
                    runs.append(
                        score(
                            pd.Series(cells_["value"].to_numpy(), index=_cells(cells_, r.table.grain)).astype(float), truths[name]
                        )
                    )
                found.setdefault(name, []).append(
                    {
                        "cells_per_person": cells,
                        **({"clip": clip} if clip else {}),
                        "margin_95": round(r.margin, 1),
                        "median_relative_error": round(float(np.median([x[0] for x in runs])), 4),
                        "within_10pct": round(float(np.median([x[1] for x in runs])), 4),
                        **bounding(mine, name, alone.tables[name], rows[table.source], calendar),
                    }
                )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--warehouse", type=Path, help="a warehouse published from the landing (anonymized answers)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sweep", action="store_true", help="also each table alone with other bounds")
    parser.add_argument("--cells", type=int, nargs="+", default=CELLS, help="cells per person the sweep tries")
    args = parser.parse_args()
    policy, policies = dp.load(POLICIES)
    landing = Landing(str(args.landing))
    dates = export_dates(landing, policies)
    timings = {}
    began = time.perf_counter()
    files = raw.listed(landing, policies, dates)
    frames = raw.read(landing, policies, policy.tables, files)
    timings["read"] = time.perf_counter() - began
    began = time.perf_counter()
    rows = linkage.people(frames)
    timings["link"] = time.perf_counter() - began
    calendar = dp_tables.Calendar(dates, POLICIES / "hierarchies")
    began = time.perf_counter()
    frame = pl.concat([dp_tables.contributions(name, t, rows[t.source], calendar) for name, t in policy.tables.items()])
    timings["contributions"] = time.perf_counter() - began
    truths = {name: exact(t, rows[t.source], calendar) for name, t in policy.tables.items()}
    scores: dict[str, list[tuple[float, float]]] = {name: [] for name in policy.tables}
    coverage: dict[str, list[tuple[int, int, int]]] = {name: [] for name in policy.tables}
    widths: dict[str, list[float]] = {name: [] for name in policy.tables}
    releases = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        released = dp_tables.release(policy, frame, calendar)
        releases.append(time.perf_counter() - began)
        for r in released:
            cells = r.cells.to_pandas()
            noisy = pd.Series(cells["value"].to_numpy(), index=_cells(cells, r.table.grain))
            scores[r.name].append(score(noisy.astype(float), truths[r.name]))
            coverage[r.name].append(covered(cells, noisy.astype(float), truths[r.name]))
            widths[r.name].append(width(cells, noisy.astype(float), truths[r.name]))
    timings["release"] = float(np.median(releases))
    report = {
        "landing": {
            "path": str(args.landing),
            "dates": len(dates),
            "pos_lines": int(frames["pos"].height),
            "pos_lines_per_customer": round(rows["pos"].height / max(rows["pos"]["person"].n_unique(), 1), 2),
        },
        "epsilon": policy.release.epsilon,
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "tables": {},
    }
    for r in released:
        truth = truths[r.name]
        medians = [s[0] for s in scores[r.name]]
        withins = [s[1] for s in scores[r.name]]
        report["tables"][r.name] = {
            "epsilon": r.epsilon,
            "scale": round(r.scale, 3),
            "margin_95": round(r.margin, 3),
            "ten_percent_at": round(r.margin / 0.1, 1),
            "cells": int(r.cells.num_rows),
            "scored_cells": int((truth["people"] >= MIN_PEOPLE).sum()),
            "median_people_in_scored": float(truth.loc[truth["people"] >= MIN_PEOPLE, "people"].median()),
            "median_relative_error": round(float(np.median(medians)), 4),
            "within_10pct": round(float(np.median(withins)), 4),
            # the share of all public cells (empty ones too) whose 95% interval holds the exact value, over every
            # repeat; and the noise's margin alone (value +- margin_95: what the tables published before issue 35)
            "coverage_95": round(sum(c[0] for c in coverage[r.name]) / max(sum(c[2] for c in coverage[r.name]), 1), 4),
            "coverage_95_noise_only": round(sum(c[1] for c in coverage[r.name]) / max(sum(c[2] for c in coverage[r.name]), 1), 4),
            "interval_width": round(float(np.median(widths[r.name])), 4),  # (high_95 - low_95) / exact, scored cells
            **bounding(frame, r.name, r.table, rows[r.table.source], calendar),
            **({"anonymized": anonymized(args.warehouse, r.name, r.table, truth)} if args.warehouse else {}),
        }
    if args.sweep:
        report["sweep"] = sweep(policy, rows, calendar, truths, max(1, args.repeats - 1), args.cells)
    text = json.dumps(report, ensure_ascii=False, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", "utf-8")


if __name__ == "__main__":
    main()
