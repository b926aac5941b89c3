"""Erasing people from partitions already published (PIPL Art. 47), while the pseudonym key
exists; `request` is one erasure request carried out end to end and recorded whatever happens.

Requests are carried out in batches of at least k (the policies' largest k): two copies of the
release, from before and after a removal, differ by what was removed, so a removal of one person
would publish that person's record by difference. A request is listed and held until the held
ones number k; the request that brings them there forms the batch (requests/erasure.csv's
`batch`), and the batch is removed at once, in one sweep. `--flush` forms a batch of fewer, for a
deadline, and the ledger says so.

A published row names its customer only by a keyed token, which the key recomputes from the
person's document number (flows/subjects.tokens). For every published partition that holds one of
the batch's tokens:

    remove     the batch's rows (counted as erased)
    protect    every class the removal leaves with fewer than k people, or below l, suppressed
               whole (counted as suppressed): k and l held before and must hold after
    rekey      every token that stays keyed once more, to a version string no other file has, and
               the rows put in the hash order of their new values (a new version, as a run's is)
    validate   the partition's own gate, as its file records it: schema and no identifier on
               every batch written, k and l on the rows written; and the person-level release gate
    publish    staged, renamed into place, recorded in the ledger as the partition's new entry

under the warehouse lock, one partition at a time, each atomically, and only over a ledger that
verifies and a file with the SHA-256 it recorded. The files of one sweep share its run and time,
and nothing in them says which rows went or why (the ledger, restricted, does). Repeating a
request finds only the partitions still holding its batch, so an erasure cut short is finished by
running it again. Partitions published under another key (before a rotation) cannot be searched
with this one: they are listed, not guessed at.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field, SecretStr

from expectations.suite import Outcome
from flows.closing import subjects
from flows.closing.subjects import Identifier, tokens
from flows.pipeline import intruder
from flows.pipeline.parameters import LandingUrl, Policies, Restricted, Trigger, Warehouse, with_help
from flows.pipeline.passes import BATCH_ROWS, shuffled
from flows.pipeline.record import ledger_entry, triggered_by
from flows.pipeline.writer import ClassColumns, PartitionWriter
from flows.runtime import failpoints, paths
from flows.runtime.ahead import ahead
from flows.runtime.logfilter import mask
from flows.storage import intents, ledger
from flows.storage import warehouse as warehouse_io
from flows.storage.entries import Change, ErasureRequestedEntry, KeyDestroyedEntry, PartitionEntry, Republished
from flows.storage.files import file_sha256
from flows.storage.footer import PartitionRecord, footer_json, read_record
from flows.storage.keys import PSEUDONYM, load_pseudonymizer
from flows.storage.landing import Landing
from flows.storage.spill import Spill
from flows.storage.warehouse import WarehouseBusy, WarehouseUnwritable
from transforms import metrics
from transforms.errors import TuominError
from transforms.identifiers import SubjectKind
from transforms.outofcore import rows_in
from transforms.plan import PEOPLE, ROWS
from transforms.policy import SourcePolicy, load_policies
from transforms.pseudonymize import UNIT_PARTS, Pseudonymizer, PseudonymKeyError
from transforms.steps import ExportError


@flow(name="erase-subject", flow_run_name="erase-{kind}", persist_result=False, log_prints=False)
@with_help
def erase_subject(
    kind: Annotated[SubjectKind, Field(description="Which identifier the person gave: doc_no, mobile or member_no.")],
    identifier: Annotated[SecretStr, Field(description="The identifier itself; recorded as ********** by Prefect.")],
    landing: LandingUrl,
    warehouse: Warehouse,
    restricted: Restricted,
    policies: Policies,
    trigger: Trigger,
    flush: Annotated[
        bool, Field(description="Carry out the held requests now, fewer than a batch: what it removes can be told apart.")
    ] = False,
) -> ledger.Recorded[ErasureRequestedEntry]:
    """An erasure request (see `request`) as a flow run, so the Prefect UI lists erasures beside
    purges and reviews. The identifier is a SecretStr: Prefect records it as ********** (its
    parameters are kept by the server); the flow run is named by the kind of identifier only."""
    who = Identifier.parse(kind, identifier.get_secret_value())
    chosen = load_policies(Path(policies))
    return request(Landing(landing), Path(warehouse), Path(restricted), chosen, who, trigger, flush)


def request(
    landing: Landing,
    warehouse: Path,
    restricted: Path,
    policies: dict[str, SourcePolicy],
    who: Identifier,
    via: str,
    flush: bool = False,
) -> ledger.Recorded[ErasureRequestedEntry]:
    """One erasure request, carried out and recorded whatever happens: the person's tokens found
    (raw records still held), the person added to the erasure list, held until a batch of at least
    `batch_size` requests forms (or at once with `flush`), then the whole batch removed from what is
    published. The ledger's `erasure_requested` entry says how far it got: `held` (listed, waiting
    for the batch), `done`, `partial` (listed, some partitions not yet republished) or `failed`
    (nothing changed), and why; the request that forms a batch names the held ones it completes
    (`completes`), a repeat the earlier entries it finishes (`retry_of`). Returns the entry. A
    missing key is refused before anything, unless the ledger records its destruction: then the
    published data is unlinkable already, and the person is only listed."""
    entries = ledger.read(restricted)
    try:
        pseudonymizer = load_pseudonymizer()
    except PseudonymKeyError:
        if PSEUDONYM.name not in {e.data.key for e in ledger.only(entries, KeyDestroyedEntry)}:
            raise
        pseudonymizer = None
    subject = who.keyed_hash(pseudonymizer) if pseudonymizer else None
    earlier = [e for e in ledger.only(entries, ErasureRequestedEntry) if subject and e.data.subject == subject]
    request = ErasureRequestedEntry(
        identifier=who.kind,
        subject=subject,
        key_id=pseudonymizer.key_id if pseudonymizer else None,
        status=None,
        listed=None,  # every field written, as a request's entry has always been
        added=False,
        tokens=None,
        republished=[],
        not_searched=[],
        failed=None,
        retry_of=[e.seq for e in earlier if e.data.status not in ("done", "held")],
    )
    try:
        found = tokens(landing, policies, who, pseudonymizer) if pseudonymizer else set()
        request = request.model_copy(update={"tokens": len(found) if pseudonymizer else None})
        added = subjects.erase(landing, who)
        request = request.model_copy(update={"added": added, "listed": "added" if added else "already listed"})
        batch, held = subjects.batch_of(landing, who, batch_size(policies), flush)
        request = request.model_copy(update={"held": held})
        if batch is not None:
            request = request.model_copy(
                update={"batch": batch.id, "people": len(batch.people), "flushed": flush and batch.formed}
            )
        if batch is not None and pseudonymizer and subject:
            others = tuple(p for p in batch.people if p != who)
            hashes = {p.keyed_hash(pseudonymizer) for p in others}
            request = request.model_copy(
                update={
                    "completes": [
                        e.seq
                        for e in ledger.only(entries, ErasureRequestedEntry)
                        if e.data.status == "held" and e.data.subject in hashes
                    ]
                }
            )
            everyone = found | (tokens(landing, policies, others, pseudonymizer) if others else set())
            sweep = erase_published(warehouse, restricted, everyone, pseudonymizer, batch.id, triggered_by(via))
            request = request.model_copy(
                update={"republished": sweep.republished, "not_searched": sweep.other_keys, "failed": sweep.failed}
            )
    except (ExportError, OSError, WarehouseBusy, WarehouseUnwritable, ledger.LedgerBroken) as exc:
        request = request.model_copy(update={"failed": mask(f"{exc.__class__.__name__}: {exc}")})
    except Exception as exc:
        failed = f"unexpected {exc.__class__.__name__} (see the command's output)"
        ledger.append(restricted, request.model_copy(update={"failed": failed, "status": _status(request, failed)}))
        raise
    return ledger.append(restricted, request.model_copy(update={"status": _status(request, request.failed)}))


def batch_size(policies: dict[str, SourcePolicy]) -> int:
    """How many requests a batch holds at least: the largest k of the policies, so that what one
    batch removes from the published data is the rows of at least k people."""
    return max(p.privacy.k for p in policies.values())


def _status(request: ErasureRequestedEntry, failed: str | None) -> str:
    """held: listed, its batch not formed; done; partial: listed, or some partitions republished,
    and something failed; failed: nothing changed."""
    if failed:
        return "partial" if request.listed or request.republished else "failed"
    return "held" if request.batch is None and request.subject else "done"


class ErasureFailed(TuominError, RuntimeError):
    """A partition that fails its gate without the person; it is left as it was."""


@dataclass
class Sweep:
    """What one erasure did to the published partitions."""

    republished: list[Republished] = field(default_factory=list)
    other_keys: list[dict] = field(default_factory=list)  # partitions under another key: not searched
    failed: str | None = None


def erase_published(
    warehouse: Path, restricted: Path, tokens: set[str], pseudonymizer: Pseudonymizer, request: str, triggered_by: dict
) -> Sweep:
    """Republish every partition under this key that holds one of `tokens` (as it publishes them:
    keyed to its version) without those rows, as one sweep (one run, one time in every file);
    stops at the first partition that cannot be (Sweep.failed says which and why). `request` is
    the batch, recorded in the ledger only."""
    sweep = Sweep()
    began = dt.datetime.now(dt.UTC)
    run_id = began.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]  # as a run's: the files say nothing of why
    key_id, everywhere = pseudonymizer.key_id, pa.array(sorted(tokens), pa.string())
    with warehouse_io.exclusive(warehouse):
        ledger.trusted(restricted, warehouse)
        for (dataset, day), entry in sorted(ledger.partition_entries(restricted).items()):
            data = entry.data
            if data.key_id != key_id:
                sweep.other_keys.append({"dataset": dataset, "period": day, "key_id": data.key_id})
                continue
            path = warehouse / data.output.path
            metadata = read_record(path)
            entity = metadata.entity_column
            wanted = pseudonymizer.unit_tokens(everywhere, metadata.unit)
            if (
                not tokens
                or entity is None
                or not pc.any(pc.is_in(pq.read_table(path, columns=[entity])[entity], wanted)).as_py()
            ):
                continue
            try:
                if file_sha256(path) != data.output.sha256:  # rewrite only the file the ledger vouches for
                    raise ErasureFailed(
                        f"{dataset} {day}: left as it was: the partition file differs from the SHA-256 the "
                        "ledger recorded (see `tuomin review`)"
                    )
                sweep.republished.append(
                    republish(
                        path, metadata, entry, wanted, warehouse, restricted, request, triggered_by, pseudonymizer, run_id, began
                    )
                )
            except ErasureFailed as exc:
                sweep.failed = str(exc)
            except OSError as exc:  # the storage: a full disk, a read-only file system
                sweep.failed = f"{dataset} {day}: left as it was: {exc.strerror} ({exc.filename or 'storage'})"
            if sweep.failed:
                break
    return sweep


def republish(
    path: Path,
    old: PartitionRecord,
    published: ledger.Recorded[PartitionEntry],
    wanted: pa.Array,
    warehouse: Path,
    restricted: Path,
    request: str,
    triggered_by: dict[str, str],
    pseudonymizer: Pseudonymizer,
    run_id: str,
    began: dt.datetime,
) -> Republished:
    """One partition without the rows of `wanted` tokens (see the module's docstring); `old` is
    its file's metadata, `published` the ledger entry that published it (its exact counts).
    The republished file is a new version as a run's would be: every token that stays keyed once
    more, to a version string no other file has, and the rows in the hash order of their new
    values; so the copies from before and after share no token and no order, and its footer says
    nothing of an erasure (what and when is in the ledger, which analysts do not read). No raw
    data is needed: the new tokens are a keyed function of the tokens published."""
    day = old.period
    erasure: dict[str, Any] = {
        "at": began.isoformat(timespec="seconds"),
        "request": request,
        "previous_sha256": published.data.output.sha256,
    }
    again = hashlib.sha256(f"{old.unit}|{run_id}".encode()).hexdigest()[:16]
    rewrite = Rewrite(
        path,
        old.revised(unit=UNIT_PARTS.join(filter(None, [old.unit, again]))),
        wanted,
        restricted,
        f"{run_id} {day}",
        warehouse_io.staging(warehouse, run_id) / "work",
        lambda tokens: pseudonymizer.unit_tokens(tokens, again),
    )
    try:
        weak = rewrite.weak_classes()
        erasure["classes_suppressed"] = weak.num_rows
        staged = rewrite.writer.stage(
            warehouse,
            run_id,
            old.dataset,
            day,
            shuffled(rewrite.batches(weak), published.data.rows.published or 0, rewrite.work / "order"),
            warehouse_io.read_fields(path),
            lambda classes, outcome: rewrite.metadata(classes, outcome, run_id, erasure),
        )
        new = read_record(staged)
        if not new.validation.success:
            failures = Outcome(False, tuple(new.validation.checks)).failures()
            raise ErasureFailed(f"{old.dataset} {day}: left as it was: without the person it fails {'; '.join(failures)}")
        # The person-level criteria too: rows gone can leave someone else's purchases with fewer than k.
        verdict = intruder.gate(
            {old.dataset: {day: staged}},
            warehouse_io.staging(warehouse, run_id),
            rewrite.project,
            rewrite.run_name,
            rewrite.work,
        )
        if verdict.failures:
            raise ErasureFailed(
                f"{old.dataset} {day}: left as it was: without the person the release fails {' | '.join(verdict.failures)}"
            )
        # The ledger's record is made before the rename: the staged file's path under the run's
        # staging directory is the partition's path under the warehouse.
        before = published.data.rows
        rows = before.model_copy(
            update={
                "erased": (before.erased or 0) + erasure["erased"],
                "suppressed": (before.suppressed or 0) + erasure["suppressed"],
                "published": new.published_rows,
            }
        )
        record = ledger_entry(
            new,
            rows,
            published.data.cells_suppressed,
            [i.model_dump() for i in published.data.inputs],
            staged,
            warehouse_io.staging(warehouse, run_id),
            file_sha256(staged),
            triggered_by,
            began,
            erasure=erasure,
        )
        # Intend, act, commit (flows/storage/intents.py): a sweep killed between the swap and its
        # entry leaves an intent the next command finishes (the file in place) or rolls back.
        intent = intents.intend(restricted, "publish", [Change(path=record.output.path, sha256=record.output.sha256)], record)
        failpoints.hit("erasure-intended")
        warehouse_io.publish(staged, warehouse, old.dataset, day)
        failpoints.hit("erasure-swapped")
    finally:
        warehouse_io.discard_staging(warehouse, run_id)
    entry = intents.commit(restricted, intent, record)
    return Republished(
        dataset=old.dataset,
        period=day,
        erased=erasure["erased"],
        suppressed=erasure["suppressed"],
        classes_suppressed=weak.num_rows,
        ledger_seq=entry.seq,
    )


class Rewrite:
    """One published partition rewritten in two streaming passes, against the gate it passed
    (from its own metadata); the second through the PartitionWriter, as a run's pass 2."""

    def __init__(
        self,
        path: Path,
        old: PartitionRecord,
        wanted: pa.Array,
        restricted: Path,
        run_name: str,
        work: Path,
        rekey: Callable[[pa.ChunkedArray], pa.Array],
    ):
        self.source, self.old, self.wanted, self.rekey = pq.ParquetFile(path), old, wanted, rekey
        self.tokens = [f.name for f in self.source.schema_arrow if b"tuomin.token" in (f.metadata or {})]
        self.restricted, self.project, self.run_name, self.work = restricted, restricted / paths.GX_PROJECT, run_name, work
        self.gate = old.gate(self.source.schema_arrow)
        self.columns = ClassColumns.of_gate(self.gate)
        self.entity = self.gate.entity
        self.counts = {"erased": 0, "suppressed": 0}
        self.writer = PartitionWriter(self.gate, self.columns, self.project, run_name, work)

    def split(self, columns: list[str] | None = None):
        """The file in batches (read ahead), each with the rows that carry one of the tokens."""
        for batch in ahead(self.source.iter_batches(batch_size=BATCH_ROWS, columns=columns)):
            table = pa.Table.from_batches([batch])
            yield table, pc.fill_null(pc.is_in(table[self.entity], self.wanted), False).to_numpy(zero_copy_only=False)

    def weak_classes(self) -> pa.Table:
        """Pass 1, over the class columns: the classes of what stays that fall below k or l
        (their rows are suppressed whole), as distinct quasi-identifier values."""
        self.work.mkdir(parents=True)
        staying = Spill(self.work / "staying.parquet")
        for table, gone in self.split(self.columns.keys):
            staying.write(self.columns.count(table.filter(pa.array(~gone))))
        qis = list(self.columns.qis)
        found = self.columns.table([staying.close()], self.work / "staying")
        fails = metrics.failing(found.to_pandas(), qis, self.gate.model, count=ROWS, people=PEOPLE)
        return found.filter(pa.array(fails)).select(qis).group_by(qis).aggregate([])

    def batches(self, weak: pa.Table):
        """Pass 2: the file without the person and the weak classes (the writer checks each batch)."""
        for table, gone in self.split():
            suppressed = rows_in(table, weak) & ~gone if weak.num_rows else np.zeros_like(gone)
            table = table.filter(pa.array(~(gone | suppressed)))
            for name in self.tokens:  # a keyed function of each token: classes and counts stay as they were
                table = table.set_column(table.schema.get_field_index(name), table.schema.field(name), self.rekey(table[name]))
            self.counts["erased"] += int(gone.sum())
            self.counts["suppressed"] += int(suppressed.sum())
            yield table

    def metadata(self, published: pd.DataFrame, outcome: Outcome, run_id: str, erasure: dict) -> PartitionRecord:
        """The old file's metadata with what changed: rows published, figures and the gate
        measured on the classes written, and when an erasure happened (only when: what and how
        much is in the ledger, which analysts do not read)."""
        erasure.update(self.counts)
        measured = metrics.summary(
            published, list(self.columns.qis), None, self.gate.model.k, list(self.columns.sensitive), count=ROWS, people=PEOPLE
        )
        kept = self.old.metrics
        return self.old.revised(
            run_id=run_id,
            flow_run_id=str(flow_run.get_id() or ""),
            created_at=erasure["at"],
            rows={"published": int(published[ROWS].sum())},
            ledger_head=ledger.head(self.restricted).record(),
            metrics=json.loads(footer_json(measured | {"loss": kept.loss, "loss_by_attribute": kept.loss_by_attribute})),
            validation={"success": outcome.success, "checks": list(outcome.checks)},
        )
