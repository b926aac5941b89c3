"""The console script, as a user runs it."""

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import TEST_KEY


def test_generate_command(tmp_path):
    result = CliRunner().invoke(app, ["generate", "--out", str(tmp_path), "--days", "1", "--rows", "50", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "50 POS lines" in result.output
    assert (tmp_path / "pos/2026-03-01/pos_lines_20260301.csv").exists()


def test_bad_date_is_refused_before_anything_runs(tmp_path):
    result = CliRunner().invoke(app, ["run", "--date", "2026-02-30", "--warehouse", str(tmp_path)])
    assert result.exit_code == 2 and "is not a date" in result.output


def test_key_init_creates_an_owner_only_key(tmp_path):
    path = tmp_path / "secrets" / "pseudonym.key"
    assert CliRunner().invoke(app, ["key", "init", "--path", str(path)]).exit_code == 0
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    first = path.read_text()
    assert CliRunner().invoke(app, ["key", "init", "--path", str(path)]).exit_code == 0
    assert path.read_text() == first and len(first.strip()) >= 32


@pytest.mark.flow
def test_tuomin_run_end_to_end(landing, tmp_path):
    """The real console script in its own process: summary printed, exit 0, files written, and
    nothing it prints (the summary, the flow's log lines) holds a raw identifier."""
    from tests.leaks import find_leaks, raw_identifiers

    env = {**os.environ, "TUOMIN_PSEUDONYM_KEY": TEST_KEY}
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "tuomin"), "run", "--landing", str(landing),
         "--warehouse", str(tmp_path / "wh"), "--restricted", str(tmp_path / "r"), "--date", "2026-03-02"],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "published" in done.stdout and "2026-03-02" in done.stdout
    files = sorted((tmp_path / "wh").rglob("*.parquet"))
    assert [f.parent.parent.name for f in files] == ["dataset=after_sales", "dataset=membership", "dataset=pos"]
    assert all(pq.read_metadata(f).num_rows > 0 for f in files)
    assert not find_leaks([done.stdout, done.stderr], raw_identifiers(landing))


@pytest.mark.flow
def test_tuomin_run_without_a_key_fails_loudly(landing, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUOMIN_PSEUDONYM_KEY")}
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "tuomin"), "run", "--landing", str(landing),
         "--warehouse", str(tmp_path / "wh")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert "no pseudonym key" in done.stdout + done.stderr
    assert not list((tmp_path / "wh").rglob("*.parquet")) and not (tmp_path / "wh" / "_ledger").exists()
