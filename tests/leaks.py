"""The leak scan the tests share: every raw identifier of a landing area, and where any of them
turns up in a text (both sides normalized, so a reformatted mobile or a lower-cased ID counts)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import ahocorasick
import pandas as pd


def read_landing(landing: Path) -> dict[str, pd.DataFrame]:
    frames = {"pos": [], "membership": [], "after_sales": []}
    for path in sorted(landing.rglob("*.csv")):
        source = path.relative_to(landing).parts[0]
        if source in frames:
            encoding = {"pos": "utf-8-sig", "membership": "gb18030", "after_sales": "utf-8"}[source]
            frames[source].append(pd.read_csv(path, dtype=str, encoding=encoding, keep_default_na=False))
    return {s: pd.concat(f, ignore_index=True) for s, f in frames.items()}


def norm(text: str) -> str:
    """How the leak scan compares: NFKC, upper case, no spaces, dashes or plus signs."""
    return re.sub(r"[\s\-+]", "", unicodedata.normalize("NFKC", text)).upper()


def raw_identifiers(landing: Path) -> dict[str, set[str]]:
    raw = read_landing(landing)
    pos, crm = raw["pos"], raw["membership"]
    mobiles = {re.sub(r"^86", "", norm(m)) for m in pd.concat([pos["mobile"], crm["手机号码"]]) if m}
    cards = {norm(c) for c in pos["card_no"] if c and "*" not in c}
    return {
        "name": set(pos["buyer_name"]) | set(pos["cashier_name"]) | set(crm["姓名"]) | set(raw["after_sales"]["handler_name"]),
        "document": {norm(d) for d in pd.concat([pos["doc_no"], crm["证件号码"]]) if d},
        "mobile": mobiles,
        "email": {norm(e) for e in crm["电子邮箱"] if e},
        "card": cards,
        "openid": {norm(o) for o in crm["微信OpenID"] if o},
        "address": {norm(a) for a in crm["详细地址"] if a},
        "member_no": set(pos["member_no"]) | set(crm["会员编号"]) - {""},
    }


def find_leaks(texts: list[str], raw: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(kind, value) of every raw identifier found in any text, both sides normalized."""
    automaton = ahocorasick.Automaton()
    for kind, values in raw.items():
        for value in values:
            if len(norm(value)) >= 2:
                automaton.add_word(norm(value), (kind, norm(value)))
    automaton.make_automaton()
    return {hit for text in texts for _, hit in automaton.iter(norm(text))}
