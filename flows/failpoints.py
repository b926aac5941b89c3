"""Named points where a test can kill the process outright (SIGKILL: no cleanup, no finally), to
prove that a run killed there leaves the warehouse as it was. Inert unless TUOMIN_FAILPOINT names
the point."""

from __future__ import annotations

import os
import signal


def hit(name: str) -> None:
    if os.environ.get("TUOMIN_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
