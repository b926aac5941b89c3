"""Check digits and validators for the identifiers found in the shop's exports.

Validation, not bare patterns: a string is a resident ID only if its GB 11643 check digit, birth
date and GB/T 2260 area code all hold; a card number only if its Luhn digit holds. The vectorized
check-digit functions are also what the sample generator uses to make valid numbers, so the two
can never disagree.
"""

from __future__ import annotations

import datetime as dt
import re
import typing
from dataclasses import dataclass
from typing import Literal

import numpy as np

from transforms.gb2260 import divisions

GB11643_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
GB11643_CHECK = np.array(list("10X98765432"))

MOBILE_RE = re.compile(r"1[3-9]\d{9}")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Passports: PRC (E/G + 8 digits, or E + letter + 7 digits) and the common foreign shapes
# (JP/AU/IT/TH 2 letters + 7 digits, KR M + 8 digits, US/GB/RU 9 digits, FR 2 digits 2 letters
# 5 digits, DE C + 8 characters without vowels, SG letter + 7 digits + letter).
PASSPORT_RE = re.compile(
    r"[EG]\d{8}|E[A-HJ-NP-Z]\d{7}|[A-Z]{1,2}\d{6,8}|\d{9}|\d{2}[A-Z]{2}\d{5}"
    r"|C[CFGHJKLMNPRTVWXYZ0-9]{8}|[A-Z]\d{7}[A-Z]"
)
PERMIT_HK_MO_RE = re.compile(r"[HM]\d{8}(?:\d{2})?")  # 港澳居民来往内地通行证
PERMIT_TW_RE = re.compile(r"\d{8}")  # 台湾居民来往大陆通行证; 8 digits, so only trusted in a document column
LANDLINE_RE = re.compile(r"\(?0\d{2,3}\)?[ \-]?\d{7,8}(?:[ \-]?(?:转|ext\.?|x)\d{1,5})?")
OPENID_RE = re.compile(r"o[A-Za-z0-9_\-]{27}")  # WeChat OpenID: 28 characters starting with o
POSTAL_RE = re.compile(r"[0-8]\d{5}")
FLIGHT_RE = re.compile(r"(?:[A-Z]{2}|[A-Z]\d|\d[A-Z])\d{1,4}[A-Z]?|[A-Z]{3}\d{4}")  # IATA flights; cruise sailings
CARD_PREFIX_RE = re.compile(r"62|4|5[1-5]|2[2-7]|3[47]|35")
MASKED_CARD_RE = re.compile(r"\d{4,6}[*xX]{4,9}\d{4}")


def gb11643_check_chars(body: np.ndarray) -> np.ndarray:
    """Check characters for an (n, 17) array of ID digits (the first 17 of each number)."""
    return GB11643_CHECK[(body.astype(np.int64) @ GB11643_WEIGHTS) % 11]


def luhn_check_digits(body: np.ndarray) -> np.ndarray:
    """Luhn check digits for an (n, m) array of card digits (all digits but the last)."""
    digits = body.astype(np.int64)[:, ::-1]  # rightmost body digit is doubled
    doubled = digits[:, 0::2] * 2
    total = (doubled - 9 * (doubled > 9)).sum(axis=1) + digits[:, 1::2].sum(axis=1)
    return (10 - total % 10) % 10


def is_prc_id(value: str, today: dt.date | None = None) -> bool:
    """A valid 18-character resident ID: check digit, real birth date, known area code."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    body = np.frombuffer(value[:17].encode("ascii"), dtype=np.uint8) - 48
    if gb11643_check_chars(body[None, :])[0] != value[17].upper():
        return False
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not dt.date(1900, 1, 1) <= born <= (today or dt.date.today()):
        return False
    return value[:6] in divisions() or value[:2] + "0000" in divisions()


def is_card_number(value: str) -> bool:
    """A full payment card number: 15-19 digits, a known scheme prefix, a valid Luhn digit."""
    if not value.isdigit() or not 15 <= len(value) <= 19 or not CARD_PREFIX_RE.match(value):
        return False
    body = np.frombuffer(value[:-1].encode("ascii"), dtype=np.uint8) - 48
    return int(luhn_check_digits(body[None, :])[0]) == int(value[-1])


def is_mobile(value: str) -> bool:
    """A mainland mobile number written as its 11 digits."""
    return bool(MOBILE_RE.fullmatch(value))


def document_kind(value: str) -> str | None:
    """Which travel document a (normalized) number is: prc_id, hk_mo_permit, passport, tw_permit."""
    if len(value) == 18 and is_prc_id(value):
        return "prc_id"
    if PERMIT_HK_MO_RE.fullmatch(value):
        return "hk_mo_permit"
    if PASSPORT_RE.fullmatch(value):
        return "passport"
    if PERMIT_TW_RE.fullmatch(value):
        return "tw_permit"
    return None


def ean13_check_digit(body: str) -> int:
    """GS1 check digit for the first 12 digits of an EAN-13 product code."""
    return (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body)) % 10) % 10


def is_ean13(value: str) -> bool:
    """A GS1 EAN-13 product code with a valid check digit (not personal data)."""
    return len(value) == 13 and value.isdigit() and ean13_check_digit(value[:12]) == int(value[12])


@dataclass(frozen=True)
class SubjectIdentifier:
    """One way a request names a person: the erasure list's column and the CLI's option (--doc-no …)."""

    name: str
    normalize: str  # as tokens normalize it (transforms/text.NORMALIZERS), so a request finds the person's tokens
    shape: re.Pattern  # what the normalized value must look like
    label: str  # how a notice to the person names it


# The identifiers a data subject's request may name the person by: declared here only.
SUBJECT_IDENTIFIERS = {
    s.name: s
    for s in (
        # resident IDs (check digit tested too), passports, permits
        SubjectIdentifier("doc_no", "document", re.compile(r"[0-9A-Z]{5,20}"), "证件号码"),
        SubjectIdentifier("mobile", "mobile", re.compile(r"1[3-9]\d{9}"), "手机号码"),  # mainland mobiles
        SubjectIdentifier("member_no", "upper", re.compile(r"[0-9A-Z]{4,20}"), "会员编号"),
    )
}
SubjectKind = Literal["doc_no", "mobile", "member_no"]  # for a policy's subject_keys (pydantic needs the literal)
assert set(typing.get_args(SubjectKind)) == set(SUBJECT_IDENTIFIERS)
