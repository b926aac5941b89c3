"""Privacy metrics of a table, computed from its values: what `tuomin assess`, the GX
expectations and the run's metadata all report, with one implementation.

Everything is a vectorized group-by: each quasi-identifier is factorized once, the codes are
combined into one class id per row, and per-class figures come from bincounts, including the
(class x sensitive value) counts that the criteria on sensitive columns and t-closeness need. Rows whose quasi-
identifiers are null form classes of their own (pandas' groupby would silently drop them), and a
row without an entity counts as a person of its own.

Definitions, as in pycanon (which the tests cross-check on its own data):
- k: the smallest class, in rows or distinct entities;
- l_distinct: the fewest distinct sensitive values in a class; l_entropy: exp of the smallest
  class entropy (pycanon reports its integer part);
- t_closeness: the largest earth mover's distance between a class's sensitive distribution and
  the whole table's, ordered (1/(m-1) sum |cumulative difference|) for numbers, equal distance
  (half the L1 distance) for categories;
- prosecutor risk of a record: 1 / its class size; max and average over records.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from transforms.criteria import PEOPLE, PrivacyModel, Statistic, of_counts

_DENSE_CELLS = 50_000_000  # (classes x sensitive values) counted densely up to this size


def class_ids(df: pd.DataFrame, quasi_identifiers: list[str]) -> np.ndarray:
    """A dense class id per row (0 … classes-1)."""
    if not quasi_identifiers or df.empty:
        return np.zeros(len(df), np.int64)
    key, radix = None, 1
    for name in quasi_identifiers:
        codes, uniques = pd.factorize(df[name], use_na_sentinel=False)
        codes = codes.astype(np.int64)
        size = max(len(uniques), 1)
        if key is None:
            key, radix = codes, size
            continue
        if radix * size >= 2**62:  # re-densify before the mixed radix overflows
            key, dense = pd.factorize(key)
            radix = max(len(dense), 1)
        key, radix = key * size + codes, radix * size
    return pd.factorize(key)[0].astype(np.int64)


def _entity_codes(df: pd.DataFrame, entity: str) -> np.ndarray:
    return pd.factorize(df[entity])[0].astype(np.int64)  # nulls get -1: a person of their own per row


def _counts(df: pd.DataFrame, count: str | None) -> np.ndarray:
    """Rows each frame row stands for: 1, or its count column (a frame of distinct combinations)."""
    return np.ones(len(df), np.int64) if count is None else df[count].to_numpy(np.int64)


def _people(df: pd.DataFrame, ids: np.ndarray, entity: str | None, weights: np.ndarray, people: str | None) -> np.ndarray:
    """Class sizes in people: the `people` column summed per class (a frame of classes), or
    distinct entities, or rows."""
    if people:
        return sizes(ids, None, _counts(df, people))
    return sizes(ids, _entity_codes(df, entity) if entity else None, weights)


def sizes(ids: np.ndarray, entity: np.ndarray | None = None, counts: np.ndarray | None = None) -> np.ndarray:
    """Rows (or distinct entities) per class; an element with no entity (-1) counts as many
    people as rows."""
    counts = np.ones(len(ids), np.int64) if counts is None else counts
    n_classes = int(ids.max(initial=-1)) + 1
    if entity is None:
        return np.bincount(ids, weights=counts, minlength=n_classes).astype(np.int64)
    known = entity >= 0
    radix = int(entity.max(initial=0)) + 1
    pairs = pd.unique(ids[known] * radix + entity[known])
    return (
        np.bincount(pairs // radix, minlength=n_classes) + np.bincount(ids[~known], weights=counts[~known], minlength=n_classes)
    ).astype(np.int64)


def class_sizes(
    df: pd.DataFrame, quasi_identifiers: list[str], entity: str | None = None, count: str | None = None
) -> np.ndarray:
    if df.empty:
        return np.zeros(0, np.int64)
    return sizes(class_ids(df, quasi_identifiers), _entity_codes(df, entity) if entity else None, _counts(df, count))


def k_anonymity(df: pd.DataFrame, quasi_identifiers: list[str], entity: str | None = None, count: str | None = None) -> int:
    found = class_sizes(df, quasi_identifiers, entity, count)
    return int(found.min()) if len(found) else 0


def sensitive_figures(ids: np.ndarray, values: pd.Series, weights: np.ndarray | None = None) -> dict[str, float]:
    """l (distinct and entropy) and t for one sensitive attribute over the given classes."""
    distinct, entropy, emd = per_class(ids, values, weights)
    return {"l_distinct": int(distinct.min()), "l_entropy": float(np.exp(entropy.min())), "t_closeness": float(emd.max())}


def per_class(ids: np.ndarray, values: pd.Series, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: distinct sensitive values, entropy (natural log) and t (earth mover's distance)."""
    numeric = pd.api.types.is_numeric_dtype(values)
    codes, uniques = pd.factorize(values, sort=numeric, use_na_sentinel=False)
    m, n_classes = max(len(uniques), 1), int(ids.max(initial=-1)) + 1
    weights = np.ones(len(ids)) if weights is None else weights.astype(float)
    if n_classes * m <= _DENSE_CELLS:
        counts = np.bincount(ids * m + codes, weights=weights, minlength=n_classes * m).reshape(n_classes, m)
        totals = counts.sum(axis=1)
        distinct = (counts > 0).sum(axis=1)
        p = counts / totals[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
        overall = np.bincount(codes, weights=weights, minlength=m) / weights.sum()
        r = p - overall
        emd = np.abs(np.cumsum(r, axis=1)).sum(axis=1) / (m - 1) if numeric and m > 1 else 0.5 * np.abs(r).sum(axis=1)
        return distinct, entropy, emd
    # Many classes and many values: the same figures from the sparse (class, value) pairs.
    pairs, inverse = np.unique(ids * m + codes, return_inverse=True)
    counts = np.bincount(inverse, weights=weights)
    cls, val = pairs // m, pairs % m
    totals = np.bincount(cls, weights=counts, minlength=n_classes)
    p = counts / totals[cls]
    distinct = np.bincount(cls, minlength=n_classes)
    entropy = -np.bincount(cls, weights=p * np.log(p), minlength=n_classes)
    overall = np.bincount(codes, weights=weights, minlength=m) / weights.sum()
    if numeric and m > 1:
        emd = np.array(
            [
                np.abs(np.cumsum(np.bincount(val[cls == c], weights=p[cls == c], minlength=m) - overall)).sum()
                for c in range(n_classes)
            ]
        ) / (m - 1)
    else:  # sum over present values of |p - q|, plus q for the values a class lacks
        present = np.bincount(cls, weights=np.abs(p - overall[val]) - overall[val], minlength=n_classes)
        emd = 0.5 * (present + 1.0)
    return distinct, entropy, emd


def value_counts(ids: np.ndarray, values: pd.Series, weights: np.ndarray | None = None) -> np.ndarray:
    """Rows per (class, value) of one column: a row per class, the values a class holds in its
    first cells (in no particular order), zero after: what criteria.of_counts derives a sensitive
    column's statistics from. As wide as the most values one class holds."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    m, n_classes = max(len(uniques), 1), int(ids.max(initial=-1)) + 1
    pairs, inverse = np.unique(ids * m + codes, return_inverse=True)
    counts = np.bincount(inverse, weights=np.ones(len(ids)) if weights is None else weights.astype(float))
    cls = pairs // m
    position = np.arange(len(pairs)) - np.searchsorted(cls, cls)  # the pair's place among its class's
    width = int(position.max(initial=-1)) + 1
    if n_classes * width > _DENSE_CELLS:
        raise ValueError(f"{values.name}: {n_classes} classes with up to {width} values each are too many to count")
    out = np.zeros((n_classes, max(width, 1)))
    out[cls, position] = counts
    return out


def class_statistics(
    df: pd.DataFrame,
    quasi_identifiers: list[str],
    needs: Sequence[Statistic],
    entity: str | None = None,
    count: str | None = None,
    people: str | None = None,
) -> tuple[np.ndarray, dict[Statistic, np.ndarray]]:
    """Each row's class, and the statistics `needs` asks for (transforms/criteria.py), per class.
    People and rows as in `assess`."""
    ids = class_ids(df, quasi_identifiers)
    weights = _counts(df, count)
    stats: dict[Statistic, np.ndarray] = {}
    if PEOPLE in needs:
        stats[PEOPLE] = _people(df, ids, entity, weights, people)
    for column in dict.fromkeys(c for _, c in needs if c is not None):
        counts = value_counts(ids, df[column], weights)
        stats.update({(what, on): of_counts(what, counts) for what, on in needs if on == column})
    return ids, stats


def failing(
    df: pd.DataFrame,
    quasi_identifiers: list[str],
    model: PrivacyModel,
    entity: str | None = None,
    count: str | None = None,
    people: str | None = None,
) -> np.ndarray:
    """Rows of df in a class the privacy model fails: the statistics it needs, per class, judged
    by it (transforms/criteria.py). People and rows as in `assess`."""
    if df.empty:
        return np.zeros(0, bool)
    ids, stats = class_statistics(df, quasi_identifiers, model.needs, entity, count, people)
    return model.fails(stats)[ids]


def assess(
    df: pd.DataFrame,
    quasi_identifiers: list[str],
    sensitive: Sequence[str] = (),
    entity: str | None = None,
    k: int | None = None,
    count: str | None = None,
    people: str | None = None,
) -> dict:
    """Every figure `tuomin assess` reports (the JSON keys are part of its interface). With
    `count`, each row of df is a distinct combination standing for that many rows; with
    `people`, class sizes are that column summed per class (instead of counting entities)."""
    if df.empty:
        return {"rows": 0, "k": 0, "classes": 0}
    ids = class_ids(df, quasi_identifiers)
    weights = _counts(df, count)
    found = _people(df, ids, entity, weights, people)
    persons = found.sum()
    out = {
        "rows": int(weights.sum()),
        "k": int(found.min()),
        "l_distinct": None,
        "l_entropy": None,
        "t_closeness": None,
        "classes": int(len(found)),
        "avg_class_size": float(found.mean()),
        "discernibility": int((found.astype(np.int64) ** 2).sum()),
        "prosecutor_risk_max": float(1.0 / found.min()),
        "prosecutor_risk_avg": float(len(found) / persons),
        "unique_share": float(found[found == 1].sum() / persons),
        "class_size_histogram": _histogram(found),
    }
    if k is not None:
        out["share_below_2k"] = float(found[found < 2 * k].sum() / persons)
    if sensitive:
        figures = [sensitive_figures(ids, df[s], weights) for s in sensitive]
        out["l_distinct"] = min(f["l_distinct"] for f in figures)
        out["l_entropy"] = min(f["l_entropy"] for f in figures)
        out["t_closeness"] = max(f["t_closeness"] for f in figures)
    return out


def population_risk(df: pd.DataFrame, quasi_identifiers: list[str], population: pd.DataFrame, count: str = "count") -> dict:
    """Journalist and marketer risk against a population table (one row per QI combination with
    its size in the population, generalized like the sample): journalist risk is the largest
    1 / population class size among classes the sample contains; marketer risk the expected share
    of sample records an attacker matches correctly, (1/n) sum over classes f_j / F_j."""
    sample = df.groupby(quasi_identifiers, dropna=False, observed=True).size().rename("f")
    joined = sample.to_frame().join(population.set_index(quasi_identifiers)[count].rename("F"), how="left")
    joined["F"] = joined["F"].fillna(joined["f"]).clip(lower=joined["f"])  # a population is at least the sample
    return {
        "journalist_risk_max": float((1.0 / joined["F"]).max()),
        "marketer_risk": float((joined["f"] / joined["F"]).sum() / joined["f"].sum()),
    }


def profile_uniqueness(df: pd.DataFrame, quasi_identifiers: list[str], entity: str, count: str | None = None) -> dict:
    """Linkage across rows of one entity: its profile is the set of classes its rows fall in (a
    customer's purchases over many days). k-anonymity per row does not bound this; the share of
    entities whose profile no other entity has is what an attacker who knows several of a
    person's visits could single out."""
    if df.empty:
        return {"entities": 0, "profile_unique_share": 0.0, "profile_unique": 0}
    if count is not None:  # a frame of classes: a row without an entity stands for that many people
        df = df.loc[df.index.repeat(np.where(df[entity].isna(), _counts(df, count), 1))]
    codes = _entity_codes(df, entity)
    unknown = codes < 0  # a row without an entity is a person of its own
    codes[unknown] = codes.max(initial=-1) + 1 + np.arange(unknown.sum())
    pairs = pd.DataFrame({"e": codes, "c": class_ids(df, quasi_identifiers)}).drop_duplicates()
    profiles = pairs.sort_values(["e", "c"]).groupby("e")["c"].agg(tuple)
    unique = int((profiles.map(profiles.value_counts()) == 1).sum())
    return {"entities": int(len(profiles)), "profile_unique": unique, "profile_unique_share": unique / len(profiles)}


def _histogram(found: np.ndarray) -> dict[str, int]:
    """Classes by size bucket, for reports: 1, 2, 3-4, 5-9, 10-19, 20-49, 50+."""
    counts, _ = np.histogram(found, bins=[1, 2, 3, 5, 10, 20, 50, np.inf])
    return dict(zip(["1", "2", "3-4", "5-9", "10-19", "20-49", "50+"], map(int, counts)))


def summary(
    df: pd.DataFrame,
    quasi_identifiers: list[str],
    entity: str | None = None,
    k: int | None = None,
    sensitive: Sequence[str] = (),
    count: str | None = None,
    people: str | None = None,
) -> dict:
    """What the pipeline records with a published file (assess without the sensitive keys when
    there are none)."""
    out = assess(df, quasi_identifiers, list(sensitive), entity, k, count, people)
    return {key: value for key, value in out.items() if value is not None}
