"""What a motivated intruder can do with a release as published (../shared/privacy-model.md):
the person-level record, and the three tests (singling out, linkability, inference) measured on it.

The intruder holds every published file and its metadata, and knows of their target the person's
own attributes (the relational part) and up to `purchases` purchases and `contacts` service
contacts (items). Every published column about a person may be known; keyed tokens cannot be
recomputed, but they join.

    people      every row that shares a token (customer, receipt, case) with another, across
                datasets and dates, is one person-level record (connected components)
    relational  a column with one value per person in its dataset (in a profile dataset, such as
                a membership snapshot, every column); a person's value is the set of values
                they show (two snapshots that differ show both)
    items       the other columns of an event row (a purchase, a contact), with its unit's period;
                a bag, as the rows are: an item in two equal rows is two items (its first and
                second occurrence), so that "bought it twice" is something one may know
    support     of an itemset: the people in the person's relational class who hold it. Counted
                level by level as Apriori does (an itemset of m items only from persons whose
                (m-1)-itemsets are held by someone else too), in DuckDB, out of core
    chains      two snapshots of a profile dataset on different dates, linked without a token:
                tuples unique on both dates, and relational classes in which fewer than k
                people changed between them (snapshot_chains)

A person's re-identification probability is 1 / the smallest support of anything the intruder may
know of them (relational attributes alone, or with up to m items); they are singled out when it
is 1, and break k^m when it is below k for some itemset of at most m items. Counts and shares
only: no value leaves this module.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.stats import spearmanr

from transforms.itemsets import hash_ranges
from transforms.linkage import components

PERIOD = "period"  # the column each row's unit comes in (flows/pipeline/intruder.read)

PROFILE, PURCHASES, CONTACTS = "profile", "purchases", "contacts"
PERSON_DOMAINS = ("customer", "receipt", "case")  # tokens that stand for a customer or one of their records
# A level's (person, itemset) pairs one pass of the count forms. A pass holds its itemsets' supports
# and, joined back to the pairs, each person's smallest and largest: at a 2 M-line day's release
# 1.5 GiB above the rows at 4 M pairs (transforms/itemsets.BUDGET), 0.66 GiB at 1 M, in the
# same time (benchmarks/RESULTS.md).
BUDGET = 1_000_000


@dataclass(frozen=True)
class Adversary:
    """What the intruder knows of a target beyond the relational part."""

    k: int = 5
    purchases: int = 3
    contacts: int = 1


@dataclass
class Dataset:
    """One published dataset as the intruder sees it: all its files' rows, with `period` (its unit)."""

    name: str
    table: pa.Table
    record: str  # PROFILE, PURCHASES or CONTACTS: what its rows are in a person's record
    tokens: dict[str, str]  # column -> token domain ("customer", "receipt", "case", "staff", ...)
    sensitive: list[str] = field(default_factory=list)
    free_text: list[str] = field(default_factory=list)


@dataclass
class People:
    """Every row's person (a dense id), and each dataset's relational and item columns."""

    ids: dict[str, np.ndarray]  # dataset -> person id per row
    count: int
    relational: dict[str, list[str]]
    items: dict[str, list[str]]


def people(datasets: list[Dataset]) -> People:
    """Connected components of rows and person tokens: two rows are one person's when they share
    a customer, receipt or case token (in any dataset, on any date). A row without one is a person
    of its own."""
    parts = components(
        [d.table.num_rows for d in datasets],
        (
            (domain, i, d.table[column])
            for i, d in enumerate(datasets)
            for column, domain in d.tokens.items()
            if domain in PERSON_DOMAINS
        ),
    )
    ids = {d.name: part for d, part in zip(datasets, parts)}
    count = int(max((part.max(initial=-1) for part in parts), default=-1)) + 1
    relational: dict[str, pd.DataFrame] = {}
    items: dict[str, pd.DataFrame] = {}
    for d in datasets:
        described = [c for c in d.table.column_names if c not in d.tokens and c not in d.sensitive and c != "period"]
        if d.record == PROFILE:
            relational[d.name], items[d.name] = described, []
            continue
        person = np.asarray(ids[d.name], np.int64)
        records = len(pd.unique(person))
        single = []
        for column in described:
            # One value per person: as many distinct (person, value) pairs as people.
            value, distinct = _codes(d.table[column])
            if records and len(pd.unique(person * max(distinct, 1) + value)) == records:
                single.append(column)
        relational[d.name] = single
        items[d.name] = [c for c in described if c not in single] + ["period"]
    return People(ids, count, relational, items)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """A column's values as dense codes (a null one of them) and how many there are: Arrow's
    encoding of the values as they are (pandas would first convert every value)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    # One array before encoding: a chunked array of no chunks (a dataset without rows in a group
    # of units) encodes to one that Arrow cannot combine for every type (dates).
    encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(encoded.dictionary)


def _hash(table: pa.Table, tag: str = "") -> np.ndarray:
    """A 64-bit value per row for the row's values in `table`'s columns (and `tag`, which keeps two
    datasets' values apart): each column's values as dense codes (exact), the codes hashed
    together. Equal rows, equal values, within one call's tables."""
    codes = {name: _codes(table[name])[0] for name in table.column_names}
    codes["__tag"] = np.full(table.num_rows, zlib.crc32(tag.encode()), np.int64)
    return pd.util.hash_pandas_object(pd.DataFrame(codes), index=False).to_numpy().view(np.int64)


def relational_classes(datasets: list[Dataset], found: People) -> np.ndarray:
    """Each person's relational class (a dense id): the set of values they show in every
    relational column of every dataset (none where they have no row)."""
    sets: dict[str, np.ndarray] = {}
    for d in datasets:
        columns = found.relational[d.name]
        if not columns:
            continue
        frame = pd.DataFrame({"p": found.ids[d.name], "v": _hash(d.table.select(columns))}).drop_duplicates()
        # Most people show one value; the few who show several (snapshots that differ) are
        # valued by the sorted set of them.
        several = frame["p"].duplicated(keep=False).to_numpy()
        value = np.zeros(found.count, np.int64)
        shown = np.zeros(found.count, np.int8)
        value[frame["p"].to_numpy()[~several]] = frame["v"].to_numpy()[~several]
        shown[frame["p"].to_numpy()] = 1
        if several.any():
            sets_of = frame[several].sort_values(["p", "v"]).groupby("p")["v"].apply(tuple)
            value[sets_of.index.to_numpy()] = _hash(pa.table({"v": pa.array([str(t) for t in sets_of])}), "sets")
            shown[sets_of.index.to_numpy()] = 2
        sets[f"{d.name}:v"], sets[f"{d.name}:shown"] = value, shown
    if not sets:
        return np.zeros(found.count, np.int64)
    return pd.DataFrame(sets).groupby(list(sets), sort=False).ngroup().to_numpy().astype(np.int64)


def items(datasets: list[Dataset], found: People, classes: np.ndarray) -> pd.DataFrame:
    """Distinct (person, class, item, kind) with `n`, the rows that show it: kind 0 a purchase,
    1 a contact. Rows are a bag: two equal rows are two purchases."""
    parts = []
    for d in datasets:
        if d.record == PROFILE or not found.items[d.name]:
            continue
        item = _hash(d.table.select(found.items[d.name]), d.name)
        person = found.ids[d.name]
        parts.append(
            pd.DataFrame({"person": person, "cls": classes[person], "item": item, "kind": np.int8(d.record == CONTACTS)})
        )
    if not parts:
        return pd.DataFrame({"person": [], "cls": [], "item": [], "kind": [], "n": []}).astype(np.int64)
    keys = ["person", "cls", "item", "kind"]
    return pd.concat(parts, ignore_index=True).groupby(keys, sort=False).size().rename("n").reset_index()


def smallest_support(
    held: pd.DataFrame, adversary: Adversary, threshold: int = 2, where: Path | None = None, budget: int = BUDGET
) -> pd.DataFrame:
    """Per person with items, the smallest support of their itemsets of each size (min_1 … min_M,
    cumulative: min over sizes up to it). `held` is a bag of (person, cls, item, kind) rows, or
    its distinct rows with their count in `n`: an item held twice is two items (its first and
    second occurrence), up to the number of that kind the adversary knows. Counted level by
    level: an itemset is extended only
    while held by `threshold` people or more. A person whose smaller itemset is held by fewer is
    already below the threshold, so the minima are exact for everyone at or above it.

    A level's (person, itemset) pairs are formed from each person's sorted items as increasing
    positions (a prefix only where it is held by `threshold` or more), among the people who can
    form one (enough items of each kind the intruder may know, and an itemset one smaller that is
    extended). Where there are more than `budget` of them, they are formed and counted once per
    hash range of the itemsets' class and first item, so memory follows `budget`, not the release
    (as in transforms/itemsets.py)."""
    top = adversary.purchases + adversary.contacts
    occurrences = max(adversary.purchases, adversary.contacts, 1)  # an item's occurrences that can count
    with tempfile.TemporaryDirectory(dir=where) as scratch:
        con = duckdb.connect()
        con.execute(f"SET temp_directory = '{scratch}'")
        con.register("held", held)
        # Rows are a bag: an item held n times is n items (its 1st, 2nd … occurrence), as many as
        # the intruder may know of its kind, so "bought it twice" is an itemset like any other.
        # A key is the item's rank, then its occurrence (0 … occurrences - 1), then its kind in
        # the lowest bit: a person's items are then one sorted list, an item's occurrences side
        # by side (a second list in the same order would cost it twice over).
        count = "sum(n)" if "n" in held.columns else "count(*)"
        most = f"greatest(CASE WHEN kind = 1 THEN {adversary.contacts} ELSE {adversary.purchases} END, 1)"
        con.execute(f"""CREATE TABLE pi AS WITH g AS (SELECT person, cls, item, kind, least({count}, {most})::BIGINT AS n
                        FROM held GROUP BY person, cls, item, kind), x AS (
                        SELECT item, kind, row_number() OVER (ORDER BY item, kind) - 1 AS ix
                        FROM (SELECT DISTINCT item, kind FROM g))
                        SELECT person, cls, (x.ix * {occurrences} + j) * 2 + kind AS item, kind FROM (
                        SELECT *, unnest(range(n)) AS j FROM g) JOIN x USING (item, kind)""")
        con.execute("""CREATE TABLE n AS SELECT person, count(*) FILTER (WHERE kind = 0) AS np,
                       count(*) FILTER (WHERE kind = 1) AS nc FROM pi GROUP BY person""")
        minima = []
        for level in range(1, top + 1):
            # Who can hold an itemset of this size the intruder may know: enough items of each
            # kind and, above 1, an itemset one smaller held by `threshold` or more (a prefix to
            # extend). Everyone else forms no pair here.
            prefix = f"AND person IN (SELECT person FROM m WHERE x >= {threshold})" if level > 1 else ""
            can = f"least(np, {adversary.purchases}) + least(nc, {adversary.contacts}) >= {level}" if level > 1 else "true"
            con.execute(f"""CREATE OR REPLACE TABLE ll AS SELECT person, cls, list(item ORDER BY item) AS l,
                            count(*)::DOUBLE AS n FROM pi
                            WHERE person IN (SELECT person FROM n WHERE {can} {prefix}) GROUP BY person, cls""")
            names = [f"i{j}" for j in range(1, level + 1)]
            key = ", ".join(names)

            def pairs(ranges: int, part: int, level: int = level) -> str:
                """One hash range's (person, itemset) pairs: increasing positions in each
                person's sorted items, extending only a prefix held by `threshold` or more."""
                first = f"unnest(generate_series(1, len(l) - {level - 1})) AS x1"
                q = f"SELECT person, cls, l, {first} FROM ll WHERE len(l) >= {level}"
                # An item's n-th occurrence only with its (n-1)-th, right before it in the list.
                q = f"SELECT * FROM ({q}) WHERE (l[x1] >> 1) % {occurrences} = 0"
                if ranges > 1:
                    q += f" AND hash(cls, l[x1]) % {ranges} = {part}"
                for j in range(2, level + 1):
                    if j == level:
                        on = " AND ".join(["f.cls = q.cls"] + [f"f.i{t} = q.l[q.x{t}]" for t in range(1, level)])
                        q = f"SELECT q.* FROM ({q}) q SEMI JOIN f{level - 1} f ON {on}"
                    q = f"SELECT *, unnest(generate_series(x{j - 1} + 1, len(l) - {level - j})) AS x{j} FROM ({q})"
                    q = f"SELECT * FROM ({q}) WHERE (l[x{j}] >> 1) % {occurrences} = 0 OR x{j} = x{j - 1} + 1"
                kinds = ["true"]
                if level > 1:
                    purchases = " + ".join(f"((l[x{t}] & 1) = 0)::INT" for t in range(1, level + 1))
                    contacts = " + ".join(f"((l[x{t}] & 1) = 1)::INT" for t in range(1, level + 1))
                    kinds = [f"{purchases} <= {adversary.purchases}", f"{contacts} <= {adversary.contacts}"]
                itemset = ", ".join(f"l[x{t}] AS i{t}" for t in range(1, level + 1))
                return f"SELECT person, cls, {itemset} FROM ({q}) WHERE {' AND '.join(kinds)}"

            ranges = hash_ranges(con.execute, "ll", level, pairs, budget)
            con.execute("CREATE OR REPLACE TABLE m (person BIGINT, m BIGINT, x BIGINT)")
            if level < top:
                con.execute(f"CREATE TABLE f{level} (cls BIGINT, {', '.join(n + ' BIGINT' for n in names)})")
            for part in range(ranges):
                con.execute(f"CREATE OR REPLACE TABLE c AS {pairs(ranges, part)}")
                con.execute(f"CREATE OR REPLACE TABLE s AS SELECT cls, {key}, count(*) AS sup FROM c GROUP BY ALL")
                con.execute(f"INSERT INTO m SELECT person, min(sup), max(sup) FROM c JOIN s USING (cls, {key}) GROUP BY person")
                if level < top:
                    con.execute(f"INSERT INTO f{level} SELECT cls, {key} FROM s WHERE sup >= {threshold}")
            if level > 1:
                con.execute(f"DROP TABLE f{level - 1}")
            minima.append(
                con.execute("SELECT person, min(m) AS m FROM m GROUP BY person").df().rename(columns={"m": f"min_{level}"})
            )
        con.close()
    out = minima[0]
    for part in minima[1:]:
        out = out.merge(part, on="person", how="left")
    columns = [f"min_{level}" for level in range(1, top + 1)]
    # Knowing more never widens the crowd; a person with fewer items than a level keeps their last minimum.
    out[columns] = out[columns].ffill(axis=1).cummin(axis=1)
    return out


@dataclass
class Check:
    name: str
    passed: bool
    measured: str
    required: str


def spearman_p(values: pd.Series) -> tuple[float, float]:
    """Rank correlation of a column with its row order, and its p-value (independence)."""
    codes = pd.factorize(values, sort=True, use_na_sentinel=False)[0]
    if len(codes) < 3 or len(set(codes)) < 2:
        return 0.0, 1.0
    rho, p = spearmanr(np.arange(len(codes)), codes)
    return (0.0, 1.0) if math.isnan(rho) else (float(rho), float(p))


def person_frame(
    datasets: list[Dataset],
    adversary: Adversary,
    where: Path | None = None,
    items_alone: bool = True,
    threshold: int = 2,
) -> pd.DataFrame:
    """One row per person-level record, numbers only: `support_0` the size of their relational
    class, `support_m` (m = 1 … M) the smallest crowd that shares their relational class and any
    itemset of up to m items they hold, `items_alone_m` the same from the items alone (a second
    count, left out when not asked for), `l:<dataset>.<column>` the distinct values of a sensitive
    attribute in their class (where they have it), and `units` the datasets and dates their rows
    span (a token shared outside its unit joins two). Supports are exact at `threshold` and above,
    and below it wherever the true one is (smallest_support): 2 for figures that count the people
    singled out, the smallest k judged where only k is (the release gate; far fewer itemsets)."""
    found = people(datasets)
    classes = relational_classes(datasets, found)
    frame = pd.DataFrame(
        {"person": np.arange(found.count), "support_0": np.bincount(classes)[classes] if found.count else np.zeros(0, np.int64)}
    )
    held = items(datasets, found, classes)
    levels = adversary.purchases + adversary.contacts
    counts = [("support", held)] + ([("items_alone", held.assign(cls=0))] if items_alone else [])
    for label, table in counts:
        minima = smallest_support(table, adversary, threshold, where) if len(table) else pd.DataFrame({"person": []})
        frame = frame.merge(
            minima.rename(columns={f"min_{m}": f"{label}_{m}" for m in range(1, levels + 1)}), on="person", how="left"
        )
    for m in range(1, levels + 1):
        frame[f"support_{m}"] = np.fmin(frame["support_0"], frame.get(f"support_{m}", np.inf))
        if items_alone:
            frame[f"items_alone_{m}"] = frame.get(f"items_alone_{m}", pd.Series(np.inf, index=frame.index)).fillna(np.inf)
    for d in datasets:
        for column in d.sensitive:
            values = pd.DataFrame(
                {"cls": classes[found.ids[d.name]], "v": pd.factorize(d.table[column].to_pandas(), use_na_sentinel=False)[0]}
            )
            distinct = values.groupby("cls")["v"].nunique()
            frame[f"l:{d.name}.{column}"] = (
                pd.Series(classes).map(distinct).where(pd.Series(np.isin(np.arange(found.count), found.ids[d.name])))
            )
    spans = [
        pd.DataFrame(
            {
                "person": found.ids[d.name],
                "unit": _hash(d.table.select(["period"]), d.name),
            }
        )
        for d in datasets
    ]
    units = pd.concat(spans).drop_duplicates().groupby("person").size() if spans else pd.Series(dtype=np.int64)
    frame["units"] = units.reindex(frame["person"]).fillna(0).astype(np.int64).to_numpy()
    frame.attrs.update(people=found, classes=classes)
    return frame


def measure(datasets: list[Dataset], adversary: Adversary, where: Path | None = None) -> dict:
    """Singling out and k^m on the person-level records, the sensitive values certain in a class,
    and snapshot differencing: the release-wide figures of `tuomin risk` that need the rows."""
    frame = person_frame(datasets, adversary, where)
    found = frame.attrs["people"]
    levels = adversary.purchases + adversary.contacts
    smallest = frame[f"support_{levels}"].to_numpy(float)
    n = max(found.count, 1)
    k = adversary.k
    km = {str(m): float((frame[f"support_{m}"] < k).sum() / n) for m in range(1, levels + 1)}
    km_alone = {str(m): float((frame[f"items_alone_{m}"] < k).sum() / n) for m in range(1, levels + 1)}
    sensitive = {}
    for d in datasets:
        for column in d.sensitive:
            l = frame[f"l:{d.name}.{column}"].dropna()
            sensitive[f"{d.name}.{column}"] = {
                "certain_share": float((l <= 1).sum() / max(len(l), 1)),
                "l_min": int(l.min()) if len(l) else 0,
            }
    return {
        "people": found.count,
        "relational": {d.name: found.relational[d.name] for d in datasets},
        "items": {d.name: found.items[d.name] for d in datasets},
        "relational_k": int(frame["support_0"].min()) if found.count else 0,
        "max_risk": float(1 / smallest.min()) if found.count else 0.0,
        "average_risk": float(np.mean(1 / smallest)) if found.count else 0.0,
        "singled_out_share": float((smallest <= 1).sum() / n),
        "below_k_share": float((smallest < k).sum() / n),
        "km_break_share": km,
        "km_break_share_items_alone": km_alone,
        "sensitive": sensitive,
        "snapshots": {d.name: snapshot_changes(d, found) for d in datasets if d.record == PROFILE},
    }


def staff_tokens(datasets: list[Dataset]) -> list[str]:
    """Published columns (`dataset.column`) holding a staff token: staff are people the release does not model."""
    return sorted(f"{d.name}.{c}" for d in datasets for c, domain in d.tokens.items() if domain == "staff")


def free_text(datasets: list[Dataset]) -> list[str]:
    """Published free-text columns (`dataset.column`)."""
    return sorted(f"{d.name}.{c}" for d in datasets for c in d.free_text)


def shared_tokens(datasets: list[Dataset], previous: Sequence[Dataset] = ()) -> dict[str, dict[str, int]]:
    """Per token domain: values found in more than one dataset, on more than one date of a
    dataset, and in an earlier version of the release (`previous`)."""
    seen: dict[str, dict[str, set]] = {}
    out: dict[str, dict[str, int]] = {}
    for d in datasets:
        for column, domain in d.tokens.items():
            frame = pd.DataFrame({"t": d.table[column].to_pandas(), "date": d.table["period"].to_pandas()}).dropna()
            dates = frame.groupby("t")["date"].nunique()
            stats = out.setdefault(domain, {"values": 0, "across_datasets": 0, "across_dates": 0, "across_versions": 0})
            stats["across_dates"] += int((dates > 1).sum())
            seen.setdefault(domain, {})[d.name] = set(dates.index)
    for domain, by_dataset in seen.items():
        everything = set().union(*by_dataset.values())
        out[domain]["values"] = len(everything)
        out[domain]["across_datasets"] = sum(sum(t in s for s in by_dataset.values()) > 1 for t in everything)
        earlier = set()
        for d in previous:
            earlier |= {t for column, dom in d.tokens.items() if dom == domain for t in d.table[column].to_pylist() if t}
        out[domain]["across_versions"] = len(everything & earlier)
    return out


def snapshot_changes(dataset: Dataset, found: People) -> dict:
    """A profile dataset published on several dates whose people are linked by tokens: the share
    of linked people whose attributes change between two consecutive snapshots (each change
    tells the day it happened: a birthday, a join, a purchase), per column."""
    if dataset.record != PROFILE:
        return {}
    frame = dataset.table.drop_columns([c for c in dataset.tokens if c in dataset.table.column_names]).to_pandas()
    frame["p"] = found.ids[dataset.name]
    dates = frame.groupby("p")["period"].nunique()
    linked = dates[dates > 1].index
    frame = frame[frame["p"].isin(linked)].sort_values(["p", "period"])
    columns = [c for c in frame.columns if c not in ("p", "period")]
    changed, moved_any = {}, np.zeros(len(frame), bool)
    for column in columns:
        codes = pd.Series(pd.factorize(frame[column], use_na_sentinel=False)[0], index=frame.index)
        moved = ((codes != codes.groupby(frame["p"]).shift()) & frame["p"].duplicated()).to_numpy()
        moved_any |= moved
        changed[column] = float(frame.loc[moved, "p"].nunique() / max(len(linked), 1))
    return {
        "linked_people": int(len(linked)),
        "changed_share": float(frame.loc[moved_any, "p"].nunique() / max(len(linked), 1)),
        "columns": changed,
    }


def snapshot_chains(current: list[Dataset], earlier: list[Dataset], k: int) -> dict[str, dict]:
    """Profile snapshots linked without tokens, over every pair of snapshots of two dates the
    intruder holds (two of this copy, or one of an earlier copy and one of this): tuples (every
    column but tokens) unique on both dates, each a member followed from one to the other; and
    relational classes (the columns the intruder knows: all but tokens and sensitive ones) in which
    fewer than k people changed (moved to another tuple, joined or left), each change a small
    crowd's, dated by the snapshots."""
    out: dict[str, dict] = {}
    for d in current:
        if d.record != PROFILE:
            continue
        versions = [("now", p, t) for p, t in _snapshots(d)]
        versions += [("earlier", p, t) for e in earlier if e.name == d.name for p, t in _snapshots(e)]
        pairs = [(a, b) for a, b in itertools.combinations(versions, 2) if "now" in (a[0], b[0]) and a[1] != b[1]]
        relational = [c for c in d.table.column_names if c not in d.tokens and c not in d.sensitive and c != PERIOD]
        unique, members, classes, changed = 0, 0, 0, 0
        for (_, _, a), (_, _, b) in pairs:
            columns = [c for c in a.columns if c in b.columns]
            ca, cb = a.value_counts(subset=columns, dropna=False), b.value_counts(subset=columns, dropna=False)
            unique += int(((ca == 1) & (cb.reindex(ca.index) == 1)).sum())
            members = max(members, len(a), len(b))
            both = pd.concat([ca.rename("a"), cb.rename("b")], axis=1).fillna(0)
            gained, lost = (both["b"] - both["a"]).clip(lower=0), (both["a"] - both["b"]).clip(lower=0)
            levels = [columns.index(c) for c in relational if c in columns]
            by = {"level": levels} if levels else {"by": np.zeros(len(both), int)}
            moved = np.maximum(gained.groupby(**by).sum(), lost.groupby(**by).sum())
            small = moved[(moved > 0) & (moved < k)]
            classes += len(small)
            changed += int(small.sum())
        out[d.name] = {
            "pairs": len(pairs),
            "unique_on_both": unique,
            "unique_share": unique / max(members, 1),
            "classes_changed_below_k": classes,
            "people_in_them": changed,
        }
    return out


def _snapshots(dataset: Dataset) -> list[tuple[str, pd.DataFrame]]:
    """A profile dataset's snapshots (one per period), tokens aside."""
    frame = dataset.table.drop_columns([c for c in dataset.tokens if c in dataset.table.column_names]).to_pandas()
    return [(str(p), g.drop(columns=PERIOD)) for p, g in frame.groupby(PERIOD)]
