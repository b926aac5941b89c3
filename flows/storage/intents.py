"""Intend, act, commit: every step that changes the world outside the ledger, recorded before and
after, so that a crash anywhere leaves a state the next command completes.

    intend   append an `intent`: the action, the files it changes as they will be once changed
             (Change: holding a SHA-256, holding a key, or gone), and the entry that will record it
    act      publish, delete, restore, rotate or destroy (the caller's own code)
    commit   append that entry, its `intent` naming the intent

A crash (kill -9, power loss, a full disk) between intend and commit leaves the intent open. The
next command that trusts the ledger (`ledger.trusted`, `tuomin run`, `tuomin ledger verify`) ends
it before it does anything else, looking at the files themselves, and records the outcome
(`intent_ended`, with the command that ended it):

    publish, dp       every file in place with its SHA-256: finished (the entry recorded now);
                      otherwise rolled back (a DP table already in place, unrecorded, is removed)
    purge             finished with what is gone: the certificate lists the files deleted and, as
                      not deleted, the ones still there (the next purge takes them); none gone:
                      rolled back
    restore           finished with what is there: the files restored (purge deletes them), and a
                      half-written one removed
    rotate            the key file holds the new key: finished; the old one: rolled back
    destroy           the key gone: finished (a remnant of an overwritten file removed); the key
                      still there: rolled back

Durability: a file is fsynced before its intent names its SHA-256, and its folder after the rename
(`place`), so the order on disk is the order in the ledger, power loss included.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from flows.storage import entries as entries_model
from flows.storage import ledger
from flows.storage.entries import Change, Entry, IntentEndedEntry, IntentEntry
from flows.storage.files import file_sha256, sync

K = TypeVar("K", bound=Entry)


def intend(restricted: Path, action: str, changes: list[Change], then: Entry) -> ledger.Recorded[IntentEntry]:
    """Record what is about to happen (see the module's docstring)."""
    return ledger.append(restricted, IntentEntry(action=action, changes=changes, then={"kind": then.kind, "data": then.record()}))


def commit(restricted: Path, intent: ledger.Recorded[IntentEntry], then: K) -> ledger.Recorded[K]:
    """Record the outcome of an intent: `then` (the entry the intent holds, or what was in fact
    done), naming the intent."""
    return ledger.append(restricted, then.model_validate(then.record() | {"intent": intent.seq}))


def place(staged: Path, target: Path) -> None:
    """Move a staged file into place in one rename, durably: its data before, its folder after."""
    sync(staged)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)
    sync(target.parent)


def open_intents(found: list[dict]) -> list[dict]:
    """The intents no later entry commits or ends."""
    closed = {e["data"].get("intent") for e in found if e["kind"] != "intent"}
    return [e for e in found if e["kind"] == "intent" and e["seq"] not in closed]


IN_THE_WAREHOUSE = {"publish", "dp"}  # what only a command that names the warehouse can end


def recover(restricted: Path, warehouse: Path | None, by: str) -> list[ledger.Recorded[Entry]]:
    """End every intent a crash left open (see the module's docstring); what was recorded. Without
    a warehouse (a command that has none: `backup restore`), the intents about its files wait for
    the next command that has one."""
    done: list[ledger.Recorded[Entry]] = []
    for stored in open_intents(ledger.entries(restricted)):
        if stored["data"]["action"] in IN_THE_WAREHOUSE and (warehouse is None or not warehouse.is_dir()):
            continue
        intent = ledger.Recorded(
            stored["seq"], stored["at"], "intent", IntentEntry.model_validate(stored["data"]), stored["hash"]
        )
        then, outcome, why = _ENDINGS[intent.data.action](intent.data, warehouse)
        if then is not None:
            done.append(commit(restricted, intent, then))
        done.append(ledger.append(restricted, IntentEndedEntry(intent=intent.seq, outcome=outcome, why=why, by=by)))
    return done


Ending = tuple[Entry | None, str, str]  # (the entry to record, "finished" | "rolled back", why)


def _then(intent: IntentEntry, **update) -> Entry:
    return entries_model.parse(intent.then["kind"], intent.then["data"] | update)


def _holds(change: Change, warehouse: Path) -> bool:
    """Whether a file is as the intent meant it to be (a file's changes: warehouse or local)."""
    path = warehouse / change.path if change.area == "warehouse" else Path(change.path)
    if change.sha256 is None:
        return not path.exists()
    return path.is_file() and file_sha256(path) == change.sha256


def _published(intent: IntentEntry, warehouse: Path | None) -> Ending:
    assert warehouse is not None  # recover() leaves these to a command that names the warehouse
    if all(_holds(c, warehouse) for c in intent.changes):
        return _then(intent), "finished", "in place with the intended SHA-256: its entry recorded now"
    removed = 0
    for change in intent.changes:  # a table in place that no entry records is taken out again
        if _holds(change, warehouse):
            (warehouse / change.path).unlink()
            removed += 1
    why = "not in place as intended (the step did not happen)"
    return None, "rolled back", why + (f": {removed} file(s) already in place removed" if removed else ": nothing else to record")


def _purged(intent: IntentEntry, warehouse: Path | None) -> Ending:
    from flows.storage.landing import Landing

    then = _then(intent)
    assert isinstance(then, entries_model.DeletionEntry)
    landing = Landing(then.landing)
    deleted: list[dict] = []
    failed: list[dict] = []
    for f in then.files:
        gone = not (landing.exists(f["path"]) if f["area"] == "landing" else Path(f["path"]).exists())
        (deleted if gone else failed).append(f if gone else {**f, "error": "interrupted (a crash): still there; purge again"})
    if not deleted:
        return None, "rolled back", f"none of its {len(then.files)} file(s) deleted yet: nothing to certify"
    why = f"{len(deleted)} of {len(then.files)} file(s) found deleted: the certificate records them"
    return then.settled(deleted, [*then.not_deleted, *failed]), "finished", why


def _restored(intent: IntentEntry, warehouse: Path | None) -> Ending:
    then = _then(intent)
    assert isinstance(then, entries_model.BackupRestoredEntry)
    there = [f for f in then.files if Path(f["path"]).is_file() and file_sha256(Path(f["path"])) == f["sha256"]]
    for f in then.files:  # a file half decrypted when the crash came: raw data, removed
        Path(f["path"] + ".partial").unlink(missing_ok=True)
    error = None if len(there) == len(then.files) else f"interrupted (a crash) after {len(there)} of {len(then.files)} file(s)"
    why = f"{len(there)} of {len(then.files)} file(s) restored: recorded, so that purge deletes them"
    return then.model_copy(update={"files": there, "error": error}), "finished", why


BLOCK = "block:"  # a Change's path for a key held in a Prefect Secret block: block:<name>


def _key_id(change: Change, kind: str) -> str | None:
    """The key_id the key file (or block) of a change holds now (None: no key there)."""
    from flows.storage import keys

    where, which = change.path, keys.BACKUP if kind == "backup" else keys.PSEUDONYM
    if where.startswith(BLOCK):
        location = keys.Location(which, block=where.removeprefix(BLOCK))
    else:
        location = keys.Location(which, path=Path(where))
    try:
        return location.load().key_id
    except ValueError:
        return None


def _rotated(intent: IntentEntry, warehouse: Path | None) -> Ending:
    [change] = intent.changes
    then = _then(intent)
    if _key_id(change, "pseudonym") == change.key_id:
        return then, "finished", f"{change.path} holds the new key {change.key_id}: its entry recorded now"
    if not change.path.startswith(BLOCK):
        Path(change.path + ".new").unlink(missing_ok=True)  # the new key, never used: gone
    return None, "rolled back", f"{change.path} still holds the old key: nothing changed"


def _destroyed(intent: IntentEntry, warehouse: Path | None) -> Ending:
    [change] = intent.changes
    then = _then(intent)
    assert isinstance(then, entries_model.KeyDestroyedEntry)
    if _key_id(change, then.key) == then.key_id:
        return None, "rolled back", f"{change.path} still holds key {then.key_id}: nothing destroyed"
    if not change.path.startswith(BLOCK):
        Path(change.path).unlink(missing_ok=True)  # overwritten before the crash: what is left holds no key
    return then, "finished", f"key {then.key_id} is no longer in {change.path}: its destruction recorded now"


_ENDINGS = {
    "publish": _published,
    "dp": _published,
    "purge": _purged,
    "restore": _restored,
    "rotate": _rotated,
    "destroy": _destroyed,
}
