"""The DP release's neighbouring test over the real linking (issue 35): raw rows with their
identifiers, normalized and linked as `tuomin dp` does (flows/storage/raw.py, transforms/linkage.py),
one real person in or out. tests/transforms/test_dp_neighbours.py gives persons by hand; at 874540f
the linking made a person of 40 counter enquiries 41 units (ε ≥ 1.58 certified at 99.9%), and a
placeholder mobile bridged five families into one unit that split when one person left.

Each case: D is a crowd and person P, whose rows carry identifiers as clerks type them; D' is the
crowd alone. The event and the bound are tests/dp_data.py's: no event of the whole release more
than e^ε likelier on D than on D'. The control, rows with no identifier counted as units of their
own as before, breaks the bound with the same draws.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from flows.pipeline import dp
from flows.runtime.paths import POLICIES
from flows.storage import raw
from tests.dp_data import SHIPPED, Mechanisms, crowd_rows, exact_table, frame_of, heavy_rows, statistic, within
from transforms import linkage, steps

pytestmark = pytest.mark.slow  # 1,200 releases of every table per case

_, POLICIES_BY_SOURCE = dp.load(POLICIES)
P_DOC, P_MEMBER = "E99990001", "M999999"
# The same passport as clerks type it: what normalization brings together (case, spaces, dashes, full width).
P_DOC_TYPED = ["e9999 0001", "E-9999-0001", "Ｅ９９９９０００１", " E99990001 ", "e 9999-0001"]
BRIDGE = 5  # crowd members who share P's placeholder mobile


def _crowd_ids(person: np.ndarray) -> dict[str, list[str]]:
    return {
        "doc_no": [f"E{p:08d}" for p in person],
        "mobile": [f"139{p:08d}" for p in person],
        "member_no": [f"M{p:06d}" for p in person],
    }


def _raw(rows: pl.DataFrame, ids: dict[str, list[str]], source: str, receipts: str = "") -> pa.Table:
    """A source's rows as the export has them: the rows' values and identifiers (a POS line's
    receipt numbered after `receipts`), no person id."""
    found = rows.drop("person").with_columns(pl.Series(k, v, pl.String) for k, v in ids.items())
    if source == "pos":
        found = found.with_columns(pl.format(f"{receipts}-{{}}", pl.int_range(pl.len())).alias("txn_id"))
    else:
        found = found.with_columns(pl.lit(None, pl.String).alias("txn_id"))
    return found.to_arrow()


def _linked(parts: dict[str, list[pa.Table]]) -> dict[str, pl.DataFrame]:
    """The raw rows normalized and linked by the code `tuomin dp` runs: each row with its `person`."""
    frames = {
        source: pl.concat(
            [raw._identified(t, source, POLICIES_BY_SOURCE, steps.Subjects()) for t in tables], how="vertical_relaxed"
        )
        for source, tables in parts.items()
    }
    return linkage.people(frames)


def _bridged(crowd: dict[str, pl.DataFrame]) -> dict[str, list[str]]:
    ids = _crowd_ids(crowd["pos"]["person"].to_numpy())
    ids["mobile"] = ["13800138000" if p < BRIDGE else m for p, m in zip(crowd["pos"]["person"], ids["mobile"])]
    return ids


def _p_typed(n: int) -> dict[str, list[str]]:
    return {"doc_no": [P_DOC_TYPED[i % len(P_DOC_TYPED)] for i in range(n)], "mobile": [""] * n, "member_no": [""] * n}


def _p_placeholder(n: int) -> dict[str, list[str]]:
    return {"doc_no": [P_DOC] * n, "mobile": ["+86 138 0013 8000"] * n, "member_no": ["N/A"] * n}


def _p_member(n: int) -> dict[str, list[str]]:
    return {"doc_no": [P_DOC] * n, "mobile": [""] * n, "member_no": [P_MEMBER] * n}


ENQUIRIES = 200  # P's counter enquiries with neither receipt nor member number (the 40, and more)


def _datasets(p_ids: Callable[[int], dict[str, list[str]]], enquiries: int = 0) -> tuple[dict, dict]:
    """(D, D'): the crowd (with a placeholder mobile shared by BRIDGE of them) with and without P."""
    crowd = crowd_rows()
    heavy = heavy_rows(4)
    crowd_pos = _raw(crowd["pos"], _bridged(crowd), "pos", "C")
    cases_people = crowd["after_sales"]["person"].to_numpy()
    crowd_cases = _raw(crowd["after_sales"], {"member_no": [f"M{p:06d}" for p in cases_people]}, "after_sales")
    p_pos = _raw(heavy["pos"], p_ids(heavy["pos"].height), "pos", "P")
    p_cases = heavy["after_sales"].head(heavy["after_sales"].height - enquiries)
    tables = [_raw(p_cases, {"member_no": [P_MEMBER] * p_cases.height}, "after_sales")]
    if enquiries:
        walk_in = heavy["after_sales"].tail(enquiries)
        tables.append(_raw(walk_in, {"member_no": [""] * enquiries}, "after_sales"))
    with_p = {"pos": [crowd_pos, p_pos], "after_sales": [crowd_cases, *tables]}
    without = {"pos": [crowd_pos], "after_sales": [crowd_cases]}
    return with_p, without


def _p_person(rows: dict[str, pl.DataFrame]) -> int:
    [person] = rows["pos"].filter(pl.col("id:doc_no") == P_DOC)["person"].unique().to_list()
    return person


def _hits(d_rows: dict, d_prime_rows: dict, n: int = 600) -> tuple[tuple[int, int], tuple[int, int]]:
    """(hits, draws) of the event on D and on D' (the threshold from a separate batch on D')."""
    dataset, neighbour = frame_of(SHIPPED, d_rows), frame_of(SHIPPED, d_prime_rows)
    mechanisms = Mechanisms(SHIPPED, neighbour)
    p = _p_person(d_rows)
    cells = {
        name: np.flatnonzero(exact_table(SHIPPED, name, dataset.filter(pl.col("person") == p)) > 0) for name in SHIPPED.tables
    }
    threshold = np.quantile([statistic(mechanisms, neighbour, cells) for _ in range(300)], 0.95)
    return tuple(  # type: ignore[return-value]
        (sum(statistic(mechanisms, frame, cells) > threshold for _ in range(n)), n) for frame in (dataset, neighbour)
    )


@pytest.mark.parametrize(
    ("case", "p_ids", "enquiries"),
    [
        ("a passport typed five ways", _p_typed, 0),
        ("a placeholder mobile and member number shared with five others", _p_placeholder, 0),
        ("200 counter enquiries with no identifier", _p_member, ENQUIRIES),
    ],
)
def test_one_real_person_in_or_out_moves_the_release_by_at_most_e_to_the_epsilon(case, p_ids, enquiries):
    with_p, without = _datasets(p_ids, enquiries)
    d_rows, d_prime_rows = _linked(with_p), _linked(without)
    # the linking itself: P is one unit, and no one else's unit changes with P in or out
    p = _p_person(d_rows)
    assert d_rows["pos"].filter(pl.col("person") == p).height == heavy_rows(4)["pos"].height
    crowd_units = d_rows["pos"].filter(pl.col("person") != p)["person"].n_unique()
    assert crowd_units == d_prime_rows["pos"]["person"].n_unique() == crowd_rows()["pos"]["person"].n_unique()
    assert d_rows["after_sales"].height == d_prime_rows["after_sales"].height + heavy_rows(4)["after_sales"].height - enquiries
    d, d_prime = _hits(d_rows, d_prime_rows)
    assert within(d, d_prime, SHIPPED.release.epsilon), (case, d, d_prime)


def test_the_control_rows_with_no_identifier_as_units_of_their_own_breaks_the_bound(monkeypatch):
    """As at 874540f: each of P's enquiries its own unit. Same draws, same event: the bound fails."""
    monkeypatch.setattr(linkage, "identified", lambda frame: pl.Series([True] * frame.height))
    with_p, without = _datasets(_p_member, ENQUIRIES)
    d_rows, d_prime_rows = _linked(with_p), _linked(without)
    d, d_prime = _hits(d_rows, d_prime_rows)
    assert not within(d, d_prime, SHIPPED.release.epsilon), (d, d_prime)
