"""The pure steps between reading an export and validating its anonymized form.

    conform -> parse -> entity -> erase -> anonymize (policy operators + privacy engine)

Each takes Arrow tables and returns Arrow tables (or masks); none does I/O. Errors name the file,
row and column, never a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.anonymity import Diversity, Solution, search
from transforms.hierarchy import Encoded, encode
from transforms.operators import Context, Generalize, Pseudonymize
from transforms.parse import parse
from transforms.policy import Column, SourcePolicy
from transforms.pseudonymize import Pseudonymizer
from transforms.text import NORMALIZERS


class ExportError(ValueError):
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
    names = [policy.match_header(h.strip()).name for h in table.column_names if policy.match_header(h.strip())]
    if unknown:
        raise ExportError(
            f"{origin}: column(s) {unknown} are not covered by policy {policy.path.name}; nothing is published. "
            f"Propose an entry with: tuomin classify {origin}"
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ExportError(f"{origin}: column(s) {dupes} appear more than once")
    missing = [c.name for c in policy.input_columns if c.required and c.name not in names]
    if missing:
        raise ExportError(f"{origin}: required column(s) {missing} are missing (policy {policy.path.name})")
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
    if source is None:
        return None
    return pseudonymizer.tokens(table[source.name], source.operator.domain, source.operator.normalize)


def link_keys(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Link keys (member numbers, receipt ids) in the form both sides are compared in."""
    keys = NORMALIZERS["upper"](column)
    return keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys


def linked_tokens(table: pa.Table, policy: SourcePolicy, lookups: list[tuple[pa.Array, pa.Array]]) -> pa.Array:
    """Entity tokens found through the policy's links, in order: lookups[i] = (keys, tokens) of
    link i. The first link that finds the row wins; none = null."""
    out = pa.nulls(table.num_rows, pa.string())
    for link, (keys, tokens) in zip(policy.link, lookups):
        found = tokens.take(pc.index_in(link_keys(table[link.column]), keys))
        out = pc.coalesce(out, found)
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
        return cls(values("doc_no", "document"), values("mobile", "mobile"), values("member_no", "upper"))

    def __len__(self) -> int:
        return len(self.doc_no) + len(self.mobile) + len(self.member_no)


SUBJECT_NORMALIZERS = {"doc_no": "document", "mobile": "mobile", "member_no": "upper"}


def subject_rows(table: pa.Table, policy: SourcePolicy, subjects: Subjects) -> np.ndarray:
    """Rows that carry an erased subject's document, mobile or member number."""
    hit = np.zeros(table.num_rows, bool)
    for key, column in policy.subject_keys.items():
        wanted = getattr(subjects, key)
        if wanted:
            values = NORMALIZERS[SUBJECT_NORMALIZERS[key]](table[column])
            hit |= _mask(pc.is_in(values, pa.array(sorted(wanted), pa.string())))
    return hit


def erased_tokens(sources: list[tuple[SourcePolicy, pa.Table, pa.Array | None]], subjects: Subjects) -> set[str]:
    """The entity tokens of every subject found in any of these tables (by document, mobile or
    member number): a subject named by mobile in the CRM is thereby erased from POS too."""
    found: set[str] = set()
    for policy, table, tokens in sources:
        if tokens is not None and len(subjects):
            hit = subject_rows(table, policy, subjects)
            found |= {t for t in tokens.filter(pa.array(hit)).to_pylist() if t}
    return found


def erasure_rows(table: pa.Table, policy: SourcePolicy, tokens: pa.Array | None, subjects: Subjects,
                 erased: set[str]) -> np.ndarray:
    """Rows to erase: they name a subject directly, or belong to an erased subject's token."""
    rows = subject_rows(table, policy, subjects)
    if tokens is not None and erased:
        rows |= _mask(pc.is_in(tokens, pa.array(sorted(erased), pa.string())))
    return rows


@dataclass
class Anonymized:
    table: pa.Table  # the published rows and columns
    suppressed: int  # rows removed by record suppression
    solution: Solution | None  # None when the source has no quasi-identifier
    quasi_identifiers: list[str]  # output names
    cells_suppressed: dict[str, int] = field(default_factory=dict)  # output column -> cells its operator nulled


def anonymize(table: pa.Table, tokens: pa.Array | None, policy: SourcePolicy, ctx: Context) -> Anonymized:
    """Apply every column's operator, then let the privacy engine choose the quasi-identifiers'
    levels and the records to suppress so that k holds (in distinct entities when given)."""
    outputs: dict[str, pa.Array | None] = {}
    encoded: dict[str, Encoded] = {}
    ranges: dict[str, tuple[int, int]] = {}
    weights: dict[str, float] = {}
    cells: dict[str, int] = {}
    for column in policy.columns:
        if column.output_name == policy.entity and tokens is not None:
            outputs[column.output_name] = tokens  # already computed to link and erase
        elif column.quasi:
            op: Generalize = column.operator
            encoded[column.output_name] = encode(column.output_name, table[column.name], op.hierarchy.build(ctx))
            ranges[column.output_name] = column.level_range
            weights[column.output_name] = op.weight
            outputs[column.output_name] = None  # filled at the level the engine chooses
        else:
            value = column.operator.apply(table[column.name], ctx)
            if value is not None:
                outputs[column.output_name] = value
                nulled = value.null_count - table[column.name].null_count
                if nulled > 0:
                    cells[column.output_name] = nulled
    if policy.entity and policy.entity not in outputs:
        outputs[policy.entity] = tokens if tokens is not None else pa.nulls(table.num_rows, pa.string())
    if not encoded:
        return Anonymized(pa.table(outputs), 0, None, [], cells)

    entity = None
    if policy.entity:
        codes = pc.dictionary_encode(outputs[policy.entity]).indices
        entity = pc.fill_null(codes, -1).to_numpy(zero_copy_only=False)
    diversity = [Diversity(m.attribute, pd.factorize(outputs[policy.column(m.attribute).output_name].to_pandas(),
                                                      use_na_sentinel=False)[0], m.l, m.measure)
                 for m in policy.privacy.l_diversity]
    solution = search(list(encoded.values()), ranges, policy.privacy.k, policy.privacy.max_suppression, entity, weights,
                      diversity)
    kept = pa.array(np.flatnonzero(~solution.suppressed))
    published = {name: encoded[name].column(solution.levels[name], kept) if name in encoded else col.take(kept)
                 for name, col in outputs.items()}
    return Anonymized(pa.table(published), int(solution.suppressed.sum()), solution, list(encoded), cells)


def person_names(table: pa.Table, policy: SourcePolicy) -> list[str]:
    """Values of the columns the policy marks as person names (the redaction dictionary)."""
    names: list[str] = []
    for column in policy.columns:
        if column.kind == "person_name" and column.name in table.column_names:
            names += [v for v in pc.unique(table[column.name]).to_pylist() if v]
    return names


def _mask(values) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)
