"""What a published partition's file says about itself: its footer (the Parquet key-value
metadata under the key `tuomin`), typed once as a PartitionRecord (a DP table's: DPTableRecord).

    written   flows/pipeline/record.partition_metadata builds it, the writer puts `footer()` into
              the file after the last batch; an erasure's rewrite builds the next version from the
              old one (`revised`)
    read      `read_record(path)`: every later room (the run's summary and ledger entry, review,
              erasure, the evidence pack, `tuomin risk`, `tuomin assess`) reads attributes, never
              keys; the gate a partition passed is `record.gate(schema)`

Reading is lenient, as for the ledger (flows/storage/entries.py): a file written by an earlier
version stays readable, its fields since renamed or added read through the validators here (the
one place old footers are understood). Writing gives back the fields set: a footer read and
written again is the same document, an old one with what the validators filled in. A footer
holds names, levels, hashes and figures at or above k, never a data value and never a count
below k (flows/pipeline/record.py says which).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from flows.storage.entries import Copy, Input, Part, Rows
from transforms.criteria import COLUMN_CRITERIA, ColumnCriterion, PrivacyModel, column_criterion
from transforms.errors import Refused

if TYPE_CHECKING:
    from expectations.suite import Gate

METADATA_KEY = b"tuomin"  # the footer's key in the file's key-value metadata

# What one person-level record spans, by dataset, for files written before the policies said it
# (transforms/risk.py: PROFILE, PURCHASES, CONTACTS).
LEGACY_RECORD = {"membership": "profile", "after_sales": "contacts"}


class OnColumn(Part):
    """A criterion on a sensitive column as the file records it, under its kind's key
    (transforms/criteria.COLUMN_CRITERIA): the published column, the policy's attribute, and the
    criterion's parameters as the other keys (ColumnCriterion.parameters)."""

    column: str
    attribute: str | None = None

    def criterion(self, kind: str) -> ColumnCriterion:
        return column_criterion(kind, self.column, self.model_extra or {})


class Search(Part):
    method: str
    nodes_evaluated: int
    nodes: int


class Published(Part):
    """One column of the policy: how it was read and published."""

    input: str | None = None
    output: str | None = None
    role: str
    pipl: str | None = None
    transform: str | None = None
    technique: str | None = None
    part: str | None = None


class Checked(Part):
    """The gate's verdict as the file records it: whether it passed, and each check's outcome
    (expectation, success, observed, arguments, exception: numbers and names only)."""

    success: bool = False
    checks: list[dict[str, Any]] = []


class Figures(Part):
    """The privacy and loss figures measured on the published rows (transforms/metrics.summary)."""

    k: int | None = None
    l_distinct: int | float | None = None
    loss: float | None = None
    loss_by_attribute: dict[str, float] | None = None


class Erasure(Part):
    at: str


class PartitionRecord(BaseModel):
    """A published partition's footer (see the module's docstring)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    dataset: str
    period: str = Field(validation_alias=AliasChoices("period", "export_date"))
    grain: str | None = None
    person_record: str | None = None  # what one person-level record spans, in words
    quasi_identifiers: list[str] = []
    k: int | None = None  # the policy's; a file that records none is judged by the intruder's k
    entity_column: str | None = None
    policy_file: str | None = None
    policy_sha256: str | None = None
    key_id: str | None = None
    run_id: str = ""
    flow_run_id: str | None = ""
    fingerprint: str | None = None
    unit: str = ""  # the partition version its tokens are keyed to (Pseudonymizer.unit_tokens)
    record: str = "purchases"  # profile, purchases or contacts: what its rows are in a person's record
    m: int = 0
    reference_date: dt.date | None = None
    ledger_head: dict[str, Any] | None = None
    created_at: str | None = None
    levels: dict[str, int] = {}
    search: Search | None = None
    max_suppression: int | float | None = None
    rows: Rows = Rows()  # published only
    metrics: Figures = Figures()
    columns: dict[str, Published] = {}
    validation: Checked = Checked()
    inputs: list[Input] = []
    dropped_columns: list[dict[str, str]] = []
    copies_not_read: list[Copy] = []
    erasures: list[Erasure] = []

    @model_validator(mode="before")
    @classmethod
    def _older(cls, data: Any) -> Any:
        """Footers of earlier versions: without `record`, the dataset said it."""
        if isinstance(data, dict) and not data.get("record") and "dataset" in data:
            data = {**data, "record": LEGACY_RECORD.get(data["dataset"], "purchases")}
        return data

    def footer(self) -> dict[str, Any]:
        """The record as the file holds it: JSON types, the fields set."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def revised(self, **changes: Any) -> PartitionRecord:
        """The next version of this footer (an erasure's rewrite), validated again."""
        return PartitionRecord.model_validate(self.footer() | changes)

    @property
    def published_rows(self) -> int:
        return self.rows.published

    def roles(self) -> dict[str, str]:
        """{published column: its role}."""
        return {c.output: c.role for c in self.columns.values() if c.output}

    def gate(self, schema: pa.Schema) -> Gate:
        """The gate this partition passed, as its file records it, so that it holds even if the
        policy changed since."""
        from expectations.suite import Gate  # Great Expectations: only where a gate is run

        return Gate.recorded(self.dataset, schema, self.quasi_identifiers, self.entity_column, self.model())

    def criteria(self) -> tuple[ColumnCriterion, ...]:
        """The criteria on sensitive columns the file records, each kind under its own key (every
        file says the kinds its version always records, if only []; any other where the policy declared it)."""
        extra = self.model_extra or {}
        return tuple(OnColumn.model_validate(e).criterion(kind) for kind in COLUMN_CRITERIA for e in extra.get(kind) or [])

    def model(self) -> PrivacyModel:
        """The privacy model the partition was published under, as its file records it."""
        if self.k is None:
            raise ValueError(f"{self.dataset} {self.period}: the file records no k, so no privacy model")
        return PrivacyModel(self.k, self.criteria(), self.m)


class DPBounds(Part):
    """What bounds one person's part in a DP table (the policy's numbers and OpenDP's calibration)."""

    cells_per_person: int
    rows_per_cell: int
    clip: list[float] | None = None  # a sum's bounds per person and cell
    sensitivity_l1: float


class DPNoise(Part):
    """The noise added to each cell; `by` gives it per value of a sum's clip_by attribute."""

    distribution: str
    scale: float
    margin_95: float
    alpha: float
    by: dict[str, dict[str, dict[str, float]]] = {}


class DPTableRecord(BaseModel):
    """A DP table's footer: the release it belongs to and what bounds its cells (all public: the
    policy's numbers and OpenDP's calibration, never a count of the data). Written by
    flows/pipeline/dp.py, read by the data dictionary; `ledger verify` finds its release's entry
    after its `ledger_head`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str = "dp_table"
    release_id: str
    created_at: str
    dates: list[str]
    privacy_unit: str
    release_epsilon: float
    spent_total: float | None = None  # by every release of these customers, this one included (issue 35)
    lifetime_epsilon: float | None = None  # the policy's ceiling on spent_total
    delta: float
    library: str
    policy_sha256: str
    ledger_head: dict[str, Any] | None = None
    table: str
    source: str
    grain: list[str]
    measure: dict[str, Any]  # the policy's measure: kind, column, clip, clip_by
    epsilon: float  # the table's share of the release's
    bounds: DPBounds
    noise: DPNoise
    # The grain check at policy review (transforms/dp_review.py): the typical cell expected from the
    # shop's declared size, its 95% margin and their ratio, and the ceiling on it (issue 35).
    review: dict[str, Any] | None = None

    def footer(self) -> dict[str, Any]:
        """The record as the file holds it: JSON types, the fields set, its kind first."""
        return {"kind": self.kind} | self.model_dump(mode="json", exclude_unset=True)


def footer_json(metadata: PartitionRecord | DPTableRecord | dict[str, Any]) -> str:
    """A footer as its file holds it (read_record gives it back)."""
    document = metadata if isinstance(metadata, dict) else metadata.footer()
    return json.dumps(document, ensure_ascii=False, default=str)


class ForeignFile(Refused, ValueError):
    """A file in the warehouse that is not one tuomin published: not Parquet, damaged, or without
    tuomin's metadata. Named in one line by whatever meets it."""


def read_footer(path: Path) -> dict[str, Any]:
    """A file's footer as stored (a partition's or a DP table's): what an intruder reads, key for
    key. The rooms that act on a partition read `read_record`. ForeignFile, naming it, for a file
    tuomin did not write."""
    try:
        stored = pq.ParquetFile(path).metadata.metadata or {}
    except (OSError, ValueError) as exc:  # not Parquet, or damaged (pyarrow's ArrowInvalid is a ValueError)
        raise ForeignFile(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:120]})") from None
    if METADATA_KEY not in stored:
        raise ForeignFile(f"{path}: a Parquet file without tuomin's metadata (not one tuomin published)")
    return json.loads(stored[METADATA_KEY])


def read_record(path: Path) -> PartitionRecord:
    """A published partition's footer, typed."""
    return PartitionRecord.model_validate(read_footer(path))


def read_dp_record(path: Path) -> DPTableRecord:
    """A published DP table's footer, typed."""
    return DPTableRecord.model_validate(read_footer(path))
