"""Key rotation and destruction, and the ledger that records them."""

import json

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.storage import ledger
from flows.storage.keys import init_demo_key
from tests.conftest import TEST_KEY, a_partition, a_run, key_id_of_file
from transforms.pseudonymize import Pseudonymizer


def _published_with(warehouse, key_id: str) -> None:
    """A warehouse whose ledger records a partition made with this key (the key commands check)."""
    ledger.append(warehouse, a_partition(key_id=key_id))


def test_rotation_gives_a_new_key_id_and_is_recorded(tmp_path):
    key = tmp_path / "s" / "k.key"
    init_demo_key(key)
    before, text = key_id_of_file(key), key.read_text()
    _published_with(tmp_path / "wh", before)
    result = CliRunner().invoke(
        app, ["key", "rotate", "--warehouse", str(tmp_path / "w"), "--path", str(key), "--restricted", str(tmp_path / "wh")]
    )
    assert result.exit_code == 0, result.output
    after = key_id_of_file(key)
    assert after != before and key.read_text() != text and oct(key.stat().st_mode & 0o777) == "0o600"
    entry = ledger.entries(tmp_path / "wh")[-1]
    assert entry["kind"] == "key_rotated" and entry["data"]["old_key_id"] == before and entry["data"]["new_key_id"] == after
    assert text.strip() not in (tmp_path / "wh" / ledger.LEDGER).read_text()


def test_destroying_the_key_deletes_it_and_records_it(tmp_path):
    key = tmp_path / "s" / "k.key"
    init_demo_key(key)
    key_id, text = key_id_of_file(key), key.read_text().strip()
    _published_with(tmp_path / "wh", key_id)
    result = CliRunner().invoke(
        app,
        ["key", "destroy", "--warehouse", str(tmp_path / "w"), "--path", str(key), "--restricted", str(tmp_path / "wh"), "--yes"],
    )
    assert result.exit_code == 0, result.output
    assert not key.exists()
    entry = ledger.entries(tmp_path / "wh")[-1]
    assert entry["kind"] == "key_destroyed" and entry["data"]["key_id"] == key_id
    assert "PIPL Art. 73" in entry["data"]["effect"] and text not in json.dumps(entry)
    # Without confirmation nothing happens.
    init_demo_key(key)
    _published_with(tmp_path / "wh", key_id_of_file(key))
    result = CliRunner().invoke(
        app,
        ["key", "destroy", "--warehouse", str(tmp_path / "w"), "--path", str(key), "--restricted", str(tmp_path / "wh")],
        input="n\n",
    )
    assert result.exit_code == 1 and key.exists()


def test_a_run_without_the_destroyed_key_fails(tmp_path, monkeypatch):
    from flows.storage.keys import load_pseudonymizer
    from transforms.pseudonymize import PseudonymKeyError

    key = tmp_path / "k.key"
    init_demo_key(key)
    _published_with(tmp_path / "wh", key_id_of_file(key))
    assert (
        CliRunner()
        .invoke(
            app,
            [
                "key",
                "destroy",
                "--warehouse",
                str(tmp_path / "w"),
                "--path",
                str(key),
                "--restricted",
                str(tmp_path / "wh"),
                "--yes",
            ],
        )
        .exit_code
        == 0
    )
    monkeypatch.delenv("TUOMIN_PSEUDONYM_KEY")
    monkeypatch.setenv("TUOMIN_PSEUDONYM_KEY_FILE", str(key))
    with pytest.raises(PseudonymKeyError, match="no key file there"):
        load_pseudonymizer()


def test_the_ledger_detects_edits_and_deletions(tmp_path):
    for i in range(4):
        ledger.append(tmp_path, a_run(run_id=f"run-{i}"))
    assert ledger.verify(tmp_path) == []
    path = tmp_path / ledger.LEDGER
    lines = path.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["data"]["n"] = 99
    path.write_text("\n".join([lines[0], json.dumps(edited), *lines[2:]]) + "\n")
    assert any("entry 2" in p and "edited" in p for p in ledger.verify(tmp_path))
    path.write_text("\n".join([lines[0], *lines[2:]]) + "\n")  # entry 2 deleted
    assert any("deleted or moved" in p for p in ledger.verify(tmp_path))


def test_destroying_a_secret_block(prefect_server, tmp_path):
    from prefect.blocks.system import Secret

    Secret(value="block-key-" + "x" * 40).save("tuomin-doomed-key", overwrite=True)
    _published_with(tmp_path, Pseudonymizer(("block-key-" + "x" * 40).encode()).key_id)
    result = CliRunner().invoke(
        app,
        [
            "key",
            "destroy",
            "--warehouse",
            str(tmp_path / "w"),
            "--block",
            "tuomin-doomed-key",
            "--restricted",
            str(tmp_path),
            "--yes",
        ],
    )
    assert result.exit_code == 0, result.output
    with pytest.raises(ValueError):
        Secret.load("tuomin-doomed-key")
    assert ledger.entries(tmp_path)[-1]["data"]["where"] == "Prefect Secret block 'tuomin-doomed-key'"


def test_the_test_key_never_reaches_the_ledger(published):
    assert TEST_KEY not in (published.restricted / ledger.LEDGER).read_text()


def test_the_backup_key_is_separate_and_fails_closed(tmp_path, monkeypatch):
    from flows.storage.backup import BackupError
    from flows.storage.keys import BACKUP, load_backup_key

    for suffix in ("", "_FILE", "_BLOCK"):
        monkeypatch.delenv(f"TUOMIN_BACKUP_KEY{suffix}", raising=False)
    with pytest.raises(BackupError, match=r"no backup key: set \$TUOMIN_BACKUP_KEY.*tuomin key init --backup"):
        load_backup_key()
    key = tmp_path / "backup.key"
    result = CliRunner().invoke(app, ["key", "init", "--backup", "--path", str(key)])
    assert result.exit_code == 0 and "demo backup key" in result.output
    monkeypatch.setenv("TUOMIN_BACKUP_KEY_FILE", str(key))
    assert load_backup_key().key_id == key_id_of_file(key, BACKUP) and key.read_text().strip() != TEST_KEY
    monkeypatch.setenv("TUOMIN_BACKUP_KEY", "short")
    with pytest.raises(BackupError, match=r"\$TUOMIN_BACKUP_KEY: the backup key has 5 bytes"):
        load_backup_key()


def test_a_key_other_than_the_warehouses_is_refused_unless_rotating(tmp_path, monkeypatch):
    """The key_id of the latest published partition (or of a recorded rotation) is the
    warehouse's key: another key is refused before anything runs, naming both key_ids and never
    the key; --rotate-key records the change and lets it through."""
    from flows.pipeline.run import Run
    from flows.runtime.paths import POLICIES
    from transforms.pseudonymize import PseudonymKeyError

    landing, warehouse, restricted = tmp_path / "landing", tmp_path / "wh", tmp_path / "r"
    landing.mkdir()
    ours = Pseudonymizer(TEST_KEY.encode()).key_id
    ledger.append(restricted, a_partition(key_id=ours))

    def start(rotate_key=False):
        return Run.start(
            str(landing), str(warehouse), str(restricted), str(POLICIES), False, "test", backup=False, rotate_key=rotate_key
        )

    assert start().pseudonymizer.key_id == ours  # the same key: no question asked
    other = "another-key-" + "x" * 40
    monkeypatch.setenv("TUOMIN_PSEUDONYM_KEY", other)
    theirs = Pseudonymizer(other.encode()).key_id
    with pytest.raises(PseudonymKeyError, match=f"{theirs} is not the key .* published with \\({ours}, ledger entry 1\\)") as err:
        start()
    assert other not in str(err.value) and len(ledger.entries(restricted)) == 1
    assert start(rotate_key=True).pseudonymizer.key_id == theirs
    rotated = ledger.entries(restricted)[-1]
    assert rotated["kind"] == "key_rotated" and (rotated["data"]["old_key_id"], rotated["data"]["new_key_id"]) == (ours, theirs)
    assert start().pseudonymizer.key_id == theirs  # the rotation is the warehouse's key from now on
    monkeypatch.setenv("TUOMIN_PSEUDONYM_KEY", TEST_KEY)
    with pytest.raises(PseudonymKeyError, match=f"{ours} is not the key"):
        start()  # and the old key is now the wrong one


def test_a_flow_run_with_another_key_fails_and_changes_nothing(published, landing, monkeypatch):
    from flows.pipeline.anonymize import anonymize_exports
    from flows.pipeline.parameters import RunParameters

    before = (published.restricted / ledger.LEDGER).read_bytes()
    files = sorted(p for p in published.warehouse.rglob("*.parquet"))
    stamps = [p.stat().st_mtime_ns for p in files]
    monkeypatch.setenv("TUOMIN_PSEUDONYM_KEY", "another-key-" + "y" * 40)
    state = anonymize_exports(
        RunParameters(landing=str(landing), warehouse=str(published.warehouse), restricted=str(published.restricted), every=True),
        return_state=True,
    )
    assert state.is_failed() and "is not the key" in state.message
    assert (published.restricted / ledger.LEDGER).read_bytes() == before
    assert [p.stat().st_mtime_ns for p in files] == stamps


def test_a_key_is_not_rotated_or_destroyed_while_a_run_holds_the_warehouse(tmp_path):
    """A run publishes under the key it started with: a rotation (or destruction) while it holds
    the warehouse is refused in one line, and the key and the ledger are as they were."""
    import fcntl

    key = tmp_path / "s" / "k.key"
    init_demo_key(key)
    before, text = key_id_of_file(key), key.read_text()
    _published_with(tmp_path / "wh", before)
    entries = len(ledger.entries(tmp_path / "wh"))
    (tmp_path / "w").mkdir()
    with (tmp_path / "w" / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a run holds while it works
        for command in (["rotate"], ["destroy", "--yes"]):
            where = ["--warehouse", str(tmp_path / "w"), "--path", str(key), "--restricted", str(tmp_path / "wh")]
            result = CliRunner().invoke(app, ["key", *command, *where])
            # busy: one line, and the exit code a scheduler retries on (75, EX_TEMPFAIL), as a second run gets
            assert result.exit_code == 75 and len(result.output.strip().splitlines()) == 1, result.output
            assert "another tuomin run is using" in result.output
    assert key.read_text() == text and len(ledger.entries(tmp_path / "wh")) == entries
