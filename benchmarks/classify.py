"""Column classification benchmark (issue 3): how well does `tuomin classify` name every column?

Generated exports, each seed a different population, classified twice:
- blind: headers renamed to col_01, col_02 … and columns shuffled, so only the values decide;
- named: the exports' real headers (English and Chinese).
Labels are the `kind` of each column in the shipped policies. Reports per-kind precision and
recall, micro (= accuracy) and macro F1, and whether every direct identifier was found.

    make bench-classify          # or: .venv/bin/python benchmarks/classify.py --seeds 5 --rows 3000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.onboarding.propose import references  # noqa: E402
from flows.runtime.paths import POLICIES  # noqa: E402
from flows.storage.landing import sample_csv, sniff_encoding  # noqa: E402
from sample_data.generator import Config, generate  # noqa: E402
from transforms.classify import KINDS, classify_table, score  # noqa: E402
from transforms.identifiers import is_card_number, is_prc_id  # noqa: E402
from transforms.policy import load_policies  # noqa: E402


def labelled_tables(landing: Path) -> list[tuple[str, pa.Table, dict[str, str]]]:
    """One export per source with its labels (header -> kind, from the shipped policies)."""
    policies = load_policies(POLICIES)
    out = []
    for source, policy in policies.items():
        path = sorted(landing.glob(policy.files.format(date="*", yyyymmdd="*").replace("**", "*")))[0]
        table = sample_csv(path, sniff_encoding(path), 5000)
        truth = {h: policy.match_header(h).kind for h in table.column_names}
        out.append((source, table, truth))
    return out


def blind(table: pa.Table, truth: dict[str, str], rng: random.Random) -> tuple[pa.Table, dict[str, str]]:
    """Headers that say nothing, in a shuffled order."""
    order = list(range(table.num_columns))
    rng.shuffle(order)
    names = [f"col_{i + 1:02d}" for i in range(table.num_columns)]
    columns = [table.column(j) for j in order]
    return pa.table(columns, names=names), {names[i]: truth[table.column_names[j]] for i, j in enumerate(order)}


JUNK = ["无", "-", "N/A", "NULL", "/", "见备注", "?", "000"]


def noisy(table: pa.Table, rng: random.Random, share: float = 0.02) -> pa.Table:
    """Real exports carry junk: replace a share of each column's non-empty values."""
    columns = []
    for name in table.column_names:
        values = table[name].to_pylist()
        columns.append(pa.array([rng.choice(JUNK) if v and rng.random() < share else v for v in values], pa.string()))
    return pa.table(columns, names=table.column_names)


def decoys(n: int, rng: random.Random) -> tuple[pa.Table, dict[str, str]]:
    """Columns shaped like identifiers that are not: they must not be proposed as such."""

    def digits(k):
        return "".join(rng.choices("0123456789", k=k))

    bad_ids = []
    while len(bad_ids) < n:  # 18 digits that fail the GB 11643 check
        v = "310101" + f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}" + digits(4)
        if not is_prc_id(v):
            bad_ids.append(v)
    non_luhn = [v for v in ("62" + digits(14) for _ in range(n * 3)) if not is_card_number(v)][:n]
    table = pa.table(
        {
            "decoy_ids": bad_ids,
            "decoy_cards": non_luhn,
            "decoy_orders": ["1" + rng.choice("012") + digits(9) for _ in range(n)],
            "decoy_days": [f"2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}" for _ in range(n)],
        }
    )
    return table, {"decoy_ids": "integer", "decoy_cards": "integer", "decoy_orders": "integer", "decoy_days": "date"}


def run(seeds: int, rows: int) -> dict:
    refs = references()
    results = {"blind": ({}, {}), "named": ({}, {}), "noisy": ({}, {}), "decoys": ({}, {})}
    seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            landing = Path(tmp) / f"seed{seed}"
            generate(landing, Config(days=1, rows=rows, seed=1000 + seed, split_last_day=False))
            cases = labelled_tables(landing) + [("decoys", *decoys(500, random.Random(seed)))]
            for source, table, truth in cases:
                variants = ("decoys",) if source == "decoys" else ("blind", "named", "noisy")
                for variant in variants:
                    rng = random.Random(seed)
                    if variant == "named":
                        t, labels = table, truth
                    elif variant == "noisy":
                        t, labels = blind(noisy(table, rng), truth, rng)
                    else:
                        t, labels = blind(table, truth, rng)
                    began = time.perf_counter()
                    proposals = classify_table(t, refs)
                    seconds += time.perf_counter() - began
                    predicted, truths = results[variant]
                    predicted.update({f"{seed}/{source}/{p.column}": p.kind for p in proposals})
                    truths.update({f"{seed}/{source}/{c}": k for c, k in labels.items()})
    return {variant: score(p, t) for variant, (p, t) in results.items()} | {"seconds": seconds}


def report(results: dict, seeds: int, rows: int) -> str:
    blind = results["blind"]
    lines = [
        f"Generated exports: {seeds} seeds x 3 sources, up to {rows} rows sampled per export; "
        f"{blind.columns} labelled columns per variant; classification time {results['seconds']:.1f} s in all.",
        "",
        "| variant | columns | micro F1 (accuracy) | macro F1 | direct identifiers found |",
        "|---|---|---|---|---|",
    ]
    names = {
        "blind": "blind (values only, shuffled)",
        "named": "named (real headers)",
        "noisy": "noisy (blind, 2% junk values)",
        "decoys": "decoys (identifier-shaped non-identifiers)",
    }
    for key, name in names.items():
        s = results[key]
        lines.append(
            f"| {name} | {s.columns} | {s.micro_f1:.3f} | {s.macro_f1:.3f} |"
            f" {s.direct_identifiers_found}/{s.direct_identifiers} |"
        )
    false_ids = sum(1 for _, _, p in results["decoys"].confusions if p != "-" and KINDS[p][0] == "direct_identifier")
    lines.append(f"\nDecoy columns proposed as direct identifiers: {false_ids} of {results['decoys'].columns}.")
    lines += ["", "Per kind, blind variant:", "", "| kind | support | precision | recall |", "|---|---|---|---|"]
    for kind, m in sorted(blind.per_kind.items()):
        if m["support"]:
            lines.append(f"| {kind} | {m['support']} | {m['precision']:.3f} | {m['recall']:.3f} |")
    for key in ("blind", "noisy", "decoys"):
        confused = sorted({(t, p) for _, t, p in results[key].confusions})
        lines.append(f"\nConfusions ({key}): " + (", ".join(f"{t} -> {p}" for t, p in confused) or "none"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=3000)
    args = parser.parse_args()
    print(report(run(args.seeds, args.rows), args.seeds, args.rows))


if __name__ == "__main__":
    main()
