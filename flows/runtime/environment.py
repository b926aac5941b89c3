"""Prefect settings tuomin needs wherever it runs (CLI, tests, make): a project-local home, no
telemetry, and a generous start-up timeout for the temporary server on slow CI machines. Values
already set by the user win."""

from __future__ import annotations

import os

from flows.runtime.paths import REPO

DEFAULTS = {
    "PREFECT_HOME": str(REPO / ".prefect"),
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
}


def configure() -> None:
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
