"""The raw exports as the DP tables read them (flows/pipeline/dp.py): only the columns the tables
and the linking of customers need, with every identifier normalized as tokens normalize it, so
that a customer's document, mobile or member number matches across sources, and whether a row
names someone on the erasure list. In the restricted area only: nothing here is published.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa

from flows.storage import landing as landing_io
from transforms import dp_policy, dp_tables, steps
from transforms.identifiers import SUBJECT_IDENTIFIERS
from transforms.linkage import ERASED
from transforms.policy import SourcePolicy
from transforms.text import NORMALIZERS, no_placeholders

BLOCK = 1 << 24  # bytes of CSV per block read


def listed(landing: landing_io.Landing, policies: dict[str, SourcePolicy], dates: list[dt.date]) -> list[dict[str, str]]:
    """Every export file of every source on `dates`: source, landing path, SHA-256."""
    return [
        {"source": source, "path": relative, "sha256": landing.sha256(relative)}
        for source, policy in policies.items()
        for date in dates
        for relative in landing_io.files_for(landing, policy, date)
    ]


def _columns(source: str, policies: dict[str, SourcePolicy], tables: dict[str, dp_policy.Table]) -> list[str]:
    policy = policies[source]
    wanted = set(policy.subject_keys.values()) | {link.column for link in policy.link}
    wanted |= set(steps.link_keys_of(policies, source))
    for table in tables.values():
        if table.source == source:
            wanted |= set(dp_tables.columns_read(table))
    return sorted(wanted)


def read(
    landing: landing_io.Landing,
    policies: dict[str, SourcePolicy],
    tables: dict[str, dp_policy.Table],
    files: list[dict[str, str]],
) -> dict[str, pl.DataFrame]:
    """Per source, the rows of `files` as the tables and the linking of customers need them: the raw
    text of the tables' columns, normalized identifiers `id:<kind>` and link keys
    `link:<source>.<key>`, and `_erased` (the row names someone on the erasure list)."""
    subjects = steps.Subjects.from_requests(landing_io.applied_requests(landing_io.read_erasure_requests(landing)))
    frames = {}
    for source, policy in policies.items():
        columns = _columns(source, policies, tables)
        needed = sorted({c for t in tables.values() if t.source == source for c in dp_tables.columns_read(t)})
        kept = needed + _identified_names(source, policies) + [ERASED]
        blocks = []
        for relative in (f["path"] for f in files if f["source"] == source):
            for table in landing_io.iter_csv(landing, relative, policy, [], columns, block_size=BLOCK):
                block = _identified(table, source, policies, subjects).select(kept)
                blocks.append(block if needed else block.unique())  # a snapshot only links: its distinct identifiers
        if blocks:
            frames[source] = pl.concat(blocks)
    return frames


def _identified_names(source: str, policies: dict[str, SourcePolicy]) -> list[str]:
    policy = policies[source]
    names = [f"id:{kind}" for kind in policy.subject_keys]
    names += [f"link:{link.source}.{link.key}" for link in policy.link]
    names += [f"link:{source}.{key}" for key in steps.link_keys_of(policies, source)]
    return sorted(set(names))


def _identified(table: pa.Table, source: str, policies: dict[str, SourcePolicy], subjects: steps.Subjects) -> pl.DataFrame:
    """The block with its identifiers normalized as tokens normalize them, so that a customer's
    document, mobile or member number matches across sources (a placeholder or a dummy number
    matches nothing: transforms/text.py), and whether it names an erased subject."""
    policy = policies[source]
    added: dict[str, pa.Array] = {}
    for kind, column in policy.subject_keys.items():
        added[f"id:{kind}"] = no_placeholders(NORMALIZERS[SUBJECT_IDENTIFIERS[kind].normalize](table[column]))
    for link in policy.link:
        added[f"link:{link.source}.{link.key}"] = no_placeholders(steps.link_keys(table[link.column]))
    for key in steps.link_keys_of(policies, source):
        added[f"link:{source}.{key}"] = no_placeholders(steps.link_keys(table[key]))
    added[ERASED] = pa.array(steps.subject_rows(table, policy, subjects))
    for name, values in added.items():
        table = table.append_column(name, values)
    return pl.from_arrow(table)  # type: ignore[return-value]
