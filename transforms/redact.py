"""Free-text redaction: every identifier the detectors find becomes a typed placeholder.

Names cannot be validated like numbers, so two sources are used: the names this run has in its
own exports (customers and staff, matched with an Aho-Corasick automaton) and the patterns staff
type around a name (X先生, X女士, 顾客X, 收件人X), where X must start with a Chinese surname
(会员权益 is no member called 权益). Matching runs on folded text; placeholders are
spliced into the original, which keeps its own punctuation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import ahocorasick
import pyarrow as pa

from transforms.classify import surnames
from transforms.detectors import find_identifiers
from transforms.text import fold_chars

NAME = "[姓名]"
_HONORIFIC = re.compile(r"先生|女士|小姐")
_INTRODUCED = re.compile(r"(?:顾客|客户|收件人|联系人|乘客|会员)[:：]?([\u4e00-\u9fff]{2,3})(?=[，,。.;；:：(（\s]|$)")


class NameMatcher:
    """Exact matches of known names (upper-cased, so SMITH JOHN and Smith John both match)."""

    def __init__(self, names: Iterable[str]):
        self._automaton = ahocorasick.Automaton()
        for name in {n.strip().upper() for n in names if n and len(n.strip()) >= 2}:
            self._automaton.add_word(name, len(name))
        self._empty = len(self._automaton) == 0
        if not self._empty:
            self._automaton.make_automaton()

    def spans(self, text: str) -> list[tuple[int, int]]:
        if self._empty:
            return []
        upper = text.upper()
        if len(upper) != len(text):  # a few letters change length when upper-cased
            upper = text
        return [(end - length + 1, end + 1) for end, length in self._automaton.iter(upper)]


def redaction_spans(text: str, names: NameMatcher) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, placeholder) spans to replace, earliest and longest first."""
    folded = fold_chars(text)
    spans = [(a, b, d.placeholder) for a, b, d in find_identifiers(folded)]
    spans += [(a, b, NAME) for a, b in names.spans(folded)]
    single, double = surnames()
    for m in _HONORIFIC.finditer(folded):  # 王女士, 欧阳先生: the surname before the honorific
        a = m.start()
        if folded[max(a - 2, 0) : a] in double:
            spans.append((a - 2, m.end(), NAME))
        elif a > 0 and folded[a - 1] in single:
            spans.append((a - 1, m.end(), NAME))
    spans += [(*m.span(1), NAME) for m in _INTRODUCED.finditer(folded) if m.group(1)[0] in single or m.group(1)[:2] in double]
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    kept, end = [], 0
    for a, b, placeholder in spans:
        if a >= end:  # a span inside one already kept is covered by it
            kept.append((a, b, placeholder))
            end = b
    return kept


def redact_text(text: str, names: NameMatcher) -> str:
    out, pos = [], 0
    for a, b, placeholder in redaction_spans(text, names):
        out.append(text[pos:a])
        out.append(placeholder)
        pos = b
    out.append(text[pos:])
    return "".join(out)


def redact(column: pa.Array | pa.ChunkedArray, names: NameMatcher) -> pa.Array:
    """A loop over values: there is no vectorized form of validated matching; free text is the
    smallest of the exports (hundreds of cases a day), and the loop is measured in benchmarks."""
    return pa.array([None if v is None else redact_text(v, names) for v in column.to_pylist()], pa.string())
