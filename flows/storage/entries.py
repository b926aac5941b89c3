"""What the ledger records, one model per kind of entry: the fields each kind carries and the one
line `tuomin ledger show` prints for it. Every writer builds one of these (flows/storage/ledger.py
refuses anything else), and readers (`ledger show`, the evidence pack) parse entries back into
them, so a kind's shape is declared here once.

Writing is strict (a field not declared here is refused, so a new field is a reviewed change);
reading is lenient (an entry written by an earlier version keeps fields since renamed, and fields
added later take their defaults), because an old ledger must stay readable: its hash chain forbids
rewriting it. Entries hold counts, names, paths, key ids and keyed hashes, never a data value.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

Status = Literal["done", "partial", "failed", "held"]


class Entry(BaseModel):
    """The `data` of one ledger entry."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)
    kind: ClassVar[str]
    about: ClassVar[str]  # what an entry of this kind records
    intent: int | None = None  # the seq of the intent this entry commits (flows/storage/intents.py)

    def line(self) -> str:
        """The entry in one line, for `tuomin ledger show`."""
        return ", ".join(f"{k}={v}" for k, v in self.record().items() if isinstance(v, str | int))

    def record(self) -> dict[str, Any]:
        """The entry's data as the ledger stores it: JSON types, stored field names, the fields its
        writer set (a default is what a reader assumes, not something the writer said)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class Part(BaseModel):
    """A nested part of an entry's data, read as leniently as the entry."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Rows(BaseModel):
    """A unit's rows by outcome: read (placed in the unit), erased, suppressed, published. Exact
    where the ledger and a run's summary hold them (some below k); a footer holds `published`
    only. They reconcile: read = quarantined + erased + suppressed + published (a unit's rows are
    placed, so quarantine is its files'; entries of earlier versions may hold it). Pass 2 adds to
    them as it goes, so they are not frozen."""

    model_config = ConfigDict(extra="allow")

    read: int | None = None
    quarantined: int | None = None
    erased: int | None = None
    suppressed: int | None = None
    published: int = 0

    def reconciles(self) -> bool:
        return self.read == sum(n or 0 for n in (self.quarantined, self.erased, self.suppressed, self.published))

    @classmethod
    def total(cls, units: list[Rows]) -> Rows:
        """The rows of several units together."""
        return cls(
            read=sum(u.read or 0 for u in units),
            erased=sum(u.erased or 0 for u in units),
            suppressed=sum(u.suppressed or 0 for u in units),
            published=sum(u.published for u in units),
        )


class Output(Part):
    """The file a partition entry published, under the warehouse."""

    path: str
    sha256: str = ""  # none recorded: matches no file (what relies on it refuses)
    bytes: int = 0
    rows: int = 0


class Input(Part):
    """A landing file a partition was made from."""

    path: str
    sha256: str = ""  # none recorded: matches no file (what relies on it refuses)
    bytes: int = 0
    rows: int = 0


class Copy(Part):
    """A landing file not read because it is a byte-identical copy of one that was."""

    file: str
    copy_of: str


class Validation(Part):
    """The gate's verdict on a partition: whether it passed, and each check's."""

    success: bool = False  # an entry that does not say it passed has not
    checks: dict[str, bool] = {}


class RunEntry(Entry):
    kind = "run"
    about = "an anonymize run: parameters, status, the files it read, per dataset what it published or why not"
    run_id: str
    flow_run_id: str = ""
    started_at: str
    ended_at: str
    status: Literal["published", "up to date", "failed"]
    message: str | None = None
    triggered_by: dict[str, str]
    parameters: dict[str, Any]
    policies: dict[str, dict[str, str]]
    key_id: str
    backup_key_id: str | None = None
    erasure_requests: int = 0
    dates: dict[str, dict[str, Any]] = {}  # runs before units followed the rows: per export date
    datasets: dict[str, dict[str, Any]] = {}  # per dataset: units published, counts, levels, k; or the error
    # Every landing file read: its SHA-256 and its rows, all accounted for (rows = quarantined +
    # placed in units + elsewhere, in units the run did not rebuild); exact counts, some below k.
    files: dict[str, dict[str, Any]] = {}
    up_to_date: list[str] = []
    past_retention: list[str] = []
    snapshots_kept: dict[str, str] = {}  # snapshot sources whose published snapshot stays, and why
    republished: list[str] = []  # units republished at the release's levels ("dataset period")
    errors: list[str] = []

    def line(self) -> str:
        return f"{self.run_id} {self.status} ({self.triggered_by.get('via', '?')})"


class PartitionEntry(Entry):
    kind = "partition"
    about = "a published partition (one unit): inputs, counts, its privacy model, checks, the file's SHA-256"
    dataset: str
    # The unit's period label; entries written before units followed the rows name an export date.
    period: str = Field(validation_alias=AliasChoices("period", "export_date"))
    grain: str | None = None
    erasure_sha256: str | None = None  # the erasure list it was made with (its fingerprint's part)
    run_id: str
    flow_run_id: str | None = ""
    fingerprint: str | None = None
    unit: str | None = None
    policy_file: str | None = None
    policy_sha256: str | None = None
    key_id: str
    k: int | None = None
    # The criteria on sensitive columns, by kind, as the file's footer records them (entries
    # written before criteria were typed hold the one kind they had as a key of its own).
    criteria: dict[str, list[dict[str, Any]]] = {}
    levels: dict[str, int] = {}
    dropped_columns: list[dict[str, str]] = []
    copies_not_read: list[Copy] = []
    rows: Rows  # exact, some below k
    cells_suppressed: dict[str, int] = {}
    inputs: list[Input] = []
    k_achieved: int | None = None
    l_achieved: int | None = None
    validation: Validation = Validation()
    output: Output
    started_at: str | None = None
    published_at: str | None = None
    triggered_by: dict[str, str] | str | None = None
    release: dict[str, Any] | None = None  # the date's release verdict (a run's partitions)
    erasure: dict[str, Any] | None = None  # what an erasure changed (a republished partition)

    def line(self) -> str:
        return f"{self.dataset} {self.period}: {self.rows.published} rows, k={self.k_achieved}"


class BackupEntry(Entry):
    kind = "backup"
    about = "a date's raw files encrypted into the restricted area"
    export_date: str
    run_id: str
    manifest: str
    key_id: str
    files: list[dict[str, Any]]  # path, bytes, sha256

    def line(self) -> str:
        return f"{self.export_date}: {len(self.files)} file(s) encrypted with {self.key_id}"


class BackupVerifiedEntry(Entry):
    kind = "backup_verified"
    about = "backups decrypted and compared with their manifests"
    export_date: str | None = None
    key_id: str
    backups: list[dict[str, Any]]
    ok: int
    bad: int
    nothing_to_check: bool

    def line(self) -> str:
        return f"{self.ok} backup(s) ok, {self.bad} bad" + (", nothing to verify" if self.nothing_to_check else "")


class BackupRestoredEntry(Entry):
    kind = "backup_restored"
    about = "a backup decrypted into a folder (raw personal data, deleted by purge)"
    export_date: str
    key_id: str
    out: str
    manifest: str | None = None
    files: list[dict[str, Any]] = []
    error: str | None = None

    def line(self) -> str:
        return f"{self.export_date}: " + (
            f"FAILED: {self.error}" if self.error else f"{len(self.files)} file(s) restored into {self.out}"
        )


class DeletionEntry(Entry):
    kind = "deletion"
    about = "a purge certificate: every area of a date, what was deleted and what was not"
    export_date: str
    as_of: str
    why: list[str]
    landing: str
    areas: dict[str, dict[str, int]] = {}  # older certificates list files only
    files: list[dict[str, Any]]
    bytes: int
    rows: dict[str, Any]
    not_deleted: list[dict[str, Any]]
    replaced_by: list[dict[str, Any]]
    method: str
    triggered_by: str

    def settled(self, deleted: list[dict[str, Any]], failed: list[dict[str, Any]]) -> DeletionEntry:
        """This certificate with what was in fact deleted and what was not (each with its `error`):
        the files, their bytes, and every area's totals (the areas it names, and theirs)."""
        areas: dict[str, dict[str, int]] = {}
        for area in [*self.areas, *(f["area"] for f in [*deleted, *failed])]:
            done = [f for f in deleted if f["area"] == area]
            areas[area] = {
                "deleted": len(done),
                "bytes": sum(f["bytes"] for f in done),
                "not_deleted": sum(f["area"] == area for f in failed),
            }
        update = {"files": deleted, "not_deleted": failed, "bytes": sum(f["bytes"] for f in deleted), "areas": areas}
        return self.model_validate(self.record() | update)

    def line(self) -> str:
        return f"{self.export_date}: {len(self.files)} file(s), {self.bytes} bytes deleted; replaced by " + ", ".join(
            f"{r['dataset']} #{r['ledger_seq']}" for r in self.replaced_by
        )


class PartitionRemovedEntry(Entry):
    kind = "partition_removed"
    about = "a partition deleted: at the end of its retention period, or superseded (an earlier snapshot)"
    dataset: str
    period: str = Field(validation_alias=AliasChoices("period", "export_date"))
    path: str
    sha256: str
    published_rows: int
    published_seq: int
    published_hash: str
    why: str
    as_of: str
    triggered_by: str

    def line(self) -> str:
        return f"{self.dataset} {self.period}: {self.published_rows} rows removed ({self.why[:40]}…)"


class ReviewEntry(Entry):
    kind = "review"
    about = "the periodic re-check of every published dataset"
    success: bool
    problems: list[str]
    triggered_by: str
    policies: dict[str, str]
    datasets: dict[str, dict[str, Any]]

    def line(self) -> str:
        return (
            ("passed" if self.success else f"FAILED: {len(self.problems)} problem(s)")
            + ": "
            + ", ".join(f"{n} {x['partitions']} partitions" for n, x in self.datasets.items())
        )


class KeyRotatedEntry(Entry):
    kind = "key_rotated"
    about = "a pseudonym key replaced (old and new key_id)"
    key: Literal["pseudonym"] = "pseudonym"
    key_id: str  # the new key's, as every entry made with a key names it
    old_key_id: str
    new_key_id: str
    where: str  # the command that made the change

    def line(self) -> str:
        return f"pseudonym key {self.old_key_id} -> {self.new_key_id} ({self.where})"


class KeyDestroyedEntry(Entry):
    kind = "key_destroyed"
    about = "a key destroyed (key_id, where, method, effect)"
    key: Literal["pseudonym", "backup"] = "pseudonym"
    key_id: str
    where: str | None = None
    made_with_it: int | None = None
    method: str
    effect: str | None = None
    published_under_other_keys: list[str] = []
    why: str | None = None

    def line(self) -> str:
        return f"{self.key} key {self.key_id} destroyed ({self.method})"


class SubjectLookupEntry(Entry):
    kind = "subject_lookup"
    about = "an access request: records found, where the copy was written"
    identifier: str = Field(alias="kind")  # which identifier the person gave (doc_no, mobile, member_no)
    subject: str  # a keyed hash of it, never the identifier
    key_id: str
    records: int
    file: str | None = None
    newest_date: str | None = None  # ISO date

    def line(self) -> str:
        return f"{self.identifier} {self.subject[:12]}: {self.records} record(s)" + (f" -> {self.file}" if self.file else "")


class Republished(Part):
    """A partition an erasure republished without the person: what it removed, and its entry."""

    dataset: str
    period: str = Field(validation_alias=AliasChoices("period", "export_date"))
    erased: int
    suppressed: int
    classes_suppressed: int
    ledger_seq: int


class ErasureRequestedEntry(Entry):
    kind = "erasure_requested"
    about = "an erasure request: its status, the partitions republished"
    identifier: str = Field(alias="kind")
    subject: str | None = None  # a keyed hash of the identifier; None once the key is destroyed
    key_id: str | None = None
    status: Status | None = "done"
    listed: Literal["added", "already listed"] | None = None
    added: bool = False
    tokens: int | None = None
    republished: list[Republished] = []
    not_searched: list[Any] = []
    failed: str | None = None
    retry_of: list[int] = []
    batch: str | None = None  # the batch carried out with it (None: held, or an entry from before batches)
    people: int | None = None  # requests in the batch
    held: int | None = None  # requests held once this one was recorded
    flushed: bool = False  # the batch was formed with fewer than the batch size (`--flush`)
    completes: list[int] = []  # the held requests this batch carried out

    def line(self) -> str:
        return (
            f"{self.status}: {self.identifier} {(self.subject or 'key destroyed')[:12]}, "
            + (self.listed or ("added" if self.added else "already listed"))
            + f", {len(self.republished)} partition(s) republished"
            + (f" (batch of {self.people}{', flushed' if self.flushed else ''})" if self.batch else "")
            + (f", completes #{', #'.join(map(str, self.retry_of + self.completes))}" if self.retry_of or self.completes else "")
            + (f", FAILED: {self.failed}" if self.failed else "")
        )


class NoticesEntry(Entry):
    kind = "notices"
    about = "closure notices: what customers were told, counts, where the batches are"
    members: int
    erased: int
    unreachable: int
    snapshot: str
    sms: int
    email: int
    files: list[str]
    closure: dict[str, Any]
    texts: dict[str, str] = {}  # the SMS and the e-mail, word for word

    def line(self) -> str:
        return f"{self.sms} SMS, {self.email} e-mail(s) to {self.members} members ({self.unreachable} unreachable)"


class DPReleaseEntry(Entry):
    kind = "dp_release"
    about = "differentially private tables: inputs, the budget spent and in all, each table's noise and file"
    release_id: str
    flow_run_id: str = ""
    triggered_by: str
    dates: list[str]
    inputs: list[dict[str, str]]  # each raw file read: landing path, SHA-256
    inputs_sha256: str  # of the list above: the same inputs give the same digest
    policy_file: str
    policy_sha256: str
    library: str  # what computed the noise, with its version
    epsilon: float  # this release's
    delta: float
    spent_before: float  # by earlier releases over the same customers
    spent_total: float
    lifetime_epsilon: float | None = None  # the policy's ceiling on spent_total (none before issue 35)
    policies_sha256: str = ""  # every policy file and hierarchy the release read (none before issue 35)
    rows: dict[str, dict[str, int]]  # per source: read, unlinked (no identifier: in no table), erased (their people's rows)
    tables: list[dict[str, Any]]  # name, path, sha256, epsilon, noise scale and 95% margin, cells

    def line(self) -> str:
        ceiling = f" of {self.lifetime_epsilon:g}" if self.lifetime_epsilon is not None else ""
        spent = f"{self.spent_total:g}{ceiling} spent in all"
        return f"{self.release_id}: {len(self.tables)} table(s), epsilon {self.epsilon:g} ({spent})"


class Change(Part):
    """One file an intent is about to change, as it will be once changed: holding `sha256`, or
    holding the key `key_id` (a key file), or gone (neither)."""

    path: str  # under the warehouse (area "warehouse"), in the landing ("landing"), else absolute
    area: str = "warehouse"  # warehouse | landing | key | an area of a purge certificate (quarantine, work…)
    sha256: str | None = None
    key_id: str | None = None


class IntentEntry(Entry):
    kind = "intent"
    about = "a change about to be made outside the ledger, the files it changes, and the entry that records it once made"
    action: Literal["publish", "dp", "purge", "restore", "rotate", "destroy"]
    changes: list[Change]
    then: dict[str, Any]  # {"kind", "data"}: the entry that commits it (its `intent` names this one)

    def line(self) -> str:
        first = self.changes[0].path if self.changes else "nothing"
        more = f" and {len(self.changes) - 1} more" if len(self.changes) > 1 else ""
        return f"{self.action} {first}{more} (intended)"


class IntentEndedEntry(Entry):
    kind = "intent_ended"
    about = "an intent a crash left open, ended by the next command: finished (the change is in place) or rolled back"
    intent: int
    outcome: Literal["finished", "rolled back"]
    why: str
    by: str

    def line(self) -> str:
        return f"intent {self.intent} {self.outcome} by {self.by}: {self.why}"


class LedgerRepairedEntry(Entry):
    kind = "ledger_repaired"
    about = "a torn last line (an append cut short by a crash or a full disk) set aside before the next entry"
    torn_bytes: int
    torn_sha256: str
    set_aside: str  # the file under the ledger's folder that keeps the torn bytes, as they were
    by: str  # the command that found it

    def line(self) -> str:
        return f"{self.torn_bytes} torn byte(s) set aside in {self.set_aside} by {self.by}"


KINDS: dict[str, type[Entry]] = {
    model.kind: model
    for model in (
        RunEntry,
        PartitionEntry,
        BackupEntry,
        BackupVerifiedEntry,
        BackupRestoredEntry,
        DeletionEntry,
        PartitionRemovedEntry,
        ReviewEntry,
        KeyRotatedEntry,
        KeyDestroyedEntry,
        SubjectLookupEntry,
        ErasureRequestedEntry,
        NoticesEntry,
        DPReleaseEntry,
        LedgerRepairedEntry,
        IntentEntry,
        IntentEndedEntry,
    )
}


def parse(kind: str, data: dict[str, Any]) -> Entry:
    """A stored entry's data as its model (lenient: see the module's docstring)."""
    if kind not in KINDS:
        raise ValueError(f"unknown ledger entry kind {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind].model_validate(data)
