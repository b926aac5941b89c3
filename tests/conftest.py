"""Shared fixtures: a generated landing area, a test key, and one Prefect test server."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from flows.runtime import environment

environment.configure()

# No deadline anywhere: on a loaded machine a slow example is not a failure (tests assert behaviour,
# never time); CI and `make test` read this profile, a test's own @settings still adds to it.
settings.register_profile("tuomin", deadline=None)
settings.load_profile("tuomin")

TEST_KEY = "tuomin-test-key-" + "0123456789abcdef" * 3  # 64 bytes; never used outside tests
TEST_BACKUP_KEY = "tuomin-test-backup-key-" + "fedcba9876543210" * 3

if TYPE_CHECKING:
    from flows.pipeline.stages import RunSummary


@pytest.fixture(scope="session", autouse=True)
def elsewhere(tmp_path_factory):
    """Tests run from an empty directory: nothing they do lands in the checkout (a `warehouse/`,
    local demo keys), and the checkout's own demo keys (.secrets/, made by `make run`) are not
    found where a test expects no key."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)


@pytest.fixture(scope="session", autouse=True)
def pseudonym_key():
    """The test keys, and no other key source the machine may have set."""
    names = [f"TUOMIN_{kind}_KEY{suffix}" for kind in ("PSEUDONYM", "BACKUP") for suffix in ("", "_FILE", "_BLOCK")]
    saved = {k: os.environ.pop(k, None) for k in names}
    os.environ["TUOMIN_PSEUDONYM_KEY"], os.environ["TUOMIN_BACKUP_KEY"] = TEST_KEY, TEST_BACKUP_KEY
    yield TEST_KEY
    for name in ("TUOMIN_PSEUDONYM_KEY", "TUOMIN_BACKUP_KEY"):
        os.environ.pop(name)
    os.environ.update({k: v for k, v in saved.items() if v is not None})


@pytest.fixture(scope="session")
def landing(tmp_path_factory) -> Path:
    """Two days of exports (800 POS lines a day), generated once per test session."""
    from sample_data.generator import Config, generate

    out = tmp_path_factory.mktemp("landing")
    generate(out, Config(days=2, rows=800, seed=7))
    return out


def read_all(landing: Path, policy, date):
    """Every file of a source for a date, conformed, as one table (for tests on small data)."""
    import pyarrow as pa

    from flows.storage.landing import Landing, files_for, iter_csv

    area = Landing(landing)
    return pa.concat_tables([t for f in files_for(area, policy, date) for t in iter_csv(area, f, policy, [])])


PREFECT_FIXTURES = {"prefect_server", "spawns_prefect"}

# The files that take longest (measured, seconds of a full run on 2 cores), handed to workers
# first: with a file per worker, a long file started last keeps one worker busy alone at the end.
LONGEST_FIRST = (
    "test_faults.py",
    "test_dp_flow.py",
    "test_subjects.py",
    "test_operations.py",
    "test_flow.py",
    "test_itemsets.py",
    "test_scale.py",
    "test_assess.py",
    "test_cli.py",
    "test_closing.py",
    "test_risk.py",
    "test_stages.py",
)


def pytest_collection_modifyitems(items):
    """A test that needs Prefect (the session's server, directly or through a fixture such as
    `published`, or a process that starts its own) is a flow test: marked by what it uses, not by
    hand. `make test-fast` deselects them and forbids temporary servers, so one missed fails there.
    The longest files come first (the order within a file is kept)."""
    for item in items:
        if PREFECT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.flow)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (and database) for every real flow run in the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=None):
        yield


@pytest.fixture
def spawns_prefect():
    """For a test whose subprocess starts Prefect itself (`tuomin run`, `make serve`)."""


@dataclass
class Run:
    state: object
    summary: RunSummary
    warehouse: Path
    restricted: Path


def run_flow(landing: Path, root: Path, **kwargs) -> Run:
    from flows.pipeline.anonymize import anonymize_exports
    from flows.pipeline.parameters import RunParameters

    warehouse, restricted = root / "warehouse", root / "restricted"
    chosen = RunParameters(landing=str(landing), warehouse=str(warehouse), restricted=str(restricted), **kwargs)
    state = anonymize_exports(chosen, return_state=True)
    return Run(state, state.result(raise_on_failure=False), warehouse, restricted)


@pytest.fixture(scope="session")
def published(prefect_server, landing, tmp_path_factory) -> Run:
    """The sample landing anonymized once by a real flow run."""
    return run_flow(landing, tmp_path_factory.mktemp("published"))


def copy_run(run: Run, landing: Path, target: Path) -> tuple[Path, Run]:
    """A copy of a run's landing, warehouse and restricted area under `target`, and the run as if it
    had been made there (its summary's paths moved): for tests that purge, tamper or rerun on what
    one run published, without paying for a run each. Nothing in the areas names where they are."""
    import json

    copies = {}
    for name, source in (("landing", landing), ("warehouse", run.warehouse), ("restricted", run.restricted)):
        shutil.copytree(source, target / name)
        copies[str(source)] = str(target / name)
    text = run.summary.model_dump_json()
    for old, new in sorted(copies.items(), key=lambda item: -len(item[0])):
        text = text.replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
    summary = type(run.summary).model_validate_json(text)
    return target / "landing", Run(run.state, summary, target / "warehouse", target / "restricted")


@pytest.fixture
def copy_of(landing, tmp_path) -> Path:
    """An editable copy of the test landing."""
    target = tmp_path / "landing"
    shutil.copytree(landing, target)
    return target


@pytest.fixture
def policy_copy(tmp_path) -> Path:
    """An editable copy of the policies directory."""
    from flows.runtime.paths import POLICIES

    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    return target


def published_token(value: str, path: Path, domain: str = "customer") -> str:
    """A person's token as the partition at `path` publishes it (keyed to its version)."""
    import pyarrow as pa

    from flows.storage.footer import read_footer
    from transforms.pseudonymize import Pseudonymizer

    pseudonymizer = Pseudonymizer(TEST_KEY.encode())
    return pseudonymizer.unit_tokens(pa.array([pseudonymizer.token(value, domain)]), read_footer(path)["unit"])[0].as_py()


def a_run(**fields):
    """A run entry that published nothing: the least that makes a ledger exist (tests/ledger helpers)."""
    from flows.storage.entries import RunEntry

    base = dict(
        run_id="test-run",
        started_at="2026-03-03T00:00:00+00:00",
        ended_at="2026-03-03T00:00:01+00:00",
        status="up to date",
        triggered_by={"via": "test"},
        parameters={},
        policies={},
        key_id="k1-test",
    )
    return RunEntry(**base | fields)


def a_partition(**fields):
    """A partition entry as a run records one, with only what a test names filled in."""
    from flows.storage.entries import PartitionEntry

    base = dict(
        dataset="pos",
        export_date="2026-03-01",
        run_id="test-run",
        key_id="k1-test",
        rows={"read": 0, "published": 0},
        output={"path": "dataset=pos/export_date=2026-03-01/part-0.parquet"},
    )
    return PartitionEntry(**base | fields)


def key_id_of_file(path: Path, kind=None) -> str:
    """The key_id of the key in a file (the pseudonym key unless `kind` says otherwise)."""
    from flows.storage.keys import PSEUDONYM, Location

    return Location(kind or PSEUDONYM, path=path).load().key_id
