"""Free-text redaction benchmark (issue 4): recall and precision on notes with known identifiers.

Notes come from the sample generator's NoteWriter (the same templates as the after-sales
exports), about people of a generated population, each with the identifiers it embeds and how
they are written (full-width digits, +86, spaces and dashes inside numbers, lower-case x,
surname + 先生/女士). A third of the notes also carry decoy phrases that must survive: order
numbers, SKUs, timestamps, points, amounts, product sizes.

A true identifier counts as found when every one of its characters is inside a redacted span; a
redacted span counts as correct when it overlaps a true identifier. Names are scored with the
run's name dictionary (as the flow does: customers and staff of the run) and without it
(patterns only), to show what the dictionary adds.

    make bench-redaction      # or: .venv/bin/python benchmarks/redaction.py --notes 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sample_data.notes import labelled_notes  # noqa: E402
from transforms.redact import NameMatcher, redaction_spans  # noqa: E402


def evaluate(samples, matcher: NameMatcher) -> dict:
    found, total, correct, produced = Counter(), Counter(), Counter(), Counter()
    for text, identifiers in samples:
        spans = redaction_spans(text, matcher)
        covered = set()
        for a, b, _ in spans:
            covered.update(range(a, b))
        truth = []
        for kind, written in identifiers:
            start = text.find(written)
            while start >= 0:
                truth.append((start, start + len(written), "name" if kind == "name" else "structured", kind))
                start = text.find(written, start + 1)
        for a, b, group, kind in truth:
            total[group] += 1
            total[kind] += 1
            if all(i in covered for i in range(a, b)):
                found[group] += 1
                found[kind] += 1
        for a, b, placeholder in spans:
            group = "name" if placeholder == "[姓名]" else "structured"
            produced[group] += 1
            if any(a < tb and ta < b for ta, tb, _, _ in truth):
                correct[group] += 1
    return {"found": found, "total": total, "correct": correct, "produced": produced}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    samples, names = labelled_notes(args.notes, args.seed)
    began = time.perf_counter()
    with_dictionary = evaluate(samples, NameMatcher(names))
    seconds = time.perf_counter() - began
    without = evaluate(samples, NameMatcher([]))
    print(
        f"{len(samples)} notes, {sum(len(i) for _, i in samples)} embedded identifiers; "
        f"redaction with the dictionary: {seconds:.1f} s ({len(samples) / seconds:,.0f} notes/s, one core)\n"
    )
    print("| identifiers | recall | precision | found / inserted |")
    print("|---|---|---|---|")
    for label, result in (
        ("structured (ID, passport, permit, mobile, card, e-mail, address, flight)", with_dictionary),
        ("names, with the run's name dictionary", with_dictionary),
        ("names, patterns only (no dictionary)", without),
    ):
        group = "name" if label.startswith("names") else "structured"
        f, t, c, p = (result[x][group] for x in ("found", "total", "correct", "produced"))
        print(f"| {label} | {f / t:.4f} | {c / p:.4f} | {f} / {t} |")
    print(
        "\nRecall by kind (with dictionary):",
        ", ".join(
            f"{k} {with_dictionary['found'][k] / n:.4f} ({n})"
            for k, n in sorted(with_dictionary["total"].items())
            if k not in ("name", "structured")
        ),
    )


if __name__ == "__main__":
    main()
