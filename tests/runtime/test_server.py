"""Prefect's temporary server dies with the process that started it (flows/runtime/server.py),
even when that process is killed outright: at 874540f every killed command left its server
running, and a caller reading the command's output waited for it for ever."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

KILLED_WITH_A_SERVER = """
import os, signal
import flows  # what every tuomin command imports first
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as client:  # no PREFECT_API_URL: Prefect starts a temporary server
    client.api_healthcheck()
print("server up", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _carrying(marker: str) -> list[str]:
    """The command lines of the processes whose environment carries `marker`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as env, open(f"/proc/{pid}/cmdline", "rb") as cmd:
                if f"TUOMIN_TEST_MARKER={marker}".encode() in env.read().split(b"\0"):
                    found.append(cmd.read().replace(b"\0", b" ").decode(errors="replace")[:200])
        except OSError:
            continue
    return found


def test_a_killed_process_leaves_no_prefect_server_behind(spawns_prefect):
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"TUOMIN_TEST_MARKER": marker}
    # capture_output: the server inherits the pipes, so this returns only once it is gone too
    killed = subprocess.run([sys.executable, "-c", KILLED_WITH_A_SERVER], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9 and "server up" in killed.stdout, killed.stderr[-2000:]
    for _ in range(300):  # the watchdog stops it within seconds; a loaded machine may take longer
        if not _carrying(marker):
            break
        time.sleep(0.1)
    assert _carrying(marker) == []
