"""The grain check at policy review (issue 35): a DP table whose grain is too fine for the shop
is refused before anything is read, with the error it would have, computed from the operator's
declared size (the policy's `review.size`) and the public keys, never from the data.

    expect   per table, a typical cell: a period's declared total (rows a day, distinct customers
             in the period, a column's total a day) spread evenly over the table's public keys
             besides time (stores x hours, countries, categories x channels...)
    margin   the noise's 95% margin on that cell, as the release will calibrate it: OpenDP's
             discrete Laplace at the table's epsilon for its cells, scale = what one customer can
             move the table (L1: cells_per_person x rows_per_cell, x the cell's clip for a sum) /
             epsilon; for a sum clipped by category, the mean of its categories' margins
    judge    refused when margin / expected cell > review.max_expected_error: most cells would be
             noise (`uncertain`) for this shop, whatever the data turns out to be

Spreading evenly is the declared size's only reading that needs no data: skewed keys (a few
countries buy most) make many cells smaller than expected, which the cells' `uncertain` flag
then says; the check refuses the grains that fail even when every key is as large as the average.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from opendp.accuracy import discrete_laplacian_scale_to_accuracy

from transforms import dp_tables
from transforms.dp_policy import PERIOD_DAYS, TIME, DPPolicy, DPPolicyError, Table

_ONE_DAY = dt.date(2026, 1, 1)  # any one day: the check counts the keys of one period


@dataclass(frozen=True)
class Expected:
    """A table's typical cell at the declared size, and its noise."""

    table: str
    period: str
    keys: int  # public keys per period (the grain's other attributes crossed)
    cell: float  # expected value of a cell: the period's declared total / keys
    margin: float  # the noise's 95% margin, the mean over the keys for a sum clipped by category
    unit: str  # what the cell counts: "customers", "rows", or "in <the summed column>"

    @property
    def error(self) -> float:
        """The margin as a share of the expected cell."""
        return self.margin / self.cell

    def record(self, ceiling: float) -> dict[str, float | int | str]:
        """What each of the table's files records of its review (computed from the declared size, never from the data)."""
        return {
            "period": self.period,
            "keys": self.keys,
            "expected_cell": round(self.cell, 3),
            "margin_95": round(self.margin, 3),
            "expected_error": round(self.error, 4),
            "max_expected_error": ceiling,
        }

    def words(self) -> str:
        return (
            f"a {self.period}'s cell expects {self.cell:,.1f} {self.unit} (the declared size over {self.keys:,} keys) "
            f"against a 95% margin of ±{self.margin:,.1f} ({self.error:.0%} of it)"
        )


def expect(policy: DPPolicy, name: str, hierarchies: Path) -> Expected:
    """The table's typical cell at the declared size; DPPolicyError if the size it needs is not declared."""
    table = policy.tables[name]
    period = next(g for g in table.grain if g in TIME)
    size = policy.review.size.get(table.source)
    kind = table.measure.kind
    if size is None:
        raise DPPolicyError(f"{name}: review.size declares nothing for {table.source}")
    if kind == "distinct_people":
        if period not in size.people:
            raise DPPolicyError(f"{name}: review.size.{table.source}.people declares no {period} (distinct customers a {period})")
        total, unit = size.people[period], "customers"
    elif kind == "rows":
        total, unit = size.rows_per_day * PERIOD_DAYS[period], "rows"
    else:
        column = str(table.measure.column)
        if column not in size.sums_per_day:
            raise DPPolicyError(f"{name}: review.size.{table.source}.sums_per_day declares no {column} (its total a day)")
        total, unit = size.sums_per_day[column] * PERIOD_DAYS[period], f"in {column}"
    factors = dp_tables.factors(table, dp_tables.Calendar(days=[_ONE_DAY], hierarchies=hierarchies))
    margin = _margin(table, policy.epsilon(name)) * float(np.mean(factors))
    return Expected(name, period, len(factors), total / len(factors), margin, unit)


def _margin(table: Table, epsilon: float) -> float:
    """The 95% margin of the noise in the mechanism's units (OpenDP's discrete Laplace at the
    scale the release calibrates: L1 sensitivity over the cells' epsilon)."""
    sensitivity = table.cells_per_person * table.rows_per_cell * (dp_tables.UNITS if table.measure.kind == "sum" else 1)
    return float(discrete_laplacian_scale_to_accuracy(sensitivity / dp_tables.cells_epsilon(epsilon), dp_tables.ALPHA))


def review(policy: DPPolicy, hierarchies: Path, where: Path | str = "the DP policy") -> list[Expected]:
    """Every table's expected cell; DPPolicyError naming the first table too fine for the declared size."""
    found = [expect(policy, name, hierarchies) for name in policy.tables]
    ceiling = policy.review.max_expected_error
    for expected in found:
        if expected.error > ceiling:
            raise DPPolicyError(
                f"{where}: tables.{expected.table}: the grain is too fine for the shop's declared size: {expected.words()}, "
                f"more than review.max_expected_error {ceiling:.0%}; coarsen the grain or give it more of the epsilon"
            )
    return found
