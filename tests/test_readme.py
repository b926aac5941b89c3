"""README's shell blocks, run as written on a copy of the bundled sample: a newcomer copies them.

Every command line of every ```sh block either runs here and exits 0, or is listed in NOT_RUN with
the reason (a new block fails this test until it is one or the other). Paths that stand for the
reader's own (`/data/landing`, `/secure/…`) are replaced by a workspace's, and nothing else is
changed. The block of "Running it on real exports" runs first, in a fresh workspace, exporting
its key files as README says; every later block runs in its own copy of the state it leaves (a
`key destroy` or a `purge` does not hide what the next block shows), on the session's Prefect
server. README's SQL and Python examples: tests/e2e/test_operations.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.runtime import clock
from flows.runtime.paths import REPO

pytestmark = pytest.mark.slow  # about thirty commands, a Prefect flow run each: make test-slow

BIN = Path(sys.executable).parent
SAMPLE = REPO / "sample_data" / "landing"

# A command's beginning (after the path of .venv/bin): why it is not run here.
NOT_RUN = {
    "make ": "make's targets are what CI itself runs (make check, make test, make test-slow); make serve holds a port",
    "pre-commit install": "changes the clone's git hooks",
    "tuomin run --landing s3://": "an S3 bucket and a Dask scheduler",
    "tuomin key destroy --block NAME": "a Prefect Secret block of the reader's",
    "tuomin classify new_export.csv": "an export of the reader's",
    "tuomin assess released.csv": "a table of the reader's",
    "tuomin assess part-0.parquet": "a file and a census table of the reader's",
    "tuomin generate --out /tmp/landing --days 10 --rows 1000000": "a million rows: a benchmark's size",
}


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """Each ```sh block's line number and its commands, as the shell reads them: a line continued
    by a backslash or by an open quotation is one command with the next."""
    found, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            start, commands, pending = i + 1, [], ""
            i += 1
            while lines[i].strip() != "```":
                line = lines[i].rstrip()
                i += 1
                if line.endswith("\\"):
                    pending += line[:-1] + " "
                    continue
                pending += line
                try:
                    shlex.split(pending, comments=True)
                except ValueError:  # a quotation still open
                    pending += "\n"
                    continue
                if pending.strip():
                    commands.append(pending.strip())
                pending = ""
            found.append((start, commands))
        i += 1
    return found


def _beginning(command: str) -> str:
    return re.sub(r"^(\.venv/bin/)", "", command)


def _why_not(command: str) -> str | None:
    return next((why for start, why in NOT_RUN.items() if _beginning(command).startswith(start)), None)


def _dated(command: str) -> str:
    """`subjects notify` refuses dates already past; README's are kept while they are not, and moved
    by whole years when they are (the same days of the year)."""
    found = [dt.date(int(y), int(m), int(d)) for y, m, d in re.findall(r"(\d{4})年(\d{1,2})月(\d{1,2})日", command)]
    if not found or min(found) > clock.today():
        return command
    years = clock.today().year - min(found).year + 1
    return re.sub(r"(\d{4})年", lambda y: f"{int(y.group(1)) + years}年", command)


def _workspace(root: Path) -> dict[str, str]:
    """A landing copied from the bundled sample and the paths README's placeholders stand for."""
    shutil.copytree(SAMPLE, root / "landing")
    return {
        "/data/closing-dump": str(root / "landing"),
        "/data/landing": str(root / "landing"),
        "/data/warehouse": "warehouse",  # the command's folder: the defaults of the later commands
        "/data/restricted": "restricted",
        "/secure/": str(root / "secure") + "/",
        "/tmp/restored": str(root / "restored"),
        "/old/warehouse": "warehouse",
    }


def _as_run(command: str, places: dict[str, str], root: Path) -> str:
    for placeholder, path in places.items():
        command = command.replace(placeholder, path)
    if "--expect-head" in command:  # an earlier head of the reader's own ledger: this one's first entry
        first = json.loads((root / "restricted" / "ledger" / "ledger.jsonl").read_text().splitlines()[0])
        command = re.sub(r"--expect-head \S+", f"--expect-head {first['hash'][:12]}", command)
    command = re.sub(r"^(\.venv/bin/)?tuomin ", f"{shlex.quote(str(BIN / 'tuomin'))} ", command)
    return _dated(command)


def _run_block(commands: list[str], places: dict[str, str], root: Path, env: dict[str, str]) -> list[str]:
    """Runs the block's commands in order in `root`; returns what failed, each with its output."""
    failed = []
    for command in commands:
        if _why_not(command):
            continue
        if command.startswith("export "):
            name, value = _as_run(command.removeprefix("export ").split("#")[0].strip(), places, root).split("=", 1)
            env[name] = value
            continue
        done = subprocess.run(
            ["bash", "-c", _as_run(command, places, root)],
            cwd=root,
            env=env,
            input="y\n",  # where a command asks (key destroy), the reader answers
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            failed.append(f"{command}\n  exit {done.returncode}: {(done.stdout + done.stderr)[-1500:]}")
    return failed


def test_every_command_line_is_run_or_says_why_not():
    blocks = _blocks((REPO / "README.md").read_text())
    lines = [command for _, block in blocks for command in block]
    assert len(blocks) >= 15 and len(lines) >= 40, (len(blocks), len(lines))
    stale = [start for start in NOT_RUN if not any(_beginning(line).startswith(start) for line in lines)]
    assert not stale, f"NOT_RUN names commands README no longer has: {stale}"
    unknown = [line for line in lines if not line.startswith(("export ", "tuomin ", ".venv/bin/tuomin ")) and not _why_not(line)]
    assert not unknown, f"README commands this test cannot run and NOT_RUN does not explain: {unknown}"


def test_readme_commands_run_as_written(prefect_server, tmp_path):
    from prefect.settings import get_current_settings

    blocks = _blocks((REPO / "README.md").read_text())
    [(first_line, first)] = [(n, b) for n, b in blocks if any(c.startswith("export TUOMIN_PSEUDONYM_KEY_FILE") for c in b)]
    sample = {path: path.read_bytes() for path in SAMPLE.rglob("*") if path.is_file()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUOMIN_")}  # the keys as README exports them
    env["PREFECT_API_URL"] = str(get_current_settings().api.url)

    shop = tmp_path / "shop"
    places = _workspace(shop)
    (shop / "secure").mkdir(mode=0o700)
    for flag, name in (([], "tuomin.key"), (["--backup"], "backup.key")):  # what `make run` does for its demo keys
        subprocess.run([BIN / "tuomin", "key", "init", *flag, "--path", shop / "secure" / name], check=True, capture_output=True)
    failed = _run_block(first, places, shop, env)
    assert not failed, f"README line {first_line}:\n" + "\n".join(failed)
    assert (shop / "warehouse" / "dataset=pos").is_dir() and env["TUOMIN_PSEUDONYM_KEY_FILE"].startswith(str(shop))

    ran = 0
    for line, commands in blocks:
        if line == first_line or all(_why_not(c) for c in commands):
            continue
        copy = tmp_path / f"block-{line}"
        shutil.copytree(shop, copy, symlinks=True)
        moved = {k: v.replace(str(shop), str(copy)) for k, v in places.items()}
        here = {k: v.replace(str(shop), str(copy)) for k, v in env.items()}
        failed = _run_block(commands, moved, copy, here)
        assert not failed, f"README line {line}:\n" + "\n".join(failed)
        ran += sum(1 for c in commands if not _why_not(c))
    assert ran >= 30, ran
    assert {path: path.read_bytes() for path in SAMPLE.rglob("*") if path.is_file()} == sample, "README changed the sample"
