"""A draft policy, written from classification proposals, for a person to review and commit.

The draft is valid policy YAML (tuomin can load it as it is), but every entry is a proposal: the
purposes say TODO and each column carries its evidence as a comment (counts and masked samples,
never a raw value).
"""

from __future__ import annotations

import datetime as dt
import re

import yaml

from transforms.classify import Proposal

DOCUMENT_KINDS = {"prc_id", "passport", "hk_mo_permit", "tw_permit", "document_number"}

# kind -> (transform, params, type, output). What a careful reviewer would start from.
PROPOSED: dict[str, tuple[str, dict, str, str | None]] = {
    "person_name": ("drop", {}, "string", None),
    "mobile": ("drop", {}, "string", None),
    "landline": ("drop", {}, "string", None),
    "email": ("drop", {}, "string", None),
    "bank_card": ("drop", {}, "string", None),
    "wechat_openid": ("drop", {}, "string", None),
    "address": ("drop", {}, "string", None),
    "city": ("drop", {}, "string", None),
    "person_code": ("drop", {}, "string", None),  # a member or staff number: a token would join records outside the model
    "record_id": ("drop", {}, "string", None),  # a receipt or case token would make a record of its own
    "birth_date": ("generalize", {"hierarchy": {"age": [1, 5, 10, 20]}, "levels": [2, 5]}, "date", "age"),
    "sex": ("generalize", {"hierarchy": {"table": "hierarchies/sex.csv"}, "levels": [0, 1]}, "string", None),
    "postal_code": ("generalize", {"hierarchy": {"prefix": [4, 2]}, "levels": [1, 3]}, "string", None),
    "country_code": ("generalize", {"hierarchy": {"table": "hierarchies/nationality.csv"}, "levels": [0, 3]}, "string", None),
    "province": ("generalize", {"hierarchy": {"table": "hierarchies/province.csv"}, "levels": [0, 2]}, "string", None),
    "airport_code": ("generalize", {"hierarchy": {"table": "hierarchies/destination.csv"}, "levels": [1, 4]}, "string", None),
    "flight_no": ("generalize", {"hierarchy": {"prefix": [2], "pad": ""}, "levels": [1, 2]}, "string", None),
    "datetime": ("generalize", {"hierarchy": {"datetime": ["hour", "day"]}, "levels": [1, 3]}, "datetime", None),
    "date": ("generalize", {"hierarchy": {"datetime": ["month", "year"]}, "levels": [0, 3]}, "date", None),
    "free_text": ("drop", {}, "string", None),  # the release carries no free text (a coded topic may replace it)
    "integer": ("drop", {}, "int", None),
    "decimal": ("drop", {}, "decimal", None),
}
# Columns classed `insensitive` still describe a person's record when published: the draft drops
# them, and says how to publish one (a quasi-identifier of the person or of an item, with a
# hierarchy, or a sensitive attribute).
TO_PUBLISH = "TODO to publish it, make it a quasi_identifier (part: person or item) with a hierarchy, or a sensitive_attribute"
# Names for columns whose header is not a usable key (the CRM's Chinese headers).
KEY_OF_KIND = {
    "person_code": "member_no",
    "person_name": "name",
    "document_number": "doc_no",
    "prc_id": "doc_no",
    "passport": "doc_no",
    "hk_mo_permit": "doc_no",
    "tw_permit": "doc_no",
    "country_code": "nationality",
    "airport_code": "destination",
    "wechat_openid": "wechat_openid",
}


def draft_policy(
    source: str,
    files: str,
    encoding: str,
    proposals: list[Proposal],
    origin: str,
    slashed_dates: frozenset[str] | set[str] = frozenset(),
) -> str:
    """The YAML text of a draft policy for one export."""
    lines = [
        f"# DRAFT policy proposed by `tuomin classify {origin}` on {dt.date.today()}.",
        "# Review every entry before use: roles, purposes and transforms are proposals, not decisions.",
        "# Evidence comments give counts and masked samples only.",
        f"source: {source}",
        "description: TODO describe this export",
        f"files: {_scalar(files)}",
        f"encoding: {encoding}",
    ]
    document = next((p.column for p in proposals if p.kind in DOCUMENT_KINDS), None)
    used: set[str] = set()
    keys = {p.column: _key(p, used) for p in proposals}
    if document:
        lines.append("entity: customer_id")
    dated = next((keys[p.column] for p in proposals if p.kind == "datetime"), None)
    if dated:  # rows of events, each dated: a person's record is their rows of one period of that date
        lines.append(
            f"unit: {{column: {dated}, grain: day}}  # TODO the column that dates each row, and the period a record spans"
        )
    else:  # no time of its own: one row per person, as of the export (a snapshot)
        lines += [
            "record: profile",
            "unit: {snapshot: latest}  # TODO a snapshot of profiles? else the column that dates each row",
        ]
    lines += ["privacy:", "  k: 5", "  max_suppression: 0.05"]
    if any(p.kind == "birth_date" for p in proposals):
        lines.append(f"  reference_date: {dt.date.today().isoformat()}  # TODO the one date every snapshot counts ages at")
    lines += [
        "retention:  # TODO set with legal counsel",
        "  raw_grace_days: 30",
        "  keep_years: 3",
        "  basis: TODO why the anonymized copy is kept this long",
        '  deletion_ground: "TODO the PIPL Art. 47 ground for deleting the raw export"',
        "",
        "columns:",
    ]
    for p in proposals:
        key = keys[p.column]
        transform, params, kind_type, output = PROPOSED.get(p.kind, ("drop", {}, "string", None))
        params = yaml.safe_load(yaml.safe_dump(params).replace("{name}", key))
        if p.kind in DOCUMENT_KINDS:
            if p.column == document:
                transform, params, output = "pseudonymize", {"domain": "customer", "normalize": "document"}, "customer_id"
            else:
                transform, params = "drop", {}
        ev = p.evidence
        found = (
            f"{ev['matched']} of {ev['non_empty']} non-empty values matched"
            if ev.get("matched")
            else f"by shape, {ev['non_empty']} non-empty values"
        )
        lines.append(
            f"  # {p.kind} (confidence {p.confidence:.2f}): {found}, {ev['distinct']} distinct"
            + (f"; header suggests {ev['header']}" if ev.get("header") else "")
            + (f"; samples {', '.join(p.samples)}" if p.samples else "")
        )
        lines.append(f"  {key}:")
        if key != p.column:
            lines.append(f"    aliases: [{_scalar(p.column)}]")
        purpose = (
            "TODO why this column is kept"
            if transform != "drop"
            else TO_PUBLISH
            if p.role == "insensitive"
            else "TODO confirm it is not needed"
        )
        lines += [f"    role: {p.role}", f"    kind: {p.kind}", f"    pipl: {p.pipl}", f"    purpose: {_scalar(purpose)}"]
        if kind_type != "string":
            lines.append(f"    type: {kind_type}")
        if p.column in slashed_dates:
            lines.append('    formats: ["%Y-%m-%d", "%Y/%m/%d"]')
        lines.append(f"    transform: {transform}")
        if params:
            lines.append(f"    params: {yaml.safe_dump(params, default_flow_style=True, allow_unicode=True).strip()}")
        if output:
            lines.append(f"    output: {output}")
    return "\n".join(lines) + "\n"


def _key(p: Proposal, used: set[str]) -> str:
    """The column's policy name: its header when that is a plain identifier, else one from its kind."""
    base = p.column if re.fullmatch(r"[a-z][a-z0-9_]*", p.column) else KEY_OF_KIND.get(p.kind, p.kind)
    key, n = base, 2
    while key in used:
        key, n = f"{base}_{n}", n + 1
    used.add(key)
    return key


def _scalar(text: str) -> str:
    return yaml.safe_dump(text, allow_unicode=True, default_style=None).strip().removesuffix("\n...").strip()
