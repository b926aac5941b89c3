"""Prefect's temporary server, tied to the process that started it.

Without PREFECT_API_URL, Prefect starts a temporary API server as a child process and stops it at
exit (atexit). A process killed outright (SIGKILL, the OOM killer) runs no atexit, so the server
would be left running, holding its port, its database and the pipes of whoever started tuomin.
`tie()` makes every such server die with its parent, however the parent ends: when Prefect has
started one, a watchdog process is started beside it, holding the read end of a pipe whose only
write end this process holds. The kernel closes that end when this process ends, for any reason;
the watchdog reads end-of-file, stops the server (SIGTERM, then SIGKILL) and exits.

The hook is installed on import of Prefect's server module, so commands that never start a server
pay nothing for it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import subprocess
import sys
from types import ModuleType

SERVER_MODULE = "prefect.server.api.server"
APP = "prefect.server.api.server:create_app"  # in the server's command line: what the watchdog checks before a kill

WATCHDOG = f"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the watchdog outlives it
sys.stdin.buffer.read()  # end-of-file: the process that started the server has ended
pid = int(sys.argv[1])
def alive():
    try:
        with open(f"/proc/{{pid}}/cmdline", "rb") as fh:
            return {APP!r}.encode() in fh.read()  # not a process that took over the number
    except OSError:
        return False
for sig in (signal.SIGTERM, signal.SIGKILL):
    if not alive():
        break
    os.kill(pid, sig)
    for _ in range(50):
        if not alive():
            break
        time.sleep(0.1)
"""


def watch(pid: int) -> subprocess.Popen:
    """A watchdog that stops process `pid` once this process has ended (see the module's docstring)."""
    read, write = os.pipe()  # both ends not inheritable: no other child of ours holds the write end
    try:
        return subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(pid)],
            stdin=read,
            stdout=subprocess.DEVNULL,  # never the caller's pipes: a reader of our output sees its end
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outside the terminal's process group
        )
    finally:
        os.close(read)
        _ENDS.append(write)  # kept open for as long as this process lives


_ENDS: list[int] = []


def _tied(module: ModuleType) -> None:
    server = module.SubprocessASGIServer
    start = server.start

    def start_tied(self, timeout: int | None = None) -> None:
        start(self, timeout)
        process = self.server_process
        if process is not None and getattr(self, "_tuomin_watched", None) != process.pid:
            watch(process.pid)
            self._tuomin_watched = process.pid

    server.start = start_tied


class _Hook(importlib.abc.MetaPathFinder):
    """Ties the server class once Prefect's server module has been executed."""

    def find_spec(self, name, path, target=None):
        if name != SERVER_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            _tied(module)

        loader.exec_module = exec_module
        return spec


def tie() -> None:
    """Make every temporary Prefect server this process starts die with it (idempotent)."""
    if SERVER_MODULE in sys.modules:
        module = sys.modules[SERVER_MODULE]
        if not getattr(module.SubprocessASGIServer.start, "__name__", "") == "start_tied":
            _tied(module)
    elif not any(isinstance(f, _Hook) for f in sys.meta_path):
        sys.meta_path.insert(0, _Hook())
