"""The policy: a reviewed YAML file per source saying what every column is and what is done to it.

Loaded into strict pydantic models (unknown keys are errors). Every error names the file, the
source and the column. A policy's SHA-256 covers its YAML and every hierarchy file it names, so
the hash recorded with an output changes whenever anything that shaped that output changes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SkipValidation, ValidationError, model_validator

from transforms import criteria
from transforms.classify import KINDS
from transforms.criteria import PrivacyModel
from transforms.errors import Refused
from transforms.identifiers import SubjectKind
from transforms.operators import OPERATORS, Family, Generalize, Operator
from transforms.workload import Question

Role = Literal["direct_identifier", "quasi_identifier", "sensitive_attribute", "entity_key", "free_text", "insensitive"]
# What a source's rows are in a person's record (../shared/privacy-model.md): one row per person
# (a membership snapshot), or events of which a person has several: purchases, service contacts.
Record = Literal["profile", "purchases", "contacts"]
# A quasi-identifier describes the person (one value per person: sex, nationality, tier) or one
# of their items (a purchase's store, product and amount band; a contact's channel and type).
Part = Literal["person", "item"]
# PIPL: general personal information, sensitive personal information (Art. 28), or not PI at all.
Pipl = Literal["general", "sensitive", "none"]
ColumnType = Literal["string", "int", "decimal", "date", "datetime"]


class PolicyError(Refused, ValueError):
    """A policy file that cannot be used; the message says which file, source and column."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str
    source: str | None = Field(default=None, alias="from")  # a derived column reads this input column
    aliases: list[str] = []
    role: Role
    pipl: Pipl
    purpose: str
    kind: str | None = None  # what the values are (classify.KINDS); person_name feeds the redaction dictionary
    type: ColumnType = "string"
    formats: list[str] | None = None
    required: bool = True  # False: the export may lack this column
    transform: str
    params: dict[str, Any] = {}
    output: str | None = None
    part: Part = "person"

    @model_validator(mode="after")
    def _known_kind(self) -> Column:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; known: {sorted(KINDS)}")
        if self.kind and KINDS[self.kind][0] == "direct_identifier":
            if self.transform == "keep":
                raise ValueError(f"values of kind {self.kind!r} identify a person; they cannot be kept as they are")
            if self.transform == "generalize" and min(self.level_range) < 1:
                raise ValueError(f"values of kind {self.kind!r} identify a person; generalize them from level 1 up")
        return self

    @model_validator(mode="after")
    def _known_transform(self) -> Column:
        if self.transform not in OPERATORS:
            raise ValueError(f"unknown transform {self.transform!r}; known: {sorted(OPERATORS)}")
        OPERATORS[self.transform].model_validate(self.params)
        if self.role == "quasi_identifier" and self.transform not in ("generalize", "drop"):
            raise ValueError("a quasi_identifier must be generalized (levels: [min, max] or level: n) or dropped")
        if self.role != "quasi_identifier" and self.params.get("levels") is not None:
            raise ValueError("only a quasi_identifier has levels for the privacy engine to choose; use level: n")
        if self.role == "free_text" and self.transform in ("keep", "generalize"):
            raise ValueError(f"a free_text column cannot be published with transform {self.transform!r}")
        if self.role == "direct_identifier" and (
            self.transform == "keep" or (self.transform == "generalize" and min(self.level_range) < 1)
        ):
            raise ValueError("a direct_identifier cannot be published as it is (keep, or generalize from level 0)")
        if self.role == "insensitive" and self.transform != "drop":
            raise ValueError(
                "a published column of a dataset about people describes a person (their purchase, their "
                "account, their contact): make it a quasi_identifier (part: person or item), a "
                "sensitive_attribute, or drop it; `insensitive` is only for columns that are not published"
            )
        if self.part == "item" and self.role != "quasi_identifier":
            raise ValueError("only a quasi_identifier is part of a person's items")
        if self.kind == "free_text" and self.transform == "generalize" and min(self.level_range) < 1:
            raise ValueError("free text cannot be published as typed; generalize it from level 1 up (a coded topic)")
        return self

    @cached_property
    def operator(self) -> Operator:
        return OPERATORS[self.transform].model_validate(self.params)

    @property
    def family(self) -> Family:
        return self.operator.family

    @property
    def output_name(self) -> str | None:
        return None if self.transform == "drop" else (self.output or self.name)

    @property
    def generalization(self) -> Generalize:
        """The operator of a quasi-identifier (a generalization, by `quasi`'s definition)."""
        op = self.operator
        if not isinstance(op, Generalize):
            raise ValueError(f"column {self.name!r} is not generalized")
        return op

    @property
    def published_name(self) -> str:
        """output_name for a column known to be published (a quasi-identifier, a sensitive
        attribute a criterion is declared on: the policy's validator makes sure); ValueError for a dropped one."""
        if self.output_name is None:
            raise ValueError(f"column {self.name!r} is dropped, not published")
        return self.output_name

    @property
    def quasi(self) -> bool:
        """A generalized quasi-identifier: part of every k computation, engine and check alike."""
        return self.role == "quasi_identifier" and isinstance(self.operator, Generalize)

    @property
    def level_range(self) -> tuple[int, int]:
        """The levels the privacy engine may choose from (one level when the policy fixes it)."""
        op = OPERATORS[self.transform].model_validate(self.params)
        if not isinstance(op, Generalize):
            return (0, 0)
        if op.levels is not None:
            return op.levels
        level = op.level or 0  # a generalization fixes its level or gives a range (its validator)
        return (level, level)

    @property
    def input_name(self) -> str:
        """The export column this entry reads: itself, or the one a derived entry is `from`."""
        return self.source or self.name


class Link(_Strict):
    """How a row finds its entity in another source: this column equals that source's `key`."""

    column: str
    source: str
    key: str
    lookback_days: int = 0


class Privacy(_Strict):
    k: Annotated[int, Field(ge=2)] = 5
    # Items (purchases or contacts) the intruder may know of a person besides their attributes: every
    # itemset of at most m items a person holds is held by at least k people of their class (k^m).
    m: Annotated[int, Field(ge=1)] = 3
    max_suppression: Annotated[float, Field(ge=0, le=1)] = 0.05
    # The criteria on sensitive attributes, each kind under its own key
    # (transforms/criteria.COLUMN_CRITERIA), a list of {attribute: <column>,
    # <the criterion's parameters>}; read into `criteria`, each on the attribute's policy name.
    criteria: Annotated[tuple[Any, ...], SkipValidation] = ()
    # Ages are counted at this one date in every snapshot, so that a band never moves between two
    # snapshots (a move would tell the birthday).
    reference_date: dt.date | None = None

    @model_validator(mode="before")
    @classmethod
    def _criteria(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data, found = dict(data), []
        for kind in criteria.COLUMN_CRITERIA:
            for entry in data.pop(kind, None) or []:
                if not isinstance(entry, dict) or "attribute" not in entry:
                    raise ValueError(f"{kind}: each entry is {{attribute: <column>, ...}}")
                parameters = {k: v for k, v in entry.items() if k != "attribute"}
                found.append(criteria.column_criterion(kind, entry["attribute"], parameters))
        data["criteria"] = tuple(found)
        return data


class Unit(_Strict):
    """What one person-level record spans (transforms/units.py): the rows of one business period
    of `column` (a date or time column of the export) at `grain`, or the latest `snapshot` of a
    source of profiles. The privacy model protects each unit's records; tokens join nothing
    outside their unit."""

    column: str | None = None
    grain: Literal["day", "week", "month"] = "day"
    snapshot: Literal["latest"] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Unit:
        if (self.column is None) == (self.snapshot is None):
            raise ValueError("a unit is either `column` (with `grain`) or `snapshot: latest`")
        return self

    @property
    def record(self) -> str:
        """What a person-level record is, in words (the data dictionary, the evidence pack)."""
        return "the latest snapshot" if self.snapshot else f"one {self.grain} of {self.column}"

    @property
    def why(self) -> str:
        """Why the unit is what it is, for the evidence pack."""
        if self.snapshot:
            return (
                "Only the latest snapshot is published: each snapshot repeats the same people, so one per day would "
                "publish the same people once per day and every difference between two of them would tell the day a "
                "person changed; an earlier snapshot is removed from the warehouse once a later one is published "
                "(recorded). Neither the cost nor what an intruder can compare grows with the number of snapshots."
            )
        return (
            f"A person's rows of one {self.grain} of their own {self.column} are one record, whatever file they came "
            f"in: daily exports and a closing dump of the same rows publish the same rows; tokens join nothing across "
            f"{self.grain}s."
        )


class Retention(_Strict):
    """How long each copy of a source's data may be kept (PIPL Art. 19: no longer than the purpose
    needs). Both periods count from the export date."""

    raw_grace_days: Annotated[int, Field(ge=0)]  # raw exports, quarantined rows, backups: once published and validated
    keep_years: Annotated[int, Field(ge=1)]  # the anonymized partitions
    basis: str  # why the anonymized copy is kept that long
    deletion_ground: str  # the PIPL Art. 47 ground recorded on every deletion certificate

    def raw_expired(self, date: dt.date, today: dt.date) -> bool:
        return (today - date).days > self.raw_grace_days

    def keep_until(self, date: dt.date) -> dt.date:
        try:
            return date.replace(year=date.year + self.keep_years)
        except ValueError:  # 29 February
            return date.replace(year=date.year + self.keep_years, day=28)

    def expired(self, date: dt.date, today: dt.date) -> bool:
        return today > self.keep_until(date)


class SourcePolicy(_Strict):
    source: str
    description: str
    files: str  # glob under the landing root; {date} = YYYY-MM-DD, {yyyymmdd} = YYYYMMDD
    encoding: Literal["utf-8", "utf-8-sig", "gb18030"]
    record: Record = "purchases"
    entity: str | None = None  # output column that identifies the person (a token keyed to the partition)
    link: list[Link] = []
    unit: Unit
    subject_keys: dict[SubjectKind, str] = {}
    privacy: Privacy = Privacy()
    retention: Retention
    columns: list[Column]
    questions: list[Question] = []  # the analysts' declared questions (transforms/workload.py)
    path: Path
    sha256: str

    @model_validator(mode="after")
    def _consistent(self) -> SourcePolicy:
        outputs = [c.output_name for c in self.columns if c.output_name]
        dupes = sorted({o for o in outputs if outputs.count(o) > 1})
        if dupes:
            raise ValueError(f"several columns publish as {dupes}")
        names = {c.name for c in self.columns if c.source is None}
        for column in self.columns:
            if column.source is not None and column.source not in names:
                raise ValueError(f"column {column.name!r} is derived from {column.source!r}, which is not an input column")
        for key, named in self.subject_keys.items():
            if named not in names:
                raise ValueError(f"subject_keys.{key} names {named!r}, which is not a column")
        for link in self.link:
            if link.column not in names:
                raise ValueError(f"link column {link.column!r} is not a column")
        for criterion in self.privacy.criteria:
            target = next((c for c in self.columns if c.name == criterion.column), None)
            if target is None or target.output_name is None:
                raise ValueError(f"{criterion.kind} attribute {criterion.column!r} is not a published column")
        if self.entity and self.entity not in outputs and not self.link:
            raise ValueError(f"entity {self.entity!r} is neither a published column nor linked")
        if self.unit.column is not None:
            dated = next((c for c in self.columns if c.name == self.unit.column and c.source is None), None)
            if dated is None or dated.type not in ("date", "datetime") or not dated.required:
                raise ValueError(f"unit column {self.unit.column!r} is not a required date or datetime column of the export")
        if (self.record == "profile") != (self.unit.snapshot is not None):
            raise ValueError(
                "a profile (one row per person) is published as its latest snapshot (unit: {snapshot: latest}); "
                "events (purchases, contacts) by a date column (unit: {column: …, grain: day})"
            )
        counted_from_dates = [c.name for c in self.quasi_identifiers if c.generalization.hierarchy.days_after is not None]
        if counted_from_dates and self.unit.column is None:
            raise ValueError(f"{counted_from_dates} count days from each row's business date: the unit needs a date column")
        items = [c.name for c in self.quasi_identifiers if c.part == "item"]
        if self.record == "profile" and items:
            raise ValueError(f"a profile (one row per person) has no items, but {items} are part: item")
        for column in self.quasi_identifiers:
            op = column.operator
            if isinstance(op, Generalize) and op.hierarchy.age is not None and self.privacy.reference_date is None:
                raise ValueError(
                    f"column {column.name!r} counts ages: set privacy.reference_date (one date for every "
                    "snapshot, or an age band that moves between two of them tells the birthday)"
                )
        self._questions_ask_what_is_published()
        return self

    def _questions_ask_what_is_published(self) -> None:
        names = [q.name for q in self.questions]
        if len(set(names)) < len(names):
            raise ValueError(f"questions: names repeat ({sorted({n for n in names if names.count(n) > 1})})")
        qis = {c.published_name: c for c in self.quasi_identifiers}
        for q in self.questions:
            for name, level in q.by.items():
                if name not in qis:
                    raise ValueError(f"question {q.name!r}: {name!r} is not a published quasi-identifier ({sorted(qis)})")
                lowest = qis[name].level_range[0]
                if level < lowest:
                    raise ValueError(
                        f"question {q.name!r}: {name} at level {level}, but the policy publishes it at {lowest} at the finest"
                    )

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def at_least(self, floor: dict[str, int]) -> SourcePolicy:
        """This policy with each engine-chosen quasi-identifier's lowest allowed level raised to
        `floor` (by published name, capped at its highest): the release's levels, so that every
        partition of a dataset publishes a column at one level (see flows/pipeline/release_levels.py).
        Coarser is never less private: classes only merge."""
        columns = []
        for c in self.columns:
            op = c.operator
            wanted = floor.get(c.output_name or "", 0)
            if c.quasi and isinstance(op, Generalize) and op.levels is not None and wanted > op.levels[0]:
                lo, hi = op.levels
                c = Column.model_validate(c.model_dump(by_alias=True) | {"params": {**c.params, "levels": [min(wanted, hi), hi]}})
            columns.append(c)
        return self.model_copy(update={"columns": columns})

    def published_name(self, name: str) -> str:
        """The published name of a column the policy publishes (KeyError for one it drops)."""
        return self.column(name).published_name

    def header_column(self, header: str) -> Column:
        """The policy column of a header known to be covered (KeyError otherwise)."""
        found = self.match_header(header)
        if found is None:
            raise KeyError(f"{self.source}: header {header!r} is not in the policy")
        return found

    def match_header(self, header: str) -> Column | None:
        """The policy column an export header refers to, by name or alias (derived entries have
        no header of their own)."""
        return next((c for c in self.columns if c.source is None and (header == c.name or header in c.aliases)), None)

    @property
    def input_columns(self) -> list[Column]:
        return [c for c in self.columns if c.source is None]

    @property
    def quasi_identifiers(self) -> list[Column]:
        return [c for c in self.columns if c.quasi]

    @property
    def item_attributes(self) -> list[Column]:
        """The quasi-identifiers of each item (purchase, contact): together, one item."""
        return [c for c in self.quasi_identifiers if c.part == "item"]

    @property
    def counts_itemsets(self) -> bool:
        """Whether k^m is counted on this source's records (items, and m above 1): the count that
        holds a whole unit in memory, and so the one a unit's size is limited for."""
        return bool(self.item_attributes) and self.privacy.m > 1

    @property
    def sensitive_outputs(self) -> list[str]:
        """Published names of the attributes a criterion is declared on, each once."""
        return list(self.model.sensitive)

    @property
    def model(self) -> PrivacyModel:
        """The privacy model of this source's partitions (transforms/criteria.py), built here once,
        on the published names."""
        on = tuple(dataclasses.replace(c, column=self.published_name(c.column)) for c in self.privacy.criteria)
        return PrivacyModel(self.privacy.k, on, self.privacy.m)

    @property
    def output_columns(self) -> list[str]:
        cols = [c.output_name for c in self.columns if c.output_name]
        return cols + [self.entity] if self.entity and self.entity not in cols else cols


def load_policy(path: Path) -> SourcePolicy:
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("columns"), dict):
        raise PolicyError(f"{path}: expected a mapping with a 'columns' mapping")
    source = data.get("source", "?")
    columns = []
    for name, spec in data["columns"].items():
        try:
            columns.append(Column.model_validate({"name": name, **(spec or {})}))
        except ValidationError as exc:
            raise PolicyError(f"{path}: source {source!r}, column {name!r}: {_explain(exc)}") from None
    digest = hashlib.sha256(raw)
    for column in columns:
        if isinstance(column.operator, Generalize) and column.operator.hierarchy.table:
            table = path.parent / column.operator.hierarchy.table
            if not table.is_file():
                raise PolicyError(f"{path}: source {source!r}, column {column.name!r}: hierarchy file {table} not found")
            digest.update(table.read_bytes())
    try:
        return SourcePolicy.model_validate({**data, "columns": columns, "path": path, "sha256": digest.hexdigest()})
    except ValidationError as exc:
        raise PolicyError(f"{path}: source {source!r}: {_explain(exc)}") from None


def load_policies(directory: Path) -> dict[str, SourcePolicy]:
    """Every policy file of `directory`, checked one by one and together (links name known sources)."""
    if not directory.is_dir():
        raise PolicyError(f"--policies {directory}: no such directory")
    policies: dict[str, SourcePolicy] = {}
    for path in sorted(directory.glob("*.yaml")):
        policy = load_policy(path)
        if policy.source in policies:
            raise PolicyError(f"{path}: source {policy.source!r} is already defined in {policies[policy.source].path}")
        policies[policy.source] = policy
    if not policies:
        raise PolicyError(f"{directory}: no policy files (*.yaml)")
    for policy in policies.values():
        for link in policy.link:
            if link.source not in policies:
                raise PolicyError(f"{policy.path}: link to unknown source {link.source!r}")
    return policies


def _explain(exc: ValidationError) -> str:
    """pydantic's messages without the offending input values (a policy holds no personal data,
    but error text should stay short and never echo values)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
