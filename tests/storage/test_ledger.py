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
    assert set(ledger.KINDS) == set(entries.KINDS) and len(entries.KINDS) == 14
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
