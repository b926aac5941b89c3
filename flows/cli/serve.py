"""`tuomin serve`: the scheduled deployments (flows/cli/deploy.py) served to the Prefect server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.root import (
    app,
    console,
)


@app.command()
def serve(
    pid_file: Annotated[
        Path | None, typer.Option(help="Write this process's id here while serving (`make stop` reads it).")
    ] = None,
) -> None:
    """Serve the daily anonymize, weekly review and daily retention deployments to the Prefect server.

    The daily run is at 02:00, the review on Mondays at 03:00, retention daily at 04:00, Asia/Shanghai; the server is the one
    in PREFECT_API_URL (`make serve` starts it first). Runs until interrupted (Ctrl-C or SIGTERM);
    on the way out the schedules are paused on the server."""
    import asyncio
    import threading
    import time

    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    from flows.cli.deploy import RETENTION_SCHEDULE, REVIEW_SCHEDULE, SCHEDULE, deployments

    runner = Runner(pause_on_shutdown=True)
    for deployment in deployments():
        runner.add_deployment(deployment)

    def announce() -> None:
        # Only a started runner stops gracefully on SIGTERM (pausing the schedules): the id is
        # written for `make stop` from then on.
        while not runner.started:
            time.sleep(0.1)
        if pid_file is not None:
            pid_file.parent.mkdir(parents=True, exist_ok=True)
            pid_file.write_text(f"{os.getpid()}\n")
        console.print(
            f"serving anonymize-exports/daily ({SCHEDULE['cron']}), review/weekly ({REVIEW_SCHEDULE['cron']}) and "
            f"retention/daily ({RETENTION_SCHEDULE['cron']}), {SCHEDULE['timezone']}; Ctrl-C stops"
        )

    threading.Thread(target=announce, daemon=True).start()
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        pass
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
    console.print("stopped serving")
