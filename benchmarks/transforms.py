"""Transform throughput benchmark (issue 4): each transform on 1,000,000 values, next to a
baseline measured in the same run on the same column.

Baselines: for pseudonyms, a bare `hmac.new(key, value, 'sha256').digest()` loop over the values;
for everything else, a bare pyarrow cast of the same column that touches every value: temporal
and decimal casts (timestamp -> date, date -> timestamp, decimal -> float), and for text a cast to
a dictionary type (one hash per value; string -> large_string would only copy offsets). Targets:
HMAC >= 1,000,000 values/s on one core; others within 2x of their baseline.
Transforms with no vectorized form (per-distinct Python lookups, free-text redaction) are
measured and marked as loops. Each figure is the best of three runs.

    make bench-transforms       # or: .venv/bin/python benchmarks/transforms.py --values 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import hmac
import random
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.runtime.paths import POLICIES  # noqa: E402
from sample_data import world  # noqa: E402
from sample_data.generator import money  # noqa: E402
from sample_data.notes import labelled_notes  # noqa: E402
from sample_data.people import make_people  # noqa: E402
from transforms.hierarchy import (  # noqa: E402
    AddressHierarchy,
    AgeHierarchy,
    AreaHierarchy,
    BandHierarchy,
    DatetimeHierarchy,
    PrefixHierarchy,
    TableHierarchy,
)
from transforms.operators import Suppress, mask  # noqa: E402
from transforms.parse import parse  # noqa: E402
from transforms.pseudonymize import Pseudonymizer  # noqa: E402
from transforms.redact import NameMatcher, redact  # noqa: E402

KEY = b"benchmark-key-" + b"0" * 32


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def columns(n: int, seed: int = 5) -> dict[str, pa.Array]:
    """Realistic columns of n values, drawn from a generated population (the way POS lines repeat
    customers) and from the generator's tables."""
    rng = np.random.default_rng(seed)
    people = make_people(seed, n // 4, n // 4, dt.date(2026, 3, 1))
    who = pa.array(rng.integers(0, people.size, n))
    seconds = rng.integers(0, 365 * 86400, n)
    return {
        "distinct": pa.array([f"{i:011d}" for i in range(n)]),
        "documents": people.doc_no.take(who),
        "mobiles": people.mobile_shapes[1].take(who),
        "nationality": pa.array(np.array([o.nationality for o in world.ORIGINS])[people.origin]).take(who),
        "timestamps": pa.array(np.datetime64("2026-01-01") + seconds.astype("timedelta64[s]")),
        "birth_dates": pa.array(people.birth).take(who).cast(pa.date32()),
        "postal": people.postal_code.take(who),
        "amounts": parse(money(rng.integers(0, 100_000_00, n)), "decimal")[0],
        "addresses": people.address.take(who),
    }


def notes(n: int) -> pa.Array:
    samples, _ = labelled_notes(n, 3)
    return pa.array([text for text, _ in samples])


def run(n: int) -> list[tuple[str, float, float, str, str]]:
    c = columns(n)
    cast = lambda col, to: lambda: pc.cast(col, to)  # noqa: E731
    text = pa.dictionary(pa.int32(), pa.string())
    pseudonymizer = Pseudonymizer(KEY)
    bare_hmac = lambda col: lambda: [hmac.new(KEY, v.encode(), "sha256").digest() for v in col.to_pylist() if v]  # noqa: E731
    nationality = TableHierarchy.from_csv(POLICIES / "hierarchies" / "nationality.csv")
    rows = [
        (
            "pseudonymize, 1M distinct values",
            lambda: pseudonymizer.tokens(c["distinct"], "customer", "text"),
            bare_hmac(c["distinct"]),
            "hmac",
            ">= 1,000,000/s",
        ),
        (
            "pseudonymize documents (as POS repeats them)",
            lambda: pseudonymizer.tokens(c["documents"], "customer", "document"),
            bare_hmac(c["documents"]),
            "hmac",
            ">= 1,000,000/s",
        ),
        (
            "pseudonymize mobiles (+86 shapes, normalized)",
            lambda: pseudonymizer.tokens(c["mobiles"], "customer", "mobile"),
            bare_hmac(c["mobiles"]),
            "hmac",
            ">= 1,000,000/s",
        ),
        (
            "generalize: ARX table (nationality -> region)",
            lambda: nationality.generalize(c["nationality"], 1),
            cast(c["nationality"], text),
            "cast",
            "<= 2x",
        ),
        (
            "generalize: truncate timestamp to hour",
            lambda: DatetimeHierarchy(["hour"]).generalize(c["timestamps"], 1),
            cast(c["timestamps"], pa.date32()),
            "cast",
            "<= 2x",
        ),
        (
            "generalize: ISO week",
            lambda: DatetimeHierarchy(["week"]).generalize(c["timestamps"], 1),
            cast(c["timestamps"], pa.date32()),
            "cast",
            "<= 2x",
        ),
        (
            "generalize: month",
            lambda: DatetimeHierarchy(["month"]).generalize(c["timestamps"], 1),
            cast(c["timestamps"], pa.date32()),
            "cast",
            "<= 2x",
        ),
        (
            "generalize: age band from birth date",
            lambda: AgeHierarchy([5], dt.date(2026, 3, 1)).generalize(c["birth_dates"], 1),
            cast(c["birth_dates"], pa.timestamp("s")),
            "cast",
            "<= 2x",
        ),
        (
            "generalize: postal code prefix",
            lambda: PrefixHierarchy([4]).generalize(c["postal"], 1),
            cast(c["postal"], text),
            "cast",
            "<= 2x",
        ),
        (
            "generalize: money to ranges",
            lambda: BandHierarchy([[0, 1000, 5000, 20000, 100000]]).generalize(c["amounts"], 1),
            cast(c["amounts"], pa.float64()),
            "cast",
            "<= 2x",
        ),
        (
            "generalize: resident ID area -> province (GB/T 2260)",
            lambda: AreaHierarchy(["province"]).generalize(c["documents"], 1),
            cast(c["documents"], text),
            "cast",
            "loop per distinct",
        ),
        (
            "generalize: address text -> city",
            lambda: AddressHierarchy(["prefecture"]).generalize(c["addresses"], 1),
            cast(c["addresses"], text),
            "cast",
            "loop per distinct",
        ),
        ("mask: keep first 3, last 4", lambda: mask(c["mobiles"], 3, 4), cast(c["mobiles"], text), "cast", "<= 2x"),
        (
            "suppress cells seen < 5 times",
            lambda: Suppress(min_count=5).apply(c["postal"], None),
            cast(c["postal"], text),
            "cast",
            "<= 2x",
        ),
    ]
    out = []
    for name, transform, baseline, kind, target in rows:
        t, b = best(transform), best(baseline)
        out.append((name, n / t, n / b, kind, target))
    texts = notes(max(n // 50, 1000))
    matcher = NameMatcher([f"{s}{g}" for s in "王李张刘陈杨" for g in ("伟", "芳", "娜", "敏", "静")])
    t = best(lambda: redact(texts, matcher), repeat=1)
    b = best(lambda: [v.translate({}) for v in texts.to_pylist()], repeat=1)
    out.append((f"redact free text ({len(texts):,} notes)", len(texts) / t, len(texts) / b, "python loop", "measured"))
    return out


def report(rows) -> str:
    lines = ["| transform | values/s | baseline values/s | transform / baseline time | target |", "|---|---|---|---|---|"]
    for name, rate, base, kind, target in rows:
        lines.append(f"| {name} | {rate:,.0f} | {base:,.0f} ({kind}) | {base / rate:.2f}x | {target} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=1_000_000)
    args = parser.parse_args()
    random.seed(0)
    print(report(run(args.values)))


if __name__ == "__main__":
    main()
