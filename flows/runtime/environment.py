"""What tuomin needs wherever it runs (CLI, tests, make, a Dask worker), set before Prefect is
imported:

- Prefect settings: a project-local home, no telemetry, a generous start-up timeout for the
  temporary server on slow CI machines, Prefect's logging configuration with a quieter console
  (flows/runtime/logging.yml) (values already set by the user win);
- the `tuomin` logger (the date pipeline's, flows/pipeline/stages.py) forwarded to the run's logs
  in Prefect (added to the extra loggers the user names), quietly dropped outside a run;
- the temporary server tied to this process (flows/runtime/server.py);
- a private umask (077) whatever the caller's: the restricted area, the GX project and temporary
  files are the owner's alone without each writer remembering it; the warehouse and the data
  dictionary open up to the analysts' group explicitly (flows/storage/warehouse.py).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flows.runtime import server
from flows.runtime.paths import REPO

DEFAULTS = {
    "PREFECT_HOME": str(REPO / ".prefect"),
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "PREFECT_LOGGING_SETTINGS_PATH": str(Path(__file__).with_name("logging.yml")),  # a quieter console
}
LOGGER = "tuomin"


PRIVATE = 0o077  # the umask: what tuomin writes is its owner's alone unless it says otherwise


def configure() -> None:
    os.umask(PRIVATE)  # the warehouse and the dictionary open up to the analysts' group explicitly
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    extra = [n for n in os.environ.get("PREFECT_LOGGING_EXTRA_LOGGERS", "").split(",") if n.strip()]
    os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = ",".join(dict.fromkeys([*extra, LOGGER]))
    logging.getLogger(LOGGER).setLevel(logging.INFO)
    server.tie()  # a temporary server dies with the process that started it, even killed outright
