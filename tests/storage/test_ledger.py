"""The ledger's entries are typed: one model per kind (flows/storage/entries.py), strict when written,
lenient when read, and what `ledger show` prints comes from the models."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.storage import entries, ledger
from tests.conftest import a_partition, a_run


def test_every_kind_has_one_model_and_only_models_are_written(tmp_path):
    assert set(ledger.KINDS) == set(entries.KINDS) and len(entries.KINDS) == 17
    with pytest.raises(TypeError, match="one of the models"):
        ledger.append(tmp_path, {"run_id": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not declared in its model"):
        ledger.append(tmp_path, a_run(note="free text"))
    assert ledger.entries(tmp_path) == []  # nothing written by a refused entry


def test_entries_are_stored_as_their_writer_set_them_and_read_back_typed(tmp_path):
    ledger.append(tmp_path, a_run())
    ledger.append(tmp_path, entries.SubjectLookupEntry(identifier="mobile", subject="ab" * 32, key_id="k1", records=3))
    stored = ledger.entries(tmp_path)
    assert "message" not in stored[0]["data"]  # not set by the writer: not stored
    assert stored[1]["data"]["kind"] == "mobile"  # the field's stored name (the chain forbids renaming it)
    read = ledger.read(tmp_path)
    assert isinstance(read[0].data, entries.RunEntry) and read[0].data.message is None
    assert isinstance(read[1].data, entries.SubjectLookupEntry) and read[1].data.identifier == "mobile"
    assert [r.seq for r in ledger.only(read, entries.SubjectLookupEntry)] == [2]


def test_an_entry_written_by_an_older_version_is_still_read(tmp_path):
    """A field since dropped stays readable and a field added later takes its default, so an old
    ledger (which cannot be rewritten) still shows; its chain still verifies."""
    ledger.append(tmp_path, a_partition())
    path = tmp_path / ledger.LEDGER
    old = json.loads(path.read_text())
    old["data"]["retired_field"] = 1
    old["hash"] = ledger._digest(old)
    path.write_text(json.dumps(old) + "\n")
    [read] = ledger.read(tmp_path)
    assert read.data.model_extra == {"retired_field": 1} and ledger.verify(tmp_path) == []
    assert "flow_run_id" not in old["data"] and read.data.flow_run_id == ""  # added later: its default


def test_ledger_show_prints_each_kind_in_its_models_words_and_one_entry_in_full(tmp_path):
    ledger.append(tmp_path, a_run(run_id="r-1"))
    ledger.append(tmp_path, a_partition(k_achieved=7, rows={"read": 10, "published": 9}))
    shown = CliRunner().invoke(app, ["ledger", "show", "--restricted", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "r-1 up to date (test)" in shown.output and "pos 2026-03-01: 9 rows, k=7" in shown.output
    one = CliRunner().invoke(app, ["ledger", "show", "--restricted", str(tmp_path), "--seq", "2"])
    assert one.exit_code == 0 and json.loads(one.output)["data"]["rows"] == {"read": 10, "published": 9}
    lines = CliRunner().invoke(app, ["ledger", "show", "--restricted", str(tmp_path), "--json", "--kind", "run"])
    assert [json.loads(line)["seq"] for line in lines.output.splitlines()] == [1]
    unknown = CliRunner().invoke(app, ["ledger", "show", "--restricted", str(tmp_path), "--kind", "runs"])
    assert unknown.exit_code == 2 and "known: run, partition" in unknown.output


def test_a_torn_append_is_set_aside_and_recorded_not_a_decode_error_in_every_command(tmp_path):
    """A crash (or a full disk) in the middle of an append leaves half a line with no newline:
    readers leave it out, `ledger verify` sets its bytes aside, records the repair and verifies,
    and the next entry follows the last whole one."""
    ledger.append(tmp_path, a_run())
    path = tmp_path / ledger.LEDGER
    whole = path.read_bytes()
    half = json.dumps({"seq": 2, "at": "2026-03-02T00:00:00+00:00", "kind": "run", "data": {"run_id": "r"}})[:40].encode()
    path.write_bytes(whole + half)
    assert [e["seq"] for e in ledger.entries(tmp_path)] == [1] and ledger.head(tmp_path).seq == 1
    assert ledger.torn(tmp_path) == len(half)
    done = CliRunner().invoke(app, ["ledger", "verify", "--restricted", str(tmp_path), "--warehouse", str(tmp_path / "none")])
    assert done.exit_code == 0, done.output
    assert "repaired: 40 torn byte(s) set aside" in done.output and "ledger intact: 2 entries" in done.output
    [aside] = path.parent.glob("torn-*.bin")
    assert aside.read_bytes() == half and oct(aside.stat().st_mode & 0o777) == "0o600"
    repaired = ledger.read(tmp_path)[-1]
    assert isinstance(repaired.data, entries.LedgerRepairedEntry) and repaired.data.torn_bytes == 40
    ledger.append(tmp_path, a_run())
    assert [e["seq"] for e in ledger.entries(tmp_path)] == [1, 2, 3] and not ledger.verify(tmp_path)


def test_an_append_finds_a_torn_line_first_and_records_its_repair_before_itself(tmp_path):
    ledger.append(tmp_path, a_run())
    path = tmp_path / ledger.LEDGER
    path.write_bytes(path.read_bytes() + b'{"seq": 2, "at"')
    recorded = ledger.append(tmp_path, a_partition())
    assert recorded.seq == 3
    assert [e["kind"] for e in ledger.entries(tmp_path)] == ["run", "ledger_repaired", "partition"]
    assert not ledger.verify(tmp_path)


def test_a_damaged_whole_line_is_named_in_one_line(tmp_path):
    ledger.append(tmp_path, a_run())
    path = tmp_path / ledger.LEDGER
    path.write_bytes(path.read_bytes() + b"not json\n")
    with pytest.raises(ledger.LedgerBroken, match=r"line 2 is not a ledger entry \(damaged\)"):
        ledger.entries(tmp_path)
    done = CliRunner().invoke(app, ["ledger", "verify", "--restricted", str(tmp_path)])
    assert done.exit_code == 2 and len(done.output.strip().splitlines()) == 1, done.output


def test_an_append_on_a_full_disk_records_nothing_and_leaves_nothing_torn(tmp_path):
    """A real full file system (a small tmpfs): the append fails in one line, the ledger's bytes
    are as they were, and once space is freed the next append follows the last entry."""
    import os
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        ledger.append(mount, a_run())
        path = mount / ledger.LEDGER
        before = path.read_bytes()
        filler = mount / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:  # every block the file system has left
            while os.write(fd, b"\0" * 512):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        big = entries.RunEntry.model_validate(a_run().record() | {"message": "x" * 20_000})
        with pytest.raises(ledger.LedgerWriteFailed, match="No space left on device.*nothing was recorded"):
            ledger.append(mount, big)
        assert path.read_bytes() == before and ledger.torn(mount) == 0
        filler.unlink()
        assert ledger.append(mount, a_run()).seq == 2 and not ledger.verify(mount)
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
