"""Differentially private tables (issue 22): the policy's tables computed from raw rows with
OpenDP's Polars context, the privacy unit one customer across every table and date.

    attributes  what a table may be broken down by, per source: how a raw row gives it and where
                its keys come from (a calendar or a policy hierarchy, never the data)
    contributions  one frame for the whole release: per table, a row per person and cell (a count
                of people; a sum: the person's total in the cell, clipped to the cell's bounds and
                in UNITS of them) or per raw row (a row count), only in the tables' public cells
    release     one OpenDP context over that frame (in random order), one query per table at its
                share of epsilon: each query bounds what a person contributes (rows per cell,
                rows per table) and adds noise calibrated to that bound; the context refuses to
                spend more than the release's epsilon
    lost        per customer and table, what bounding takes from them (capped), released as one
                noisy total with BIAS_SHARE of the table's epsilon: the share of the table that
                bounding removed, which widens each cell's interval upwards
    cells       the released values as published: every public cell, typed, a sum back in CNY;
                post-processed (no privacy cost): a measure that cannot be negative (a count, a
                sum clipped at 0 or above) raised to 0 where the noise took it below, which never
                moves a value further from the truth; a cell whose error bar is at least its value
                flagged `uncertain`

Pure functions of their inputs (and of OpenDP's noise); reading the exports and writing the
tables is flows/pipeline/dp.py's.
"""

from __future__ import annotations

import csv
import datetime as dt
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import opendp.prelude as dp
import polars as pl
import pyarrow as pa
from opendp.accuracy import summarize_polars_measurement

from transforms.dp_policy import HIGH, LOW, MARGIN, OFFERED, UNCERTAIN, VALUE, DPPolicy, Table

dp.enable_features("contrib")  # OpenDP's Polars context is "contrib": vetted proofs pending upstream

SEPARATOR = "\x1f"  # joins a cell's attribute values into the one key column OpenDP groups by
ALPHA = 0.05  # error bars: the noise stays within them with probability 1 - ALPHA
# Rows per cell a sum may have at most: OpenDP needs a public bound to rule out integer overflow.
# More people than live in China; it bounds nothing the noise depends on.
MAX_ROWS_PER_CELL = 2_000_000_000
# What bounding takes away (a customer's cells beyond cells_per_person, a sum beyond its clip) is
# estimated privately with this part of each table's epsilon and added to the top of each cell's
# interval, in proportion to the cell's value. A customer's loss counts up to the table's lost_cap
# times what they may give the table (beyond it, the estimate is short: the metadata says the cap).
BIAS_SHARE = 0.1
LOST = ":lost"  # the table column of a table's per-customer losses in the release's frame
# A sum is computed in ten-thousandths of each cell's clip (a person gives a cell at most UNITS) and
# published in CNY: the noise of a cell is then in proportion to its own clip, and a table of small
# and large categories is not all as noisy as its largest (post-processing: no privacy cost).
UNITS = 10_000


@dataclass(frozen=True)
class Calendar:
    """The release's days (its export dates) and the public tables the other keys come from."""

    days: list[dt.date]
    hierarchies: Path  # policies/hierarchies

    def column(self, file: str, level: int) -> list[str]:
        with (self.hierarchies / file).open(encoding="utf-8") as handle:
            return sorted({row[level] for row in csv.reader(handle) if row})

    def mapping(self, file: str, level: int) -> dict[str, str]:
        with (self.hierarchies / file).open(encoding="utf-8") as handle:
            return {row[0]: row[level] for row in csv.reader(handle) if row}


def _week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"  # as strftime("%G-W%V") writes it


def _month(day: dt.date) -> str:
    return f"{day:%Y-%m}"


@dataclass(frozen=True)
class Attribute:
    """One public attribute: the raw column it is read from, how (a Polars expression on it), its
    keys and their published type."""

    column: str
    derive: Callable[[pl.Expr, Calendar], pl.Expr]
    keys: Callable[[Calendar], list]
    type: pa.DataType = field(default_factory=pa.string)


def _moment(text: pl.Expr) -> pl.Expr:
    return text.str.strptime(pl.Datetime, "%Y-%m-%d %H:%M:%S", strict=False)


def _time(column: str) -> dict[str, Attribute]:
    """Day, ISO week and month of a timestamp column; their keys are the release's calendar."""
    return {
        "day": Attribute(column, lambda e, _: _moment(e).dt.date(), lambda c: sorted(set(c.days)), pa.date32()),
        "week": Attribute(column, lambda e, _: _moment(e).dt.strftime("%G-W%V"), lambda c: sorted({_week(d) for d in c.days})),
        "month": Attribute(column, lambda e, _: _moment(e).dt.strftime("%Y-%m"), lambda c: sorted({_month(d) for d in c.days})),
    }


def _listed(column: str, file: str, level: int = 0, mapped: bool = False, upper: bool = False) -> Attribute:
    """An attribute whose keys are one level of a hierarchy table: the raw value itself, or
    (`mapped`) the raw value, which is the table's first level, taken up to that level."""

    def derive(e: pl.Expr, c: Calendar) -> pl.Expr:
        e = e.str.to_uppercase() if upper else e
        return e.replace_strict(c.mapping(file, level), default=None) if mapped else e

    return Attribute(column, derive, lambda c: c.column(file, level))


ATTRIBUTES: dict[str, dict[str, Attribute]] = {
    "pos": {
        **_time("txn_time"),
        "hour": Attribute("txn_time", lambda e, _: _moment(e).dt.hour().cast(pl.Int8), lambda _: list(range(24)), pa.int8()),
        "store": _listed("store_code", "store.csv"),
        "channel": _listed("store_code", "store.csv", 1, mapped=True),
        "nationality": _listed("nationality", "nationality.csv", upper=True),
        "continent": _listed("nationality", "nationality.csv", 2, mapped=True, upper=True),
        "category": _listed("category", "product.csv", 2),  # the line's category, among the product master's
    },
    "after_sales": {**_time("created_at"), "case_type": _listed("case_type", "case_type.csv")},
}
assert {source: set(found) for source, found in ATTRIBUTES.items()} == {s: set(a) for s, a in OFFERED.items()}


def columns_read(table: Table) -> list[str]:
    """The raw columns of its source a table needs (besides the person's identifiers)."""
    wanted = {ATTRIBUTES[table.source][g].column for g in table.grain}
    return sorted(wanted | ({table.measure.column} if table.measure.column else set()))


def keys(table: Table, calendar: Calendar) -> pl.DataFrame:
    """Every public cell of the table (the cross product of its attributes' keys): typed columns
    named by the grain, and `cell`, the key OpenDP groups by. A cell no one is in is published too."""
    frame = pl.DataFrame({"_": [0]})
    for name in table.grain:
        attribute = ATTRIBUTES[table.source][name]
        values = pl.Series(name, attribute.keys(calendar))
        if attribute.type == pa.date32():
            values = values.cast(pl.Date)
        frame = frame.join(values.to_frame(), how="cross")
    return frame.drop("_").sort(table.grain).with_columns(_cell(table.grain))


def _cell(grain: Sequence[str]) -> pl.Expr:
    return pl.concat_str([pl.col(g).cast(pl.String) for g in grain], separator=SEPARATOR).alias("cell")


def contributions(name: str, table: Table, rows: pl.DataFrame, calendar: Calendar) -> pl.DataFrame:
    """What each person gives the table, in its public cells only: (`table`, `person`, `cell`,
    `value`), and what bounding can take from each (rows of table `<name>:lost`, see _lost).
    `rows` are the source's raw rows with `person`. A count of people has one row per person and
    cell; a sum too, its value the person's total there clipped to the cell's bounds and
    expressed in UNITS of them; a row count keeps every row. Rows outside the cells (another day,
    an unknown store) are left out here, so they cannot use up a person's cells."""
    found = placed(table, rows, calendar)
    if table.measure.kind == "sum":  # a person's total in the cell, kept up to its clip, and what the clip cut off
        low, high, ceiling = _clips(table, pl.col("cell"), calendar)
        found = (
            found.group_by("person", "cell")
            .agg(pl.col(VALUE).sum())
            .with_columns(((pl.col(VALUE) - high).clip(0) / ceiling * UNITS).alias("cut"))
            .with_columns((pl.col(VALUE).clip(low, high) / ceiling * UNITS).alias(VALUE))
        )
    elif table.measure.kind == "distinct_people":
        found = found.unique(["person", "cell"]).with_columns(pl.lit(1.0).alias(VALUE))
    kept = found.select(pl.lit(name).alias("table"), "person", "cell", pl.col(VALUE).round(0).cast(pl.Int64))
    return pl.concat([kept, _lost(name, table, found)])


def _lost(name: str, table: Table, found: pl.DataFrame) -> pl.DataFrame:
    """What bounding can take from each customer in the table, in the mechanism's units, capped at
    the table's lost_cap times what they may give it: (`table` = name + LOST, `person`, `cell` = "", `value`).
    An upper bound: their cells beyond cells_per_person (for a sum, the largest of them, as
    OpenDP drops a random choice of them), for a sum also what its clip cuts off, for a row count
    also the rows beyond rows_per_cell. `found`: the person-cells as contributions() makes them
    before they are rounded (one per person and cell; a sum's with its `cut`), or a row count's rows."""
    limit, per_cell = table.cells_per_person, table.rows_per_cell
    if table.measure.kind == "distinct_people":
        taken = found.group_by("person").agg((pl.len().cast(pl.Int64) - limit).clip(0).alias(VALUE))  # signed: len is u32
    elif table.measure.kind == "rows":
        counts = found.group_by("person", "cell").agg(pl.len().cast(pl.Int64).alias("n"))
        taken = counts.group_by("person").agg(
            (pl.col("n").sum() - pl.min_horizontal(pl.col("n").clip(upper_bound=per_cell).sum(), limit * per_cell)).alias(VALUE)
        )
    else:
        ranked = found.with_columns(pl.col(VALUE).rank("ordinal").over("person").alias("rank"))
        taken = ranked.group_by("person").agg(
            (pl.col("cut").sum() + pl.col(VALUE).filter(pl.col("rank") > limit).sum()).alias(VALUE)
        )
    return taken.select(
        pl.lit(name + LOST).alias("table"),
        "person",
        pl.lit("").alias("cell"),
        pl.col(VALUE).clip(0, lost_cap(table)).round(0).cast(pl.Int64),
    )


def lost_cap(table: Table) -> int:
    return table.lost_cap * table.cells_per_person * table.rows_per_cell * (UNITS if table.measure.kind == "sum" else 1)


def placed(table: Table, rows: pl.DataFrame, calendar: Calendar) -> pl.DataFrame:
    """The rows in the table's public cells: `person`, the grain's attributes, `cell`, and the
    measure's raw `value` (1 for a count)."""
    source = ATTRIBUTES[table.source]
    derived = rows.select(
        "person",
        *(source[g].derive(pl.col(source[g].column), calendar).alias(g) for g in table.grain),
        (
            pl.col(table.measure.column).cast(pl.Float64, strict=False).fill_null(0.0) if table.measure.column else pl.lit(1.0)
        ).alias(VALUE),
    ).with_columns(_cell(table.grain))
    return derived.join(keys(table, calendar).select("cell"), on="cell", how="semi")


def _clips(table: Table, cell: pl.Expr, calendar: Calendar) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Each cell's clip (low, high) and its larger magnitude, as expressions of its key."""
    bounds = table.measure.bounds()
    public = keys(table, calendar)
    by = next(iter(table.measure.clip_by or {}), None)
    values = public[by].cast(pl.String).to_list() if by else [None] * public.height
    low = dict(zip(public["cell"], (bounds.get(v, bounds[None])[0] for v in values)))
    high = dict(zip(public["cell"], (bounds.get(v, bounds[None])[1] for v in values)))
    ceiling = {c: max(abs(low[c]), abs(high[c])) for c in low}
    return (
        cell.replace_strict(low, return_dtype=pl.Float64),
        cell.replace_strict(high, return_dtype=pl.Float64),
        cell.replace_strict(ceiling, return_dtype=pl.Float64),
    )


def cell_bounds(table: Table, calendar: Calendar) -> np.ndarray:
    """How much one person can move each cell (in the published units), in the keys' order."""
    public = keys(table, calendar)
    if table.measure.kind == "sum":
        return public.select(_clips(table, pl.col("cell"), calendar)[2])["cell"].to_numpy()
    return np.full(public.height, float(table.rows_per_cell if table.measure.kind == "rows" else 1))


def shuffled(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows in a random order. A person with more rows than a table takes keeps their *first*
    rows (OpenDP's truncate_per_group), so in a random order a random choice of their cells, not
    the earliest hours of the release. Privacy does not depend on the order; utility does."""
    order = np.random.default_rng(secrets.randbits(128)).permutation(frame.height)
    return frame[order]


@dataclass(frozen=True)
class Released:
    """One table as released: its cells (typed grain columns, `value`, `margin_95`) and what
    bounds it (all public: the policy's numbers and OpenDP's calibration, no count of the data).
    Scale, margin and sensitivity are in the published units, for the noisiest cells; a sum
    clipped by category has them per category too (`by`)."""

    name: str
    table: Table
    cells: pa.Table
    epsilon: float
    scale: float  # of the noise added to a cell
    margin: float  # |noise| <= margin with probability 1 - ALPHA
    distribution: str
    sensitivity: float  # how much one person can move the table (L1), as OpenDP calibrated it: scale x epsilon
    by: dict[str, dict[str, float]] = field(default_factory=dict)  # clip_by value -> scale, margin_95
    lost: Lost | None = None  # the estimate of what bounding took away

    def metadata(self) -> dict[str, Any]:
        measure = self.table.measure
        noise = {"distribution": self.distribution, "scale": self.scale, "margin_95": self.margin, "alpha": ALPHA}
        return {
            "table": self.name,
            "source": self.table.source,
            "grain": self.table.grain,
            "measure": measure.model_dump(exclude_none=True),
            "epsilon": self.epsilon,
            "bounds": {
                "cells_per_person": self.table.cells_per_person,
                "rows_per_cell": self.table.rows_per_cell,
                **({"clip": list(measure.clip)} if measure.clip else {}),
                "sensitivity_l1": self.sensitivity,
            },
            "noise": noise
            | {"epsilon": cells_epsilon(self.epsilon)}
            | ({"by": {next(iter(measure.clip_by or {})): self.by}} if self.by else {}),
            **({"bounding": self._bounding()} if self.lost else {}),
        }

    def _bounding(self) -> dict[str, Any]:
        """What bounding took, as released (a DP output, in the mechanism's units) and how it widens the intervals."""
        assert self.lost is not None
        return {
            "epsilon": self.lost.epsilon,
            "lost_total": self.lost.total,
            "lost_margin_95": self.lost.margin,
            "cap_per_person": lost_cap(self.table),
            "units": "cells" if self.table.measure.kind != "sum" else f"1/{UNITS} of a cell's clip",
        }


def context(policy: DPPolicy, frame: pl.DataFrame) -> dp.Context:
    """One OpenDP context for the whole release over `frame` (contributions of all tables, one
    `person` id space): it accounts for every query and refuses one beyond the release's epsilon."""
    return dp.Context.compositor(
        data=shuffled(frame).lazy(),
        privacy_unit=dp.unit_of(contributions=1, identifier="person"),
        privacy_loss=dp.loss_of(epsilon=policy.release.epsilon),
        margins=[
            dp.polars.Margin(by=["cell"], max_length=MAX_ROWS_PER_CELL),
            dp.polars.Margin(by=[], max_length=MAX_ROWS_PER_CELL),  # for the losses' one total
        ],
    )


def measurement(context: dp.Context, policy: DPPolicy, name: str, calendar: Calendar) -> tuple[dp.Measurement, dict]:
    """The table's mechanism at its share of epsilon, calibrated by OpenDP, and its summary (noise
    distribution, scale, 95% accuracy). The mechanism bounds what a person gives the table before
    it adds noise: at most rows_per_cell rows in a cell, and cells_per_person x rows_per_cell rows
    in all, which bounds their cells (one row per person and cell for counts of people and sums).

    The bound in all is OpenDP's truncate_per_group without a key, not truncate_num_groups: in
    0.16.0 the latter keeps one group fewer than asked, the smallest keys rather than a sample,
    and fails to plan with keep="sample" (benchmarks/dp_scouting/opendp_truncation.py). For the
    Laplace noise of a count or a sum only the total (L1) bound counts, so the noise is the same."""
    table = policy.tables[name]
    query = (
        context.query(epsilon=cells_epsilon(policy.epsilon(name)))
        .filter(pl.col("table") == name)
        .truncate_per_group(table.rows_per_cell, by=["cell"], keep="first")
        .truncate_per_group(table.cells_per_person * table.rows_per_cell, by=[], keep="first")
        .group_by("cell")
        .agg(_aggregate(table))
        .with_keys(keys(table, calendar).select("cell"))
    )
    found = query.resolve()  # OpenDP searches for the scale: resolve once, not once per use
    return found, summarize_polars_measurement(found, ALPHA).row(0, named=True)


def cells_epsilon(epsilon: float) -> float:
    """The part of a table's epsilon its cells' noise gets: all but BIAS_SHARE."""
    return epsilon * (1 - BIAS_SHARE)


def lost_epsilon(policy: DPPolicy, name: str) -> float:
    """The estimate's part of the table's epsilon: BIAS_SHARE of it, a hair under (1e-9 of it), so
    that the parts' floating-point sum never exceeds the release's epsilon, which OpenDP refuses."""
    return policy.epsilon(name) * BIAS_SHARE * (1 - 1e-9)


def lost_measurement(context: dp.Context, policy: DPPolicy, name: str) -> tuple[dp.Measurement, dict]:
    """The noisy total of what bounding takes from the table's customers (each capped at
    lost_cap), at BIAS_SHARE of the table's epsilon: one row per customer, summed."""
    table = policy.tables[name]
    query = (
        context.query(epsilon=lost_epsilon(policy, name))
        .filter(pl.col("table") == name + LOST)
        .truncate_per_group(1, by=[], keep="first")
        .select(pl.col(VALUE).fill_null(0).dp.sum((0, lost_cap(table))).alias(VALUE))  # type: ignore[attr-defined]
    )
    found = query.resolve()
    return found, summarize_polars_measurement(found, ALPHA).row(0, named=True)


def release(policy: DPPolicy, frame: pl.DataFrame, calendar: Calendar) -> list[Released]:
    """Every table of the policy from `frame`, at its share of the release's epsilon, in the
    policy's order."""
    within = context(policy, frame)
    released = []
    for name, table in policy.tables.items():
        mechanism, summary = measurement(within, policy, name, calendar)
        noisy = within(mechanism).collect()
        estimate, about = lost_measurement(within, policy, name)
        taken = Lost(float(within(estimate).collect()[VALUE][0]), float(about["accuracy"]), lost_epsilon(policy, name))
        found = cells(noisy, table, calendar, float(summary["accuracy"]), taken)
        factor = factors(table, calendar)
        scale, margin = float(summary["scale"]) * factor.max(), float(summary["accuracy"]) * factor.max()
        by = next(iter(table.measure.clip_by or {}), None)
        per_value = dict(zip(keys(table, calendar)[by].cast(pl.String), factor)) if by else {}
        released.append(
            Released(
                name=name,
                table=table,
                cells=found,
                epsilon=policy.epsilon(name),
                scale=scale,
                margin=margin,
                distribution=str(summary["distribution"]),
                # at most cells x what one person gives a cell; less when the table has fewer cells
                sensitivity=round(scale * cells_epsilon(policy.epsilon(name)), 6),
                lost=taken,
                by={
                    v: {"scale": float(summary["scale"]) * f, "margin_95": float(summary["accuracy"]) * f}
                    for v, f in per_value.items()
                },
            )
        )
    return released


def factors(table: Table, calendar: Calendar) -> np.ndarray:
    """Published units per mechanism unit, per cell in the keys' order (a sum's clip / UNITS)."""
    bounds = cell_bounds(table, calendar)
    return bounds / UNITS if table.measure.kind == "sum" else np.ones(len(bounds))


@dataclass(frozen=True)
class Lost:
    """The released estimate of what bounding took from a table, in the mechanism's units."""

    total: float  # noisy
    margin: float  # of its noise, 95%
    epsilon: float

    def share(self, kept: float) -> float:
        """At most this share of what the table kept was taken away (95%): the estimate's upper end over `kept`."""
        return max(self.total + self.margin, 0.0) / max(kept, 1.0)


def cells(noisy: pl.DataFrame, table: Table, calendar: Calendar, margin: float, taken: Lost | None = None) -> pa.Table:
    """A mechanism's output as published: every public cell in the keys' order, its attributes
    typed, its value and margin in the measure's units (CNY for a sum), a value that cannot be
    negative no lower than 0, its 95% interval for the exact value (`low_95`, `high_95`: the
    noise's margin, and above it the cell's part of what bounding took, in proportion to its
    value), and whether the cell is `uncertain` (see the module's docstring)."""
    found = scaled(noisy, table, calendar)
    if non_negative(table):  # the truth is >= 0: max(0, x) is never further from it than x
        found = found.with_columns(pl.max_horizontal(VALUE, pl.lit(0.0)).alias(VALUE))
    kept = float(found.select((pl.col(VALUE).clip(0) / pl.col("factor")).sum()).item())  # in the mechanism's units
    share = taken.share(kept) if taken else 0.0
    found = found.with_columns((pl.col("factor") * margin).alias(MARGIN))
    low = pl.col(VALUE) - pl.col(MARGIN)
    found = found.with_columns(
        (low.clip(0) if non_negative(table) else low).alias(LOW),
        (pl.col(VALUE) + pl.col(MARGIN) + pl.col(VALUE).clip(0) * share).alias(HIGH),
        (pl.col(MARGIN) >= pl.col(VALUE).abs()).alias(UNCERTAIN),
    )
    return _typed(found.drop("cell", "factor"), table)


def scaled(noisy: pl.DataFrame, table: Table, calendar: Calendar) -> pl.DataFrame:
    """The mechanism's output on every public cell in the keys' order, in the measure's units, as
    drawn (before any post-processing): the grain, `cell`, `factor` and `value`."""
    public = keys(table, calendar).with_columns(pl.Series("factor", factors(table, calendar)))
    found = public.join(noisy, on="cell", how="left", maintain_order="left")
    return found.with_columns((pl.col(VALUE) * pl.col("factor")).round(0).alias(VALUE))


def non_negative(table: Table) -> bool:
    """Whether no cell's true value can be below 0: a count, or a sum whose every clip starts at 0 or above."""
    return table.measure.kind != "sum" or all(low >= 0 for low, _ in table.measure.bounds().values())


def _aggregate(table: Table) -> pl.Expr:
    if table.measure.kind == "sum":
        lows = [int(np.floor(low / max(abs(low), abs(high)) * UNITS)) for low, high in table.measure.bounds().values()]
        return pl.col(VALUE).fill_null(0).dp.sum((min(0, *lows), UNITS)).alias(VALUE)  # type: ignore[attr-defined]  # OpenDP's namespace
    return dp.len(signed=True).alias(VALUE)  # signed: the noise averages 0 (cells() then raises a value below 0 to 0)


def _typed(cells: pl.DataFrame, table: Table) -> pa.Table:
    found = cells.to_arrow()
    schema = pa.schema(
        [pa.field(g, ATTRIBUTES[table.source][g].type) for g in table.grain]
        + [pa.field(VALUE, pa.int64()), pa.field(MARGIN, pa.float64())]
        + [pa.field(LOW, pa.float64()), pa.field(HIGH, pa.float64()), pa.field(UNCERTAIN, pa.bool_())]
    )
    return pa.table({f.name: found[f.name].cast(f.type) for f in schema}, schema=schema)
