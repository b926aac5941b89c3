"""The scheduled deployment: anonymize-exports every day at 02:00 Shanghai time, on the dates
not yet published (or changed since). A backfill is the same deployment run with `start` and
`end` (from the Prefect UI or `prefect deployment run … -p start=… -p end=…`)."""

from __future__ import annotations

import os

from prefect.schedules import Cron

from flows import paths
from flows.anonymize import anonymize_exports

SCHEDULE = {"cron": "0 2 * * *", "timezone": "Asia/Shanghai"}


def daily():
    """The deployment object; `tuomin serve` serves it, tests inspect and register it."""
    return anonymize_exports.to_deployment(
        name="daily",
        schedule=Cron(SCHEDULE["cron"], timezone=SCHEDULE["timezone"]),
        parameters={
            "landing": os.environ.get("TUOMIN_LANDING", str(paths.SAMPLE_LANDING)),
            "warehouse": os.environ.get("TUOMIN_WAREHOUSE", str(paths.WAREHOUSE.resolve())),
            "restricted": os.environ.get("TUOMIN_RESTRICTED", str(paths.RESTRICTED.resolve())),
        },
        description="Daily: anonymize the export dates not yet published or changed since.",
        tags=["tuomin"],
    )
