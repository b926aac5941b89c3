"""Prefect settings tuomin needs wherever it runs (CLI, tests, make, a Dask worker): a project-local
home, no telemetry, a generous start-up timeout for the temporary server on slow CI machines, and
the `tuomin` logger (the date pipeline's, flows/pipeline/stages.py) forwarded to the run's logs in
Prefect, quietly dropped from them outside a run; the temporary server tied to its process
(flows/runtime/server.py). Values already set by the user win; `tuomin` is
added to extra loggers the user names."""

from __future__ import annotations

import logging
import os

from flows.runtime import server
from flows.runtime.paths import REPO

DEFAULTS = {
    "PREFECT_HOME": str(REPO / ".prefect"),
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}
LOGGER = "tuomin"


def configure() -> None:
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    extra = [n for n in os.environ.get("PREFECT_LOGGING_EXTRA_LOGGERS", "").split(",") if n.strip()]
    os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = ",".join(dict.fromkeys([*extra, LOGGER]))
    logging.getLogger(LOGGER).setLevel(logging.INFO)
    server.tie()  # a temporary server dies with the process that started it, even killed outright
