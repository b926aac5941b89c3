"""Reading the landing area: which export dates exist, and each export file as batches of text.

The landing area is a URL handled by fsspec: a local path by default, `file://`, `memory://`, or
`s3://`, `sftp://` … where the matching fsspec backend is installed. Everything is read as text (no
type inference: a mobile must not become an integer, an ID must keep its leading zeros); the policy
decides types afterwards. pyarrow's own parse errors quote the offending row, so they are replaced
by messages that name the file only.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from flows.runtime.clock import today
from flows.storage.files import stream_sha256, sync
from transforms.errors import Refused
from transforms.identifiers import SUBJECT_IDENTIFIERS
from transforms.policy import SourcePolicy
from transforms.steps import ExportError, conform, unknown_headers

ERASURE_REQUESTS = "requests/erasure.csv"
# A request's `batch` is empty while it is held (flows/closing/erasure.py): a release applies the
# requests of formed batches only, so that what it removes is never one person's rows.
ERASURE_COLUMNS = ("requested_at", "batch", *SUBJECT_IDENTIFIERS)
_ARROW_ENCODING = {"utf-8": "utf8", "utf-8-sig": "utf8", "gb18030": "gb18030"}  # Arrow strips a UTF-8 BOM itself


class Landing:
    """A landing area: an fsspec filesystem and the root every relative path starts from."""

    def __init__(self, url: str | Path):
        self.url = str(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.root = self.root.rstrip("/")

    def __repr__(self) -> str:
        return f"Landing({self.url!r})"

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching a glob under the root, sorted."""
        found = self.fs.glob(f"{self.root}/{pattern}")
        return sorted(p[len(self.root) + 1 :] if p.startswith(self.root + "/") else p.lstrip("/") for p in found)

    def open(self, relative: str):
        if isinstance(self.fs, MemoryFileSystem):
            # fsspec's memory filesystem hands every reader the same file object (one position):
            # the backup and pass 1 read a date's files at the same time.
            return io.BytesIO(self.fs.cat_file(f"{self.root}/{relative}"))
        return self.fs.open(f"{self.root}/{relative}", "rb")

    def open_stream(self, relative: str):
        """For Arrow's readers: a native file on a local disk (no Python-level buffers; Arrow
        reads ahead in C++), else the fsspec file."""
        if isinstance(self.fs, LocalFileSystem):
            return pa.OSFile(f"{self.root}/{relative}")
        return self.open(relative)

    def exists(self, relative: str) -> bool:
        return self.fs.exists(f"{self.root}/{relative}")

    def link(self, relative: str) -> str | None:
        """Where a file that is a symbolic link points (a local landing's), or None."""
        if isinstance(self.fs, LocalFileSystem):
            path = Path(f"{self.root}/{relative}")
            if path.is_symlink():
                return os.readlink(path)
        return None

    def remove(self, relative: str) -> None:
        """Delete a file; on a local landing durably (its folder fsynced), so that a certificate
        recorded after it never outlives the deletion through a power loss."""
        self.fs.rm(f"{self.root}/{relative}")
        if isinstance(self.fs, LocalFileSystem):
            sync(Path(f"{self.root}/{relative}").parent)

    def size(self, relative: str) -> int:
        return int(self.fs.size(f"{self.root}/{relative}"))

    def sha256(self, relative: str) -> str:
        with self.open(relative) as fh:
            return stream_sha256(fh)


@dataclass
class InputFile:
    path: str  # relative to the landing root
    sha256: str
    bytes: int
    rows: int  # data rows, including those set aside as ragged


def _pattern(policy: SourcePolicy) -> re.Pattern:
    regex = re.escape(policy.files).replace(r"\{date\}", r"(?P<date>\d{4}-\d{2}-\d{2})")
    regex = regex.replace(r"\{yyyymmdd\}", r"(?P<ymd>\d{8})").replace(r"\*", "[^/]*")
    return re.compile(regex + "$")


def files_for(landing: Landing, policy: SourcePolicy, date: dt.date) -> list[str]:
    return landing.glob(policy.files.format(date=date.isoformat(), yyyymmdd=f"{date:%Y%m%d}"))


def source_files(landing: Landing, policy: SourcePolicy) -> dict[str, dt.date]:
    """Every file a source delivered, with the export date its folder names, in date and name order."""
    pattern, found = _pattern(policy), {}
    for relative in landing.glob(re.sub(r"\*+", "*", policy.files.format(date="*", yyyymmdd="*"))):
        m = pattern.search(relative)
        if m:
            try:
                found[relative] = dt.date.fromisoformat(m.group("date"))
            except ValueError:
                continue  # a folder that only looks like a date
            if found[relative] > today() + dt.timedelta(days=1):
                raise ExportError(
                    f"{relative}: its export date folder is after today ({today().isoformat()}): not an export of a day "
                    "that has been (a mistyped folder?); move or rename it, nothing was read"
                )
    return dict(sorted(found.items(), key=lambda item: (item[1], item[0])))


def date_in_path(relative: str) -> dt.date:
    """The export date a landing path's folder names (the first YYYY-MM-DD part), whatever its source."""
    found = next((part for part in relative.split("/") if re.fullmatch(r"\d{4}-\d{2}-\d{2}", part)), None)
    if found is None:
        raise ExportError(f"{relative}: no export date folder in its path")
    return dt.date.fromisoformat(found)


def export_date_of(policy: SourcePolicy, relative: str) -> dt.date:
    """The export date a file's folder names (its place in the landing, not its rows' dates)."""
    m = _pattern(policy).search(relative)
    if m is None:
        raise ExportError(f"{relative}: not where {policy.source}'s files are delivered ({policy.files})")
    return dt.date.fromisoformat(m.group("date"))


def copies(landing: Landing, files: list[str]) -> dict[str, str]:
    """Files delivered twice: {copy: original} for each file byte-identical (same size, same
    SHA-256) to one before it in name order. Only files of equal size are hashed."""
    by_size: dict[int, list[str]] = {}
    for relative in sorted(files):
        by_size.setdefault(landing.size(relative), []).append(relative)
    found = {}
    for group in (g for g in by_size.values() if len(g) > 1):
        first: dict[str, str] = {}
        for relative in group:
            sha = landing.sha256(relative)
            if sha in first:
                found[relative] = first[sha]
            else:
                first[sha] = relative
    return found


def export_dates(landing: Landing, policies: dict[str, SourcePolicy]) -> list[dt.date]:
    """Every export date for which at least one source delivered a file."""
    return sorted({day for policy in policies.values() for day in source_files(landing, policy).values()})


def count_rows(landing: Landing, relative: str, policy: SourcePolicy) -> int:
    """A file's data rows (one narrow read)."""
    first = policy.input_columns[0].name
    return sum(t.num_rows for t in iter_csv(landing, relative, policy, [], [first]))


def check_headers(
    landing: Landing, policies: dict[str, SourcePolicy], files: dict[str, list[str]], drop_unknown: bool
) -> list[str]:
    """Every file to read ({source: paths}) against its policy, headers only: a schema problem
    anywhere is found before anything is read. Returns one message per file that fails."""
    problems = []
    for name, paths in files.items():
        for relative in paths:
            try:
                conform(_empty(_header(landing, relative, policies[name].encoding)), policies[name], relative, drop_unknown)
            except ExportError as exc:
                problems.append(str(exc))
    return problems


def dropped_headers(
    landing: Landing, relative: str, policy: SourcePolicy, columns: list[str] | None = None, drop_unknown: bool = False
) -> list[str]:
    """The file's headers the policy does not cover, when the read was asked to drop them."""
    return unknown_headers(_header(landing, relative, policy.encoding), policy) if drop_unknown and columns is None else []


READ_BLOCK = 1 << 20  # Arrow's CSV reader keeps dozens of blocks in flight: small blocks bound it


def iter_csv(
    landing: Landing,
    relative: str,
    policy: SourcePolicy,
    ragged: list[str],
    columns: list[str] | None = None,
    drop_unknown: bool = False,
    block_size: int = 1 << 24,
) -> Iterator[pa.Table]:
    """One file as conformed text tables of about `block_size` bytes each, streamed: memory does
    not grow with the file. Rows with a wrong field count are appended to `ragged` (raw text, for
    the quarantine). Unknown or missing columns fail before any data is read (columns=None)."""
    encoding = _ARROW_ENCODING[policy.encoding]
    headers = _header(landing, relative, policy.encoding)
    dropped = unknown_headers(headers, policy) if drop_unknown or columns is not None else []
    if columns is None:
        conform(_empty(headers), policy, relative, drop_unknown)
    known = [h for h in headers if h not in dropped]
    wanted = known if columns is None else [h for h in known if policy.header_column(h).name in columns]

    def skip(row) -> str:  # a row with the wrong number of fields: set aside for quarantine
        ragged.append(row.text)
        return "skip"

    rows = 0
    try:
        with landing.open_stream(relative) as source:
            reader = pcsv.open_csv(
                source,
                read_options=pcsv.ReadOptions(encoding=encoding, block_size=min(READ_BLOCK, block_size)),
                parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=skip),
                convert_options=pcsv.ConvertOptions(
                    column_types=dict.fromkeys(headers, pa.string()),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                    include_columns=wanted if dropped or columns else None,
                ),
            )
            pending, size, empty = [], 0, True
            for batch in reader:
                rows += batch.num_rows
                pending.append(batch)
                size += batch.nbytes
                if size >= block_size:
                    yield _conformed(pa.Table.from_batches(pending).combine_chunks(), policy, relative, columns)
                    pending, size, empty = [], 0, False
            if pending or empty:
                yield _conformed(pa.Table.from_batches(pending, reader.schema).combine_chunks(), policy, relative, columns)
    except UnicodeDecodeError:
        line, column = _undecodable(landing, relative, policy.encoding, headers)
        raise ExportError(
            f"{relative}: line {line}, column {column}: not valid {policy.encoding} (the value is withheld)"
        ) from None
    except pa.ArrowInvalid as exc:
        if "straddling" in str(exc):  # Arrow's words for a row that does not fit in one read block
            raise ExportError(
                f"{relative}: a row longer than {READ_BLOCK >> 20} MiB after row {rows + len(ragged)} "
                "(an extremely long field?); the file is not read"
            ) from None
        raise ExportError(f"{relative}: not readable as CSV (details withheld: they quote the data)") from None


def _undecodable(landing: Landing, relative: str, encoding: str, headers: list[str]) -> tuple[int, str]:
    """Where a file first fails to decode: the line, and the column counted by the commas before
    the bad bytes (a comma is one ASCII byte in every encoding read here)."""
    with landing.open(relative) as fh:
        for number, line in enumerate(fh, 1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as exc:
                field = line[: exc.start].count(b",")
                return number, repr(headers[field]) if field < len(headers) else f"#{field + 1}"
    return 0, "?"


def _conformed(table: pa.Table, policy: SourcePolicy, relative: str, columns: list[str] | None) -> pa.Table:
    if columns is None:
        return conform(table, policy, relative)
    return table.rename_columns([policy.header_column(h).name for h in table.column_names])


def sniff_encoding(path: Path, probe: int = 1 << 20) -> str:
    """Which encoding the spec allows a file is in: UTF-8 with or without BOM, else GB18030."""
    with path.open("rb") as fh:
        head = fh.read(probe)
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    cut = head.rfind(b"\n") if len(head) == probe else len(head)  # never split a character
    try:
        head[: max(cut, 0)].decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        head[: max(cut, 0)].decode("gb18030")
        return "gb18030"
    except UnicodeDecodeError:
        raise ExportError(f"{path.name}: neither UTF-8 nor GB18030") from None


def sample_csv(path: Path, encoding: str, rows: int) -> pa.Table:
    """The first `rows` data rows as text, read in blocks: a 5 GB export is not read whole."""
    headers = _header(Landing(path.parent), path.name, encoding)
    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(encoding=_ARROW_ENCODING[encoding], block_size=1 << 20),
        parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=lambda row: "skip"),
        convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(headers, pa.string()), strings_can_be_null=False),
    )
    batches, seen = [], 0
    for batch in reader:
        batches.append(batch)
        seen += batch.num_rows
        if seen >= rows:
            break
    table = pa.Table.from_batches(batches, schema=reader.schema) if batches else _empty(headers)
    return table.slice(0, rows)


def _header(landing: Landing, relative: str, encoding: str) -> list[str]:
    with landing.open(relative) as fh:
        line = fh.readline().decode("utf-8-sig" if encoding == "utf-8-sig" else encoding, errors="replace")
    headers = [h.strip() for h in next(csv.reader([line]), [])]
    if not headers:
        raise ExportError(f"{relative}: empty file (no header row)")
    wrong = [d for d in (";", "\t", "|") if len(headers) == 1 and d in headers[0]]
    if wrong:
        raise ExportError(f"{relative}: the header is one field holding {wrong[0]!r}: the file is not comma-separated")
    return headers


def _empty(headers: list[str]) -> pa.Table:
    return pa.Table.from_arrays([pa.array([], pa.string())] * len(headers), names=headers)


def read_erasure_requests(landing: Landing) -> pa.Table:
    """The erasure list, every line checked (check_requests): a damaged line refuses, never erases nobody."""
    if not landing.exists(ERASURE_REQUESTS):
        return pa.table({"doc_no": pa.array([], pa.string())})
    try:
        with landing.open(ERASURE_REQUESTS) as source:
            requests = pcsv.read_csv(
                source,
                read_options=pcsv.ReadOptions(encoding="utf8"),
                convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in ERASURE_COLUMNS}),
            )
    except pa.ArrowInvalid:
        raise ExportError(f"{ERASURE_REQUESTS}: not readable as CSV (details withheld: they quote the data)") from None
    check_requests(requests)
    return requests


def check_requests(requests: pa.Table) -> None:
    """Every request names a person by at least one identifier, each of its kind's shape once
    normalized as tokens normalize it. A line that does not (a NUL byte, a spreadsheet formula,
    a typo) would find nobody and erase nothing without a word: ExportError naming the line and
    the column (line 1 is the header), never the value."""
    from transforms.text import NORMALIZERS

    named = np.zeros(requests.num_rows, bool)
    for name, subject in SUBJECT_IDENTIFIERS.items():
        if name not in requests.column_names:
            continue
        raw = requests[name].to_pylist()
        normalized = NORMALIZERS[subject.normalize](requests[name]).to_pylist()
        for row, (given, value) in enumerate(zip(raw, normalized)):
            if given is None or not given.strip():
                continue
            if "\x00" in given or not value or not subject.shape.fullmatch(value):
                raise ExportError(
                    f"{ERASURE_REQUESTS} line {row + 2}: {name} is not a {subject.label} this list can name a person by "
                    "(a NUL byte, a formula or a typo?): it would erase nobody; correct or remove the line, nothing was read"
                )
            named[row] = True
    if requests.num_rows and not named.all():
        row = int(np.flatnonzero(~named)[0])
        raise ExportError(f"{ERASURE_REQUESTS} line {row + 2}: names no one (every identifier empty); correct or remove the line")


def applied_requests(requests: pa.Table) -> pa.Table:
    """The requests a release applies: those in a formed batch. A list written before batches
    existed has no `batch` column, and is applied whole."""
    if "batch" not in requests.column_names:
        return requests
    return requests.filter(pc.greater(pc.utf8_length(pc.fill_null(requests["batch"], "")), 0))


def requests_sha256(requests: pa.Table) -> str | None:
    """What a release's fingerprint holds of the erasure list: a hash of the applied requests'
    identifiers (not the file's bytes: a held request changes no release). None if none applies."""
    applied = applied_requests(requests)
    people = sorted(
        (name, value)
        for name in SUBJECT_IDENTIFIERS
        if name in applied.column_names
        for value in applied[name].to_pylist()
        if value
    )
    return hashlib.sha256(json.dumps(people).encode()).hexdigest() if people else None


def write_erasure_requests(landing: Landing, rows: list[dict[str, str]]) -> None:
    """The erasure list replaced whole by `rows` (ERASURE_COLUMNS), through a temporary file and a
    rename: a crash leaves the old list or the new one."""
    path = f"{landing.root}/{ERASURE_REQUESTS}"
    landing.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with landing.fs.open(path + ".tmp", "w", encoding="utf-8", newline="") as fh:
        out = csv.DictWriter(fh, ERASURE_COLUMNS, lineterminator="\n", restval="")
        out.writeheader()
        out.writerows(rows)
    landing.fs.mv(path + ".tmp", path)


class LandingMissing(Refused, ValueError):
    """A landing area that is not there: a mistyped path is not an empty landing."""


def existing(url: str | Path) -> Landing:
    """The landing area at `url`, which must exist."""
    area = Landing(url)
    if not area.fs.isdir(area.root):
        raise LandingMissing(f"--landing {url}: no such directory")
    return area
