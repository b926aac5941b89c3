"""Check digits and validators for the identifiers found in the shop's exports.

Validation, not bare patterns: a string is a resident ID only if its GB 11643 check digit, birth
date and GB/T 2260 area code all hold; a card number only if its Luhn digit holds. The vectorized
check-digit functions are also what the sample generator uses to make valid numbers, so the two
can never disagree.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np

from transforms.gb2260 import divisions

GB11643_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
GB11643_CHECK = np.array(list("10X98765432"))

MOBILE_RE = re.compile(r"1[3-9]\d{9}")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PASSPORT_PRC_RE = re.compile(r"[EG]\d{8}|E[A-HJ-NP-Z]\d{7}")
PERMIT_HK_MO_RE = re.compile(r"[HM]\d{8}(?:\d{2})?")
PERMIT_TW_RE = re.compile(r"\d{8}")
CARD_PREFIX_RE = re.compile(r"62|4|5[1-5]|2[2-7]|3[47]|35")


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
