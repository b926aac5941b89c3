"""The policy of the differentially private tables (policies/dp/tables.yaml, issue 22): each
table's grain, measure, contribution bounds and share of the release's budget, and the budget
itself. Checked when loaded, before anything runs: the shares may not add up to more than the
release's epsilon, a sum is clipped to declared bounds, and every table bounds how many cells one
person counts in, every grain has a time unit. Group keys are never taken from the data (they come
from the calendar and the policies' hierarchies), so the grain names public attributes only. The
policy also declares the shop's size (`review`), against which transforms/dp_review.py refuses a
grain too fine for it (that check needs the hierarchies' keys, so it runs where they are known).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from transforms.errors import Refused

SHARE_TOLERANCE = 1e-9  # shares are decimals typed by people: 0.4 + 0.3 + 0.3 is not exactly 1.0
Grain = Literal["day", "week", "month", "hour", "store", "channel", "nationality", "continent", "category", "case_type"]
TIME: frozenset[str] = frozenset({"day", "week", "month"})
# The public attributes each source's tables may be broken down by (transforms/dp_tables.py says
# how a raw row gives each and where its keys come from). Membership snapshots hold no events: they
# only link a customer's rows across the other two.
OFFERED: dict[str, frozenset[str]] = {
    "pos": TIME | {"hour", "store", "channel", "nationality", "continent", "category"},
    "after_sales": TIME | {"case_type"},
}
# What each grain attribute and measure means to an analyst (the data dictionary, the views' comments).
MEANING: dict[str, str] = {
    "day": "The day of the purchase or case (Shanghai time), every day of the release's export dates.",
    "week": "The ISO week of the purchase or case (YYYY-Www), every week of the release's export dates.",
    "month": "The month of the purchase or case (YYYY-MM).",
    "hour": "The hour of day of the receipt (0-23, Shanghai time).",
    "store": "The store code, every store of the store hierarchy.",
    "channel": "The store's channel (airport, cruise port, downtown).",
    "nationality": "The buyer's nationality as an ISO 3166 alpha-3 country code, every country of the hierarchy.",
    "continent": "The continent of the buyer's nationality.",
    "category": "The product's category, every category of the product hierarchy.",
    "case_type": "The after-sales case type, every type of the case-type hierarchy.",
    "distinct_people": "Distinct customers in the cell, each counted once",
    "rows": "Rows of {column} in the cell, a customer's bounded",
    "sum": "The sum of {column} in the cell, a customer's share clipped",
}


VALUE = "value"  # the measure's column in the published table
MARGIN = "margin_95"  # the noise's 95% bound: the same for every cell of a table, or of a clip
UNCERTAIN = "uncertain"  # the cell's 95% error bar is as wide as its value or wider: mostly noise
LOW, HIGH = "low_95", "high_95"  # the cell's 95% interval for the exact value: the noise, and what bounding took away
# What each published column besides the grain means (the files' field metadata, the views' comments, the dictionary).
COLUMNS = {
    VALUE: "The table's measure in the cell, each customer's part bounded, with Laplace noise added (a count or a sum "
    "that cannot be negative then raised to 0 where the noise took it below): the noise averages 0; the bounding only "
    "lowers a cell whose customers exceed it; `dp_tables` gives its epsilon, bounds and noise.",
    MARGIN: "The noise is within plus or minus this for 95% of cells (the noise only; high_95 adds what bounding took away).",
    LOW: "The lower end of the cell's 95% interval for the exact value: the value less the noise's margin (0 at least "
    "for a count).",
    HIGH: "The upper end of the cell's 95% interval for the exact value: the value, the noise's margin, and the cell's "
    "part of what bounding took away (estimated privately with a tenth of the table's epsilon, in proportion to the "
    "value).",
    UNCERTAIN: "True where the 95% error bar is as wide as the value or wider: the cell is mostly noise, read it as "
    "'somewhere between 0 and high_95'.",
}


class DPPolicyError(Refused, ValueError):
    """A DP policy that cannot be used; the message names the file and the table."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Release(_Strict):
    epsilon: Annotated[float, Field(gt=0, le=10)]
    delta: Annotated[float, Field(ge=0, lt=1e-5)] = 0.0
    privacy_unit: Literal["customer"] = "customer"
    # The ceiling on the epsilon every release of the same customers may spend in all, over the
    # data's lifetime (the value a privacy officer signs): a release past it is refused, --additional
    # or not. Releases of other dates, after an erasure or a policy change all count against it.
    lifetime_epsilon: Annotated[float, Field(gt=0, le=10)] = 3.0

    @model_validator(mode="after")
    def _one_release_fits(self) -> Release:
        if self.epsilon > self.lifetime_epsilon + SHARE_TOLERANCE:
            raise ValueError(
                f"one release's epsilon {self.epsilon:g} is more than the lifetime ceiling {self.lifetime_epsilon:g}"
            )
        return self


Bounds = tuple[float, float]


class Measure(_Strict):
    kind: Literal["distinct_people", "rows", "sum"]
    column: str | None = None
    clip: Bounds | None = None  # a sum's bounds per person and cell
    # Other bounds for some values of one grain attribute, e.g. {category: {食品: [0, 1000]}}: each
    # cell's noise is then in proportion to its own bound (transforms/dp_tables.py).
    clip_by: dict[str, dict[str, Bounds]] | None = None

    @model_validator(mode="after")
    def _sum_is_bounded(self) -> Measure:
        if self.kind == "sum" and (self.column is None or self.clip is None):
            raise ValueError("a sum names its column and clips it to [low, high] with low < high")
        if self.kind != "sum" and (self.column is not None or self.clip is not None or self.clip_by is not None):
            raise ValueError(f"a {self.kind} count takes no column and no clip")
        if self.clip_by is not None and len(self.clip_by) != 1:
            raise ValueError("clip_by names one attribute")
        if any(low >= high for low, high in self.bounds().values()):
            raise ValueError("every clip is [low, high] with low < high")
        return self

    def bounds(self) -> dict[str | None, Bounds]:
        """The clip per value of the clip_by attribute, None for every other value."""
        found: dict[str | None, Bounds] = {None: self.clip} if self.clip else {}
        for by_value in (self.clip_by or {}).values():
            found.update(by_value)
        return found


class Table(_Strict):
    source: Literal["pos", "after_sales"]
    measure: Measure
    grain: Annotated[list[Grain], Field(min_length=1)]
    cells_per_person: Annotated[int, Field(ge=1)]
    rows_per_cell: Annotated[int, Field(ge=1)] = 1  # a row count's bound per person and cell
    share: Annotated[float, Field(gt=0, le=1)]
    # What bounding takes from one customer is counted up to this many times what they may give the
    # table, in the private estimate that widens each cell's interval: larger covers customers far
    # beyond the bounds (a reseller's hundreds of lines), at more noise in the estimate.
    lost_cap: Annotated[int, Field(ge=1, le=100)] = 3

    @model_validator(mode="after")
    def _grain_is_offered(self) -> Table:
        missing = [g for g in self.grain if g not in OFFERED[self.source]]
        if missing:
            raise ValueError(
                f"{self.source} offers no {', '.join(missing)} (it offers {', '.join(sorted(OFFERED[self.source]))})"
            )
        if len(set(self.grain)) != len(self.grain) or len(TIME & set(self.grain)) > 1:
            raise ValueError("each attribute once, and one time unit at most")
        if self.measure.clip_by and not set(self.measure.clip_by) <= set(self.grain):
            raise ValueError(f"clip_by {', '.join(self.measure.clip_by)} is not in the grain")
        if not TIME & set(self.grain):
            raise ValueError("the grain has a time unit (day, week or month): a cell's size is declared per period")
        if self.rows_per_cell != 1 and self.measure.kind != "rows":
            raise ValueError("rows_per_cell bounds a row count; people are counted once per cell, sums once per person and cell")
        return self


Positive = Annotated[float, Field(gt=0)]
Period = Literal["day", "week", "month"]
PERIOD_DAYS: dict[str, int] = {"day": 1, "week": 7, "month": 30}  # a month of 30 days: its cells expected no larger than they are


class Size(_Strict):
    """One source's size as the shop's operator declares it, never measured on the data: rows a
    day, distinct customers in a period (for counts of people by it), a column's total a day (for
    its sums)."""

    rows_per_day: Positive
    people: dict[Period, Positive] = Field(default_factory=dict)
    sums_per_day: dict[str, Positive] = Field(default_factory=dict)


class Review(_Strict):
    """What the grain check at policy review reads (transforms/dp_review.py): the declared size of
    each source and how large a typical cell's 95% margin may be against its expected value."""

    size: dict[Literal["pos", "after_sales"], Size]
    max_expected_error: Annotated[float, Field(gt=0, le=1)] = 0.5


class DPPolicy(_Strict):
    release: Release
    review: Review
    tables: Annotated[dict[str, Table], Field(min_length=1)]

    @model_validator(mode="after")
    def _within_budget(self) -> DPPolicy:
        total = sum(t.share for t in self.tables.values())
        if total > 1 + SHARE_TOLERANCE:
            shares = ", ".join(f"{name} {t.share:g}" for name, t in self.tables.items())
            raise ValueError(f"the tables' shares add up to {total:g} of the release's epsilon, more than all of it ({shares})")
        return self

    def epsilon(self, table: str) -> float:
        """The table's part of the release's epsilon."""
        return self.release.epsilon * self.tables[table].share


def load(path: Path) -> DPPolicy:
    """The DP policy at `path`; DPPolicyError (file, table, what) if it cannot be used."""
    try:
        return DPPolicy.model_validate(yaml.safe_load(path.read_text("utf-8")))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "the file"
        raise DPPolicyError(f"{path}: {where}: {error['msg']}") from None
