"""Data subjects' requests (PIPL Art. 44-47), without widening who sees raw data.

    lookup   every raw record of one person in the exports still held (all dates, all sources),
             as one readable file in the restricted area
    erase    the identifier checked and added to requests/erasure.csv: the next run leaves the
             person out of everything it publishes; `tokens` are the keys published rows name
             the person by (flows/closing/erasure.py removes them from what is already published)
    notify   the closure notice for every member of the latest CRM snapshot with a reachable
             mobile or e-mail, as the batch files an SMS or e-mail provider takes

A person is named by a document number, a mobile or a member number in any shape the exports
use (+86, full-width digits, lower-case x), matched after the normalization the pseudonyms use.
After-sales cases name no document or mobile: they are found through the member numbers and
receipts of the person's other records. The ledger records each request with a keyed hash of the
identifier, never the identifier.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import string
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from flows.runtime.clock import TIMEZONE
from flows.runtime.paths import restricted_dir
from flows.storage import landing as landing_io
from transforms.errors import Refused
from transforms.identifiers import SUBJECT_IDENTIFIERS, is_prc_id
from transforms.policy import SourcePolicy
from transforms.pseudonymize import Pseudonymizer
from transforms.steps import Subjects, column_tokens, entity_source, link_keys, link_keys_of, subject_rows
from transforms.text import NORMALIZERS, no_placeholders

if TYPE_CHECKING:
    from flows.storage.entries import NoticesEntry, SubjectLookupEntry
    from flows.storage.ledger import Recorded

HEADER = ["来源", "导出日期", "文件", "行号", "字段", "内容"]  # source, export date, file, row, field, value


class SubjectError(Refused, ValueError):
    """A request that cannot be carried out; the message never quotes the identifier."""


@dataclass(frozen=True)
class Identifier:
    kind: str  # one of SUBJECT_IDENTIFIERS
    value: str  # normalized

    @classmethod
    def parse(cls, kind: str, typed: str) -> Identifier:
        """The identifier normalized as the pseudonyms are, or SubjectError if it cannot be one."""
        identifier = SUBJECT_IDENTIFIERS[kind]
        value = NORMALIZERS[identifier.normalize](pa.array([typed], pa.string()))[0].as_py() or ""
        if not identifier.shape.fullmatch(value):
            raise SubjectError(f"that is not a {identifier.label} ({kind}) in any shape the exports use")
        if kind == "doc_no" and re.fullmatch(r"\d{17}[\dX]", value) and not is_prc_id(value):
            raise SubjectError("that resident ID number fails its check digit (GB 11643); check the number")
        if no_placeholders(pa.array([value]))[0].as_py() is None:  # 13800138000: what clerks type for anyone
            raise SubjectError(
                f"that {identifier.label} is a placeholder or dummy number that many records share; "
                "it names no one: use another identifier of the person"
            )
        return cls(kind, value)

    def subjects(self) -> Subjects:
        return Subjects(**{self.kind: frozenset([self.value])})

    def keyed_hash(self, pseudonymizer: Pseudonymizer) -> str:
        """What the ledger records: a keyed hash in a domain of its own (not a published token)."""
        return pseudonymizer.token(self.value, f"subject-request:{self.kind}")


def erase(landing: landing_io.Landing, who: Identifier) -> bool:
    """Add the person to requests/erasure.csv, held (no batch yet), unless already there; returns
    whether it was added."""
    rows = _requests(landing)
    added = not any(r.get(who.kind) == who.value for r in rows)
    if added:
        now = dt.datetime.now(TIMEZONE).strftime("%Y-%m-%d %H:%M:%S")
        landing_io.write_erasure_requests(landing, [*rows, {"requested_at": now, "batch": "", who.kind: who.value}])
    return added


@dataclass(frozen=True)
class Batch:
    """Erasure requests carried out together (flows/closing/erasure.py): `people` as listed."""

    id: str
    people: tuple[Identifier, ...]
    formed: bool  # formed by this request (else: formed before, and this request repeats it)


def batch_of(landing: landing_io.Landing, who: Identifier, size: int, flush: bool = False) -> tuple[Batch | None, int]:
    """The batch `who` (listed) belongs to: the one formed before, or a new one of every held
    request once at least `size` are held (or any are, with `flush`); None while held. Returns it
    and how many requests are held afterwards."""
    rows = _requests(landing)
    mine = next((r for r in rows if r.get(who.kind) == who.value), None)
    if mine is None:
        raise SubjectError("this person is not on requests/erasure.csv")
    held = [r for r in rows if not r["batch"]]
    if mine["batch"]:
        return Batch(mine["batch"], _people(r for r in rows if r["batch"] == mine["batch"]), False), len(held)
    if len(held) < size and not flush:
        return None, len(held)
    name = dt.datetime.now(dt.UTC).strftime("batch-%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    for r in held:
        r["batch"] = name
    landing_io.write_erasure_requests(landing, rows)
    return Batch(name, _people(held), True), 0


def _requests(landing: landing_io.Landing) -> list[dict[str, str]]:
    """The erasure list as rows; a list from before batches has every request in one (`applied`)."""
    table = landing_io.read_erasure_requests(landing)
    rows = [{k: v or "" for k, v in r.items()} for r in table.to_pylist()]
    for r in rows:
        r.setdefault("batch", "applied")
    return [r for r in rows if any(r.get(kind) for kind in SUBJECT_IDENTIFIERS)]


def _people(rows) -> tuple[Identifier, ...]:
    return tuple(Identifier(kind, r[kind]) for r in rows for kind in SUBJECT_IDENTIFIERS if r.get(kind))


@dataclass
class Found:
    source: str
    date: str
    file: str
    row: int  # data row in the file, 1-based
    fields: dict[str, str]


def lookup(landing: landing_io.Landing, policies: dict[str, SourcePolicy], who: Identifier) -> list[Found]:
    """Every raw record of the person: sources named by the identifier first, then the sources
    that link to them, through the member numbers and receipts found (cases name neither a
    document nor a mobile)."""
    found: list[Found] = []
    keys: dict[str, set[str]] = {}  # link key column -> values seen in the person's records
    for policy in sorted(policies.values(), key=lambda p: (bool(p.link), p.source)):
        linked = link_keys_of(policies, policy.source)
        for relative, date, table, first_row in _tables(landing, policy):
            hit = subject_rows(table, policy, who.subjects())
            for link in policy.link:
                wanted = pa.array(sorted(keys.get(link.key, ())), pa.string())
                hit |= pc.fill_null(pc.is_in(link_keys(table[link.column]), wanted), False).to_numpy(zero_copy_only=False)
            mine = table.filter(pa.array(hit))
            for index, row in zip(hit.nonzero()[0], mine.to_pylist()):
                shown = {_label(policy, name): value for name, value in row.items()}
                found.append(Found(policy.source, date, relative, first_row + int(index), shown))
            for column in linked:
                keys.setdefault(column, set()).update(pc.drop_null(link_keys(mine[column])).to_pylist())
    return found


def tokens(
    landing: landing_io.Landing,
    policies: dict[str, SourcePolicy],
    people: Identifier | tuple[Identifier, ...],
    pseudonymizer: Pseudonymizer,
) -> set[str]:
    """The customer tokens of one person or several (one reading of the exports), as published
    rows carry them: the document numbers' they are named by, and those of every raw record still
    held that names them (the documents a mobile or member number leads to; a person may have
    several)."""
    people = (people,) if isinstance(people, Identifier) else people
    wanted = Subjects(**{kind: frozenset(p.value for p in people if p.kind == kind) for kind in SUBJECT_IDENTIFIERS})
    documents = sorted(p.value for p in people if p.kind == "doc_no")
    found: set[str] = set()
    for policy in policies.values():
        source = entity_source(policy)
        if source is None:
            continue
        if documents:
            found |= set(column_tokens(pa.table({source.name: documents}), source, pseudonymizer).to_pylist())
        for _, _, table, _ in _tables(landing, policy, drop_unknown=True):  # tokens come from the policy's columns
            hit = subject_rows(table, policy, wanted)
            if hit.any():
                found |= set(pc.drop_null(column_tokens(table.filter(pa.array(hit)), source, pseudonymizer)).to_pylist())
    return found


@dataclass(frozen=True)
class Access:
    """An access request carried out: what was found, the person's file, the ledger entry."""

    found: list[Found]
    path: Path | None
    newest: str | None  # the newest export date it copies: purge deletes the file with that date's raw data
    entry: Recorded[SubjectLookupEntry]


def access(
    landing: landing_io.Landing,
    policies: dict[str, SourcePolicy],
    restricted: Path,
    who: Identifier,
    out: Path,
    pseudonymizer: Pseudonymizer,
) -> Access:
    """An access request (PIPL Art. 45): every record of the person in one owner-only file under
    `out` (none if nothing was found), recorded in the ledger by a keyed hash of the identifier."""
    from flows.storage import ledger
    from flows.storage.entries import SubjectLookupEntry

    found = lookup(landing, policies, who)
    path = write_lookup(out, who, pseudonymizer, found) if found else None
    newest = max((f.date for f in found), default=None)
    entry = SubjectLookupEntry(
        identifier=who.kind,
        subject=who.keyed_hash(pseudonymizer),
        key_id=pseudonymizer.key_id,
        records=len(found),
        file=str(path.resolve()) if path else None,
        newest_date=newest,
    )
    return Access(found, path, newest, ledger.append(restricted, entry))


def _label(policy: SourcePolicy, name: str) -> str:
    """A column as the export's header names it (the CRM's are Chinese)."""
    column = policy.column(name)
    return column.aliases[0] if column.aliases else name


def _tables(landing: landing_io.Landing, policy: SourcePolicy, drop_unknown: bool = False):
    """(file, export date, conformed text table, its first data row) for every file of a source;
    a column no policy covers fails, or with `drop_unknown` is left out."""
    for date in landing_io.export_dates(landing, {policy.source: policy}):
        for relative in landing_io.files_for(landing, policy, date):
            first = 1
            for table in landing_io.iter_csv(landing, relative, policy, [], drop_unknown=drop_unknown):
                yield relative, date.isoformat(), table, first
                first += table.num_rows


def write_lookup(out: Path, who: Identifier, pseudonymizer: Pseudonymizer, found: list[Found]) -> Path:
    """One CSV for the person (UTF-8 with BOM, so spreadsheets show the Chinese right), one line
    per field of each record, in an owner-only file in an owner-only folder."""
    rows = (
        [r.source, r.date, r.file, r.row, field, "" if value is None else value]
        for r in found
        for field, value in r.fields.items()
    )
    return _private_csv(restricted_dir(out) / f"subject-{who.keyed_hash(pseudonymizer)[:12]}.csv", HEADER, rows, "utf-8-sig")


TEMPLATES = Path(__file__).parent / "templates"  # the closure notices
DATASETS_ZH = {"pos": "销售记录", "membership": "会员资料", "after_sales": "售后记录"}
EMAIL = re.compile(r"[^@\s,]+@[^@\s,]+\.[A-Za-z]{2,}")


@dataclass(frozen=True)
class Closure:
    """What every notice says: set by the operator for this closing, checked before anything is
    written (a notice with a deadline that has passed, or no one to contact, cannot be taken back)."""

    shop: str
    closing_date: dt.date
    delete_by: dt.date
    requests_by: dt.date
    contact: str

    @classmethod
    def parse(cls, shop: str, closing_date: str, delete_by: str, requests_by: str, contact: str, today: dt.date) -> Closure:
        """Dates as 2026-12-31 or 2026年12月31日. The last day to ask must be after `today`, and the
        deletion after it and no earlier than the closing (the data is needed until then)."""
        closure = cls(
            shop.strip(),
            _day(closing_date, "--closing-date"),
            _day(delete_by, "--delete-by"),
            _day(requests_by, "--requests-by"),
            contact.strip(),
        )
        if not closure.contact:
            raise SubjectError("--contact is empty: the notice must say how to ask for a copy or for deletion")
        if not closure.shop:
            raise SubjectError("--shop is empty: the notice must say who sends it")
        if closure.requests_by <= today:
            raise SubjectError(
                f"--requests-by {closure.requests_by} is not after today ({today}): customers must have time to ask"
            )
        if closure.delete_by <= closure.requests_by:
            raise SubjectError(
                f"--delete-by {closure.delete_by} is not after --requests-by {closure.requests_by}: a request "
                "must be answered before the data is gone"
            )
        if closure.delete_by < closure.closing_date:
            raise SubjectError(f"--delete-by {closure.delete_by} is before --closing-date {closure.closing_date}")
        return closure

    def values(self) -> dict[str, str]:
        """The template's fields, dates written as customers read them (2026年12月31日)."""
        return {name: f"{v.year}年{v.month}月{v.day}日" if isinstance(v, dt.date) else v for name, v in self.__dict__.items()}

    def recorded(self) -> dict[str, str]:
        return {name: v.isoformat() if isinstance(v, dt.date) else v for name, v in self.__dict__.items()}


def _day(text: str, option: str) -> dt.date:
    found = re.fullmatch(r"\s*(\d{4})(?:-(\d{1,2})-(\d{1,2})|年(\d{1,2})月(\d{1,2})日)\s*", text)
    try:
        if found is None:
            raise ValueError
        year, month, day = int(found[1]), int(found[2] or found[4]), int(found[3] or found[5])
        return dt.date(year, month, day)
    except ValueError:
        raise SubjectError(f"{option} {text!r} is not a date (2026-12-31 or 2026年12月31日)") from None


def notices(landing: landing_io.Landing, policies: dict[str, SourcePolicy], closure: Closure, out: Path) -> dict:
    """The notice batch from the latest membership snapshot: sms.csv (mobile, content) for members
    with a mainland mobile, email.csv (email, subject, body) for the others with an e-mail, one
    notice per address; members on the erasure list and members with neither are counted, not
    listed. Written owner-only under `out`; returns the counts."""
    policy = policies["membership"]
    dates = landing_io.export_dates(landing, {"membership": policy})
    if not dates:
        raise SubjectError("no membership snapshot in the landing area")
    snapshot = dates[-1]
    kept = {name: p.retention.keep_years for name, p in policies.items()}
    values = {
        **closure.values(),
        "kept": "、".join(f"{DATASETS_ZH.get(n, n)}{y}年" for n, y in kept.items()),
        "kept_lines": "\n".join(f"- {DATASETS_ZH.get(n, n)}：保留{y}年" for n, y in kept.items()),
    }
    sms_text = string.Template((TEMPLATES / "notice_sms_zh.txt").read_text("utf-8").strip()).substitute(values)
    subject, body = string.Template((TEMPLATES / "notice_email_zh.txt").read_text("utf-8")).substitute(values).split("\n", 1)
    email_column = next(c.name for c in policy.columns if c.kind == "email")
    subjects = Subjects.from_requests(landing_io.read_erasure_requests(landing))
    mobiles, emails, counts = set(), set(), {"members": 0, "erased": 0, "unreachable": 0}
    for relative in landing_io.files_for(landing, policy, snapshot):
        for table in landing_io.iter_csv(landing, relative, policy, []):
            erased = subject_rows(table, policy, subjects)
            mobile = NORMALIZERS["mobile"](table[policy.subject_keys["mobile"]]).to_pylist()
            email = [(e or "").strip() for e in table[email_column].to_pylist()]
            counts["members"] += table.num_rows
            for i in range(table.num_rows):
                if erased[i]:
                    counts["erased"] += 1
                elif mobile[i] and SUBJECT_IDENTIFIERS["mobile"].shape.fullmatch(mobile[i]):
                    mobiles.add(mobile[i])
                elif EMAIL.fullmatch(email[i]):
                    emails.add(email[i])
                else:
                    counts["unreachable"] += 1
    folder = restricted_dir(out)
    files = [
        _private_csv(folder / "sms.csv", ["mobile", "content"], [(m, sms_text) for m in sorted(mobiles)]),
        _private_csv(folder / "email.csv", ["email", "subject", "body"], [(e, subject, body.strip()) for e in sorted(emails)]),
    ]
    return {
        **counts,
        "snapshot": snapshot.isoformat(),
        "sms": len(mobiles),
        "email": len(emails),
        "files": [str(f.resolve()) for f in files],
        "closure": closure.recorded(),
        # What customers were told, word for word (one text for all: no personal data in it).
        "texts": {"sms": sms_text, "email_subject": subject, "email_body": body.strip()},
    }


def notify(
    landing: landing_io.Landing, policies: dict[str, SourcePolicy], restricted: Path, closure: Closure, out: Path
) -> tuple[dict, Recorded[NoticesEntry]]:
    """The closure notices (see `notices`), recorded in the ledger: their counts and the entry."""
    from flows.storage import ledger
    from flows.storage.entries import NoticesEntry

    counts = notices(landing, policies, closure, out)
    return counts, ledger.append(restricted, NoticesEntry(**counts))


def _private_csv(path: Path, header: list[str], rows, encoding: str = "utf-8") -> Path:
    """A CSV of raw personal data: owner-only from its creation."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path
