"""The warehouse's file modes, whatever the umask of whoever runs tuomin: what is published is
the analysts' group's to read and no one else's; the restricted area (the ledger, the GX project,
quarantine, backups) and the staging of files that have not passed the gate are the owner's alone.
At 874540f, umask 000 left the warehouse world-writable and 077 left it unreadable to analysts,
and `restricted/gx` followed the umask (0755/0644)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY

TUOMIN = str(Path(sys.executable).parent / "tuomin")


def _modes(root: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"folders": set(), "files": set()}
    for path in [root, *(p for p in root.rglob("*") if ".staging" not in p.parts)]:
        found["folders" if path.is_dir() else "files"].add(oct(stat.S_IMODE(path.stat().st_mode)))
    return found


@pytest.mark.parametrize("umask", [0o000, pytest.param(0o077, marks=pytest.mark.slow)])
def test_published_files_are_the_groups_to_read_and_restricted_ones_the_owners_whatever_the_umask(
    prefect_server, landing, tmp_path, umask
):
    from prefect.settings import get_current_settings

    env = {**os.environ, "TUOMIN_PSEUDONYM_KEY": TEST_KEY, "PREFECT_API_URL": str(get_current_settings().api.url)}
    args = ["run", "--landing", str(landing), "--warehouse", str(tmp_path / "wh"), "--restricted", str(tmp_path / "r")]
    done = subprocess.run(
        [TUOMIN, *args], env=env, capture_output=True, text=True, timeout=600, preexec_fn=lambda: os.umask(umask)
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    published = _modes(tmp_path / "wh")
    assert published["folders"] == {"0o750"} and published["files"] == {"0o640", "0o600"}  # 0600: the lock file
    assert oct(stat.S_IMODE((tmp_path / "wh" / ".lock").stat().st_mode)) == "0o600"
    assert oct(stat.S_IMODE((tmp_path / "wh" / ".staging").stat().st_mode)) == "0o700"  # what a gate may still refuse
    assert list((tmp_path / "wh").glob("dataset=*/*/*.parquet"))
    restricted = _modes(tmp_path / "r")
    assert restricted == {"folders": {"0o700"}, "files": {"0o600"}}
    assert list((tmp_path / "r" / "gx").rglob("*.json"))  # the GX project is there, and owner-only
