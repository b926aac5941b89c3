"""Closing the shop: backups taken by the run, purge with certificates, retention, the periodic
review and the evidence pack, on real flow runs."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.closing.purge import PurgeIncomplete, carry_out, plan
from flows.closing.purge import purge as purge_flow
from flows.closing.retention import retention as retention_flow
from flows.closing.review import review as review_flow
from flows.runtime.paths import POLICIES
from flows.storage import backup, ledger
from flows.storage.files import file_sha256
from flows.storage.keys import load_backup_key
from flows.storage.landing import Landing
from flows.storage.query import connect
from tests.conftest import TEST_BACKUP_KEY, copy_run, published_token, run_flow
from tests.leaks import find_leaks, raw_identifiers
from transforms.policy import load_policies

DAY1, DAY2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
AFTER_GRACE = "2026-06-01"


@pytest.fixture
def closing(published, landing, tmp_path):
    """A copy of the landing and of what a real run published from it, free to purge, tamper with
    and review (the session's run, copied: one run for every test here)."""
    assert published.state.is_completed(), published.state.message
    return copy_run(published, landing, tmp_path / "closing")


def test_the_run_backs_up_every_file_it_reads_by_export_date(published, landing):
    """Every file the run read, encrypted under its export date (an earlier CRM snapshot, which
    the release does not read, is superseded: purge deletes it once the later one is published)."""
    entries = [e for e in ledger.entries(published.restricted) if e["kind"] == "backup"]
    assert [e["data"]["export_date"] for e in entries] == [DAY1.isoformat(), DAY2.isoformat()]
    [run] = ledger.runs(published.restricted)
    for entry in entries:
        manifest = Path(entry["data"]["manifest"])
        files = backup.verify(manifest, load_backup_key())
        assert {f["path"] for f in files} == {p for p in run["files"] if f"/{entry['data']['export_date']}/" in p}
        assert all(f["sha256"] == Landing(landing).sha256(f["path"]) for f in files)
        assert entry["data"]["key_id"] == load_backup_key().key_id
        assert TEST_BACKUP_KEY not in json.dumps(entry)


def test_no_backup_key_fails_the_run_before_anything_is_written(prefect_server, landing, tmp_path, monkeypatch):
    monkeypatch.delenv("TUOMIN_BACKUP_KEY")
    run = run_flow(landing, tmp_path)
    assert run.state.is_failed() and "no backup key" in run.state.message
    assert not list(run.warehouse.glob("dataset=*")) and not (run.restricted / "backups").exists()
    without = run_flow(landing, tmp_path / "without", backup=False)  # the engineer's explicit choice
    assert without.state.is_completed() and not (without.restricted / "backups").exists()


def test_purge_plan_holds_what_is_not_replaced(closing, tmp_path):
    landing, run = closing
    policies = load_policies(POLICIES)
    decisions = {p.export_date: p for p in plan(Landing(landing), run.warehouse, run.restricted, policies, dt.date(2026, 3, 20))}
    assert all("within its grace period" in p.held for p in decisions.values())
    # A re-export of day 1 that was not processed yet, and a tampered day-2 partition.
    pos = next((landing / "pos" / DAY1.isoformat()).glob("*.csv"))
    pos.write_bytes(pos.read_bytes() + b"\n")
    part = run.warehouse / "dataset=pos" / f"period={DAY2}" / "part-0.parquet"
    part.write_bytes(part.read_bytes()[:-1] + b"\x00")
    decisions = {
        p.export_date: p
        for p in plan(Landing(landing), run.warehouse, run.restricted, policies, dt.date.fromisoformat(AFTER_GRACE))
    }
    assert "re-export not yet processed" in decisions[DAY1].held
    assert "differs from the ledger" in decisions[DAY2].held
    assert not decisions[DAY1].files and not decisions[DAY2].files


def test_purge_holds_every_date_while_an_erasure_request_waits_for_its_batch(closing):
    """A held request's published rows are found through the raw records (a mobile leads to a
    document only there): nothing is purged until it is carried out, and `--flush` lets it go."""
    from flows.closing.subjects import Identifier, batch_of, erase

    landing, run = closing
    policies, after = load_policies(POLICIES), dt.date.fromisoformat(AFTER_GRACE)
    assert not any(p.held for p in plan(Landing(landing), run.warehouse, run.restricted, policies, after))
    who = Identifier("mobile", "13800001234")
    erase(Landing(landing), who)
    held = plan(Landing(landing), run.warehouse, run.restricted, policies, after)
    assert held and all("1 erasure request(s) held for their batch" in p.held and not p.files for p in held)
    batch, waiting = batch_of(Landing(landing), who, 5, flush=True)
    assert batch and batch.people == (who,) and waiting == 0
    assert not any(p.held for p in plan(Landing(landing), run.warehouse, run.restricted, policies, after))


def test_purge_deletes_raw_data_and_certifies_it(closing):
    landing, run = closing
    before = {
        p.relative_to(landing).as_posix(): Landing(landing).sha256(p.relative_to(landing).as_posix())
        for p in landing.glob("*/*/*.csv")
    }
    dry = CliRunner().invoke(
        app,
        [
            "purge",
            "--dry-run",
            "--landing",
            str(landing),
            "--warehouse",
            str(run.warehouse),
            "--restricted",
            str(run.restricted),
            "--as-of",
            AFTER_GRACE,
        ],
    )
    assert dry.exit_code == 0 and len(re.findall(r"│ delete ", dry.output)) == 2 and all(landing.glob("*/*/*.csv"))
    where = ["--landing", str(landing), "--warehouse", str(run.warehouse), "--restricted", str(run.restricted)]
    planned = json.loads(
        CliRunner().invoke(app, ["purge", "--dry-run", "--json", "--as-of", AFTER_GRACE, *where]).output.splitlines()[0]
    )
    state = purge_flow(
        landing=str(landing), warehouse=str(run.warehouse), restricted=str(run.restricted), as_of=AFTER_GRACE, return_state=True
    )
    assert state.is_completed(), state.message
    assert not list(landing.glob("*/*/*.csv")) and (landing / "requests" / "erasure.csv").exists()
    assert not list((run.restricted / "backups").iterdir())
    certificates = [e for e in ledger.entries(run.restricted) if e["kind"] == "deletion"]
    assert [c["data"]["export_date"] for c in certificates] == [DAY1.isoformat(), DAY2.isoformat()]
    published = ledger.partition_entries(run.restricted)
    for cert in certificates:
        data, day = cert["data"], cert["data"]["export_date"]
        landed = {f["path"]: f["sha256"] for f in data["files"] if f["area"] == "landing"}
        assert landed == {p: sha for p, sha in before.items() if f"/{day}/" in p}
        assert {f["area"] for f in data["files"]} == {"landing", "backup"}
        assert all(f["bytes"] > 0 and len(f["sha256"]) == 64 for f in data["files"])
        assert all("PIPL Art. 47" in why for why in data["why"])
        for replaced in data["replaced_by"]:
            entry = published[(replaced["dataset"], replaced["period"])]
            assert (replaced["ledger_seq"], replaced["ledger_hash"], replaced["sha256"]) == (
                entry.seq,
                entry.hash,
                entry.data.output.sha256,
            )
        # The rows of the date's files, as the partitions that replace them placed them (the
        # first day's CRM snapshot is superseded by the second's: none of its rows is placed).
        for name, rows in data["rows"].items():
            placed = sum(f.rows for (d, _), e in published.items() if d == name for f in e.data.inputs if f"/{day}/" in f.path)
            assert rows["rows_placed"] == placed and rows["partitions"] >= 1, (day, name)
            assert rows.get("superseded", False) == (name == "membership" and day == DAY1.isoformat())
    # The plan said exactly what the certificates record: the same files, the same bytes.
    assert planned["totals"] == {
        "dates_to_delete": 2,
        "dates_kept": 0,
        "files_to_delete": sum(len(c["data"]["files"]) for c in certificates),
        "bytes_to_delete": sum(c["data"]["bytes"] for c in certificates),
    }
    assert {f["path"] for d in planned["dates"] for f in d["files"]} == {
        f["path"] for c in certificates for f in c["data"]["files"]
    }
    assert ledger.verify(run.restricted, run.warehouse) == []
    # Nothing left to purge; the anonymized data is untouched and still passes review.
    again = purge_flow(
        landing=str(landing), warehouse=str(run.warehouse), restricted=str(run.restricted), as_of=AFTER_GRACE, return_state=True
    )
    assert again.result() == []
    assert review_flow(warehouse=str(run.warehouse), restricted=str(run.restricted), return_state=True).is_completed()


def test_a_file_that_cannot_be_deleted_is_certified_as_such(closing, monkeypatch):
    landing, run = closing
    item = next(
        p
        for p in plan(
            Landing(landing), run.warehouse, run.restricted, load_policies(POLICIES), dt.date.fromisoformat(AFTER_GRACE)
        )
        if p.export_date == DAY1
    )
    stuck = next(f["path"] for f in item.files if f["path"].startswith("pos/"))
    original = Landing.remove

    def remove(self, relative):
        if relative == stuck:
            raise PermissionError(13, "denied")
        original(self, relative)

    monkeypatch.setattr(Landing, "remove", remove)
    with pytest.raises(PurgeIncomplete, match=f"1 file.*{stuck}"):
        carry_out(item, Landing(landing), run.restricted, dt.date.fromisoformat(AFTER_GRACE), "test")
    [cert] = [e["data"] for e in ledger.entries(run.restricted) if e["kind"] == "deletion"]
    backups = [f["path"] for f in item.files if f["area"] == "backup"]
    assert [f["path"] for f in cert["not_deleted"]] == [stuck, *backups] and cert["not_deleted"][0]["error"] == "PermissionError"
    assert len(cert["files"]) == len(item.files) - 1 - len(backups) and (landing / stuck).exists()
    assert all(Path(b).exists() for b in backups)  # the backup is kept while the raw file is


def test_purge_refuses_a_broken_ledger(closing):
    landing, run = closing
    path = run.restricted / ledger.LEDGER
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    state = purge_flow(
        landing=str(landing), warehouse=str(run.warehouse), restricted=str(run.restricted), as_of=AFTER_GRACE, return_state=True
    )
    assert state.is_failed() and "cannot be trusted" in state.message and "nothing was changed" in state.message
    assert list(landing.glob("*/*/*.csv"))


def test_retention_removes_expired_partitions_and_says_so(closing):
    landing, run = closing
    dry = CliRunner().invoke(
        app,
        [
            "retention",
            "--dry-run",
            "--warehouse",
            str(run.warehouse),
            "--restricted",
            str(run.restricted),
            "--as-of",
            "2029-03-03",
        ],
    )
    assert dry.exit_code == 0 and "3 partition(s) past retention" in dry.output  # the snapshot, after_sales of day 1 and 2
    assert (
        CliRunner()
        .invoke(
            app, ["retention", "--warehouse", str(run.warehouse), "--restricted", str(run.restricted), "--as-of", "2029-03-03"]
        )
        .exit_code
        == 2
    )
    state = retention_flow(warehouse=str(run.warehouse), restricted=str(run.restricted), as_of="2029-03-03", return_state=True)
    assert state.is_completed(), state.message
    assert not list(run.warehouse.glob("dataset=membership/*")) and not list(run.warehouse.glob("dataset=after_sales/*"))
    assert len(list(run.warehouse.glob("dataset=pos/*/*.parquet"))) == 2  # kept ten years
    removed = [e["data"] for e in ledger.entries(run.restricted) if e["kind"] == "partition_removed"]
    assert {(r["dataset"], r["period"]) for r in removed} == {
        ("membership", DAY2.isoformat()),
        *(("after_sales", x.isoformat()) for x in (DAY1, DAY2)),
    }
    assert all("kept 3 years" in r["why"] and r["published_rows"] > 0 for r in removed)
    assert {p["dataset"] for p in ledger.partitions(run.restricted)} == {"pos"}
    views = connect(run.warehouse)  # what analysts see: the partitions view agrees with the files
    assert views.sql("SELECT DISTINCT dataset FROM partitions").fetchall() == [("pos",)]
    assert views.sql("SELECT count(*) FROM pos").fetchall()[0][0] == sum(
        p["rows"]["published"] for p in ledger.partitions(run.restricted)
    )
    assert review_flow(warehouse=str(run.warehouse), restricted=str(run.restricted), return_state=True).is_completed()


def test_review_passes_and_is_recorded(closing):
    _, run = closing
    result = CliRunner().invoke(app, ["review", "--warehouse", str(run.warehouse), "--restricted", str(run.restricted)])
    assert result.exit_code == 0, result.output
    [entry] = [e for e in ledger.entries(run.restricted) if e["kind"] == "review"]
    data = entry["data"]
    assert data["success"] and set(data["datasets"]) == {"pos", "membership", "after_sales"}
    pos = data["datasets"]["pos"]
    assert pos["partitions"] == 2 and pos["rows"] == sum(
        p["rows"]["published"] for p in ledger.partitions(run.restricted) if p["dataset"] == "pos"
    )
    checks = {c["expectation"]: c for c in pos["checks"]}
    assert checks["expect_table_to_be_k_anonymous"]["success"] and checks["expect_table_to_be_k_anonymous"]["observed"] >= 5
    assert 0 < pos["linkage"]["profile_unique_share"] < 1


def test_review_fails_loudly_on_a_changed_file_a_stray_file_or_a_changed_policy(closing, policy_copy):
    _, run = closing
    part = run.warehouse / "dataset=pos" / f"period={DAY1}" / "part-0.parquet"
    table = pq.read_table(part)
    pq.write_table(table.slice(1), part)  # one row fewer: still valid Parquet, no longer what was published
    stray = run.warehouse / "dataset=after_sales" / "period=2026-03-09" / "part-0.parquet"
    stray.parent.mkdir()
    pq.write_table(pa.table({"x": [1]}), stray)
    pos_policy = policy_copy / "pos.yaml"
    pos_policy.write_text(pos_policy.read_text("utf-8") + "\n# reviewed again\n", "utf-8")
    state = review_flow(
        warehouse=str(run.warehouse), restricted=str(run.restricted), policies=str(policy_copy), return_state=True
    )
    assert state.is_failed()
    problems = state.result(raise_on_failure=False).problems
    assert any(f"pos {DAY1}: the partition file dataset=pos/period={DAY1}/part-0.parquet differs" in p for p in problems)
    assert any("period=2026-03-09/part-0.parquet is not in the ledger" in p for p in problems)
    assert any(f"pos {DAY2}: made under another version of pos.yaml" in p for p in problems)
    [entry] = [e for e in ledger.entries(run.restricted) if e["kind"] == "review"]
    assert entry["data"]["success"] is False and len(entry["data"]["problems"]) == len(problems)
    result = CliRunner().invoke(
        app, ["review", "--warehouse", str(run.warehouse), "--restricted", str(run.restricted), "--policies", str(policy_copy)]
    )
    assert result.exit_code == 1 and "FAILED" in result.output


def test_review_reruns_the_gate_on_the_union(closing):
    """A partition that gained an identifier after publishing (and a matching ledger hash, as
    an insider with write access could forge) is caught by the gate itself."""
    _, run = closing
    part = run.warehouse / "dataset=after_sales" / f"period={DAY1}" / "part-0.parquet"
    table = pq.read_table(part)
    column = table.schema.get_field_index("topic")
    values = table["topic"].to_pylist()
    values[0] = "客户手机 13812345678 请回电"
    pq.write_table(table.set_column(column, table.schema.field(column), pa.array(values, pa.string())), part)
    entries = ledger.entries(run.restricted)
    for entry in entries:  # rewrite the chain so that only the gate can notice
        if entry["kind"] == "partition" and entry["data"]["output"]["path"] == part.relative_to(run.warehouse).as_posix():
            entry["data"]["output"]["sha256"] = file_sha256(part)
    prev = ledger.GENESIS
    for entry in entries:
        entry["prev"] = prev
        entry["hash"] = prev = ledger._digest(entry)
    (run.restricted / ledger.LEDGER).write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
    state = review_flow(warehouse=str(run.warehouse), restricted=str(run.restricted), return_state=True)
    assert state.is_failed()
    assert any(
        "after_sales (all partitions): expect_no_direct_identifiers" in p for p in state.result(raise_on_failure=False).problems
    )
    assert "13812345678" not in state.message


def test_the_weekly_review_deployment_registers(prefect_server):
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.cli.deploy import weekly_review

    weekly_review().apply()

    async def read():
        async with get_client() as client:
            return await client.read_deployment_by_name("review/weekly")

    [schedule] = asyncio.run(read()).schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 3 * * 1", "Asia/Shanghai")


def test_the_daily_retention_deployment_registers(prefect_server):
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.cli.deploy import daily_retention, deployments

    assert [d.name for d in deployments()] == ["daily", "weekly", "daily"]
    daily_retention().apply()

    async def read():
        async with get_client() as client:
            return await client.read_deployment_by_name("retention/daily")

    stored = asyncio.run(read())
    [schedule] = stored.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 4 * * *", "Asia/Shanghai")
    assert stored.parameters["trigger"] == "deployment retention/daily"
    # Every parameter of the closing flows carries its help for the run form.
    from prefect.utilities.callables import parameter_schema

    from flows.closing.erasure import erase_subject
    from flows.closing.purge import purge
    from flows.closing.retention import retention
    from flows.closing.review import review

    for closing_flow in (review, retention, purge, erase_subject):
        properties = parameter_schema(closing_flow.fn).properties
        assert properties and all(p.get("description") for p in properties.values()), closing_flow.name
    assert stored.parameter_openapi_schema["properties"]["as_of"]["description"]


def test_evidence_pack_has_the_facts_and_no_raw_value(closing, tmp_path):
    landing, run = closing
    raw = raw_identifiers(landing)
    assert review_flow(warehouse=str(run.warehouse), restricted=str(run.restricted), return_state=True).is_completed()
    purge_flow(landing=str(landing), warehouse=str(run.warehouse), restricted=str(run.restricted), as_of=AFTER_GRACE)
    key = tmp_path / "backup.key"
    key.write_text(TEST_BACKUP_KEY)
    assert (
        CliRunner()
        .invoke(
            app,
            [
                "key",
                "destroy",
                "--backup",
                "--path",
                str(key),
                "--yes",
                "--warehouse",
                str(run.warehouse),
                "--restricted",
                str(run.restricted),
            ],
        )
        .exit_code
        == 0
    )
    # A person erased after their raw data was purged: the request and what it changed are in the pack.
    pos_file = run.warehouse / "dataset=pos" / f"period={DAY1}" / "part-0.parquet"
    published_pos = set(pq.read_table(pos_file)["customer_id"].to_pylist())
    doc = next(d for d in sorted(raw["document"]) if published_token(d, pos_file) in published_pos)
    assert (
        CliRunner()
        .invoke(
            app,
            [
                "subjects",
                "erase",
                "--doc-no",
                doc,
                "--landing",
                str(landing),
                "--warehouse",
                str(run.warehouse),
                "--restricted",
                str(run.restricted),
                "--flush",  # carried out now, alone: what the pack shows of it is the point here
            ],
        )
        .exit_code
        == 0
    )
    out = tmp_path / "evidence"
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--out",
            str(out),
            "--warehouse",
            str(run.warehouse),
            "--restricted",
            str(run.restricted),
            "--start",
            DAY1.isoformat(),
            "--end",
            DAY1.isoformat(),
        ],
    )
    assert result.exit_code == 0, result.output
    html, facts = (out / "report.html").read_text("utf-8"), json.loads((out / "report.json").read_text("utf-8"))
    assert set(facts["datasets"]) == {"pos", "membership", "after_sales"}
    pos = facts["datasets"]["pos"]
    assert [p["period"] for p in pos["partitions"]] == [DAY1.isoformat()]  # the period only
    published = ledger.partition_entries(run.restricted)[("pos", DAY1.isoformat())]
    assert pos["partitions"][0]["ledger_hash"] == published.hash and pos["totals"] == {
        k: getattr(published.data.rows, k) or 0 for k in pos["totals"]
    }  # the day's files quarantined nothing
    assert {c["column"]: (c["role"], c["pipl"], c["technique"]) for c in pos["columns"]}["doc_no"][0] == "direct_identifier"
    # What a record spans, and why the CRM is published as its latest snapshot only.
    assert pos["policy"]["unit"]["record"] == "one day of txn_time"
    crm = facts["datasets"]["membership"]["policy"]["unit"]
    assert crm["record"] == "the latest snapshot" and "Only the latest snapshot is published" in html
    assert len(facts["deletions"]) == 1 and facts["deletions"][0]["export_date"] == DAY1.isoformat()
    assert len(facts["backups"]) == 1 and facts["key_events"][-1]["key"] == "backup"
    assert facts["reviews"][0]["success"] and not facts["ledger"]["problems"]
    assert facts["pia"]["measures"]["keys_destroyed"] == [f"backup {facts['key_events'][-1]['key_id']}"]
    [request] = facts["subject_requests"]
    assert request["kind"] == "erasure_requested" and any(r["dataset"] == "pos" for r in request["republished"])
    assert facts["pia"]["measures"]["partitions_republished_for_erasure"] == len(request["republished"])
    # The residual risk is `tuomin risk` on the release as it stands, with its conclusion.
    release = facts["pia"]["risks"]["release"]
    assert release["adversary"] == {"k": 5, "purchases": 3, "contacts": 3} and release["people"] > 1000
    failed = [c["name"] for c in release["checks"] if not c["passed"]]
    assert release["passed"] == (not failed) and "Residual risk against the motivated intruder" in html
    # The pseudonym key lives (only the backup key was destroyed): de-identified, not yet anonymized.
    assert "it is published as" not in html and "anonymized information once the release passes" not in html
    assert ("It is <b>de-identified (去标识化)</b> while the key lives" in html) == release["passed"], failed
    # A period that is not one, or holds no partition, writes no pack of zeros that "passes every check".
    where = ["--warehouse", str(run.warehouse), "--restricted", str(run.restricted)]
    for period, says in (
        (["--start", "2026-03-02", "--end", "2026-03-01"], "is after --end"),
        (["--start", "2027-01-01"], "no partition was published"),
    ):
        refused = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "none"), *where, *period])
        assert refused.exit_code == 2 and says in refused.output and not (tmp_path / "none").exists(), refused.output
    # The page: every section, plots embedded, the hashes it cites, and no raw value anywhere.
    for heading in (
        "Policy: what each column is",
        "Great Expectations results",
        "Backups of the raw exports",
        "Deletions of raw data",
        "Data subjects' requests and notices",
        "Key events",
        "Periodic reviews",
        "impact assessment (PIPL Art. 55, 56)",
    ):
        assert heading in html, heading
    assert (
        len(re.findall(r'<img src="data:image/png;base64,', html)) == 6
    )  # 3 plots for each dataset with a unit in the period (the snapshot is the 2nd day)
    assert published.hash[:16] in html and facts["deletions"][0]["ledger_hash"][:16] in html
    assert request["ledger_hash"][:16] in html
    assert not re.search(r'(src|href)="(?!data:)', html)  # self-contained
    leaks = find_leaks([html, json.dumps(facts, ensure_ascii=False)], raw)
    assert not leaks, sorted(leaks)[:5]


def test_a_unit_past_retention_is_never_published_again(landing, tmp_path, monkeypatch):
    """A unit whose period ended longer ago than its dataset keeps anonymized data is not
    published by any run (membership and after-sales are kept 3 years, POS 10)."""
    from flows.pipeline import stages
    from flows.pipeline.executor import Inline
    from flows.pipeline.run import Run, select

    monkeypatch.setattr(stages, "today", lambda: dt.date(2029, 3, 3))
    run = Run.start(str(landing), str(tmp_path / "w"), str(tmp_path / "r"), str(POLICIES), False, "test", backup=False)
    job = run.job()
    job.clear_stale_work()
    selection, _ = select(run, None, None, None, True)
    done = stages.process_release(run, job, selection, Inline())
    assert sorted(done.published) == ["pos"]
    assert sorted(done.past_retention) == ["after_sales 2026-03-01", "after_sales 2026-03-02", "membership 2026-03-02"]
    assert sorted(p.parent.name for p in (tmp_path / "w").glob("dataset=*/period=*/*.parquet")) == [
        "period=2026-03-01",
        "period=2026-03-02",
    ]


def test_the_evidence_pack_renders_offline_in_a_browser_with_every_section(closing, tmp_path):
    """The pack as the compliance officer opens it: a real headless Chromium, no network, a
    screenshot taken. It has its runs, the erasure list, the notices word for word, the PIA's
    recipients and sign-off; its header names the dates it covers; its plots are full-size PNGs
    embedded in the page (nothing fetched); no raw value anywhere."""
    import base64
    import io
    import shutil
    import subprocess

    import matplotlib.image

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    from flows.runtime.clock import today as clock_today

    landing, run = closing
    today = clock_today()
    told = CliRunner().invoke(
        app,
        [
            "subjects", "notify", "--out", str(tmp_path / "notices"),
            "--closing-date", (today + dt.timedelta(days=60)).isoformat(),
            "--delete-by", (today + dt.timedelta(days=90)).isoformat(),
            "--requests-by", (today + dt.timedelta(days=30)).isoformat(),
            "--contact", "客服热线 400-000-0000", "--landing", str(landing),
            "--warehouse", str(run.warehouse), "--restricted", str(run.restricted),
        ],
    )  # fmt: skip
    assert told.exit_code == 0, told.output
    out = tmp_path / "pack"
    made = CliRunner().invoke(
        app, ["report", "--out", str(out), "--warehouse", str(run.warehouse), "--restricted", str(run.restricted)]
    )
    assert made.exit_code == 0, made.output
    page = (out / "report.html").read_text("utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing to fetch: it opens offline
    shot = tmp_path / "report.png"
    offline = ["--headless=new", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND"]
    common = [browser, *offline, "--window-size=1280,6000", f"--user-data-dir={tmp_path / 'profile'}"]
    shown = subprocess.run([*common, f"--screenshot={shot}", (out / "report.html").as_uri()], capture_output=True, timeout=120)
    assert shown.returncode == 0 and shot.is_file(), shown.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[1] == 1280 and pixels.std() > 0.05  # a page, not a blank
    dom = subprocess.run([*common, "--dump-dom", (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    for heading in ("Runs", "The erasure list", "Closure notices", "4. Recipients and access", "5. Sign-off"):
        assert heading in text, heading
    assert "(first)" not in text and f"Export dates {DAY1.isoformat()} to {DAY2.isoformat()}" in " ".join(text.split())
    assert "停止营业" in text  # what the members were told, word for word
    plots = re.findall(r'src="data:image/png;base64,([^"]+)"', dom.stdout)
    assert len(plots) >= 3
    for plot in plots:
        assert matplotlib.image.imread(io.BytesIO(base64.b64decode(plot))).shape[1] >= 600  # legible, not a thumbnail
    raw = raw_identifiers(landing)
    assert not find_leaks([page, dom.stdout], raw)


def test_data_docs_open_offline_with_readable_names_and_sentences(published, tmp_path):
    """GX's Data Docs with every asset local (fetched once from the npm registry, pinned and
    checked): opened in headless Chromium with no network, the index's table is drawn (its
    JavaScript ran), suites are named by what they check, the custom expectations read as
    sentences, and a validation names its data asset."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    built = CliRunner().invoke(
        app,
        ["docs", "--warehouse", str(published.warehouse), "--restricted", str(published.restricted), "--out", str(tmp_path)],
    )
    assert built.exit_code == 0, built.output
    site = Path(re.search(r"Data Docs: file://(\S+)", built.output).group(1)).parent
    pages = list(site.rglob("*.html"))
    assert pages and not [p for p in pages if re.search(r"""(src|href)=["']https?://""", p.read_text("utf-8"))]
    styles = [p for p in site.rglob("*.css") if "/vendor/" not in p.as_posix()]  # GX's own: dark mode's logo was on S3
    assert styles and not [p for p in styles if re.search(r"""url\(["']?https?://""", p.read_text("utf-8"))]
    offline = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND"]
    offline += [f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--window-size=1280,1600"]
    index = subprocess.run([*offline, "--dump-dom", (site / "index.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert re.search(r"pos-each-batch-[0-9a-f]{8}", index.stdout), "the index table was not drawn: its scripts did not load"
    assert re.search(r"release-person-level-[0-9a-f]{8}", index.stdout)
    # The page's scripts run from file:// (an `integrity` attribute there stops them): a page of the
    # test's own, beside the index, loads the index's scripts and says what they defined.
    scripts = re.findall(r"<script[^>]*\bsrc=[^>]*></script>", (site / "index.html").read_text("utf-8"))
    probe = site / "probe.html"
    probe.write_text(
        "<html><head>" + "".join(scripts) + "</head><body><script>document.body.setAttribute('data-defined', ["
        "typeof jQuery, typeof jQuery.fn.collapse, typeof jQuery.fn.bootstrapTable, typeof Popper].join())"
        "</script></body></html>",
        "utf-8",
    )
    ran = subprocess.run([*offline, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-defined="function,function,function,function"' in ran.stdout, ran.stdout[-2000:]
    probe.unlink()
    shot = tmp_path / "docs.png"
    subprocess.run([*offline, f"--screenshot={shot}", (site / "index.html").as_uri()], capture_output=True, timeout=120)
    import matplotlib.image

    assert matplotlib.image.imread(shot).std() > 0.05
    suites = "".join(p.read_text("utf-8") for p in (site / "expectations").glob("*.html"))
    assert "Every group of records alike on" in suites and "No value of" in suites and "(k, k^m)-anonymity" in suites
    assert "(**" not in suites  # no expectation rendered as its raw arguments
    validations = "".join(p.read_text("utf-8") for p in (site / "validations").rglob("*.html"))
    assert "Data asset: None" not in validations and "Data asset: pos" in validations
