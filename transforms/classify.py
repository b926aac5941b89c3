"""Propose what each column of an export is: its kind (what the values are) and so its role.

Evidence comes from the values, validated rather than pattern-matched (check digits, Luhn, real
dates, known area and country codes), and from the header (Chinese and English synonyms). Values
decide when they are clear; the header breaks ties and speaks for empty or ambiguous columns.
Nothing here returns a raw value: samples are masked.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources

import pyarrow as pa

from transforms.detectors import find_identifiers
from transforms.gb2260 import divisions
from transforms.identifiers import (
    EMAIL_RE,
    FLIGHT_RE,
    LANDLINE_RE,
    MASKED_CARD_RE,
    OPENID_RE,
    POSTAL_RE,
    document_kind,
    is_card_number,
    is_ean13,
    is_mobile,
)
from transforms.text import PLACEHOLDERS, document, fold, mobile

# kind -> (role, PIPL category). Direct identifiers name a person on their own within the
# shop's context (ISO/IEC 20889): documents, contact details, names, member and staff numbers.
KINDS: dict[str, tuple[str, str]] = {
    "prc_id": ("direct_identifier", "sensitive"),
    "passport": ("direct_identifier", "sensitive"),
    "hk_mo_permit": ("direct_identifier", "sensitive"),
    "tw_permit": ("direct_identifier", "sensitive"),
    "document_number": ("direct_identifier", "sensitive"),
    "mobile": ("direct_identifier", "general"),
    "landline": ("direct_identifier", "general"),
    "email": ("direct_identifier", "general"),
    "bank_card": ("direct_identifier", "sensitive"),
    "wechat_openid": ("direct_identifier", "general"),
    "person_name": ("direct_identifier", "general"),
    "person_code": ("direct_identifier", "general"),
    "address": ("direct_identifier", "general"),
    "birth_date": ("quasi_identifier", "general"),
    "sex": ("quasi_identifier", "general"),
    "postal_code": ("quasi_identifier", "general"),
    "country_code": ("quasi_identifier", "general"),
    "province": ("quasi_identifier", "general"),
    "city": ("quasi_identifier", "general"),
    "flight_no": ("quasi_identifier", "sensitive"),  # whereabouts (PIPL Art. 28)
    "airport_code": ("quasi_identifier", "sensitive"),
    "datetime": ("quasi_identifier", "general"),
    "date": ("quasi_identifier", "general"),
    "free_text": ("free_text", "sensitive"),
    "record_id": ("entity_key", "general"),
    "product_code": ("insensitive", "none"),
    "integer": ("insensitive", "none"),
    "decimal": ("insensitive", "none"),
    "code": ("insensitive", "none"),
    "category": ("insensitive", "none"),
    "label": ("insensitive", "none"),
}

HEADER_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person_name": (
        "name",
        "full_name",
        "buyer_name",
        "customer_name",
        "cashier_name",
        "handler_name",
        "contact_name",
        "姓名",
        "名字",
        "客户名称",
        "收货人",
        "经办人",
        "收银员",
    ),
    "document_number": (
        "doc_no",
        "id_no",
        "id_card",
        "idcard",
        "passport",
        "document",
        "证件号",
        "证件号码",
        "身份证",
        "身份证号",
        "护照",
    ),
    "mobile": ("mobile", "mobile_no", "phone", "cellphone", "tel", "手机", "联系电话", "电话号码"),
    "email": ("email", "e-mail", "mail", "邮箱", "电子邮件"),
    "address": ("address", "addr", "street", "地址", "住址"),
    "bank_card": ("card_no", "card", "pan", "银行卡", "卡号"),
    "wechat_openid": ("openid", "unionid", "wechat", "微信"),
    "person_code": (
        "member_no",
        "member_id",
        "member",
        "cashier_id",
        "employee_id",
        "staff_id",
        "会员编号",
        "会员号",
        "会员卡号",
        "工号",
        "员工编号",
    ),
    "postal_code": ("postal", "postcode", "zip", "邮编", "邮政编码"),
    "birth_date": ("birth", "dob", "birthday", "出生", "出生日期", "生日"),
    "sex": ("sex", "gender", "性别"),
    "country_code": ("nationality", "country", "国籍", "国家"),
    "province": ("province", "省份"),
    "city": ("city", "城市"),
    "flight_no": ("flight", "sailing", "voyage", "航班", "航班号"),
    "airport_code": ("destination", "airport", "dest", "目的地", "机场"),
    "free_text": ("description", "remark", "note", "comment", "resolution", "描述", "备注", "说明", "处理结果"),
    "record_id": ("txn_id", "case_no", "order_id", "receipt", "流水号", "单号", "订单号", "小票号"),
}

_CJK_NAME = re.compile(r"[\u4e00-\u9fff]{2,4}|[\u4e00-\u9fff]{1,8}·[\u4e00-\u9fff]{1,8}")
_LATIN_NAME = re.compile(r"[A-Z][A-Za-z'\-]+(?:[ ,]+[A-Z][A-Za-z'\-]+){1,3}")
_ADDRESS = re.compile(r"[\u4e00-\u9fff]{2,12}(?:路|街|大道|大街|巷|道)\d{1,5}(?:弄\d{1,4})?号")
_PERSON_CODE = re.compile(r"[A-Z]{1,2}\d{4,10}")
_RECORD_ID = re.compile(r"[A-Z0-9]{2,}(?:-[A-Z0-9]{2,}){2,}")  # PVG2-20260301-0004812, AS-20260301-00031
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-./]*")
_SENTENCE = re.compile(r"[，。！？；,.!?;]")
_WORDS = re.compile(r"[\u4e00-\u9fff]{2}|[A-Za-z]{2,} [A-Za-z]{2,}")  # words, not just digits and dots
SEXES = {"男", "女", "男性", "女性", "M", "F", "MALE", "FEMALE"}


@dataclass
class Proposal:
    column: str
    kind: str
    confidence: float
    evidence: dict = field(default_factory=dict)  # counts only: sampled, non_empty, matched, distinct, header
    samples: list[str] = field(default_factory=list)  # masked

    @property
    def role(self) -> str:
        return KINDS[self.kind][0]

    @property
    def pipl(self) -> str:
        return KINDS[self.kind][1]


def mask(value: str, identifying: bool = True) -> str:
    """A sample that shows the shape, not the value. Identifying kinds keep their first character
    only (王芳 -> 王*, 13812345678 -> 1**********); others a sixth at each end (PVG-T2-D -> P******D)."""
    if identifying or len(value) <= 2:
        return value[:1] + "*" * (len(value) - 1)
    keep = max(1, len(value) // 6)
    return value[:keep] + "*" * (len(value) - 2 * keep) + value[-keep:]


@cache
def surnames() -> tuple[frozenset[str], frozenset[str]]:
    """Common Chinese surnames: (single-character, two-character)."""
    text = resources.files("transforms").joinpath("data/chinese_surnames.txt").read_text("utf-8")
    words = [w for line in text.splitlines() if not line.startswith("#") for w in line.split()]
    return frozenset(w for w in words if len(w) == 1), frozenset(w for w in words if len(w) == 2)


@cache
def _places() -> tuple[frozenset[str], frozenset[str]]:
    table = divisions()
    return frozenset(d.province for d in table.values()), frozenset(d.prefecture for d in table.values())


def _is_person_name(value: str) -> bool:
    single, double = surnames()
    if _CJK_NAME.fullmatch(value):
        return value[0] in single or value[:2] in double
    return bool(_LATIN_NAME.fullmatch(value)) and value.upper() == value


@dataclass(frozen=True)
class References:
    """Code lists the classifier checks values against (the flows load them from the policy's
    hierarchy tables, so classification and generalization know the same codes)."""

    countries: frozenset[str] = frozenset()
    airports: frozenset[str] = frozenset()
    today: dt.date = field(default_factory=dt.date.today)


class _Values:
    """A column's folded non-empty values, with the derived forms several detectors share."""

    def __init__(self, values: list[str], refs: References):
        self.values, self.refs = values, refs

    @cached_property
    def documents(self) -> list[str | None]:
        """Document kind per value; a Taiwan permit's eight digits must stand alone (20260301
        written as 2026-03-01 is a date)."""
        kinds = [document_kind(v) for v in document(pa.array(self.values, pa.string())).to_pylist()]
        return [None if k == "tw_permit" and not v.isdigit() else k for k, v in zip(kinds, self.values)]

    @cached_property
    def mobiles(self) -> list[str]:
        return [m or "" for m in mobile(pa.array(self.values, pa.string())).to_pylist()]

    @cached_property
    def dates(self) -> list[dt.date | None]:
        return [_date(v) for v in self.values]


def _date(text: str) -> dt.date | None:
    """A calendar date in the forms exports use: 2026-03-01, 1988/7/14, 20260301, with or without a time."""
    m = re.fullmatch(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T]\d{2}:\d{2}(?::\d{2})?)?|((?:19|20)\d{2})(\d{2})(\d{2})", text)
    if not m:
        return None
    y, mo, d = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (m.group(4), m.group(5), m.group(6))
    try:
        return dt.date(int(y), int(mo), int(d))
    except ValueError:
        return None


def _each(test: Callable[[str], bool]) -> Callable[[_Values], list[bool]]:
    return lambda col: [test(v) for v in col.values]


def _born(col: _Values) -> list[bool]:
    """Dates 16 to 100 years before today: a column of those is a date of birth."""
    return [
        d is not None and len(v) <= 10 and 16 <= (col.refs.today - d).days / 365.25 <= 100 for d, v in zip(col.dates, col.values)
    ]


# (kind, matcher, share of values needed). Most specific first: on equal shares the earlier wins.
DETECTORS: list[tuple[str, Callable[[_Values], list[bool]], float]] = [
    ("birth_date", _born, 0.9),
    ("datetime", lambda col: [d is not None and len(v) > 10 for d, v in zip(col.dates, col.values)], 0.95),
    ("date", lambda col: [d is not None and len(v) <= 10 for d, v in zip(col.dates, col.values)], 0.95),
    ("email", _each(lambda v: bool(EMAIL_RE.fullmatch(v))), 0.9),
    ("mobile", lambda col: [is_mobile(m) for m in col.mobiles], 0.9),
    ("prc_id", lambda col: [k == "prc_id" for k in col.documents], 0.9),
    ("hk_mo_permit", lambda col: [k == "hk_mo_permit" for k in col.documents], 0.9),
    ("passport", lambda col: [k == "passport" and not v.isdigit() for k, v in zip(col.documents, col.values)], 0.9),
    ("document_number", lambda col: [k is not None for k in col.documents], 0.9),
    ("bank_card", _each(lambda v: is_card_number(re.sub(r"[ \-]", "", v)) or bool(MASKED_CARD_RE.fullmatch(v))), 0.9),
    ("wechat_openid", _each(lambda v: bool(OPENID_RE.fullmatch(v))), 0.9),
    ("landline", _each(lambda v: bool(LANDLINE_RE.fullmatch(v))), 0.9),
    ("product_code", _each(is_ean13), 0.95),
    ("postal_code", _each(lambda v: bool(POSTAL_RE.fullmatch(v))), 0.95),
    ("sex", _each(lambda v: v.upper() in SEXES), 0.95),
    ("province", _each(lambda v: v in _places()[0]), 0.9),
    ("city", _each(lambda v: v in _places()[1]), 0.9),
    ("country_code", lambda col: [v in col.refs.countries for v in col.values], 0.9),
    ("airport_code", lambda col: [v in col.refs.airports for v in col.values], 0.9),
    ("person_code", _each(lambda v: bool(_PERSON_CODE.fullmatch(v))), 0.95),
    ("flight_no", _each(lambda v: bool(FLIGHT_RE.fullmatch(v))), 0.8),
    ("address", _each(lambda v: bool(_ADDRESS.search(v))), 0.7),
    ("person_name", _each(_is_person_name), 0.85),
    ("record_id", _each(lambda v: bool(_RECORD_ID.fullmatch(v))), 0.95),
    ("free_text", _each(lambda v: len(v) >= 8 and bool(_SENTENCE.search(v)) and bool(_WORDS.search(v))), 0.5),
]


def classify_column(header: str, column: pa.Array | pa.ChunkedArray, refs: References = References()) -> Proposal:
    sampled = len(column)
    values = [v for v in fold(column).to_pylist() if v and v.upper() not in PLACEHOLDERS]
    distinct = len(set(values))
    evidence = {"sampled": sampled, "non_empty": len(values), "distinct": distinct}
    header_kind = _header_kind(header)
    if not values:
        kind = header_kind or "label"
        return Proposal(header, kind, 0.6 if header_kind else 0.3, {**evidence, "matched": 0, "header": header_kind}, [])

    col = _Values(values, refs)
    shares = {}
    for kind, matcher, needed in DETECTORS:
        hits = sum(matcher(col))
        if hits / len(values) >= needed:
            shares[kind] = hits / len(values)
    # Few distinct values make a category (five store codes), not names, keys or free text; and
    # names are never dominated by one value (普卡 银卡 金卡 are tiers that start with surnames).
    if distinct < 8:
        for kind in ("person_name", "record_id", "free_text"):
            shares.pop(kind, None)
    if distinct < 3:  # a letter and 4-10 digits is specific: a few distinct numbers suffice
        shares.pop("person_code", None)
    if Counter(values).most_common(1)[0][1] / len(values) > 0.3:
        shares.pop("person_name", None)
    value_kind = max(shares, key=lambda k: shares[k]) if shares else None  # max keeps the first on ties
    if value_kind and header_kind and (header_kind == value_kind or _family(header_kind) == _family(value_kind)):
        kind, confidence = value_kind, 0.5 + 0.5 * shares[value_kind]
    elif value_kind:
        kind, confidence = value_kind, 0.9 * shares[value_kind]
    elif header_kind:
        kind, confidence = header_kind, 0.6
    else:
        kind, confidence = _shape(values, distinct)
    if KINDS[kind][0] == "insensitive" and any(find_identifiers(v) for v in set(values)):
        # Short labels with a phone number or an ID in a few rows are text people type: never insensitive.
        kind, confidence = "free_text", 0.5
    matched = round(shares.get(kind, 0) * len(values))
    samples = [mask(v, KINDS[kind][0] != "insensitive") for v in sorted(set(values))[:3]]
    return Proposal(header, kind, round(confidence, 3), {**evidence, "matched": matched, "header": header_kind}, samples)


def classify_table(table: pa.Table, refs: References = References()) -> list[Proposal]:
    return [classify_column(name, table[name], refs) for name in table.column_names]


def _header_kind(header: str) -> str | None:
    """The kind a header names: English synonyms must match whole (product_name is no person's
    name); Chinese ones may be part of a longer header (联系电话 in 客户联系电话)."""
    h = header.strip().lower()
    found = [
        (len(s), kind) for kind, synonyms in HEADER_SYNONYMS.items() for s in synonyms if h == s or (not s.isascii() and s in h)
    ]
    return max(found)[1] if found else None  # the longest synonym: 会员卡号 is a member number, not a card


def _family(kind: str) -> str:
    """Document kinds agree with a 'document number' header, dates with a 'birth' one."""
    return "document" if kind in ("prc_id", "passport", "hk_mo_permit", "tw_permit", "document_number") else kind


def _shape(values: list[str], distinct: int) -> tuple[str, float]:
    """What a column is when no detector claims it: numbers, text, keys or categories."""
    n = len(values)
    share = lambda pattern: sum(bool(re.fullmatch(pattern, v)) for v in values) / n  # noqa: E731
    if (s := share(r"[+-]?\d+")) >= 0.95:
        return "integer", s
    if (s := share(r"[+-]?\d+\.\d+")) >= 0.95:
        return "decimal", s
    mean_length = sum(map(len, values)) / n
    sentences = sum(bool(_SENTENCE.search(v)) for v in values) / n
    if mean_length >= 10 and sentences >= 0.5:
        return "free_text", sentences
    codes = share(_CODE.pattern)
    if codes >= 0.95 and distinct / n >= 0.3 and mean_length >= 8:
        return "record_id", codes
    if distinct <= 50 or distinct / n < 0.05:
        return ("code" if codes >= 0.95 else "category"), 0.8
    return "label", 0.5


@dataclass
class Score:
    """Column classification against labels: per-kind precision/recall, F1, identifiers missed."""

    columns: int
    correct: int
    per_kind: dict[str, dict[str, float]]
    macro_f1: float
    direct_identifiers: int
    direct_identifiers_found: int
    confusions: list[tuple[str, str, str]]  # (column, true kind, proposed kind)

    @property
    def micro_f1(self) -> float:
        """One label per column, so micro-averaged F1 equals accuracy."""
        return self.correct / self.columns if self.columns else 0.0


def score(predicted: dict[str, str], truth: dict[str, str]) -> Score:
    kinds = sorted(set(truth.values()) | set(predicted.values()))
    per_kind, f1s = {}, []
    for kind in kinds:
        tp = sum(1 for c in truth if truth[c] == kind and predicted.get(c) == kind)
        fp = sum(1 for c in truth if truth[c] != kind and predicted.get(c) == kind)
        fn = sum(1 for c in truth if truth[c] == kind and predicted.get(c) != kind)
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_kind[kind] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
        if tp + fn:
            f1s.append(f1)
    direct = [c for c in truth if KINDS[truth[c]][0] == "direct_identifier"]
    found = [c for c in direct if c in predicted and KINDS[predicted[c]][0] == "direct_identifier"]
    return Score(
        columns=len(truth),
        correct=sum(predicted.get(c) == k for c, k in truth.items()),
        per_kind=per_kind,
        macro_f1=sum(f1s) / len(f1s) if f1s else 0.0,
        direct_identifiers=len(direct),
        direct_identifiers_found=len(found),
        confusions=[(c, truth[c], predicted.get(c, "-")) for c in truth if predicted.get(c) != truth[c]],
    )
