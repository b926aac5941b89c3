"""The closing commands killed (SIGKILL: no cleanup) at every point between their intent and its
commit (flows/storage/intents.py): the next command ends the intent as the files show it (finished
or rolled back, recorded), the ledger verifies, and the command run again does what an
uninterrupted one does. A run killed the same way: tests/e2e/test_faults.py."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.storage import intents, keys, ledger
from tests.conftest import TEST_KEY
from transforms.pseudonymize import Pseudonymizer

DAY1 = "2026-03-01"
TUOMIN = str(Path(sys.executable).parent / "tuomin")


@pytest.fixture
def shop(published, landing, tmp_path):
    """A copy of a published warehouse, its restricted area and the landing it was made from."""
    for name, source in (("wh", published.warehouse), ("restricted", published.restricted), ("landing", landing)):
        shutil.copytree(source, tmp_path / name)
    return tmp_path / "landing", tmp_path / "wh", tmp_path / "restricted"


def _killed_at(failpoint: str, args: list[str], **env: str) -> None:
    """`tuomin <args>` killed at `failpoint`, on the session's Prefect server (none left behind)."""
    from prefect.settings import get_current_settings

    env = {
        **os.environ,
        "TUOMIN_PSEUDONYM_KEY": TEST_KEY,
        "TUOMIN_FAILPOINT": failpoint,
        "PREFECT_API_URL": str(get_current_settings().api.url),
        **env,
    }
    done = subprocess.run([TUOMIN, *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -9, done.stdout[-2000:] + done.stderr[-2000:]


def _ended_by_the_next_command(wh: Path, restricted: Path, action: str, outcome: str) -> dict:
    """The intent the kill left open, ended by `ledger verify` (any command would), which passes;
    returns the entry that committed it, if it was finished."""
    [intent] = intents.open_intents(ledger.entries(restricted))
    assert intent["data"]["action"] == action
    done = CliRunner().invoke(app, ["ledger", "verify", "--restricted", str(restricted), "--warehouse", str(wh)])
    assert done.exit_code == 0, done.output
    assert f"recovered: intent {intent['seq']} {outcome}" in " ".join(done.output.split()), done.output
    found = ledger.entries(restricted)
    assert intents.open_intents(found) == [] and ledger.verify(restricted, wh) == []
    committed = [e for e in found if e["kind"] != "intent_ended" and e["data"].get("intent") == intent["seq"]]
    assert len(committed) == (outcome == "finished")
    return committed[0]["data"] if committed else {}


@pytest.mark.parametrize(
    ("failpoint", "outcome"),
    [pytest.param("purge-intended", "rolled back", marks=pytest.mark.slow), ("purge-deleted-one", "finished")],
)
def test_a_purge_killed_midway_is_certified_as_far_as_it_went_and_the_next_purge_finishes(shop, failpoint, outcome):
    """At 874540f the raw files went with no certificate, and every later purge refused for good."""
    landing, wh, restricted = shop
    where = ["--landing", str(landing), "--warehouse", str(wh), "--restricted", str(restricted)]
    day = sorted(landing.glob(f"*/{DAY1}/*"))
    _killed_at(failpoint, ["purge", *where])
    certificate = _ended_by_the_next_command(wh, restricted, "purge", outcome)
    gone = [str(p.relative_to(landing)) for p in day if not p.exists()]
    assert len(gone) == (1 if outcome == "finished" else 0)
    if certificate:  # what it certifies deleted is exactly what is gone, the rest named as not deleted
        assert [f["path"] for f in certificate["files"]] == gone
        assert certificate["not_deleted"] and all("interrupted" in f["error"] for f in certificate["not_deleted"])
    again = CliRunner().invoke(app, ["purge", *where])
    assert again.exit_code == 0, again.output
    assert not any(p.exists() for p in day) and ledger.verify(restricted, wh) == []
    certified = [
        f["path"]
        for e in ledger.entries(restricted)
        if e["kind"] == "deletion"
        for f in e["data"]["files"]
        if f["area"] == "landing"
    ]
    assert sorted(c for c in certified if c.split("/")[1] == DAY1) == sorted(str(p.relative_to(landing)) for p in day)


@pytest.mark.parametrize("again_by_restore", [False, True])
def test_a_restore_killed_midway_records_what_it_wrote_so_that_purge_deletes_it(shop, tmp_path, again_by_restore):
    """At 874540f restored raw files were on disk with no record: purge would never delete them."""
    landing, wh, restricted = shop
    out = tmp_path / "restored"
    _killed_at("restored-one", ["backup", "restore", "--date", DAY1, "--out", str(out), "--restricted", str(restricted)])
    if again_by_restore:  # the next command is the restore itself, which names no warehouse
        [intent] = intents.open_intents(ledger.entries(restricted))
        args = ["backup", "restore", "--date", DAY1, "--out", str(out), "--restricted", str(restricted)]
        assert CliRunner().invoke(app, args).exit_code == 0
        found = ledger.entries(restricted)
        assert [e["data"]["outcome"] for e in found if e["kind"] == "intent_ended"] == ["finished"]
        assert intents.open_intents(found) == [] and ledger.verify(restricted, wh) == []
        return
    restored = _ended_by_the_next_command(wh, restricted, "restore", "finished")
    there = sorted(str(p.resolve()) for p in out.rglob("*") if p.is_file())
    assert len(there) == 1 and [f["path"] for f in restored["files"]] == there and "interrupted" in restored["error"]
    where = ["--landing", str(landing), "--warehouse", str(wh), "--restricted", str(restricted)]
    assert CliRunner().invoke(app, ["purge", *where]).exit_code == 0
    assert not any(p.is_file() for p in out.rglob("*"))


@pytest.fixture
def key_file(shop, tmp_path, monkeypatch):
    """The warehouse's pseudonym key in a file, named by $TUOMIN_PSEUDONYM_KEY_FILE."""
    key = tmp_path / "vault" / "pseudonym.key"
    key.parent.mkdir()
    key.write_text(TEST_KEY + "\n")
    monkeypatch.delenv("TUOMIN_PSEUDONYM_KEY")
    monkeypatch.setenv("TUOMIN_PSEUDONYM_KEY_FILE", str(key))
    return key


@pytest.mark.parametrize(
    ("failpoint", "outcome"),
    [pytest.param("rotate-intended", "rolled back", marks=pytest.mark.slow), ("rotate-swapped", "finished")],
)
def test_a_rotation_killed_between_the_swap_and_its_entry_leaves_the_key_the_ledger_names(shop, key_file, failpoint, outcome):
    """At 874540f the warehouse's key was lost with no record, and every run then refused."""
    _, wh, restricted = shop
    old = Pseudonymizer(TEST_KEY.encode()).key_id
    _killed_at(failpoint, ["key", "rotate", "--warehouse", str(wh), "--restricted", str(restricted)], TUOMIN_PSEUDONYM_KEY="")
    rotated = _ended_by_the_next_command(wh, restricted, "rotate", outcome)
    now = keys.locate(keys.PSEUDONYM).load().key_id
    assert keys.warehouse_key(ledger.read(restricted))[0] == now  # the next run uses the key the ledger names
    assert now == (rotated["new_key_id"] if rotated else old)
    assert not key_file.with_name(key_file.name + ".new").exists()


@pytest.mark.parametrize(
    ("failpoint", "outcome"),
    [pytest.param("destroy-intended", "rolled back", marks=pytest.mark.slow), ("destroy-overwritten", "finished")],
)
def test_a_destruction_killed_before_its_entry_is_recorded_or_undone_by_what_is_left(shop, key_file, failpoint, outcome):
    _, wh, restricted = shop
    args = ["key", "destroy", "--warehouse", str(wh), "--restricted", str(restricted), "--yes"]
    _killed_at(failpoint, args, TUOMIN_PSEUDONYM_KEY="")
    destroyed = _ended_by_the_next_command(wh, restricted, "destroy", outcome)
    assert key_file.exists() == (outcome == "rolled back")
    if destroyed:
        assert destroyed["key_id"] == Pseudonymizer(TEST_KEY.encode()).key_id
    else:  # still there, so destroying it again works
        assert CliRunner().invoke(app, args).exit_code == 0 and not key_file.exists()


@pytest.mark.parametrize("failpoint", [pytest.param("dp-intended", marks=pytest.mark.slow), "dp-placed-one"])
def test_dp_tables_killed_before_their_entry_are_taken_out_and_spend_nothing(shop, failpoint):
    """At 874540f the entry came first: epsilon counted for tables that did not exist, and a rerun
    needed --additional."""
    landing, wh, restricted = shop
    where = ["--landing", str(landing), "--warehouse", str(wh), "--restricted", str(restricted)]
    _killed_at(failpoint, ["dp", *where])
    _ended_by_the_next_command(wh, restricted, "dp", "rolled back")
    assert not list(wh.glob("dataset=dp_*/*/*.parquet"))
    assert not [e for e in ledger.entries(restricted) if e["kind"] == "dp_release"]
    again = CliRunner().invoke(app, ["dp", *where])  # no --additional: nothing was spent
    assert again.exit_code == 0, again.output
    assert list(wh.glob("dataset=dp_*/*/*.parquet")) and ledger.verify(restricted, wh) == []


def _cut(landing: Path) -> None:
    """New inputs for DAY1, so that a run has partitions to republish."""
    pos = landing / "pos" / DAY1 / "pos_lines_20260301.csv"
    pos.write_bytes(b"".join(pos.read_bytes().splitlines(keepends=True)[:-100]))


SWEEP = {  # command: (its arguments, the kinds of entry it appends)
    "run": (["run", "{where}"], ["intent", "partition", "run"]),
    "purge": (["purge", "{where}"], ["intent", "deletion"]),
    "restore": (
        ["backup", "restore", "--date", DAY1, "--out", "{out}", "--restricted", "{restricted}"],
        ["intent", "backup_restored"],
    ),
    "rotate": (["key", "rotate", "--warehouse", "{wh}", "--restricted", "{restricted}"], ["intent", "key_rotated"]),
    "destroy": (["key", "destroy", "--warehouse", "{wh}", "--restricted", "{restricted}", "--yes"], ["intent", "key_destroyed"]),
    "dp": (["dp", "{where}"], ["intent", "dp_release"]),
}


@pytest.mark.slow
@pytest.mark.parametrize(("command", "kind"), [(c, k) for c, (_, kinds) in SWEEP.items() for k in kinds])
def test_a_machine_dying_in_the_middle_of_any_ledger_append_leaves_a_ledger_the_next_command_repairs(
    shop, key_file, tmp_path, command, kind
):
    """The torn-append sweep: each command killed half way through writing each kind of entry it
    appends (the bytes written and fsynced, the rest never). `ledger verify` sets the torn line
    aside, ends the intent it leaves open and passes; the command run again completes."""
    landing, wh, restricted = shop
    _cut(landing)
    where = ["--landing", str(landing), "--warehouse", str(wh), "--restricted", str(restricted)]
    fill = {"{wh}": [str(wh)], "{restricted}": [str(restricted)], "{out}": [str(tmp_path / "restored")], "{where}": where}
    args = [part for arg in SWEEP[command][0] for part in fill.get(arg, [arg])]
    _killed_at(f"torn-{kind}", args, TUOMIN_PSEUDONYM_KEY="")
    assert ledger.torn(restricted) > 0
    done = CliRunner().invoke(app, ["ledger", "verify", "--restricted", str(restricted), "--warehouse", str(wh)])
    assert done.exit_code == 0 and "repaired:" in done.output, done.output
    assert intents.open_intents(ledger.entries(restricted)) == [] and ledger.verify(restricted, wh) == []
    if command == "destroy" and not key_file.exists():
        return  # destroyed, and recorded: nothing left to run again
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert ledger.verify(restricted, wh) == [] and ledger.torn(restricted) == 0


def test_a_restore_that_fails_midway_records_what_it_restored(shop, tmp_path):
    """A backup whose second file does not decrypt: at 874540f the first was left on disk with no
    record, so purge would never delete it. Now the entry names it, with the error."""
    landing, wh, restricted = shop
    [manifest] = (restricted / "backups" / f"export_date={DAY1}").glob("*/manifest.json")
    encrypted = sorted(manifest.parent.rglob("*.enc"))
    assert len(encrypted) >= 2
    damaged = bytearray(encrypted[-1].read_bytes())
    damaged[-1] ^= 0xFF
    encrypted[-1].write_bytes(damaged)
    out = tmp_path / "restored"
    failed = CliRunner().invoke(app, ["backup", "restore", "--date", DAY1, "--out", str(out), "--restricted", str(restricted)])
    assert failed.exit_code == 1
    entry = ledger.entries(restricted)[-1]
    there = sorted(str(p.resolve()) for p in out.rglob("*") if p.is_file())
    assert entry["kind"] == "backup_restored" and entry["data"]["error"] and there
    assert sorted(f["path"] for f in entry["data"]["files"]) == there and ledger.verify(restricted, wh) == []
    from flows.cli.usage import landing as landing_area
    from flows.closing.purge import plan
    from flows.runtime.paths import POLICIES
    from transforms.policy import load_policies

    [day] = [
        p
        for p in plan(landing_area(landing), wh, restricted, load_policies(POLICIES), dt.date(2027, 1, 1))
        if str(p.export_date) == DAY1
    ]
    assert {f["path"] for f in day.files if f["area"] == "restored"} == set(there)
