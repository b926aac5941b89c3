"""The operators a policy can name: one small class each, holding its validated parameters,
its technique family (GB/T 37964 / ISO/IEC 20889 terms) and `apply`, a pure column-to-column
function. Registered by the name the policy uses.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from transforms.hierarchy import AgeHierarchy, BandHierarchy, DatetimeHierarchy, Hierarchy, PrefixHierarchy, TableHierarchy
from transforms.pseudonymize import Pseudonymizer
from transforms.redact import NameMatcher, redact

Family = Literal["pseudonymization", "generalization", "suppression", "masking", "redaction", "none"]


@dataclass(frozen=True)
class Context:
    """What some operators need beyond the column: the key, the export date, the run's names."""

    pseudonymizer: Pseudonymizer
    export_date: dt.date
    policy_dir: Path
    names: NameMatcher


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
        return ctx.pseudonymizer.tokens(column, self.domain, self.normalize)


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

    @model_validator(mode="after")
    def _one_kind(self) -> HierarchySpec:
        kinds = [k for k in ("table", "datetime", "age", "prefix", "bands") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a hierarchy needs exactly one of table, datetime, age, prefix, bands; got {kinds or 'none'}")
        return self

    def build(self, ctx: Context) -> Hierarchy:
        if self.table is not None:
            return TableHierarchy.from_csv(ctx.policy_dir / self.table)
        if self.datetime is not None:
            return DatetimeHierarchy(self.datetime)
        if self.age is not None:
            return AgeHierarchy(self.age, ctx.export_date)
        if self.prefix is not None:
            return PrefixHierarchy(self.prefix, self.pad)
        return BandHierarchy(self.bands)


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
    "redact": Redact,
}
