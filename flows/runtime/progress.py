"""Progress of a run, for whoever shows it (the CLI's progress bar). The flow reports; nothing
listens unless the command line installed a listener. Source names and outcomes only."""

from __future__ import annotations

from collections.abc import Callable

_listener: Callable[[str, dict], None] | None = None


def listen(listener: Callable[[str, dict], None] | None) -> None:
    global _listener
    _listener = listener


def report(event: str, **info) -> None:
    if _listener is not None:
        _listener(event, info)
