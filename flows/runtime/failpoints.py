"""Named points where a test can make the process fail as the world would: killed outright
(SIGKILL: no cleanup, no finally), or an OS error such as a full disk or a read-only file system
(`<point>:ENOSPC`, `<point>:EROFS`). Inert unless TUOMIN_FAILPOINT names the point."""

from __future__ import annotations

import errno
import os
import signal


def hit(name: str, path: object = None) -> None:
    wanted = os.environ.get("TUOMIN_FAILPOINT", "")
    if wanted == name:
        os.kill(os.getpid(), signal.SIGKILL)
    point, _, error = wanted.partition(":")
    if point == name and error:
        code = getattr(errno, error)
        raise OSError(code, os.strerror(code), None if path is None else str(path))


def armed(name: str) -> bool:
    """Whether TUOMIN_FAILPOINT names this point (for a failure a caller stages itself: a write
    cut off half way, then `hit`)."""
    return os.environ.get("TUOMIN_FAILPOINT", "") == name
