"""The ledger: an append-only, hash-chained record of what tuomin did.

    <restricted>/ledger/ledger.jsonl    one JSON object per line (0600, in a 0700 folder)

Each entry has `seq`, `at` (UTC), `kind`, `data` (one model per kind: flows/storage/entries.py),
`prev` (the previous entry's
hash) and `hash` = SHA-256 of the canonical JSON of the other fields, so editing, deleting or
reordering any entry breaks the chain at that point. Entries hold counts, names, paths and hashes,
never a data value, but exact counts (rows erased, suppressed, quarantined), some below k: so it
lives in the restricted area, with the compliance officer, not in the warehouse analysts read.
DuckDB reads it as a table: read_json('<restricted>/ledger/ledger.jsonl').

A chain cannot show that its last entries were cut off: what is left still verifies. So the head
(seq and hash) is also written where a truncation of the ledger does not reach: into every
partition file's metadata when it is published (`ledger_head`: the entry before its own), into
the evidence pack, and given back by the operator with `tuomin ledger verify --expect-head`.
`check` compares the ledger with all of them.

An append is one write of one line, fsynced. A crash or a full disk in the middle leaves a torn
last line, with no newline after it: readers leave it out (it was never an entry), and the next
append, or `tuomin ledger verify`, sets its bytes aside in a file beside the ledger, cuts the
ledger back to its last whole line and records the repair (`ledger_repaired`) before anything
else. An append that fails (ENOSPC) cuts back what it wrote, so it leaves nothing torn behind.
A whole line that is not JSON is damage, not a crash: LedgerBroken, in one line.

Intend, act, commit (flows/storage/intents.py): a step that changes the world outside the
ledger first appends an `intent`, then acts, then appends the entry that records it; a crash
between the two leaves the intent open, and the next command that trusts the ledger ends it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar, cast

from flows.runtime import failpoints
from flows.storage import entries as entries_model
from flows.storage.entries import Entry, PartitionEntry, PartitionRemovedEntry
from flows.storage.footer import read_footer
from transforms.errors import Refused

LEDGER = Path("ledger") / "ledger.jsonl"  # under the restricted area
GENESIS = "0" * 64
HEAD_KEY = "ledger_head"  # in a partition's metadata: {"seq", "hash"} of the ledger when it was written

KINDS = {kind: model.about for kind, model in entries_model.KINDS.items()}  # every kind of entry, and what it records


class LedgerBroken(Refused, RuntimeError):
    """The ledger is missing, empty, cut short or does not verify: nothing that relies on it may
    proceed."""


class LedgerWriteFailed(Refused, OSError):
    """An entry could not be written (a full disk, a read-only file system): nothing was recorded,
    and the ledger is as it was."""


E = TypeVar("E", bound=Entry, covariant=True)  # a Recorded[PartitionEntry] is a Recorded[Entry]
K = TypeVar("K", bound=Entry)  # one kind, as a function takes and returns it


@dataclass(frozen=True)
class Recorded(Generic[E]):
    """One entry as read back, its data parsed into its kind's model."""

    seq: int
    at: str
    kind: str
    data: E
    hash: str


def _digest(entry: dict) -> str:
    body = {k: entry[k] for k in ("seq", "at", "kind", "data", "prev")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def entries(restricted: Path) -> list[dict]:
    """The entries as stored, but a torn last line (never an entry: see the module's docstring).
    LedgerBroken, naming the line, where a whole line is not an entry."""
    path = restricted / LEDGER
    if not path.exists():
        return []
    return _parsed(_split(path.read_bytes())[0], path)


def _parsed(whole: bytes, path: Path) -> list[dict]:
    """The entries of a ledger's whole lines; LedgerBroken, naming the line, for one that is not an entry."""
    found = []
    for number, line in enumerate(whole.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            found.append(json.loads(line))
        except ValueError:
            raise LedgerBroken(f"{path}: line {number} is not a ledger entry (damaged): see `tuomin ledger verify`") from None
    return found


def _split(raw: bytes) -> tuple[bytes, bytes]:
    """A ledger's bytes as (its whole lines, a torn last line without its newline)."""
    end = raw.rfind(b"\n") + 1
    return raw[:end], raw[end:]


def torn(restricted: Path) -> int:
    """The bytes of a torn last line (0: none)."""
    path = restricted / LEDGER
    if not path.is_file():
        return 0
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - (1 << 20)))
        return len(_split(fh.read())[1]) if size else 0


def writable(restricted: Path) -> None:
    """Refuse (LedgerBroken, one line) unless the ledger's chain verifies: what a writing command
    checks before its slow work, as every append does again. A missing ledger is writable."""
    path = restricted / LEDGER
    if not path.is_file():
        return
    with path.open("rb") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        _trust(fh, path)


def repair(restricted: Path, by: str) -> Recorded | None:
    """Set a torn last line aside and record it (see the module's docstring); None when there was none."""
    path = restricted / LEDGER
    if not torn(restricted):
        return None
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    with os.fdopen(fd, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        repaired = _set_aside(fh, path, by)
    if repaired is None:
        return None
    return append(restricted, repaired)


def _set_aside(fh, path: Path, by: str):
    """Under the caller's lock: the torn tail copied to a file of its own (0600), the ledger cut
    back to its last whole line; the entry that records it, to be appended. A ledger that ends
    with a newline (every append but one cut short) costs one byte read, not the whole file."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    if size == 0:
        return None
    fh.seek(size - 1)
    if fh.read(1) == b"\n":
        return None
    fh.seek(0)
    whole, tail = _split(fh.read())
    if not tail:
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = path.parent / f"torn-{stamp}.bin"
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(tail)
        out.flush()
        os.fsync(out.fileno())
    fh.truncate(len(whole))
    fh.flush()
    os.fsync(fh.fileno())
    return entries_model.LedgerRepairedEntry(
        torn_bytes=len(tail), torn_sha256=hashlib.sha256(tail).hexdigest(), set_aside=aside.name, by=by
    )


def append(restricted: Path, data: K) -> Recorded[K]:
    """Add an entry under an exclusive lock, chained to the last one, flushed to disk. Returns it
    as recorded. A field its model does not declare is refused (entries.py: writing is strict)."""
    if type(data) not in entries_model.KINDS.values():
        raise TypeError(f"a ledger entry is one of the models of flows/storage/entries.py, not {type(data).__name__}")
    if data.model_extra:
        raise ValueError(f"{data.kind} entry: field(s) {', '.join(sorted(data.model_extra))} not declared in its model")
    kind, stored = data.kind, data.record()
    path = restricted / LEDGER
    if not path.parent.is_dir():
        from flows.runtime.paths import restricted_dir

        restricted_dir(restricted, LEDGER.parent.name)
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    if created:  # the new file's name durable in its folder, as its first line will be in it
        from flows.storage.files import sync

        sync(path.parent)
    with os.fdopen(fd, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        lines = []
        repaired = _set_aside(fh, path, f"the {kind} entry's append") if kind != "ledger_repaired" else None
        _trust(fh, path)
        last = _last(fh)
        for item_kind, item in ([("ledger_repaired", repaired.record())] if repaired else []) + [(kind, stored)]:
            entry = {
                "seq": last["seq"] + 1 if last else 1,
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "kind": item_kind,
                "data": item,
                "prev": last["hash"] if last else GENESIS,
            }
            entry["hash"] = _digest(entry)
            lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
            last = entry
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        try:
            written = "".join(lines).encode("utf-8")
            if failpoints.armed(f"torn-{kind}"):  # the machine dies in the middle of this write
                fh.write(written[: len(written) // 2])
                fh.flush()
                os.fsync(fh.fileno())
                failpoints.hit(f"torn-{kind}")
            fh.write(written)
            fh.flush()
            os.fsync(fh.fileno())
            assert last is not None
            _VERIFIED[path] = (fh.tell(), last["hash"])
        except OSError as exc:  # a full disk, a read-only file system: cut back what was written
            fh.truncate(size)
            why = exc.strerror or str(exc)
            raise LedgerWriteFailed(f"{path}: could not record the {kind} entry ({why}): nothing was recorded") from None
    assert last is not None  # the entry just written
    return Recorded(cast(int, last["seq"]), cast(str, last["at"]), kind, data, cast(str, last["hash"]))


_VERIFIED: dict[Path, tuple[int, str]] = {}  # per ledger: the size and last hash this process verified


def _trust(fh, path: Path) -> None:
    """Under the append's lock: refuse to write to a ledger whose chain does not verify (one line,
    naming the first problem). The first append of a process reads the whole chain; later ones,
    while the file is as this process left it, only compare its size and last hash."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    known = _VERIFIED.get(path)
    if known is not None and known[0] == size:
        last = _last(fh)
        if (last["hash"] if last else GENESIS) == known[1]:
            return
    fh.seek(0)
    found = _parsed(_split(fh.read())[0], path)
    problems = _chain(found)
    if problems:
        raise LedgerBroken(
            f"{path}: the ledger does not verify ({problems[0]}"
            + (f"; {len(problems) - 1} more" if len(problems) > 1 else "")
            + "): nothing was recorded; restore the ledger from a copy whose head an evidence pack or `ledger verify` recorded, "
            "or see `tuomin ledger verify`"
        )
    _VERIFIED[path] = (size, found[-1]["hash"] if found else GENESIS)


def _last(fh) -> dict | None:
    """The last entry of a ledger file opened in binary, read from its end: appending a thousand
    partitions' entries must not read the ledger a thousand times."""
    fh.seek(0, os.SEEK_END)
    end = fh.tell()
    block, tail = 1 << 16, b""
    while end > 0:
        start = max(0, end - block)
        fh.seek(start)
        tail = fh.read(end - start) + tail
        end = start
        lines = [line for line in _split(tail)[0].split(b"\n") if line.strip()]
        if len(lines) > 1 or (lines and end == 0):
            return json.loads(lines[-1])
    return None


def read(restricted: Path, found: list[dict] | None = None) -> list[Recorded[Entry]]:
    """The entries (of `found`, entries as stored, or of the ledger), their data parsed into its
    kind's model: how every room outside this package reads the ledger."""
    return [
        Recorded(e["seq"], e["at"], e["kind"], entries_model.parse(e["kind"], e["data"]), e["hash"])
        for e in (entries(restricted) if found is None else found)
    ]


def of_kind(restricted: Path, model: type[K]) -> list[Recorded[K]]:
    """The entries of one kind, typed as such."""
    return only(read(restricted), model)


def only(found: list[Recorded[Entry]], *models: type[K]) -> list[Recorded[K]]:
    """The entries of these kinds, typed as such."""
    return [cast(Recorded[K], r) for r in found if isinstance(r.data, models)]


@dataclass(frozen=True)
class Head:
    """The last entry's seq and hash (0 and GENESIS for an empty ledger): what a partition file
    records as its anchor (`ledger_head`), what an evidence pack keeps."""

    seq: int
    hash: str

    def record(self) -> dict[str, int | str]:
        return {"seq": self.seq, "hash": self.hash}


def head(restricted: Path) -> Head:
    """The ledger's head now."""
    path = restricted / LEDGER
    if not path.is_file():
        return Head(0, GENESIS)
    with path.open("rb") as fh:
        last = _last(fh)
    return Head(last["seq"], last["hash"]) if last else Head(0, GENESIS)


@dataclass
class Verdict:
    """What `check` found. `intact` only when there was something to check and all of it held."""

    path: Path
    entries: int = 0
    head: Head | None = None
    problems: list[str] = field(default_factory=list)
    anchors: int = 0  # partition files whose recorded head was found in the chain
    anchored_to: int = 0  # the highest seq an anchor vouches for
    unreadable: list[str] = field(default_factory=list)  # partition files whose metadata cannot be read

    @property
    def intact(self) -> bool:
        return self.entries > 0 and not self.problems


def check(restricted: Path, warehouse: Path | None = None, expect_head: str | None = None, both_ways: bool = True) -> Verdict:
    """The chain, and the ledger against every head recorded outside it: each partition file's
    `ledger_head` in `warehouse` and its own entry after it, and `expect_head` (a hash, or its
    first 12+ hex digits, from an earlier `verify` or evidence pack); with `both_ways`, the
    warehouse against the ledger too (`_both_ways`: what `ledger verify`, the evidence pack and
    `review` check; a command about to act checks what it acts on itself)."""
    verdict = Verdict(restricted / LEDGER)
    if not verdict.path.is_file():
        verdict.problems.append(f"no ledger at {verdict.path}: nothing to verify (wrong --restricted, or the ledger was deleted)")
        return verdict
    found = entries(restricted)
    verdict.entries = len(found)
    if not found:
        verdict.problems.append(f"the ledger at {verdict.path} is empty: nothing to verify")
        return verdict
    verdict.head = Head(found[-1]["seq"], found[-1]["hash"])
    verdict.problems += _chain(found)
    if warehouse is not None:
        _anchors(warehouse, found, verdict)
        if both_ways:
            verdict.problems += _both_ways(restricted, warehouse, read(restricted, found))
    if expect_head is not None:
        wanted = expect_head.strip().lower()
        if len(wanted) < 12:
            verdict.problems.append(f"--expect-head {expect_head!r}: give at least the first 12 hex digits of the hash")
        elif not any(e["hash"].startswith(wanted) for e in found):
            verdict.problems.append(
                f"no entry has the expected head hash {wanted[:16]}…: the ledger was cut short or "
                "rewritten after that head was taken"
            )
    return verdict


def _chain(found: list[dict]) -> list[str]:
    problems: list[str] = []
    prev: str | None = GENESIS
    for position, entry in enumerate(found, start=1):
        if entry.get("seq") != position:
            problems.append(f"entry {position}: sequence number {entry.get('seq')} (an entry was deleted or moved)")
        if entry.get("prev") != prev:
            problems.append(f"entry {position}: does not follow the entry before it")
        if _digest(entry) != entry.get("hash"):
            problems.append(f"entry {position}: its content does not match its hash (edited)")
        prev = entry.get("hash")
    return problems


def _anchors(warehouse: Path, found: list[dict], verdict: Verdict) -> None:
    """Each published file names the ledger head it was written after; that entry must still be
    there with that hash, and the file's own partition entry after it."""
    published = [*warehouse.glob("dataset=*/period=*/*.parquet"), *warehouse.glob("dataset=*/release=*/*.parquet")]
    for path in sorted(published):
        where = path.relative_to(warehouse).as_posix()
        try:
            metadata = read_footer(path)
        except (OSError, ValueError, KeyError):  # a damaged file vouches for nothing (`tuomin review` names it)
            verdict.unreadable.append(where)
            continue
        anchor = metadata.get(HEAD_KEY)
        if anchor is None:  # written before heads were recorded
            continue
        seq, recorded = anchor["seq"], anchor["hash"]
        if seq > len(found):
            verdict.problems.append(
                f"{where} was written after ledger entry {seq}, but the ledger ends at entry {len(found)}: entries were cut off"
            )
            continue
        if (found[seq - 1]["hash"] if seq else GENESIS) != recorded:
            verdict.problems.append(
                f"{where} was written after ledger entry {seq} with hash {recorded[:16]}…, which the "
                "ledger no longer holds: it was rewritten"
            )
            continue
        own = [e for e in found[seq:] if _records(e, metadata)]
        if not own:  # the ledger was cut short, or a run died between publishing the file and recording it
            verdict.problems.append(
                f"{where}: no ledger entry after entry {seq} records its publication: entries were cut "
                "off, or a run died before recording it (rerunning its date records it)"
            )
            continue
        verdict.anchors += 1
        verdict.anchored_to = max(verdict.anchored_to, own[0]["seq"])


def _both_ways(restricted: Path, warehouse: Path, found: list[Recorded[Entry]]) -> list[str]:
    """The warehouse against the ledger: every partition and DP table the ledger says is published
    is there with its recorded SHA-256, and every Parquet file there is one the ledger records."""
    from flows.storage.files import file_sha256

    if not warehouse.is_dir():
        published = partition_entries(restricted, found)
        return [
            f"--warehouse {warehouse}: no such folder, but the ledger records {len(published)} published partition(s)"
        ] * bool(published)
    problems, recorded = [], set()
    for (dataset, label), entry in partition_entries(restricted, found).items():
        recorded.add(entry.data.output.path)
        if (wrong := out_of_place(warehouse, entry.data)) is not None:
            problems.append(f"{dataset} {label} (ledger entry {entry.seq}): {wrong}")
    for release in only(found, entries_model.DPReleaseEntry):
        for table in release.data.tables:
            recorded.add(table["path"])
            path = warehouse / table["path"]
            if not path.is_file() or file_sha256(path) != table["sha256"]:
                problems.append(
                    f"DP table {table['path']} (ledger entry {release.seq}): missing, or differs from the SHA-256 recorded"
                )
    for path in sorted(warehouse.glob("dataset=*/**/*.parquet")):
        if path.relative_to(warehouse).as_posix() not in recorded:
            problems.append(f"{path.relative_to(warehouse).as_posix()}: in the warehouse, but no ledger entry records it")
    return problems


def _records(entry: dict, metadata: dict) -> bool:
    """Whether a ledger entry records the publication of the file with this metadata: a partition
    (its run, dataset and date) or a DP table (its release)."""
    if metadata.get("kind") == "dp_table":
        return entry["kind"] == "dp_release" and entry["data"].get("release_id") == metadata["release_id"]
    return (
        entry["kind"] == "partition"
        and entry["data"].get("run_id") == metadata["run_id"]
        and (entry["data"].get("dataset"), period(entry["data"])) == (metadata["dataset"], metadata.get("period"))
    )


def verify(restricted: Path, warehouse: Path | None = None) -> list[str]:
    """Every problem `check` finds. Empty = intact (a missing or empty ledger is a problem)."""
    return check(restricted, warehouse).problems


def trusted(restricted: Path, warehouse: Path | None = None) -> list[Recorded[Entry]]:
    """The entries, for a command about to act on what they record; LedgerBroken if the ledger
    is missing, empty, cut short (against `warehouse`'s files) or broken. A torn last line is set
    aside first (repair: the command is about to write to the ledger anyway)."""
    from flows.storage import intents

    repair(restricted, "a command about to act on the ledger")
    if restricted.joinpath(LEDGER).is_file():
        intents.recover(restricted, warehouse, "a command about to act on the ledger")
    verdict = check(restricted, warehouse, both_ways=False)
    if verdict.problems:
        raise LedgerBroken(
            f"{verdict.path}: the ledger cannot be trusted ({verdict.problems[0]}"
            + (f"; {len(verdict.problems) - 1} more" if len(verdict.problems) > 1 else "")
            + "; see `tuomin ledger verify`): nothing was changed"
        )
    return read(restricted)


def runs(restricted: Path) -> list[dict]:
    return [e["data"] for e in entries(restricted) if e["kind"] == "run"]


def period(data: dict) -> str:
    """A partition entry's unit period (entries written before units followed the rows name an export date)."""
    return data.get("period") or data["export_date"]


def partition_entries(
    restricted: Path, found: list[Recorded[Entry]] | None = None
) -> dict[tuple[str, str], Recorded[PartitionEntry]]:
    """The latest `partition` entry (with seq and hash) of every (dataset, period) still
    published, in ledger order (of `found`, entries already read, or of the ledger)."""
    latest: dict[tuple[str, str], Recorded[PartitionEntry]] = {}
    for entry in read(restricted) if found is None else found:
        if isinstance(entry.data, PartitionEntry):
            latest[(entry.data.dataset, entry.data.period)] = cast(Recorded[PartitionEntry], entry)
        elif isinstance(entry.data, PartitionRemovedEntry):
            latest.pop((entry.data.dataset, entry.data.period), None)
    return latest


def out_of_place(warehouse: Path, data: PartitionEntry) -> str | None:
    """Why the file of a published partition is not the one its entry records (missing, or other
    bytes: swapped, damaged, edited), in words; None when it is."""
    from flows.storage.files import file_sha256

    path = warehouse / data.output.path
    if not path.is_file():
        return f"the partition file {data.output.path} is missing"
    if file_sha256(path) != data.output.sha256:
        return f"the partition file {data.output.path} differs from the SHA-256 the ledger recorded (changed after publishing)"
    return None


def partitions(restricted: Path) -> list[dict]:
    """The data of the latest published entry of every (dataset, period)."""
    return [entry.data.record() for entry in partition_entries(restricted).values()]
