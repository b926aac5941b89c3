"""The operators a policy can name: one small class each, holding its validated parameters,
its technique family (GB/T 37964 / ISO/IEC 20889 terms) and `apply`, a pure column-to-column
function. Registered by the name the policy uses.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from transforms.hierarchy import (
    AddressHierarchy,
    AgeHierarchy,
    AreaHierarchy,
    BandHierarchy,
    DatetimeHierarchy,
    DaysHierarchy,
    Hierarchy,
    PrefixHierarchy,
    TableHierarchy,
    TopicHierarchy,
)
from transforms.pseudonymize import Pseudonymizer
from transforms.redact import NameMatcher, redact
from transforms.text import NORMALIZERS

Family = Literal["pseudonymization", "generalization", "suppression", "masking", "redaction", "none"]


@dataclass(frozen=True)
class Context:
    """What some operators need beyond the column: the key, the policies' folder, the run's names."""

    pseudonymizer: Pseudonymizer
    policy_dir: Path
    names: NameMatcher
    reference_date: dt.date | None = None  # ages are counted at this date (the policy's)
    unit: str = ""  # the published partition's version: every token it publishes is keyed to it


class Operator(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    family: ClassVar[Family]

    def apply(self, column: pa.Array, ctx: Context) -> pa.Array | None:
        raise NotImplementedError


class Keep(Operator):
    """Published as exported."""

    family: ClassVar[Family] = "none"

    def apply(self, column, ctx):
        return column


class Drop(Operator):
    """Column suppression: not published at all."""

    family: ClassVar[Family] = "suppression"

    def apply(self, column, ctx):
        return None


class Pseudonymize(Operator):
    """Keyed HMAC token of the normalized value (see pseudonymize.py)."""

    family: ClassVar[Family] = "pseudonymization"
    domain: str
    normalize: Literal["text", "upper", "document", "mobile"] = "upper"

    def apply(self, column, ctx):
        return ctx.pseudonymizer.unit_tokens(ctx.pseudonymizer.tokens(column, self.domain, self.normalize), ctx.unit)


class Mask(Operator):
    """Partial masking: keep the first and last characters, star the rest (138****5678,
    622202******0123). Values too short to keep anything hidden are starred entirely."""

    family: ClassVar[Family] = "masking"
    keep_first: Annotated[int, Field(ge=0)] = 0
    keep_last: Annotated[int, Field(ge=0)] = 0
    char: Annotated[str, Field(min_length=1, max_length=1)] = "*"
    normalize: Literal["text", "upper", "document", "mobile"] | None = None

    def apply(self, column, ctx):
        return mask(NORMALIZERS[self.normalize](column) if self.normalize else column, self.keep_first, self.keep_last, self.char)


class Suppress(Operator):
    """Cell suppression: values seen fewer than `min_count` times in the column become null (the
    flow records how many cells each column lost). Over a whole export the counts come first
    (plan.count_values) and `keep` applies them batch by batch."""

    family: ClassVar[Family] = "suppression"
    min_count: Annotated[int, Field(ge=2)]

    def apply(self, column, ctx):
        counts = pc.value_counts(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
        return self.keep(column, self.frequent(counts.field("values"), counts.field("counts")))

    def frequent(self, values: pa.Array, counts: pa.Array) -> pa.Array:
        """The values seen at least min_count times, from a column's value counts."""
        return values.filter(pc.greater_equal(counts, self.min_count))

    def keep(self, column, common: pa.Array) -> pa.Array:
        """The column with every value not in `common` (the frequent values) nulled."""
        return pc.if_else(pc.is_in(column, common), column, pa.scalar(None, column.type))


class Redact(Operator):
    """Free text with every detected identifier replaced by a typed placeholder."""

    family: ClassVar[Family] = "redaction"

    def apply(self, column, ctx):
        return redact(column, ctx.names)


class HierarchySpec(BaseModel):
    """Exactly one of: an ARX table, datetime truncation units, age bands, prefixes, numeric bands."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    table: str | None = None
    datetime: list[str] | None = None
    age: list[int] | None = None
    prefix: list[int] | None = None
    pad: str = "*"
    bands: list[list[float]] | None = None
    clip: tuple[float, float] | None = None  # with bands: level 1 is top/bottom coding alone
    area: list[Literal["county", "prefecture", "province"]] | None = None
    address: list[Literal["prefecture", "province"]] | None = None
    days_after: list[list[int]] | None = None  # a date -> days after the row's own business date, in bands
    topics: str | None = None  # free text -> a coded topic, by the keyword rules of this CSV

    KINDS: ClassVar[tuple[str, ...]] = ("table", "datetime", "age", "prefix", "bands", "area", "address", "days_after", "topics")

    @model_validator(mode="after")
    def _one_kind(self) -> HierarchySpec:
        kinds = [k for k in self.KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a hierarchy needs exactly one of {', '.join(self.KINDS)}; got {kinds or 'none'}")
        if self.clip is not None and self.bands is None:
            raise ValueError("clip goes with bands")
        return self

    def describe(self, level: int, top: int | None = None) -> str:
        """What a value at this level is, for analysts reading the published column; `top`, the
        level of '*' for a table (its depth is in its file), names a suppressed column as such."""
        if level == 0:
            return "original value"
        if top is not None and level >= top:
            return "suppressed (*)"
        steps: list[Any] = (
            self.datetime or self.age or self.prefix or self.area or self.address or self.bands or self.days_after or []
        )
        if self.clip and level == 1:
            return f"exact between {self.clip[0]:g} and {self.clip[1]:g}, coded outside"
        index = level - 1 - (1 if self.clip else 0)
        if self.table is None and index >= len(steps):
            return "suppressed (*)"
        if self.table is not None:
            return f"level {level} of {self.table} ('*' at the top)"
        if self.topics is not None:
            return f"topic coded from the text by the rules of {self.topics}" if level == 1 else "suppressed (*)"
        if self.days_after is not None:
            return (
                "days after the row's business date, bands from " + ", ".join(map(str, steps[index]))
                if index < len(steps)
                else "suppressed (*)"
            )
        if self.datetime is not None:
            return f"truncated to the {steps[index]}"
        if self.age is not None:
            return ("age in years" if steps[index] == 1 else f"{steps[index]}-year age bands") + " at the policy's reference date"
        if self.prefix is not None:
            return f"first {steps[index]} characters"
        if self.area is not None:
            return f"{steps[index]} where the ID was issued (GB/T 2260)"
        if self.address is not None:
            return f"{steps[index]} named in the address"
        return "bands with edges " + ", ".join(f"{e:g}" for e in steps[index])

    def build(self, ctx: Context) -> Hierarchy:
        if self.table is not None:
            return TableHierarchy.from_csv(ctx.policy_dir / self.table)
        if self.datetime is not None:
            return DatetimeHierarchy(self.datetime)
        if self.age is not None:
            if ctx.reference_date is None:
                raise ValueError("ages are counted at the policy's privacy.reference_date, and it has none")
            return AgeHierarchy(self.age, ctx.reference_date)
        if self.days_after is not None:
            return DaysHierarchy(self.days_after)
        if self.topics is not None:
            return TopicHierarchy.from_csv(ctx.policy_dir / self.topics)
        if self.prefix is not None:
            return PrefixHierarchy(self.prefix, self.pad)
        if self.area is not None:
            return AreaHierarchy(self.area)
        if self.address is not None:
            return AddressHierarchy(self.address)
        return BandHierarchy(self.bands or [], self.clip)


class Generalize(Operator):
    """A hierarchy level: fixed (`level`), or chosen by the privacy engine within `levels`."""

    family: ClassVar[Family] = "generalization"
    hierarchy: HierarchySpec
    level: int | None = None
    levels: tuple[int, int] | None = None
    # How much a lost level of this attribute counts against the others when the engine chooses
    # (ARX's attribute weights): the analysts' priorities, reviewed with the policy.
    weight: Annotated[float, Field(gt=0)] = 1.0

    @model_validator(mode="after")
    def _level_or_range(self) -> Generalize:
        if (self.level is None) == (self.levels is None):
            raise ValueError("give either level (fixed) or levels: [min, max] (chosen by the privacy engine)")
        if self.levels is not None and not 0 <= self.levels[0] <= self.levels[1]:
            raise ValueError(f"levels must be [min, max] with 0 <= min <= max, got {list(self.levels)}")
        return self

    def apply(self, column, ctx):
        if self.level is None:
            raise ValueError("a quasi-identifier with a level range is generalized by the privacy engine")
        return self.hierarchy.build(ctx).generalize(column, self.level)


OPERATORS: dict[str, type[Operator]] = {
    "keep": Keep,
    "drop": Drop,
    "pseudonymize": Pseudonymize,
    "generalize": Generalize,
    "mask": Mask,
    "suppress": Suppress,
    "redact": Redact,
}


def mask(column: pa.Array | pa.ChunkedArray, keep_first: int, keep_last: int, char: str = "*") -> pa.Array:
    """Vectorized partial masking (see Mask)."""
    length = pc.utf8_length(column)
    head = pc.utf8_slice_codeunits(column, 0, keep_first)
    tail = pc.utf8_slice_codeunits(column, -keep_last) if keep_last else pc.utf8_slice_codeunits(column, 0, 0)
    stars = pc.binary_repeat(pa.scalar(char), pc.max_element_wise(pc.subtract(length, keep_first + keep_last), 0))
    kept = pc.binary_join_element_wise(head, stars, tail, "")
    too_short = pc.less_equal(length, keep_first + keep_last)
    return pc.if_else(too_short, pc.binary_repeat(pa.scalar(char), length), kept)
