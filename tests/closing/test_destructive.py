"""Commands a closing shop runs once and cannot take back, and the checks that vouch for them:
each acts only on what the ledger recorded, refuses a mismatch before changing anything, records
what it did, and no integrity check says "intact" about something it did not check."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.storage import ledger
from tests.conftest import TEST_KEY, a_run, key_id_of_file
from transforms.pseudonymize import Pseudonymizer

DAY1 = "2026-03-01"


@pytest.fixture
def shop(published, landing, tmp_path):
    """A copy of a published warehouse, its restricted area and the landing it was made from."""
    copy = tmp_path / "copy"
    for name, source in (("wh", published.warehouse), ("restricted", published.restricted), ("landing", landing)):
        shutil.copytree(source, copy / name)
    return copy / "landing", copy / "wh", copy / "restricted"


def _files(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def test_purge_refuses_a_mistyped_or_wrong_landing_and_deletes_nothing(shop, tmp_path):
    landing, wh, restricted = shop
    before = _files(wh, restricted, landing)
    missing = CliRunner().invoke(
        app, ["purge", "--landing", str(tmp_path / "landng"), "--warehouse", str(wh), "--restricted", str(restricted)]
    )
    assert missing.exit_code == 2 and "no such directory" in missing.output
    (tmp_path / "empty").mkdir()
    wrong = CliRunner().invoke(
        app, ["purge", "--landing", str(tmp_path / "empty"), "--warehouse", str(wh), "--restricted", str(restricted)]
    )
    assert wrong.exit_code == 2 and "does not hold" in wrong.output and "Nothing was deleted" in wrong.output
    assert DAY1 in wrong.output and "after_sales/2026-03-01/cases_20260301.csv" in wrong.output
    # The flow itself (a deployment, a script) refuses the same way.
    from flows.closing.purge import purge as purge_flow

    state = purge_flow(landing=str(tmp_path / "empty"), warehouse=str(wh), restricted=str(restricted), return_state=True)
    assert state.is_failed() and "does not hold" in state.message
    # A landing file removed by hand (not by a purge) is a mismatch too, for the whole purge.
    (landing / "after_sales" / DAY1 / "cases_20260301.csv").unlink()
    del before[str(landing / "after_sales" / DAY1 / "cases_20260301.csv")]
    partly = CliRunner().invoke(
        app, ["purge", "--landing", str(landing), "--warehouse", str(wh), "--restricted", str(restricted)]
    )
    assert partly.exit_code == 2 and "cases_20260301.csv" in partly.output
    assert _files(wh, restricted, landing) == before  # no backup, no raw file, no ledger entry


def test_a_backup_goes_only_after_the_raw_files_it_protects_and_every_area_is_certified(shop, monkeypatch):
    from flows.storage.landing import Landing

    landing, wh, restricted = shop
    stuck = landing / "pos" / DAY1 / "pos_lines_20260301.csv"
    original = Landing.remove

    def remove(self, relative):
        if relative.endswith(stuck.name):
            raise PermissionError(13, "denied")
        original(self, relative)

    monkeypatch.setattr(Landing, "remove", remove)
    backups = sorted((restricted / "backups" / f"export_date={DAY1}").rglob("*.enc"))
    failed = CliRunner().invoke(
        app, ["purge", "--landing", str(landing), "--warehouse", str(wh), "--restricted", str(restricted)]
    )
    assert failed.exit_code == 1 and "could not be deleted" in failed.output
    [cert] = [e["data"] for e in ledger.entries(restricted) if e["kind"] == "deletion" and e["data"]["export_date"] == DAY1]
    assert set(cert["areas"]) >= {"landing", "quarantine", "work", "backup"}
    assert cert["areas"]["landing"]["not_deleted"] == 1 and cert["areas"]["backup"]["deleted"] == 0
    assert all(f["error"].startswith("kept: a landing file it protects") for f in cert["not_deleted"] if f["area"] == "backup")
    assert stuck.exists() and all(b.exists() for b in backups)  # the backup still holds what the landing still holds
    monkeypatch.setattr(Landing, "remove", original)
    again = CliRunner().invoke(app, ["purge", "--landing", str(landing), "--warehouse", str(wh), "--restricted", str(restricted)])
    assert again.exit_code == 0, again.output
    last = [e["data"] for e in ledger.entries(restricted) if e["kind"] == "deletion" and e["data"]["export_date"] == DAY1][-1]
    assert last["areas"]["landing"]["deleted"] == 1 and last["areas"]["backup"]["deleted"] == len(backups) + 1
    assert not stuck.exists() and not any(b.exists() for b in backups) and ledger.verify(restricted, wh) == []


@pytest.fixture
def key_file(tmp_path, monkeypatch):
    """The warehouse's pseudonym key in a file that $TUOMIN_PSEUDONYM_KEY_FILE names, and an
    unrelated demo key where `tuomin key init` puts one, in the current directory."""
    monkeypatch.chdir(tmp_path)
    key = tmp_path / "vault" / "pseudonym.key"
    key.parent.mkdir()
    key.write_text(TEST_KEY + "\n")
    assert CliRunner().invoke(app, ["key", "init"]).exit_code == 0  # .secrets/pseudonym.key: another key
    monkeypatch.delenv("TUOMIN_PSEUDONYM_KEY")
    monkeypatch.setenv("TUOMIN_PSEUDONYM_KEY_FILE", str(key))
    return key


def test_key_commands_act_on_the_key_every_command_uses(shop, key_file, tmp_path):
    _, wh, restricted = shop
    unrelated = tmp_path / ".secrets" / "pseudonym.key"
    kept = unrelated.read_bytes()
    result = CliRunner().invoke(app, ["key", "destroy", "--warehouse", str(wh), "--restricted", str(restricted), "--yes"])
    assert result.exit_code == 0, result.output
    assert not key_file.exists() and unrelated.read_bytes() == kept
    entry = ledger.entries(restricted)[-1]["data"]
    assert entry["key_id"] == Pseudonymizer(TEST_KEY.encode()).key_id and entry["where"] == str(key_file)
    assert entry["made_with_it"] == len(ledger.partition_entries(restricted))


def test_a_key_the_ledger_records_nothing_made_with_is_neither_destroyed_nor_rotated(shop, key_file, tmp_path, monkeypatch):
    _, wh, restricted = shop
    other = tmp_path / ".secrets" / "pseudonym.key"
    monkeypatch.setenv("TUOMIN_PSEUDONYM_KEY_FILE", str(other))
    before, entries = other.read_bytes(), len(ledger.entries(restricted))
    destroy = CliRunner().invoke(app, ["key", "destroy", "--warehouse", str(wh), "--restricted", str(restricted), "--yes"])
    assert destroy.exit_code == 2 and "no partition" in destroy.output and key_id_of_file(other) in destroy.output
    rotate = CliRunner().invoke(app, ["key", "rotate", "--warehouse", str(wh), "--restricted", str(restricted)])
    assert rotate.exit_code == 2 and "is published with" in rotate.output
    backup = tmp_path / "backup.key"
    backup.write_text("another-backup-key-" + "z" * 40)
    backup_destroy = CliRunner().invoke(
        app,
        ["key", "destroy", "--backup", "--path", str(backup), "--warehouse", str(wh), "--restricted", str(restricted), "--yes"],
    )
    assert backup_destroy.exit_code == 2 and "no backup" in backup_destroy.output
    held = CliRunner().invoke(
        app,
        ["key", "destroy", "--warehouse", str(wh), "--restricted", str(restricted), "--yes"],
        env={"TUOMIN_PSEUDONYM_KEY": TEST_KEY},
    )
    assert held.exit_code == 2 and "cannot destroy" in held.output and TEST_KEY not in held.output
    assert other.read_bytes() == before and backup.exists() and len(ledger.entries(restricted)) == entries
    nowhere = CliRunner().invoke(
        app, ["key", "destroy", "--warehouse", str(tmp_path / "w"), "--restricted", str(tmp_path / "nowhere"), "--yes"]
    )
    assert nowhere.exit_code == 2 and "no ledger" in nowhere.output and other.read_bytes() == before


def test_the_report_after_a_rotation_names_both_keys(shop, key_file, tmp_path):
    _, wh, restricted = shop
    old = key_id_of_file(key_file)
    rotated = CliRunner().invoke(app, ["key", "rotate", "--warehouse", str(wh), "--restricted", str(restricted)])
    assert rotated.exit_code == 0, rotated.output
    new = key_id_of_file(key_file)
    [entry] = [e["data"] for e in ledger.entries(restricted) if e["kind"] == "key_rotated"]
    assert (entry["old_key_id"], entry["new_key_id"], entry["where"]) == (old, new, str(key_file))
    report = CliRunner().invoke(
        app, ["report", "--out", str(tmp_path / "ev"), "--warehouse", str(wh), "--restricted", str(restricted)]
    )
    assert report.exit_code == 0, report.output
    assert f"{old} → {new}" in (tmp_path / "ev" / "report.html").read_text("utf-8")
    # The new key made nothing yet: it cannot be destroyed by mistake for the old one.
    assert (
        CliRunner().invoke(app, ["key", "destroy", "--warehouse", str(wh), "--restricted", str(restricted), "--yes"]).exit_code
        == 2
    )


def test_ledger_verify_fails_on_a_missing_empty_or_cut_short_ledger_and_prints_the_head(shop, tmp_path):
    _, wh, restricted = shop
    path = restricted / ledger.LEDGER
    full = CliRunner().invoke(app, ["ledger", "verify", "--warehouse", str(wh), "--restricted", str(restricted)])
    head = ledger.entries(restricted)[-1]["hash"]
    assert full.exit_code == 0 and f"hash {head}" in full.output
    lines = path.read_text("utf-8").splitlines()
    path.write_text("\n".join(lines[:-3]) + "\n", "utf-8")  # head -n -3: what is left still chains
    assert ledger.check(restricted, wh).entries == len(lines) - 3
    cut = CliRunner().invoke(app, ["ledger", "verify", "--warehouse", str(wh), "--restricted", str(restricted)])
    assert cut.exit_code == 1 and "cut off" in cut.output  # the partition files know better
    path.write_text("\n".join(lines[:-1]) + "\n", "utf-8")  # only the last entry: no file vouches for it
    expected = CliRunner().invoke(
        app, ["ledger", "verify", "--warehouse", str(wh), "--restricted", str(restricted), "--expect-head", head[:16]]
    )
    assert expected.exit_code == 1 and "expected head" in expected.output
    path.write_text("", "utf-8")
    empty = CliRunner().invoke(app, ["ledger", "verify", "--warehouse", str(wh), "--restricted", str(restricted)])
    assert empty.exit_code == 1 and "empty" in empty.output and "intact" not in empty.output
    path.unlink()
    for args in (
        ["ledger", "verify", "--warehouse", str(wh), "--restricted", str(restricted)],
        ["ledger", "verify", "--restricted", str(tmp_path / "nowhere")],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code != 0 and "no ledger" in result.output and "intact" not in result.output


def test_the_report_never_says_intact_about_what_it_did_not_verify(shop, tmp_path):
    _, wh, restricted = shop
    path = restricted / ledger.LEDGER
    lines = path.read_text("utf-8").splitlines()
    path.write_text("\n".join(lines[:-3]) + "\n", "utf-8")
    cut = CliRunner().invoke(
        app, ["report", "--out", str(tmp_path / "cut"), "--warehouse", str(wh), "--restricted", str(restricted)]
    )
    html = (tmp_path / "cut" / "report.html").read_text("utf-8")
    assert cut.exit_code == 1 and "hash chain intact" not in html and "NOT verified" in html
    assert not json.loads((tmp_path / "cut" / "report.json").read_text("utf-8"))["pia"]["measures"]["ledger_intact"]
    path.unlink()
    missing = CliRunner().invoke(
        app, ["report", "--out", str(tmp_path / "none"), "--warehouse", str(wh), "--restricted", str(restricted)]
    )
    assert missing.exit_code == 2 and "no ledger" in missing.output and not (tmp_path / "none").exists()
    path.write_text("\n".join(lines) + "\n", "utf-8")
    whole = CliRunner().invoke(
        app, ["report", "--out", str(tmp_path / "whole"), "--warehouse", str(wh), "--restricted", str(restricted)]
    )
    facts = json.loads((tmp_path / "whole" / "report.json").read_text("utf-8"))
    assert whole.exit_code == 0 and facts["ledger"]["intact"] and facts["ledger"]["head"]["hash"] in whole.output
    assert facts["ledger"]["anchors"] == len(list(wh.glob("dataset=*/period=*/*.parquet")))


def test_retention_refuses_to_remove_a_partition_that_is_not_the_file_recorded(shop):
    from flows.closing.retention import retention as retention_flow

    _, wh, restricted = shop
    part = next(wh.glob("dataset=membership/period=*/part-0.parquet"))
    part.write_bytes(part.read_bytes() + b"\0")
    before = _files(wh)
    state = retention_flow(warehouse=str(wh), restricted=str(restricted), as_of="2040-01-01", return_state=True)
    assert state.is_failed() and "differ from the SHA-256" in state.message and "Nothing was removed" in state.message
    assert _files(wh) == before


def test_a_review_with_nothing_to_review_fails(prefect_server, tmp_path):
    from flows.closing.review import review as review_flow

    ledger.append(tmp_path, a_run())
    state = review_flow(warehouse=str(tmp_path / "wh"), restricted=str(tmp_path), return_state=True)
    assert state.is_failed() and "nothing to review" in state.message


def test_backup_restore_and_verify_are_recorded_and_restored_files_are_purged(shop, tmp_path):
    landing, wh, restricted = shop
    out = tmp_path / "restored"
    restored = CliRunner().invoke(app, ["backup", "restore", "--date", DAY1, "--out", str(out), "--restricted", str(restricted)])
    assert restored.exit_code == 0, restored.output
    entry = ledger.entries(restricted)[-1]
    assert entry["kind"] == "backup_restored" and entry["data"]["error"] is None
    assert {f["path"] for f in entry["data"]["files"]} == {str(p.resolve()) for p in out.rglob("*.csv")}
    verified = CliRunner().invoke(app, ["backup", "verify", "--restricted", str(restricted)])
    assert verified.exit_code == 0 and ledger.entries(restricted)[-1]["data"]["ok"] == 2
    wrong = CliRunner().invoke(app, ["backup", "verify", "--restricted", str(tmp_path / "none")])
    assert wrong.exit_code == 2 and "no ledger" in wrong.output  # not the restricted area the runs used
    ledger.append(tmp_path / "new", a_run())
    nothing = CliRunner().invoke(app, ["backup", "verify", "--restricted", str(tmp_path / "new")])
    assert nothing.exit_code == 1 and ledger.entries(tmp_path / "new")[-1]["data"]["nothing_to_check"]
    shutil.rmtree(restricted / "backups" / f"export_date={DAY1}")  # gone without a purge certificate
    gone = CliRunner().invoke(app, ["backup", "verify", "--restricted", str(restricted)])
    assert gone.exit_code == 1 and "no purge certificate deleted it" in " ".join(gone.output.split())
    failed = CliRunner().invoke(app, ["backup", "restore", "--date", DAY1, "--out", str(out), "--restricted", str(restricted)])
    assert failed.exit_code == 1 and ledger.entries(restricted)[-1]["data"]["error"]
    # The restored copy is raw personal data of its date: purge deletes it with the rest.
    from flows.cli.usage import landing as landing_area
    from flows.closing.purge import plan
    from flows.runtime.paths import POLICIES
    from transforms.policy import load_policies

    [day] = [
        p
        for p in plan(landing_area(landing), wh, restricted, load_policies(POLICIES), dt.date(2027, 1, 1))
        if p.export_date.isoformat() == DAY1
    ]
    assert {f["path"] for f in day.files if f["area"] == "restored"} == {f["path"] for f in entry["data"]["files"]}


def test_a_date_without_files_fails_and_the_ledger_says_nothing_was_published(prefect_server, landing, tmp_path):
    args = ["--landing", str(landing), "--warehouse", str(tmp_path / "wh"), "--restricted", str(tmp_path / "r")]
    empty = CliRunner().invoke(app, ["run", "--date", "2026-03-09", *args])
    assert empty.exit_code == 1 and "no export files for this date" in empty.output
    [run] = ledger.runs(tmp_path / "r")
    assert run["status"] == "failed" and "no export files" in run["message"]
    assert not list((tmp_path / "wh").glob("dataset=*"))
    none = CliRunner().invoke(app, ["backfill", "--start", "2026-04-01", "--end", "2026-04-03", *args])
    assert none.exit_code == 1 and "no export files from 2026-04-01 to 2026-04-03" in " ".join(none.output.split())
    assert ledger.runs(tmp_path / "r")[-1]["status"] == "failed"


def test_purge_never_certifies_a_symlinked_file_deleted_while_its_data_stays(shop, tmp_path):
    """A landing file that is a symbolic link to the data elsewhere: deleting the link would leave
    the data and certify it deleted. The date is held, saying why; its files and the data stay,
    and no certificate names them."""
    landing, wh, restricted = shop
    real = landing / "pos" / DAY1 / "pos_lines_20260301.csv"
    elsewhere = tmp_path / "elsewhere" / real.name
    elsewhere.parent.mkdir()
    shutil.move(real, elsewhere)
    real.symlink_to(elsewhere)
    data = elsewhere.read_bytes()
    where = ["--landing", str(landing), "--warehouse", str(wh), "--restricted", str(restricted)]
    planned = CliRunner().invoke(app, ["purge", "--dry-run", "--json", *where])
    [held] = [d for d in json.loads(planned.output)["dates"] if d["export_date"] == DAY1]
    assert held["decision"] == "keep" and "pos_lines_20260301.csv is a symbolic link" in held["why"], held
    done = CliRunner().invoke(app, ["purge", *where])
    assert done.exit_code == 0 and DAY1 not in done.output, done.output
    assert real.is_symlink() and elsewhere.read_bytes() == data
    certified = [e["data"] for e in ledger.entries(restricted) if e["kind"] == "deletion" and e["data"]["export_date"] == DAY1]
    assert certified == []
    assert all((landing / f).exists() for f in ("after_sales/" + DAY1, "pos/" + DAY1))  # the whole date is kept


def test_ledger_verify_checks_the_warehouse_against_the_ledger_both_ways(shop, tmp_path):
    """At 874540f verify checked the chain only: a foreign Parquet file, a deleted partition or a
    --warehouse holding none of what the ledger records still gave "ledger intact", exit 0; and one
    foreign file made `report`, `risk` and `review` crash with a traceback naming nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, wh, restricted = shop
    verify = ["ledger", "verify", "--restricted", str(restricted), "--warehouse"]
    assert CliRunner().invoke(app, [*verify, str(wh)]).exit_code == 0
    missing = CliRunner().invoke(app, [*verify, str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "no such folder, but the ledger records" in " ".join(missing.output.split())
    foreign = wh / "dataset=after_sales" / "period=2026-03-31" / "part-0.parquet"
    foreign.parent.mkdir()
    pq.write_table(pa.table({"x": [1]}), foreign)
    gone = next(wh.glob("dataset=pos/period=*/part-0.parquet"))
    gone.unlink()
    found = " ".join(CliRunner().invoke(app, [*verify, str(wh)]).output.split())
    assert "dataset=after_sales/period=2026-03-31/part-0.parquet: in the warehouse, but no ledger entry records it" in found
    assert f"the partition file {gone.relative_to(wh).as_posix()} is missing" in found and "NOT verified" in found
    risk = CliRunner().invoke(app, ["risk", "--warehouse", str(wh)])
    assert risk.exit_code == 2 and "without tuomin's metadata" in risk.output and "Traceback" not in risk.output, risk.output
    report = CliRunner().invoke(
        app, ["report", "--restricted", str(restricted), "--warehouse", str(wh), "--out", str(tmp_path / "pack")]
    )
    assert report.exit_code == 1 and "no ledger entry records it" in " ".join(report.output.split()), report.output
    assert "no ledger entry records it" in (tmp_path / "pack" / "report.html").read_text("utf-8")  # a finding in the pack
