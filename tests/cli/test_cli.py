"""The console script, as a user runs it."""

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.storage import ledger
from tests.conftest import TEST_BACKUP_KEY, TEST_KEY, a_run


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


def test_tuomin_run_end_to_end(landing, tmp_path, prefect_server):
    """The real console script in its own process (reporting to the session's Prefect server, as
    under `make serve`): summary printed, exit 0, files written, and nothing it prints (the
    summary, the flow's log lines) holds a raw identifier."""
    from prefect.settings import PREFECT_API_URL

    from tests.leaks import find_leaks, raw_identifiers

    env = {**os.environ, "TUOMIN_PSEUDONYM_KEY": TEST_KEY, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    done = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "tuomin"),
            "run",
            "--landing",
            str(landing),
            "--warehouse",
            str(tmp_path / "wh"),
            "--restricted",
            str(tmp_path / "r"),
            "--date",
            "2026-03-02",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "published" in done.stdout and "2026-03-02" in done.stdout
    files = sorted((tmp_path / "wh").rglob("*.parquet"))
    # the units the date's rows fall in (a case in that day's file may have been opened the day before)
    assert sorted({f.parent.parent.name for f in files}) == ["dataset=after_sales", "dataset=membership", "dataset=pos"]
    assert {f.parent.name for f in files if f.parent.parent.name != "dataset=membership"} >= {"period=2026-03-02"}
    assert all(pq.read_metadata(f).num_rows > 0 for f in files)
    assert not find_leaks([done.stdout, done.stderr], raw_identifiers(landing))


USAGE = {  # what is wrong -> (arguments, environment, what the one line says)
    "no key": (["run"], {"TUOMIN_PSEUDONYM_KEY": ""}, "no pseudonym key"),
    "short key": (["run"], {"TUOMIN_PSEUDONYM_KEY": "short"}, "at least 32"),
    "no backup key": (["run"], {"TUOMIN_BACKUP_KEY": ""}, "no backup key"),
    "policies": (["run", "--policies", "nowhere"], {}, "--policies nowhere: no such directory"),
    "landing": (["run", "--landing", "nowhere"], {}, "--landing nowhere: no such directory"),
    "backfill landing": (["backfill", "--start", "2026-03-01", "--end", "2026-03-02", "--landing", "nowhere"], {}, "no such"),
    "date": (["run", "--date", "2026-02-30"], {}, "is not a date"),
    # at 874540f these two started Prefect (and its 13 s of imports) before refusing
    "dp date": (["dp", "--start", "2026-02-30"], {}, "is not a date"),
    "risk format": (["risk", "--format", "xml"], {}, "use table or json"),
    "report period": (["report", "--out", "pack", "--start", "2026-03-02", "--end", "2026-03-01"], {}, "is after --end"),
    "restricted": (["review", "--restricted", "nowhere"], {}, "no ledger"),
    "notice": (
        [
            "subjects",
            "notify",
            "--out",
            "n",
            "--closing-date",
            "下周",
            "--delete-by",
            "2020年1月1日",
            "--requests-by",
            "banana",
            "--contact",
            "",
        ],
        {},
        "not a date",
    ),
}


WITH_A_LEDGER = {"notice", "dp date", "report period"}  # refused for what they were given, not for a missing ledger


@pytest.mark.parametrize("case", sorted(USAGE))
def test_usage_errors_are_one_line_before_prefect_starts(case, landing, tmp_path):
    """The console script refuses in a line, exit 2, before Prefect is even imported (its
    temporary server is what took 15-25 s), with nothing written."""
    args, env, says = USAGE[case]
    if "--landing" not in args and args[0] in ("run", "backfill"):
        args = [*args, "--landing", str(landing)]
    if case in WITH_A_LEDGER:
        ledger.append(tmp_path / "restricted", a_run())
    env = {k: v for k, v in {**os.environ, "TUOMIN_BACKUP_KEY": TEST_BACKUP_KEY, **env}.items() if v}
    probe = (
        "import sys\nfrom flows.cli import app\nsys.argv[0] = 'tuomin'\ntry:\n    app()\nfinally:\n"
        "    print('prefect imported' if 'prefect' in sys.modules else 'prefect not imported')"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *args, "--warehouse", "wh"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 2, done.stderr
    assert done.stdout.strip() == "prefect not imported"
    assert not list(tmp_path.rglob("*.parquet")) and not (tmp_path / "n").exists()
    assert not (tmp_path / "wh").exists() and (case in WITH_A_LEDGER or not (tmp_path / "restricted").exists())


def test_an_unexpected_error_is_a_masked_traceback(tmp_path, monkeypatch):
    import flows.storage.tables

    def broken(path):
        raise RuntimeError("row 7 holds 13812345678 and 11010519491231002X")

    monkeypatch.setattr(flows.storage.tables, "read_table", broken)
    (tmp_path / "x.csv").write_text("a\n1\n")
    result = CliRunner().invoke(app, ["assess", str(tmp_path / "x.csv"), "--qi", "a", "--warehouse", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" in result.output and "RuntimeError" in result.output
    assert "13812345678" not in result.output and "11010519491231002X" not in result.output


def _console(args: list[str], **env: str) -> subprocess.CompletedProcess:
    """The console script in its own process, on the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "TUOMIN_PSEUDONYM_KEY": TEST_KEY, "PREFECT_API_URL": str(PREFECT_API_URL.value()), **env}
    tuomin = os.path.join(os.path.dirname(sys.executable), "tuomin")
    return subprocess.run([tuomin, *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("case", ["busy", "read-only"])
def test_a_run_refused_once_prefect_has_started_is_still_one_line(case, landing, tmp_path, prefect_server):
    """At 874540f a warehouse another run held, or one that could not be written, gave a
    traceback and exit 1 (README: one line, exit 2; 75 to try again later)."""
    import fcntl

    args = ["run", "--landing", str(landing), "--warehouse", str(tmp_path / "wh"), "--restricted", str(tmp_path / "r")]
    (tmp_path / "wh").mkdir()
    with (tmp_path / "wh" / ".lock").open("w") as held:
        if case == "busy":
            fcntl.flock(held, fcntl.LOCK_EX)  # what another run holds while it works
        done = _console(args, **({"TUOMIN_FAILPOINT": "lock:EROFS"} if case == "read-only" else {}))
    code, says = {"busy": (75, "another tuomin run is using"), "read-only": (2, "cannot be written (Read-only file system)")}[
        case
    ]
    printed = done.stdout + done.stderr
    assert done.returncode == code, printed[-3000:]
    assert [line for line in printed.splitlines() if line.startswith("refused:")] == [
        line for line in printed.splitlines() if says in line and line.startswith("refused:")
    ] and says in printed
    assert "Traceback" not in printed and not list((tmp_path / "wh").glob("dataset=*"))


def test_help_shows_flags_as_taking_no_value():
    """At 874540f `--help` listed `--all <bool>` (and every flag so), while `--all true` is refused."""
    import typer.main

    from flows.cli.root import app as root

    def commands(command, path=()):
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, (*path, name))

    for path in commands(typer.main.get_command(root)):
        shown = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
        assert shown.exit_code == 0 and "<bool>" not in shown.output, (path, shown.output)
