"""The scheduled deployments, served by `tuomin serve`:

anonymize-exports/daily   02:00 Shanghai time: the export dates not yet published (or changed
                          since). A backfill is the same deployment run with `start` and `end`
                          (from the Prefect UI or `prefect deployment run … -p start=… -p end=…`).
review/weekly             Mondays 03:00 Shanghai time: every published dataset re-checked as a
                          whole; a failed review is a failed flow run.
retention/daily           04:00 Shanghai time: every published partition past its dataset's
                          retention period deleted, one ledger entry each (after the day's run,
                          so that a run never republishes what retention removes the same night).
"""

from __future__ import annotations

import os

from prefect.schedules import Cron

from flows.closing.retention import retention
from flows.closing.review import review
from flows.pipeline.anonymize import anonymize_exports
from flows.pipeline.parameters import RunParameters
from flows.runtime import paths

SCHEDULE = {"cron": "0 2 * * *", "timezone": "Asia/Shanghai"}
REVIEW_SCHEDULE = {"cron": "0 3 * * 1", "timezone": "Asia/Shanghai"}
RETENTION_SCHEDULE = {"cron": "0 4 * * *", "timezone": "Asia/Shanghai"}


def _warehouse() -> str:
    return os.environ.get("TUOMIN_WAREHOUSE", str(paths.WAREHOUSE.resolve()))


def _restricted() -> str:
    return os.environ.get("TUOMIN_RESTRICTED", str(paths.RESTRICTED.resolve()))


def daily():
    """The deployment object; `tuomin serve` serves it, tests inspect and register it."""
    return anonymize_exports.to_deployment(
        name="daily",
        schedule=Cron(SCHEDULE["cron"], timezone=SCHEDULE["timezone"]),
        parameters={
            "parameters": RunParameters(
                landing=os.environ.get("TUOMIN_LANDING", str(paths.SAMPLE_LANDING)),
                warehouse=_warehouse(),
                restricted=_restricted(),
            ).model_dump(exclude_unset=True)
        },
        description="Daily: anonymize the export dates not yet published or changed since.",
        tags=["tuomin"],
    )


def weekly_review():
    return review.to_deployment(
        name="weekly",
        schedule=Cron(REVIEW_SCHEDULE["cron"], timezone=REVIEW_SCHEDULE["timezone"]),
        parameters={"warehouse": _warehouse(), "restricted": _restricted(), "trigger": "deployment review/weekly"},
        description="Weekly: re-validate every published dataset across all its partitions.",
        tags=["tuomin"],
    )


def daily_retention():
    return retention.to_deployment(
        name="daily",
        schedule=Cron(RETENTION_SCHEDULE["cron"], timezone=RETENTION_SCHEDULE["timezone"]),
        parameters={"warehouse": _warehouse(), "restricted": _restricted(), "trigger": "deployment retention/daily"},
        description="Daily: delete the published partitions past their retention period (one ledger entry each).",
        tags=["tuomin"],
    )


def deployments() -> list:
    """Everything `tuomin serve` serves."""
    return [daily(), weekly_review(), daily_retention()]
