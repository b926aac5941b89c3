"""The console of a tuomin process (flows/runtime/logging.yml): a task's "Finished in state
Completed()" is left out, everything else is shown, and the Prefect API still receives every
record. At 4064c6f `make run` printed 20 such lines among its 52."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from flows.runtime import environment

FLOW = """
import flows  # what every tuomin command imports first
from prefect import flow, task

@task
def works():
    return 1

@task(retries=0)
def fails():
    raise ValueError("the task's own failure")

@flow(name="console-check")
def checked():
    works()
    fails(return_state=True)
    return "done"

state = checked(return_state=True)
print("FLOW_RUN", state.state_details.flow_run_id, flush=True)
"""


def test_tuomins_logging_configuration_is_prefects_with_one_filter_on_the_console():
    import prefect

    theirs = yaml.safe_load((Path(prefect.__file__).parent / "logging" / "logging.yml").read_text())
    ours = yaml.safe_load(Path(environment.DEFAULTS["PREFECT_LOGGING_SETTINGS_PATH"]).read_text())
    assert ours.pop("filters") == {"completed_tasks": {"()": "flows.runtime.logfilter.CompletedTasks"}}
    assert ours["handlers"]["console"].pop("filters") == ["completed_tasks"]
    assert ours == theirs  # a Prefect upgrade that changes its own configuration fails here


def test_the_console_leaves_out_completed_tasks_and_the_api_keeps_them(prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.settings import get_current_settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING_")}  # tuomin's defaults
    env["PREFECT_API_URL"] = str(get_current_settings().api.url)
    done = subprocess.run([sys.executable, "-c", FLOW], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    console = done.stderr
    assert "Task run 'works" not in console  # its one line was "Finished in state Completed()"
    assert "Task run 'fails" in console and "the task's own failure" in console  # a failure is shown
    assert "Beginning flow run" in console and "Finished in state Completed()" in console  # the flow's own state

    flow_run_id = done.stdout.split("FLOW_RUN ")[1].split()[0]
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    messages = [log.message for log in logs]
    assert sum("Finished in state Completed()" in m for m in messages) >= 2, messages  # the task's and the flow's
