"""Find personal identifiers in text, validated rather than merely pattern-matched.

Used in three places with one definition: free-text redaction, the "no identifier anywhere" scan
of every published string column (a GX expectation), and column classification. Text is folded
first, so full-width digits (１３８…) and ＠ match like their ASCII forms, and the patterns allow
the spaces and dashes people type inside numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from transforms.identifiers import EMAIL_RE, is_card_number, is_mobile, is_prc_id
from transforms.text import fold_chars

_SEP = r"[ \-]?"


def _digits(text: str) -> str:
    return re.sub(r"[^0-9Xx]", "", text).upper()


@dataclass(frozen=True)
class Detector:
    kind: str
    placeholder: str
    pattern: re.Pattern
    validate: Callable[[str], bool] | None = None

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        for m in self.pattern.finditer(text):
            span = m.span(1) if m.groups() else m.span()
            if self.validate is None or self.validate(text[span[0] : span[1]]):
                yield span


DETECTORS: tuple[Detector, ...] = (
    Detector("email", "[邮箱]", re.compile(r"(?<![A-Za-z0-9._%+-])" + EMAIL_RE.pattern)),
    Detector(
        "prc_id",
        "[证件号]",
        re.compile(rf"(?<![0-9A-Za-z])\d{{6}}{_SEP}\d{{8}}{_SEP}\d{{3}}[\dXx](?![0-9A-Za-z])"),
        lambda s: is_prc_id(_digits(s)),
    ),
    Detector("bank_card", "[银行卡]", re.compile(rf"(?<!\d)\d(?:{_SEP}\d){{14,18}}(?!\d)"), lambda s: is_card_number(_digits(s))),
    Detector("bank_card", "[银行卡]", re.compile(r"(?<!\d)\d{4,6}[*xX]{4,9}\d{4}(?!\d)")),  # masked PAN
    Detector(
        "mobile",
        "[手机号]",
        re.compile(rf"(?<!\d)(?:\+?86{_SEP})?1[3-9]\d{_SEP}\d{{4}}{_SEP}\d{{4}}(?!\d)"),
        lambda s: is_mobile(_digits(s)[-11:]),
    ),
    # Typed document numbers come in either case (h1234567890 is a permit too).
    Detector(
        "document",
        "[证件号]",
        re.compile(
            r"(?<![A-Za-z0-9])(?:[EG]\d{8}|E[A-HJ-NP-Z]\d{7}|[HM]\d{8}(?:\d{2})?|[A-Z]{1,2}\d{6,8}|[A-Z]\d{7}[A-Z]"
            r"|\d{2}[A-Z]{2}\d{5}|C[CFGHJKLMNPRTVWXYZ0-9]{8})(?![A-Za-z0-9])",
            re.IGNORECASE,
        ),
    ),
    Detector(
        "document",
        "[证件号]",
        re.compile(r"(?:护照|证件|通行证|台胞证|身份证)(?:号码|号)?[:：\s]*([A-Za-z0-9]{8,18})(?![A-Za-z0-9])"),
    ),
    Detector("flight", "[航班]", re.compile(r"(?<![A-Za-z0-9])(?:[A-Z]{2}|[A-Z]\d|\d[A-Z])\d{1,4}(?![A-Za-z0-9])")),
    Detector("flight", "[航班]", re.compile(r"航班(?:号)?[:：\s]*([A-Z0-9]{2,3}\d{1,4})(?![A-Za-z0-9])")),
    Detector(
        "address",
        "[地址]",
        re.compile(
            r"(?:[\u4e00-\u9fff]{2,8}(?:区|县|市))?[\u4e00-\u9fff]{1,12}(?:路|街|大道|大街|巷)\d{1,5}(?:弄\d{1,4})?号"
            r"(?:\d{1,3}(?:号楼|栋|幢|座|楼))?(?:\d{1,5}室)?"
        ),
    ),
)

# What the published-data scan looks for: the identifiers that can be validated, so that a hit
# is a real identifier and not a product code.
SCANNED_KINDS = ("prc_id", "mobile", "email", "bank_card")
# A cheap vectorized prefilter (RE2) for the scan: only strings with a long digit run or an @
# can hold one of the scanned kinds.
_PREFILTER = r"@|\d(?:[ \-]?\d){10,}|\d{4,6}[*xX]{4,9}\d{4}"


def find_identifiers(text: str, kinds: tuple[str, ...] | None = None) -> list[tuple[int, int, Detector]]:
    """Non-overlapping identifier spans, earliest and longest first. Positions refer equally to
    `text` and to the original it was folded from (fold_chars keeps positions)."""
    text = fold_chars(text)
    spans = [(a, b, d) for d in DETECTORS if kinds is None or d.kind in kinds for a, b in d.find(text)]
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    kept, end = [], -1
    for a, b, d in spans:
        if a >= end:
            kept.append((a, b, d))
            end = b
    return kept


def scan(column: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    """How many values of a string column hold each scanned identifier kind (counts, no values).
    Each distinct value is examined once (a published column repeats its values a lot)."""
    distinct = pc.value_counts(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
    folded = pc.utf8_normalize(distinct.field("values"), "NFKC")
    suspect = pc.fill_null(pc.match_substring_regex(folded, _PREFILTER), False)
    counts = dict.fromkeys(SCANNED_KINDS, 0)
    for value, n in zip(folded.filter(suspect).to_pylist(), distinct.field("counts").filter(suspect).to_pylist()):
        for kind in {d.kind for _, _, d in find_identifiers(value, SCANNED_KINDS)}:
            counts[kind] += n
    return counts
