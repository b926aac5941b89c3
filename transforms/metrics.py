"""Privacy metrics computed on a published table (not on the engine's internal codes).

This is the independent check: the engine claims k, these functions recompute it from the
output values with a pandas group-by, and the GX expectations and `tuomin assess` call them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def class_sizes(df: pd.DataFrame, quasi_identifiers: list[str], entity: str | None = None) -> pd.Series:
    """Size of every equivalence class (rows sharing all quasi-identifier values), counted in
    distinct entities when `entity` is given. A row without an entity is a person of its own."""
    if df.empty:
        return pd.Series([], dtype="int64")
    frame = df[quasi_identifiers].copy() if quasi_identifiers else pd.DataFrame({"_all": 0}, index=df.index)
    keys = list(frame.columns)
    if entity is None:
        return frame.groupby(keys, dropna=False, observed=True, sort=False).size()
    ids = df[entity].astype("object")
    frame["_entity"] = ids.where(ids.notna(), pd.Series([f"\x00row{i}" for i in range(len(df))], index=df.index))
    return frame.groupby(keys, dropna=False, observed=True, sort=False)["_entity"].nunique()


def k_anonymity(df: pd.DataFrame, quasi_identifiers: list[str], entity: str | None = None) -> int:
    sizes = class_sizes(df, quasi_identifiers, entity)
    return int(sizes.min()) if len(sizes) else 0


def summary(df: pd.DataFrame, quasi_identifiers: list[str], entity: str | None = None, k: int | None = None) -> dict:
    """k and re-identification risk figures for a table (prosecutor model: risk of a record = 1 /
    its class size)."""
    sizes = class_sizes(df, quasi_identifiers, entity).to_numpy()
    if len(sizes) == 0:
        return {"rows": 0, "k": 0, "classes": 0}
    k_min = int(sizes.min())
    out = {
        "rows": int(len(df)),
        "k": k_min,
        "classes": int(len(sizes)),
        "avg_class_size": float(sizes.mean()),
        "discernibility": int((sizes.astype(np.int64) ** 2).sum()),
        "prosecutor_risk_max": 1.0 / k_min,
        "prosecutor_risk_avg": float(len(sizes) / sizes.sum()),
        "unique_share": float((sizes == 1).sum() / sizes.sum()),
        "class_size_histogram": _histogram(sizes),
    }
    if k is not None:
        out["share_below_2k"] = float(sizes[sizes < 2 * k].sum() / sizes.sum())
    return out


def _histogram(sizes: np.ndarray) -> dict[str, int]:
    """Classes by size bucket, for reports: 1, 2, 3-4, 5-9, 10-19, 20-49, 50+."""
    edges = [1, 2, 3, 5, 10, 20, 50, np.inf]
    labels = ["1", "2", "3-4", "5-9", "10-19", "20-49", "50+"]
    counts, _ = np.histogram(sizes, bins=edges)
    return {label: int(c) for label, c in zip(labels, counts)}
