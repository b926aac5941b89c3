"""The pure steps on a batch of an export, before it is staged (transforms/plan.py goes on):

    conform -> parse -> entity token (own column, or linked) -> subjects to erase -> names

Each takes Arrow tables and returns Arrow tables (or masks); none does I/O. Errors name the file,
row and column, never a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.errors import Refused, few
from transforms.identifiers import SUBJECT_IDENTIFIERS
from transforms.operators import Pseudonymize
from transforms.parse import parse, true_where
from transforms.policy import Column, SourcePolicy
from transforms.pseudonymize import Pseudonymizer
from transforms.text import NORMALIZERS


class ExportError(Refused, ValueError):
    """An export the policy does not cover or cannot read. Names file and column, never values."""


def unknown_headers(headers: list[str], policy: SourcePolicy) -> list[str]:
    return [h for h in headers if policy.match_header(h.strip()) is None]


def conform(table: pa.Table, policy: SourcePolicy, origin: str, drop_unknown: bool = False) -> pa.Table:
    """Headers -> policy column names. Fails closed on any column the policy does not cover
    (unless told to drop it, which the caller records), on duplicated headers and on missing
    required columns; adds missing optional ones as nulls."""
    unknown = unknown_headers(table.column_names, policy)
    if drop_unknown:
        table, unknown = table.drop_columns(unknown), []
    names = [c.name for h in table.column_names if (c := policy.match_header(h.strip()))]
    if unknown:
        raise ExportError(
            f"{origin}: column(s) {few(unknown)} are not covered by policy {policy.path.name}; nothing is published. "
            f"Propose an entry with: tuomin classify {origin}"
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ExportError(f"{origin}: column(s) {few(dupes)} appear more than once")
    missing = [c.name for c in policy.input_columns if c.required and c.name not in names]
    if missing:
        raise ExportError(f"{origin}: required column(s) {few(missing)} are missing (policy {policy.path.name})")
    table = table.rename_columns(names)
    for column in policy.input_columns:
        if column.name not in names:
            table = table.append_column(column.name, pa.nulls(table.num_rows, pa.string()))
    return table.select([c.name for c in policy.input_columns])


@dataclass
class Parsed:
    table: pa.Table  # typed columns, policy order
    invalid: dict[str, np.ndarray] = field(default_factory=dict)  # column -> rows whose value did not parse

    @property
    def bad(self) -> np.ndarray:
        """Rows with any value that did not parse (they go to quarantine)."""
        bad = np.zeros(self.table.num_rows, bool)
        for mask in self.invalid.values():
            bad |= mask
        return bad


def parse_table(table: pa.Table, policy: SourcePolicy) -> Parsed:
    columns, invalid = [], {}
    for column in policy.columns:
        typed, bad = parse(table[column.input_name], column.type, column.formats)
        columns.append(typed)
        if bad.any():
            invalid[column.name] = bad
    return Parsed(pa.table(columns, names=[c.name for c in policy.columns]), invalid)


def entity_source(policy: SourcePolicy) -> Column | None:
    """The column whose pseudonym is the policy's entity (e.g. doc_no -> customer_id), if any."""
    return next((c for c in policy.columns if c.output_name == policy.entity and isinstance(c.operator, Pseudonymize)), None)


def entity_tokens(table: pa.Table, policy: SourcePolicy, pseudonymizer: Pseudonymizer) -> pa.Array | None:
    """The entity token of each row, when the policy derives it from one of its own columns."""
    source = entity_source(policy)
    return None if source is None else column_tokens(table, source, pseudonymizer)


def column_tokens(table: pa.Table, column: Column, pseudonymizer: Pseudonymizer) -> pa.Array:
    """The tokens of a pseudonymized column's values (entity_source's columns)."""
    op = cast(Pseudonymize, column.operator)
    return pseudonymizer.tokens(table[column.name], op.domain, op.normalize)


def link_keys_of(policies: dict[str, SourcePolicy], source: str) -> list[str]:
    """The columns of `source` that other sources link to."""
    return sorted({link.key for p in policies.values() for link in p.link if link.source == source})


def link_keys(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Link keys (member numbers, receipt ids) in the form both sides are compared in."""
    keys = NORMALIZERS["upper"](column)
    return keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys


def linked_tokens(table: pa.Table, policy: SourcePolicy, lookups: list[tuple[pa.Array, pa.Array]]) -> pa.Array:
    """Entity tokens found through the policy's links, in order: lookups[i] = (keys, tokens) of
    link i. The first link that finds the row wins; none = null."""
    out = pa.nulls(table.num_rows, pa.string())
    for link, (keys, tokens) in zip(policy.link, lookups):
        wanted = link_keys(table[link.column])
        if len(keys) > len(wanted):  # a look-up is hashed where it is probed: narrow it to the batch's keys first
            near = pc.is_in(keys, value_set=pc.unique(wanted))
            keys, tokens = keys.filter(near), tokens.filter(near)
        out = pc.coalesce(out, tokens.take(pc.index_in(wanted, keys)))
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


@dataclass(frozen=True)
class Subjects:
    """Who asked to be erased, as normalized identifiers."""

    doc_no: frozenset[str] = frozenset()
    mobile: frozenset[str] = frozenset()
    member_no: frozenset[str] = frozenset()

    @classmethod
    def from_requests(cls, requests: pa.Table) -> Subjects:
        def values(name: str, normalize: str) -> frozenset[str]:
            if name not in requests.column_names:
                return frozenset()
            return frozenset(v for v in NORMALIZERS[normalize](requests[name]).to_pylist() if v)

        return cls(**{s.name: values(s.name, s.normalize) for s in SUBJECT_IDENTIFIERS.values()})

    def __len__(self) -> int:
        return sum(len(getattr(self, name)) for name in SUBJECT_IDENTIFIERS)


def subject_rows(table: pa.Table, policy: SourcePolicy, subjects: Subjects) -> np.ndarray:
    """Rows that carry an erased subject's document, mobile or member number."""
    hit = np.zeros(table.num_rows, bool)
    for key, column in policy.subject_keys.items():
        wanted = getattr(subjects, key)
        if wanted:
            values = NORMALIZERS[SUBJECT_IDENTIFIERS[key].normalize](table[column])
            hit |= true_where(pc.is_in(values, pa.array(sorted(wanted), pa.string())))
    return hit


def person_names(table: pa.Table, policy: SourcePolicy) -> list[str]:
    """Values of the columns the policy marks as person names (the redaction dictionary)."""
    names: list[str] = []
    for column in policy.columns:
        if column.kind == "person_name" and column.name in table.column_names:
            names += [v for v in pc.unique(table[column.name]).to_pylist() if v]
    return names
