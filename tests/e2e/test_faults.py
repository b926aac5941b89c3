"""Runs killed, or failed by the storage, at every point of publishing (flows/runtime/failpoints.py):
old or new partitions, never a mix, and a rerun gives what an uninterrupted run gives. Apart from
tests/e2e/test_operations.py so that the two heavy files run on different workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.storage import intents, ledger
from tests.conftest import TEST_KEY, Run, copy_run, run_flow

DAY1, DAY2 = "2026-03-01", "2026-03-02"


def _file_hashes(warehouse: Path) -> dict[str, bytes]:
    return {p.relative_to(warehouse).as_posix(): p.read_bytes() for p in warehouse.glob("dataset=*/*/*.parquet")}


def _cut_pos(landing: Path) -> None:
    """New inputs for DAY1, so a second run's partitions differ from the first's."""
    pos = landing / "pos" / DAY1 / "pos_lines_20260301.csv"
    pos.write_bytes(b"".join(pos.read_bytes().splitlines(keepends=True)[:-200]))


@pytest.fixture(scope="module")
def uninterrupted(day1_published, tmp_path_factory) -> Run:
    """What a killed run's rerun must give: the same history (DAY1 published, then its POS file
    cut) and a run on the cut files never interrupted. (A date already published is solved at
    its release's levels, so a fresh warehouse may choose others.)"""
    root = tmp_path_factory.mktemp("uninterrupted")
    copy_of, _ = copy_run(day1_published[1], day1_published[0], root / "shop")
    _cut_pos(copy_of)
    return run_flow(copy_of, root / "shop")


def _run_killed_at(failpoint: str, landing: Path, root: Path) -> subprocess.CompletedProcess:
    from prefect.settings import get_current_settings

    env = {
        **os.environ,
        "TUOMIN_PSEUDONYM_KEY": TEST_KEY,
        "TUOMIN_FAILPOINT": failpoint,
        "PREFECT_API_URL": str(get_current_settings().api.url),
    }
    code = (
        "from flows.pipeline.anonymize import anonymize_exports; from flows.pipeline.parameters import RunParameters; "
        f"anonymize_exports(RunParameters(landing={str(landing)!r}, "
        f"warehouse={str(root / 'warehouse')!r}, restricted={str(root / 'restricted')!r}, date={DAY1!r}))"
    )
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def day1_published(prefect_server, landing, tmp_path_factory) -> tuple[Path, Run]:
    """DAY1's files alone (the rerun's default selection then has one date to do), published once
    for every kill case (each works on a copy)."""
    root = tmp_path_factory.mktemp("day1")
    day1 = _day1(landing, root / "landing")
    return day1, run_flow(day1, root, date=DAY1)


def _day1(landing: Path, target: Path) -> Path:
    for folder in landing.glob(f"*/{DAY1}"):
        shutil.copytree(folder, target / folder.relative_to(landing))
    return target


# Before any rename, the three earliest failpoints show what `staged` and `mid-write` show: make test-slow.
EARLY = [pytest.param(f, marks=pytest.mark.slow) for f in ("reading", "extracted", "validated")]


@pytest.mark.parametrize("failpoint", [*EARLY, "mid-write", "staged", "published-one"])
def test_a_killed_run_leaves_old_or_new_partitions_never_a_mix(day1_published, tmp_path, uninterrupted, failpoint):
    copy_of, first = copy_run(day1_published[1], day1_published[0], tmp_path / "shop")
    old = _file_hashes(first.warehouse)
    _cut_pos(copy_of)
    killed = _run_killed_at(failpoint, copy_of, tmp_path / "shop")
    assert killed.returncode == -9, killed.stderr[-2000:]
    after = _file_hashes(first.warehouse)
    assert set(after) == set(old)
    changed = [name for name in old if after[name] != old[name]]
    if failpoint != "published-one":
        assert changed == []  # killed before any rename: the warehouse is as it was
    else:
        assert len(changed) == 1  # exactly one partition replaced, whole
    for name in after:  # every visible file is complete and readable
        assert pq.read_metadata(first.warehouse / name).num_rows > 0
    # A file published but not yet recorded is not hidden: the ledger check names it until a rerun records it.
    found = ledger.verify(first.restricted, first.warehouse)
    unrecorded = [p for p in found if "no ledger entry after entry" in p]
    changed_file = [p for p in found if "differs from the SHA-256 the ledger recorded" in p]  # checked both ways
    assert [p.split(":")[0] for p in unrecorded] == changed and len(found) == len(unrecorded) + len(changed_file)
    assert len(changed_file) == len(changed)
    # Re-running finishes the job: a partition put in place but not recorded has its intent
    # finished (recorded as the killed run meant to); any other unit whose file changed is
    # processed again; either way into what a run never interrupted publishes from the same files.
    final = run_flow(copy_of, tmp_path / "shop")
    assert final.state.is_completed()
    for name in _file_hashes(final.warehouse):
        if failpoint == "published-one":  # the killed run's file recorded as it meant to, the rest solved after it
            assert pq.read_schema(final.warehouse / name).names == pq.read_schema(uninterrupted.warehouse / name).names
            continue
        assert pq.read_table(final.warehouse / name).equals(pq.read_table(uninterrupted.warehouse / name)), name
    assert ledger.verify(first.restricted, first.warehouse) == []
    assert not (first.warehouse / ".staging").exists() or not any((first.warehouse / ".staging").iterdir())


@pytest.mark.parametrize("failpoint", ["mid-write:ENOSPC", "staged:EROFS"])
def test_a_full_disk_or_read_only_warehouse_fails_clearly_and_publishes_nothing(
    published, landing, tmp_path, monkeypatch, failpoint
):
    """The storage fails while a partition is written (disk full) or once it is staged (the
    warehouse turned read-only): the run stops with the OS's reason and the file, the published
    partitions are as they were, the ledger holds no new partition (the failed run and the backup
    are recorded), no staging is
    left, and the next run completes."""
    copy_of, first = copy_run(published, landing, tmp_path / "shop")
    old, entries = _file_hashes(first.warehouse), len(ledger.entries(first.restricted))
    for day in (DAY1, DAY2):  # new inputs for both days: both units would be republished
        pos = copy_of / "pos" / day / f"pos_lines_{day.replace('-', '')}.csv"
        pos.write_bytes(b"".join(pos.read_bytes().splitlines(keepends=True)[:-100]))
    monkeypatch.setenv("TUOMIN_FAILPOINT", failpoint)
    failed = run_flow(copy_of, tmp_path / "shop")
    reason = {"ENOSPC": "No space left on device", "EROFS": "Read-only file system"}[failpoint.split(":")[1]]
    assert failed.state.is_failed()
    error = failed.summary.error
    assert reason in error and "part-0.parquet" in error and "the run stops here" in error
    assert _file_hashes(first.warehouse) == old
    added = ledger.entries(first.restricted)[entries:]
    assert "partition" not in [e["kind"] for e in added] and added[-1]["data"]["status"] == "failed"
    assert ledger.verify(first.restricted, first.warehouse) == []
    assert not (first.warehouse / ".staging").exists() or not any((first.warehouse / ".staging").rglob("*.parquet"))
    monkeypatch.delenv("TUOMIN_FAILPOINT")
    final = run_flow(copy_of, tmp_path / "shop")
    assert final.state.is_completed() and final.summary.datasets["pos"].units == 2


@pytest.mark.parametrize(
    ("failpoint", "after"),
    [("published-one", "ledger verify"), pytest.param("published-one", "run", marks=pytest.mark.slow), ("intended", "run")],
)
def test_a_run_killed_between_its_intent_and_its_commit_is_ended_by_the_next_command(day1_published, tmp_path, failpoint, after):
    """Intend, act, commit: killed after a partition's intent was recorded, before (`intended`) or
    after (`published-one`) the file was put in place, and before its entry. The next command,
    whichever it is, ends the intent (finished where the file is in place as intended, rolled back
    where it is not), records that, and the ledger verifies; a plain run then says nothing is left
    to do only when the partition is recorded."""
    copy_of, first = copy_run(day1_published[1], day1_published[0], tmp_path / "shop")
    _cut_pos(copy_of)
    killed = _run_killed_at(failpoint, copy_of, tmp_path / "shop")
    assert killed.returncode == -9, killed.stderr[-2000:]
    [intent] = intents.open_intents(ledger.entries(first.restricted))
    assert ledger.verify(first.restricted, first.warehouse) != [] or failpoint == "intended"
    if after == "ledger verify":
        done = CliRunner().invoke(
            app, ["ledger", "verify", "--restricted", str(first.restricted), "--warehouse", str(first.warehouse)]
        )
        assert done.exit_code == 0, done.output
        assert f"recovered: intent {intent['seq']} finished" in " ".join(done.output.split())
    else:
        rerun = run_flow(copy_of, tmp_path / "shop", date=DAY1)
        assert rerun.state.is_completed(), rerun.summary.error
    found = ledger.entries(first.restricted)
    [ended] = [e for e in found if e["kind"] == "intent_ended" and e["data"]["intent"] == intent["seq"]]
    assert ended["data"]["outcome"] == ("finished" if failpoint == "published-one" else "rolled back")
    assert intents.open_intents(found) == [] and ledger.verify(first.restricted, first.warehouse) == []
    committed = [e for e in found if e["kind"] == "partition" and e["data"].get("intent") == intent["seq"]]
    assert len(committed) == (1 if failpoint == "published-one" else 0)
    if failpoint == "published-one":  # recorded as the killed run meant to record it
        assert committed[0]["data"]["output"]["sha256"] == intent["data"]["changes"][0]["sha256"]


def _rehashed_in_the_middle(restricted: Path) -> None:
    """An entry in the middle edited and its own hash recomputed: the next entry no longer follows it."""
    import hashlib
    import json

    path = restricted / ledger.LEDGER
    lines = path.read_text("utf-8").splitlines()
    entry = json.loads(lines[len(lines) // 2])
    entry["data"]["triggered_by"] = {"via": "edited"}
    body = {k: entry[k] for k in ("seq", "at", "kind", "data", "prev")}
    entry["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()
    lines[len(lines) // 2] = json.dumps(entry, ensure_ascii=False)
    path.write_text("\n".join(lines) + "\n", "utf-8")


def test_a_ledger_that_does_not_verify_stops_every_writing_command_in_one_line(published, landing, tmp_path):
    """Edited and re-hashed in the middle: run, review, backup verify, purge (even its dry run)
    and an erasure each refuse in one line naming the problem, exit 2, and append nothing."""
    copy_of, first = copy_run(published, landing, tmp_path / "shop")
    _rehashed_in_the_middle(first.restricted)
    before = (first.restricted / ledger.LEDGER).read_bytes()
    where = ["--warehouse", str(first.warehouse), "--restricted", str(first.restricted)]
    commands = [
        ["run", "--landing", str(copy_of), *where, "--no-backup"],
        ["review", *where],
        ["backup", "verify", "--restricted", str(first.restricted)],
        ["purge", "--dry-run", "--landing", str(copy_of), *where],
        ["subjects", "erase", "--landing", str(copy_of), *where, "--mobile", "13800000000"],
    ]
    for command in commands:
        done = CliRunner().invoke(app, command)
        assert done.exit_code == 2, (command, done.output)
        lines = done.output.strip().splitlines()
        assert len(lines) == 1 and ("the ledger does not verify" in lines[0] or "cannot be trusted" in lines[0]), (
            command,
            done.output,
        )
        assert (first.restricted / ledger.LEDGER).read_bytes() == before, command


@pytest.mark.parametrize(
    "harm", ["swapped", pytest.param("deleted", marks=pytest.mark.slow), pytest.param("damaged", marks=pytest.mark.slow)]
)
def test_a_run_refuses_to_build_on_a_partition_that_is_not_the_one_recorded(published, landing, tmp_path, harm):
    """At 874540f a plain run said "up to date" (exit 0) over a partition deleted, swapped for
    another or damaged; only `review` noticed. Now the run stops, naming it and the way back,
    publishes nothing, and a run of its date republishes it."""
    copy_of, first = copy_run(published, landing, tmp_path / "shop")
    one, other = (first.warehouse / f"dataset=pos/period={day}/part-0.parquet" for day in (DAY1, DAY2))
    if harm == "deleted":
        one.unlink()
    elif harm == "swapped":
        one.write_bytes(other.read_bytes())
    else:
        data = bytearray(one.read_bytes())
        data[len(data) // 2] ^= 0xFF
        one.write_bytes(data)
    kept = _file_hashes(first.warehouse)
    refused = run_flow(copy_of, tmp_path / "shop")
    assert refused.state.is_failed()
    [error] = refused.summary.errors
    assert (
        error.startswith(f"pos {DAY1}: the partition file dataset=pos/period={DAY1}/part-0.parquet")
        and error in refused.state.message
    )
    assert "tuomin run --date" in error and _file_hashes(first.warehouse) == kept
    redone = run_flow(copy_of, tmp_path / "shop", date=DAY1)
    assert redone.state.is_completed(), redone.summary.error
    assert ledger.verify(first.restricted, first.warehouse) == []
    again = run_flow(copy_of, tmp_path / "shop")
    assert again.state.is_completed() and not again.summary.datasets
