"""Data subjects' requests on generated data: `tuomin subjects lookup` and `tuomin subjects erase`,
with identifiers written in the spec's other shapes, and a person the exports do not hold."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import shutil
import stat
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from expectations.suite import build_docs
from flows.cli import app
from flows.runtime.clock import today
from flows.runtime.paths import GX_PROJECT
from flows.storage import intents, ledger
from flows.storage.entries import KeyDestroyedEntry
from flows.storage.footer import read_footer
from tests.conftest import TEST_KEY, a_run, published_token, run_flow
from tests.leaks import find_leaks, norm, raw_identifiers, read_landing
from transforms import shuffle
from transforms.pseudonymize import Pseudonymizer

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ABSENT_ID = "11010519491231002X"  # a valid resident ID nobody in the sample holds


@pytest.fixture(scope="module")
def person(landing):
    """A member with purchases and after-sales cases, and how many records each identifier names."""
    raw = read_landing(landing)
    crm, pos, cases = raw["membership"], raw["pos"], raw["after_sales"]

    def mobile_of(v: str) -> str:
        return re.sub(r"^86", "", norm(v))

    for _, m in crm.drop_duplicates("会员编号").iterrows():
        doc, mobile, member = norm(m["证件号码"]), mobile_of(m["手机号码"]), m["会员编号"]
        if mobile and (cases["member_no"] == member).any() and (pos["doc_no"].map(norm) == doc).any():
            expected = {
                "--doc-no": ((crm["证件号码"].map(norm) == doc).sum(), (pos["doc_no"].map(norm) == doc).sum()),
                "--mobile": ((crm["手机号码"].map(mobile_of) == mobile).sum(), (pos["mobile"].map(mobile_of) == mobile).sum()),
                "--member-no": ((crm["会员编号"] == member).sum(), (pos["member_no"] == member).sum()),
            }
            return {"doc_no": doc, "mobile": mobile, "member_no": member, "expected": expected}
    pytest.fail("the sample has no member with both purchases and cases")


def _vault_of(warehouse):
    """The restricted area the tests keep beside a warehouse (the ledger, GX results)."""
    return warehouse.parent / "vault"


def _warehouse(path):
    """An existing warehouse (its restricted area has a ledger): what the subjects commands record in."""
    ledger.append(_vault_of(path), a_run())
    return path


def _lookup(landing, tmp_path, option: str, value: str):
    out = tmp_path / "out"
    _warehouse(tmp_path / "wh")
    result = CliRunner().invoke(
        app,
        [
            "subjects",
            "lookup",
            option,
            value,
            "--out",
            str(out),
            "--landing",
            str(landing),
            "--warehouse",
            str(tmp_path / "wh"),
            "--restricted",
            str(_vault_of(tmp_path / "wh")),
        ],
    )
    return result, sorted(out.glob("*.csv")) if out.exists() else []


def _records(path) -> dict[str, set]:
    rows = list(csv.DictReader(path.open(encoding="utf-8-sig")))
    found: dict[str, set] = {}
    for r in rows:
        found.setdefault(r["来源"], set()).add((r["文件"], r["行号"]))
    return found


@pytest.mark.parametrize(
    "option, shape",
    [
        ("--doc-no", lambda p: p["doc_no"].lower().translate(FULL_WIDTH)),
        ("--mobile", lambda p: f"+86 {p['mobile'][:3]} {p['mobile'][3:7]} {p['mobile'][7:]}"),
        ("--member-no", lambda p: p["member_no"].lower()),
    ],
)
def test_lookup_finds_every_record_of_the_person_in_any_shape(landing, tmp_path, person, option, shape):
    result, files = _lookup(landing, tmp_path, option, shape(person))
    assert result.exit_code == 0, result.output
    [path] = files
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    found = _records(path)
    assert set(found) == {"membership", "pos", "after_sales"}  # cases found through member numbers and receipts
    assert (len(found["membership"]), len(found["pos"])) == person["expected"][option]
    rows = list(csv.DictReader(path.open(encoding="utf-8-sig")))
    assert {"证件号码", "姓名", "doc_no", "description"} <= {r["字段"] for r in rows}  # the exports' own headers
    assert any(norm(r["内容"]) == person["doc_no"] for r in rows if r["字段"] == "证件号码")
    # The ledger knows a request was made, by a keyed hash: never the identifier.
    [entry] = [e for e in ledger.entries(_vault_of(tmp_path / "wh")) if e["kind"] == "subject_lookup"]
    assert entry["data"]["records"] == sum(len(v) for v in found.values())
    ledger_text = (_vault_of(tmp_path / "wh") / ledger.LEDGER).read_text()
    assert not any(v in norm(ledger_text) for v in (person["doc_no"], person["mobile"], person["member_no"]))


def test_requests_about_one_identifier_in_two_shapes_share_one_ledger_hash(landing, tmp_path, person):
    """The ledger can show two requests concern the same identifier without holding it."""
    hashes = []
    for n, value in enumerate((person["doc_no"], person["doc_no"].lower().translate(FULL_WIDTH))):
        _lookup(landing, tmp_path / str(n), "--doc-no", value)
        [entry] = [e for e in ledger.entries(_vault_of(tmp_path / str(n) / "wh")) if e["kind"] == "subject_lookup"]
        hashes.append(entry["data"]["subject"])
    assert hashes[0] == hashes[1] and hashes[0] != Pseudonymizer(TEST_KEY.encode()).token(person["doc_no"], "customer")


def test_purge_deletes_a_lookup_file_with_the_newest_raw_data_it_copies(published, landing, tmp_path, person):
    from flows.closing import purge
    from flows.runtime.paths import POLICIES
    from flows.storage.landing import Landing
    from transforms.policy import load_policies

    wh = tmp_path / "wh"
    shutil.copytree(published.warehouse, wh)
    shutil.copytree(published.restricted, _vault_of(wh))  # a warehouse where the raw data is replaced, so purge would take it
    result = CliRunner().invoke(
        app,
        [
            "subjects",
            "lookup",
            "--doc-no",
            person["doc_no"],
            "--out",
            str(tmp_path / "out"),
            "--landing",
            str(landing),
            "--warehouse",
            str(wh),
            "--restricted",
            str(_vault_of(wh)),
        ],
    )
    assert result.exit_code == 0, result.output
    [path] = (tmp_path / "out").glob("*.csv")
    newest = max(r["导出日期"] for r in csv.DictReader(path.open(encoding="utf-8-sig")))
    plans = purge.plan(Landing(landing), wh, _vault_of(wh), load_policies(POLICIES), dt.date(2027, 1, 1))
    assert len(plans) == 2 and all(p.held is None for p in plans)
    assert {p.export_date.isoformat(): [f["path"] for f in p.files if f["area"] == "lookups"] for p in plans} == {
        p.export_date.isoformat(): [str(path.resolve())] if p.export_date.isoformat() == newest else [] for p in plans
    }


def test_a_person_with_no_records_gets_no_file(landing, tmp_path):
    result, files = _lookup(landing, tmp_path, "--doc-no", ABSENT_ID)
    assert result.exit_code == 0 and "no record of this person" in result.output and files == []
    [entry] = [e for e in ledger.entries(_vault_of(tmp_path / "wh")) if e["kind"] == "subject_lookup"]
    assert entry["data"]["records"] == 0


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--doc-no", ABSENT_ID[:-1] + "1", "fails its check digit"),
        ("--mobile", "12345", "not a 手机号码"),
        ("--member-no", "M-1", "not a 会员编号"),
        # what clerks type for anyone: it would hand or erase strangers' records (issue 35)
        ("--mobile", "+86 138 0013 8000", "placeholder or dummy number"),
        ("--member-no", "NULL", "placeholder or dummy number"),
        ("--doc-no", "000000000", "placeholder or dummy number"),
    ],
)
def test_an_identifier_that_cannot_be_one_is_refused_without_echoing_it(landing, tmp_path, option, value, message):
    result = CliRunner().invoke(
        app,
        [
            "subjects",
            "erase",
            option,
            value,
            "--landing",
            str(tmp_path / "l"),
            "--restricted",
            str(_vault_of(_warehouse(tmp_path / "wh"))),
        ],
    )
    assert result.exit_code == 2 and message in result.output and value not in result.output
    assert not (tmp_path / "l").exists() and [e["kind"] for e in ledger.entries(_vault_of(tmp_path / "wh"))] == ["run"]


def test_erase_holds_the_person_until_a_batch_forms_and_the_next_run_then_leaves_them_out(
    prefect_server, landing, tmp_path, person
):
    copy = tmp_path / "landing"
    shutil.copytree(landing, copy)
    before = (copy / "requests" / "erasure.csv").read_text(encoding="utf-8").splitlines()
    shaped = person["doc_no"].lower().translate(FULL_WIDTH)
    wh = _warehouse(tmp_path / "out" / "warehouse")
    args = [
        "subjects",
        "erase",
        "--doc-no",
        shaped,
        "--landing",
        str(copy),
        "--warehouse",
        str(wh),
        "--restricted",
        str(_vault_of(wh)),
    ]
    first, again = CliRunner().invoke(app, args), CliRunner().invoke(app, args)
    assert first.exit_code == 0 and "added to requests/erasure.csv, held: 1 request(s)" in first.output
    assert again.exit_code == 0 and "already on requests/erasure.csv, held" in again.output
    after = (copy / "requests" / "erasure.csv").read_text(encoding="utf-8").splitlines()
    # The list from before batches is one applied batch; the person is held (an empty batch), once.
    assert after[0] == "requested_at,batch,doc_no,mobile,member_no" and len(after) == len(before) + 1
    assert [line.split(",")[1] for line in after[1:]] == ["applied"] * (len(before) - 1) + [""]
    assert after[-1].split(",")[2:] == [person["doc_no"], "", ""]  # normalized, once
    entries = ledger.entries(_vault_of(tmp_path / "out" / "warehouse"))
    assert [e["kind"] for e in entries] == ["run", "erasure_requested", "erasure_requested"]
    assert [e["data"]["status"] for e in entries[1:]] == ["held", "held"]
    # Each request is a flow run the Prefect UI lists, and what Prefect keeps of it names no one.
    erasures = _flow_runs("erase-subject")
    assert len(erasures) >= 2 and {r.name for r in erasures} == {"erase-doc_no"}
    for stored in erasures:
        kept = json.dumps(stored.parameters, ensure_ascii=False).upper()
        assert person["doc_no"] not in kept and shaped.upper() not in kept
        assert stored.parameters["identifier"] == "**********"
    # Held: a run publishes the person as before (leaving them out would single them out).
    assert _partitions_of(tmp_path / "out", person, run_flow(copy, tmp_path / "out", date="2026-03-01"))
    restricted = tmp_path / "out" / "restricted"  # the run's, beside the warehouse it published
    flushed = CliRunner().invoke(app, [*args[:-1], str(restricted), "--flush"])
    assert flushed.exit_code == 0 and "in a batch of 1 (flushed" in flushed.output, flushed.output
    done = ledger.entries(restricted)[-1]["data"]
    assert done["status"] == "done" and done["flushed"] and done["people"] == 1 and done["batch"]
    assert done["republished"]  # the partitions the run had published with the person
    assert not _partitions_of(tmp_path / "out", person, run_flow(copy, tmp_path / "out", date="2026-03-01"))


def _partitions_of(out: Path, person: dict, run) -> list[Path]:
    """The published partitions that hold the person's token (as each partition keys it)."""
    assert run.state.is_completed(), run.state.message
    paths = sorted((out / "warehouse").rglob("part-0.parquet"))
    assert paths
    return [p for p in paths if published_token(person["doc_no"], p) in pq.read_table(p, columns=["customer_id"])[0].to_pylist()]


def _flow_runs(flow_name: str) -> list:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def read():
        async with get_client() as client:
            return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))

    return asyncio.run(read())


def test_notify_builds_one_batch_per_channel_from_the_latest_snapshot(published, landing, tmp_path):
    import pandas as pd

    from flows.closing import purge
    from flows.runtime.paths import POLICIES
    from flows.storage.landing import Landing
    from transforms.policy import load_policies

    out, wh = tmp_path / "notices", tmp_path / "wh"
    shutil.copytree(published.warehouse, wh)
    shutil.copytree(published.restricted, _vault_of(wh))  # a warehouse where the raw data is replaced, so purge would take it
    closing, requests_by, delete_by = (today() + dt.timedelta(days=n) for n in (28, 59, 118))
    result = CliRunner().invoke(
        app,
        [
            "subjects",
            "notify",
            "--out",
            str(out),
            "--closing-date",
            _zh(closing),
            "--delete-by",
            _zh(delete_by),
            "--requests-by",
            requests_by.isoformat(),
            "--contact",
            "客服热线 400-000-0000",
            "--landing",
            str(landing),
            "--warehouse",
            str(wh),
            "--restricted",
            str(_vault_of(wh)),
        ],
    )
    assert result.exit_code == 0, result.output
    latest = sorted((landing / "membership").glob("*/*.csv"))[-1]
    crm = pd.read_csv(latest, dtype=str, encoding="gb18030", keep_default_na=False)
    requests = pd.read_csv(landing / "requests" / "erasure.csv", dtype=str, keep_default_na=False)

    def listed(column: str, normalize) -> set[str]:
        return {normalize(v) for v in requests[column] if v}

    def mobile_of(v: str) -> str:
        return re.sub(r"^86", "", norm(v))

    mobiles = crm["手机号码"].map(mobile_of)
    erased = (
        crm["会员编号"].isin(listed("member_no", str))
        | crm["证件号码"].map(norm).isin(listed("doc_no", norm))
        | mobiles.isin(listed("mobile", mobile_of))
    )
    reachable = ~erased & mobiles.str.fullmatch(r"1[3-9]\d{9}")
    sms, email = pd.read_csv(out / "sms.csv", dtype=str), pd.read_csv(out / "email.csv", dtype=str)
    assert set(sms["mobile"]) == set(mobiles[reachable]) and erased.sum() > 0
    assert not set(crm.loc[erased, "电子邮箱"]) & set(email["email"]) and not set(mobiles[erased]) & set(sms["mobile"])
    assert set(email["email"]) <= set(crm.loc[~erased & ~reachable, "电子邮箱"])
    assert sms["content"].str.contains(_zh(closing)).all() and email["body"].str.contains("客服热线 400-000-0000").all()
    assert email["body"].str.contains(_zh(requests_by)).all()  # written as customers read dates, whatever was typed
    for path in (out / "sms.csv", out / "email.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    entry = ledger.entries(_vault_of(wh))[-1]
    data = entry["data"]
    assert entry["kind"] == "notices" and data["members"] == len(crm) and data["erased"] == erased.sum()
    assert data["closure"] == {
        "shop": "本公司",
        "closing_date": closing.isoformat(),
        "delete_by": delete_by.isoformat(),
        "requests_by": requests_by.isoformat(),
        "contact": "客服热线 400-000-0000",
    }
    assert (data["sms"], data["email"]) == (len(sms), len(email))
    assert data["unreachable"] == (~erased & ~reachable & ~crm["电子邮箱"].str.contains("@")).sum()
    assert not set(sms["mobile"]) & set(re.findall(r"\d{11}", (_vault_of(wh) / ledger.LEDGER).read_text()))
    # The batch is raw personal data: purge deletes it with the snapshot date's raw files.
    [plan] = [
        p
        for p in purge.plan(
            Landing(landing),
            wh,
            _vault_of(wh),
            load_policies(POLICIES),
            dt.date.fromisoformat(latest.parent.name) + dt.timedelta(days=400),
        )
        if p.export_date == dt.date.fromisoformat(latest.parent.name)
    ]
    assert plan.held is None
    assert {f["path"] for f in plan.files if f["area"] == "notices"} == {
        str((out / n).resolve()) for n in ("sms.csv", "email.csv")
    }


def _zh(day: dt.date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


GARBAGE = {  # what the operator typed wrong (days from today where a number) -> what the refusal says
    "a word": ({"--closing-date": "下周"}, "--closing-date '下周' is not a date"),
    "no such day": ({"--delete-by": "2026年2月30日"}, "--delete-by '2026年2月30日' is not a date"),
    "not a date at all": ({"--requests-by": "banana"}, "--requests-by 'banana' is not a date"),
    "the deadline has passed": ({"--requests-by": -1}, "is not after today"),
    "deleted before the deadline": ({"--delete-by": 30}, "is not after --requests-by"),
    "deleted before the closing": ({"--closing-date": 90}, "is before --closing-date"),
    "no contact": ({"--contact": "  "}, "--contact is empty"),
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_notify_refuses_garbage_before_writing_anything(published, landing, tmp_path, case):
    change, says = GARBAGE[case]
    wh = tmp_path / "wh"
    shutil.copytree(published.warehouse, wh)
    shutil.copytree(published.restricted, _vault_of(wh))
    options = {"--closing-date": 10, "--requests-by": 30, "--delete-by": 60, "--contact": "客服热线 400-000-0000"} | change
    options = {k: _zh(today() + dt.timedelta(days=v)) if isinstance(v, int) else v for k, v in options.items()}
    before = (_vault_of(wh) / ledger.LEDGER).read_bytes()
    result = CliRunner().invoke(
        app,
        [
            "subjects",
            "notify",
            "--out",
            str(tmp_path / "n"),
            *[x for kv in options.items() for x in kv],
            "--landing",
            str(landing),
            "--warehouse",
            str(wh),
            "--restricted",
            str(_vault_of(wh)),
        ],
    )
    assert result.exit_code == 2 and says in result.output, result.output
    assert not (tmp_path / "n").exists() and (_vault_of(wh) / ledger.LEDGER).read_bytes() == before


def test_erase_after_the_key_is_destroyed_says_published_data_can_no_longer_be_linked(
    prefect_server, landing, tmp_path, person, monkeypatch
):
    copy, wh = tmp_path / "landing", tmp_path / "wh"
    shutil.copytree(landing, copy)
    monkeypatch.delenv("TUOMIN_PSEUDONYM_KEY")
    args = [
        "subjects",
        "erase",
        "--member-no",
        person["member_no"],
        "--landing",
        str(copy),
        "--warehouse",
        str(wh),
        "--restricted",
        str(_vault_of(wh)),
    ]
    _warehouse(wh)
    missing = CliRunner().invoke(app, args)  # no key, and none destroyed: set it first
    assert missing.exit_code == 2 and "no pseudonym key" in missing.output and len(ledger.entries(_vault_of(wh))) == 1
    ledger.append(_vault_of(wh), KeyDestroyedEntry(key="pseudonym", key_id="k1-0000", method="test"))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "can no longer be linked" in " ".join(result.output.split()) and person["member_no"] not in result.output
    entry = ledger.entries(_vault_of(wh))[-1]
    assert entry["kind"] == "erasure_requested" and entry["data"]["subject"] is None and entry["data"]["added"] is True


def _partitions(warehouse) -> dict[str, pa.Table]:
    return {
        p.parent.relative_to(warehouse).as_posix(): pq.read_table(p).replace_schema_metadata(None)
        for p in sorted(warehouse.glob("dataset=*/period=*/part-0.parquet"))
    }


def _holding(tables: dict[str, pa.Table], token: str, warehouse) -> dict[str, int]:
    """Rows per partition that carry the person's token as that partition publishes it (keyed to
    its version, from the file's metadata), counted by DuckDB."""
    pseudonymizer = Pseudonymizer(TEST_KEY.encode())
    con = duckdb.connect()
    found = {}
    for name, table in tables.items():
        unit = read_footer(warehouse / name / "part-0.parquet")["unit"]
        con.register("t", table)
        mine = pseudonymizer.unit_tokens(pa.array([token]), unit)[0].as_py()
        if n := con.sql("SELECT count(*) FROM t WHERE customer_id = ?", params=[mine]).fetchall()[0][0]:
            found[name] = n
    return found


def _smallest_class(table: pa.Table, qis: list[str]) -> int:
    """k in entities, counted by DuckDB independently of tuomin's metrics."""
    con = duckdb.connect()
    con.register("t", table)
    return con.sql(
        f"SELECT min(n) FROM (SELECT count(DISTINCT customer_id) + count(*) FILTER (WHERE customer_id IS NULL) AS n "
        f"FROM t GROUP BY {', '.join(qis)})"
    ).fetchall()[0][0]


@pytest.fixture(scope="module")
def at_the_edge(published, landing):
    """A member with purchases who sits in a membership class of exactly k people: erasing them
    leaves that class below k."""
    crm = read_landing(landing)["membership"]
    pos = read_landing(landing)["pos"]
    pseudonymizer = Pseudonymizer(TEST_KEY.encode())
    bought = {norm(d) for d in pos["doc_no"] if d}
    con = duckdb.connect()
    for path in sorted(published.warehouse.glob("dataset=membership/period=*/part-0.parquet")):
        unit = read_footer(path)["unit"]
        docs = {
            pseudonymizer.unit_tokens(pa.array([pseudonymizer.token(norm(d), "customer")]), unit)[0].as_py(): norm(d)
            for d in crm["证件号码"]
            if d
        }
        qis = read_footer(path)["quasi_identifiers"]
        edge = con.sql(
            f"SELECT customer_id FROM read_parquet('{path}') WHERE ({', '.join(qis)}) IN "
            f"(SELECT ({', '.join(qis)}) FROM read_parquet('{path}') GROUP BY ALL HAVING count(DISTINCT customer_id) = 5)"
        ).fetchall()
        for (token,) in edge:
            if docs.get(token) in bought:
                return {"doc_no": docs[token], "token": pseudonymizer.token(docs[token], "customer")}
    pytest.fail("no member with purchases in a class of exactly k")


def test_erase_holds_requests_until_k_and_removes_the_batch_from_partitions_already_published(
    published, landing, tmp_path, at_the_edge
):
    from flows.closing.review import review_dataset
    from flows.runtime.paths import POLICIES
    from transforms.policy import load_policies

    wh, held = tmp_path / "wh", tmp_path / "landing"
    shutil.copytree(published.warehouse, wh)
    shutil.copytree(published.restricted, _vault_of(wh))
    shutil.copytree(landing / "requests", held / "requests")  # the raw exports are purged: only the requests remain
    before = _partitions(wh)
    token = at_the_edge["token"]
    holding = _holding(before, token, wh)
    assert {name.split("/")[0] for name in holding} >= {"dataset=membership", "dataset=pos"}

    def erase(doc_no: str):
        args = ["subjects", "erase", "--doc-no", doc_no, "--landing", str(held), "--warehouse", str(wh)]
        return CliRunner().invoke(app, [*args, "--restricted", str(_vault_of(wh))]), args

    # Four members ask first: each is held, and nothing published changes (removing one person's
    # rows would publish them, as the difference between the two copies).
    others = [norm(d) for d in read_landing(landing)["membership"]["证件号码"] if d and norm(d) != at_the_edge["doc_no"]][:4]
    files = {p: p.read_bytes() for p in wh.rglob("part-0.parquet")}
    for i, doc_no in enumerate(others):
        result, _ = erase(doc_no)
        assert result.exit_code == 0 and f"held: {i + 1} request(s)" in result.output, result.output
    assert {p: p.read_bytes() for p in wh.rglob("part-0.parquet")} == files
    # The fifth forms a batch of k = 5: the five are removed together, in one sweep.
    result, args = erase(at_the_edge["doc_no"].lower().translate(FULL_WIDTH))
    assert result.exit_code == 0 and "in a batch of 5." in result.output, result.output
    after = _partitions(wh)
    everyone = [token, *(Pseudonymizer(TEST_KEY.encode()).token(d, "customer") for d in others)]
    assert not any(_holding(after, t, wh) for t in everyone)
    erased: dict[str, int] = {}
    for t in everyone:
        for name, n in _holding(before, t, published.warehouse).items():
            erased[name] = erased.get(name, 0) + n
    requests = [e for e in ledger.entries(_vault_of(wh)) if e["kind"] == "erasure_requested"]
    assert [e["data"]["status"] for e in requests] == ["held"] * 4 + ["done"]
    request = requests[-1]["data"]
    assert request["people"] == 5 and not request["flushed"] and request["completes"] == [e["seq"] for e in requests[:4]]
    assert {f"dataset={r['dataset']}/period={r['period']}" for r in request["republished"]} == set(erased)
    # One sweep: every file it wrote has the same run and time (they group the batch, not a person).
    stamps = {
        (read_footer(wh / n / "part-0.parquet")["run_id"], read_footer(wh / n / "part-0.parquet")["created_at"]) for n in erased
    }
    assert len(stamps) == 1
    suppressed = 0
    for done in request["republished"]:
        name = f"dataset={done['dataset']}/period={done['period']}"
        path = wh / name / "part-0.parquet"
        metadata = read_footer(path)
        rows = next(e["data"]["rows"] for e in ledger.entries(_vault_of(wh)) if e["seq"] == done["ledger_seq"])
        assert rows["read"] == rows["published"] + rows["suppressed"] + rows["erased"]
        assert rows["published"] == after[name].num_rows == metadata["rows"]["published"]
        assert set(metadata["rows"]) == {"published"}  # what was taken out, and how much, is the ledger's (restricted)
        assert done["erased"] == erased[name]
        assert before[name].num_rows - after[name].num_rows == done["erased"] + done["suppressed"]
        # Nothing but removals: every row published now was published before, but for its token,
        # which is keyed to the republication: the copies from before and after share none.
        con = duckdb.connect()
        con.register("old", before[name])
        con.register("new", after[name])
        values = ", ".join(c for c in after[name].column_names if c != "customer_id")
        assert con.sql(f"SELECT count(*) FROM (SELECT {values} FROM new EXCEPT ALL SELECT {values} FROM old)").fetchall() == [
            (0,)
        ]
        assert not set(after[name]["customer_id"].drop_null().to_pylist()) & set(
            before[name]["customer_id"].drop_null().to_pylist()
        )
        # A new version as a run's: its own version string (no mark of an erasure), its rows in the
        # hash order of their new values, not the old order with rows taken out.
        assert re.fullmatch(
            re.escape(read_footer(published.warehouse / name / "part-0.parquet")["unit"]) + r"\|[0-9a-f]{16}", metadata["unit"]
        )
        assert after[name].equals(shuffle.in_order(after[name]))
        # Anyone else is still found in it, through the unit's chain (what a later erasure looks for).
        others = {published_token(d, path) for d in raw_identifiers(landing)["document"]}
        assert others & set(after[name]["customer_id"].drop_null().to_pylist())
        assert metadata["validation"]["success"] and _smallest_class(after[name], metadata["quasi_identifiers"]) >= 5
        # The footer has what a run's has, no more: when and whom are the ledger's (restricted).
        assert set(metadata) == set(read_footer(published.warehouse / name / "part-0.parquet"))
        assert "erasure" not in json.dumps(metadata) and metadata["flow_run_id"]  # the erase-subject flow run's
        suppressed += done["suppressed"]
    edge = [d for d in request["republished"] if d["dataset"] == "membership" and d["classes_suppressed"]]
    assert edge and edge[0]["suppressed"] >= 4  # the class's other four members: left with k-1, suppressed whole
    # The ledger, the files and the gate agree: what `tuomin review` checks, done on the new state.
    assert ledger.verify(_vault_of(wh), wh) == []
    entries = ledger.partition_entries(_vault_of(wh))
    policies = load_policies(POLICIES)
    for dataset, policy in policies.items():
        found = review_dataset(
            policy, [e.data for (d, _), e in sorted(entries.items()) if d == dataset], wh, _vault_of(wh), "erasure test"
        )
        assert found.success, found.problems
    assert (
        at_the_edge["doc_no"] not in (_vault_of(wh) / ledger.LEDGER).read_text()
        and token not in (_vault_of(wh) / ledger.LEDGER).read_text()
    )
    # No raw identifier in what the erasure wrote: GX results and Data Docs, the files' metadata, the ledger.
    build_docs(_vault_of(wh) / GX_PROJECT)
    texts = [f.read_text("utf-8", errors="replace") for f in (_vault_of(wh) / GX_PROJECT).rglob("*") if f.is_file()]
    texts += [json.dumps(read_footer(wh / n / "part-0.parquet"), ensure_ascii=False) for n in after]
    texts.append((_vault_of(wh) / ledger.LEDGER).read_text("utf-8"))
    assert not find_leaks(texts, raw_identifiers(landing))
    # The intruder holding the copy from before: the versions that changed share no token with it.
    from flows.pipeline.intruder import assess, changed_versions

    assert {f"dataset={d.name}" for d in changed_versions(published.warehouse, wh)} == {n.split("/")[0] for n in erased}
    compared = assess(wh, against=published.warehouse)
    assert all(s["across_versions"] == 0 for s in compared.shared_identifiers.values())
    # What the two copies differ by is the records of the batch (and the classes it left below k):
    # at least k, in one republication.
    [differ] = [c for c in compared.checks if c.name == "version differences"]
    assert differ.passed and {v["run"] for v in compared.versions} == {stamps.pop()[0]}
    assert sum(v["records_gone"] for v in compared.versions) >= 5
    # Repeating it changes nothing.
    again = CliRunner().invoke(app, [*args, "--restricted", str(_vault_of(wh))])
    assert again.exit_code == 0 and "No published partition holds this batch" in again.output
    assert {n: t.num_rows for n, t in _partitions(wh).items()} == {n: t.num_rows for n, t in after.items()}


def test_erase_by_mobile_reaches_published_rows_through_the_raw_records_held(published, landing, tmp_path, person, monkeypatch):
    wh = tmp_path / "wh"
    shutil.copytree(published.warehouse, wh)
    shutil.copytree(published.restricted, _vault_of(wh))
    token = Pseudonymizer(TEST_KEY.encode()).token(person["doc_no"], "customer")
    shaped = f"+86 {person['mobile'][:3]} {person['mobile'][3:7]} {person['mobile'][7:]}"
    # Raw exports purged: a mobile leads to no document, and published rows hold no mobile.
    purged = tmp_path / "purged"
    shutil.copytree(landing / "requests", purged / "requests")
    blind = CliRunner().invoke(
        app,
        [
            "subjects",
            "erase",
            "--mobile",
            shaped,
            "--landing",
            str(purged),
            "--warehouse",
            str(wh),
            "--restricted",
            str(_vault_of(wh)),
            "--flush",
        ],
    )
    assert blind.exit_code == 0 and "cannot be searched" in " ".join(blind.output.split())
    assert _holding(_partitions(wh), token, wh)
    # Another key than the warehouse's: every partition listed as not searched, none touched.
    monkeypatch.setenv("TUOMIN_PSEUDONYM_KEY", "another-key-" + "x" * 40)
    other = CliRunner().invoke(
        app,
        [
            "subjects",
            "erase",
            "--doc-no",
            person["doc_no"],
            "--landing",
            str(purged),
            "--warehouse",
            str(wh),
            "--restricted",
            str(_vault_of(wh)),
            "--flush",
        ],
    )
    assert other.exit_code == 0 and other.output.count("not searched") == len(_partitions(wh))
    assert _holding(_partitions(wh), token, wh)
    monkeypatch.undo()
    # With the raw exports held, the mobile leads to the person's document and its token.
    held = tmp_path / "held"
    shutil.copytree(landing, held)
    result = CliRunner().invoke(
        app,
        [
            "subjects",
            "erase",
            "--mobile",
            shaped,
            "--landing",
            str(held),
            "--warehouse",
            str(wh),
            "--restricted",
            str(_vault_of(wh)),
            "--flush",
        ],
    )
    assert result.exit_code == 0, result.output
    assert not _holding(_partitions(wh), token, wh)
    assert "republished without the batch" in result.output and person["mobile"] not in result.output
    # A person the exports never held: their token is computable, no partition holds it.
    absent = CliRunner().invoke(
        app,
        [
            "subjects",
            "erase",
            "--doc-no",
            ABSENT_ID,
            "--landing",
            str(held),
            "--warehouse",
            str(wh),
            "--restricted",
            str(_vault_of(wh)),
            "--flush",
        ],
    )
    assert absent.exit_code == 0 and "No published partition holds this batch" in absent.output
    requests = [e["data"] for e in ledger.entries(_vault_of(wh)) if e["kind"] == "erasure_requested"]
    assert [bool(r["republished"]) for r in requests] == [False, False, True, False]
    assert [r["tokens"] for r in requests] == [0, 1, requests[2]["tokens"], 1] and requests[2]["tokens"] >= 1
    assert requests[1]["not_searched"] and not requests[2]["not_searched"]
    shown = CliRunner().invoke(
        app, ["ledger", "show", "--kind", "erasure_requested", "--restricted", str(_vault_of(wh))], terminal_width=320
    )
    assert shown.exit_code == 0 and shown.output.count("partition(s) republished") == 4
    assert person["mobile"] not in shown.output and person["doc_no"] not in shown.output


def test_an_erasure_cut_short_leaves_each_partition_whole_and_is_finished_by_repeating_it(
    published, landing, tmp_path, at_the_edge, monkeypatch
):
    wh, held = tmp_path / "wh", tmp_path / "landing"
    shutil.copytree(published.warehouse, wh)
    shutil.copytree(published.restricted, _vault_of(wh))
    shutil.copytree(landing / "requests", held / "requests")
    files = {p: p.read_bytes() for p in wh.glob("dataset=*/period=*/part-0.parquet")}
    args = [
        "subjects",
        "erase",
        "--doc-no",
        at_the_edge["doc_no"],
        "--landing",
        str(held),
        "--warehouse",
        str(wh),
        "--restricted",
        str(_vault_of(wh)),
        "--flush",  # the batch is carried out at once: what these tests check is how
    ]
    monkeypatch.setenv("TUOMIN_FAILPOINT", "mid-write:ENOSPC")  # the disk fills while the first partition is written
    cut = CliRunner().invoke(app, args)
    assert cut.exit_code == 1 and "No space left on device" in cut.output
    assert {p: p.read_bytes() for p in wh.glob("dataset=*/period=*/part-0.parquet")} == files
    assert not list((wh / ".staging").glob("*"))
    [cut_entry] = [e for e in ledger.entries(_vault_of(wh)) if e["kind"] == "erasure_requested"]
    failed = cut_entry["data"]
    assert failed["failed"] and not failed["republished"] and (failed["status"], failed["listed"]) == ("partial", "added")
    monkeypatch.delenv("TUOMIN_FAILPOINT")
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert not _holding(_partitions(wh), at_the_edge["token"], wh) and ledger.verify(_vault_of(wh), wh) == []
    finished = ledger.entries(_vault_of(wh))[-1]["data"]
    assert (finished["status"], finished["listed"], finished["retry_of"]) == ("done", "already listed", [cut_entry["seq"]])
    assert finished["republished"] and f"completes the request of ledger entry {cut_entry['seq']}" in " ".join(
        done.output.split()
    )


def test_an_erasure_that_cannot_read_the_exports_changes_nothing_and_says_so(published, landing, tmp_path, person):
    """A file missing a required column: nothing listed, nothing republished, the failure recorded;
    once the file is fixed, the repeat does all of it and says which request it completes. A
    column no policy covers does not stop an erasure (tokens come from the policy's columns)."""
    wh, held = tmp_path / "wh", tmp_path / "landing"
    shutil.copytree(published.warehouse, wh)
    shutil.copytree(published.restricted, _vault_of(wh))
    shutil.copytree(landing, held)
    crm = sorted((held / "membership").glob("*/*.csv"))[0]
    original = crm.read_bytes()
    rows = list(csv.reader(io.StringIO(original.decode("gb18030"), newline="")))

    def rewrite(table: list[list[str]]) -> None:
        text = io.StringIO(newline="")
        csv.writer(text, lineterminator="\n").writerows(table)
        crm.write_bytes(text.getvalue().encode("gb18030"))

    drop = rows[0].index("证件号码")
    rewrite([[c for i, c in enumerate(row) if i != drop] for row in rows])
    listed = (held / "requests" / "erasure.csv").read_bytes()
    files = {p: p.read_bytes() for p in wh.glob("dataset=*/period=*/part-0.parquet")}
    args = [
        "subjects",
        "erase",
        "--doc-no",
        person["doc_no"],
        "--landing",
        str(held),
        "--warehouse",
        str(wh),
        "--restricted",
        str(_vault_of(wh)),
        "--flush",  # the batch is carried out at once: what these tests check is how
    ]
    failed = CliRunner().invoke(app, args)
    assert failed.exit_code == 1 and "Nothing was changed" in " ".join(failed.output.split()) and "Traceback" not in failed.output
    entry = ledger.entries(_vault_of(wh))[-1]
    assert entry["kind"] == "erasure_requested" and (entry["data"]["status"], entry["data"]["listed"]) == ("failed", None)
    assert (
        "doc_no" in entry["data"]["failed"]
        and "are missing" in entry["data"]["failed"]
        and person["doc_no"] not in json.dumps(entry, ensure_ascii=False)
    )
    assert (held / "requests" / "erasure.csv").read_bytes() == listed
    assert {p: p.read_bytes() for p in wh.glob("dataset=*/period=*/part-0.parquet")} == files
    rewrite([rows[0] + ["备注"], *(row + ["x"] for row in rows[1:])])  # fixed, plus a column no policy covers
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    finished = ledger.entries(_vault_of(wh))[-1]["data"]
    assert (finished["status"], finished["listed"], finished["retry_of"]) == ("done", "added", [entry["seq"]])
    assert finished["republished"] and not _holding(
        _partitions(wh), Pseudonymizer(TEST_KEY.encode()).token(person["doc_no"], "customer"), wh
    )


@pytest.mark.parametrize(
    ("failpoint", "outcome"),
    [
        ("erasure-swapped", "finished"),
        pytest.param("erasure-intended", "rolled back", marks=pytest.mark.slow),
        pytest.param("torn-intent", None, marks=pytest.mark.slow),  # the machine dies half way through an append
        pytest.param("torn-partition", "finished", marks=pytest.mark.slow),
        pytest.param("torn-erasure_requested", None, marks=pytest.mark.slow),
    ],
)
def test_an_erasure_killed_between_a_swap_and_its_entry_is_finished_by_the_next_command(
    prefect_server, published, landing, tmp_path, at_the_edge, failpoint, outcome
):
    """Intend, act, commit for an erasure's sweep: SIGKILL right after a partition was swapped
    (before its entry), before the swap, or half way through writing an entry. `ledger verify`
    sets a torn line aside, ends the intent (finished where the file is in place as intended,
    rolled back where it is not), records it and passes; repeating the request then completes it."""
    import os
    import subprocess
    import sys

    from prefect.settings import get_current_settings

    from tests.conftest import TEST_KEY

    wh, held = tmp_path / "wh", tmp_path / "landing"
    shutil.copytree(published.warehouse, wh)
    shutil.copytree(published.restricted, _vault_of(wh))
    shutil.copytree(landing / "requests", held / "requests")
    args = ["subjects", "erase", "--doc-no", at_the_edge["doc_no"], "--landing", str(held)]
    args += ["--warehouse", str(wh), "--restricted", str(_vault_of(wh)), "--flush"]
    tuomin = str(Path(sys.executable).parent / "tuomin")
    env = {
        **os.environ,
        "TUOMIN_PSEUDONYM_KEY": TEST_KEY,
        "TUOMIN_FAILPOINT": failpoint,
        "PREFECT_API_URL": str(get_current_settings().api.url),  # the session's server: none left behind by the kill
    }
    killed = subprocess.run([tuomin, *args], env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    opened = intents.open_intents(ledger.entries(_vault_of(wh)))
    if failpoint == "erasure-swapped":
        assert ledger.verify(_vault_of(wh), wh) != []  # the swapped file has no entry yet
    done = CliRunner().invoke(app, ["ledger", "verify", "--restricted", str(_vault_of(wh)), "--warehouse", str(wh)])
    assert done.exit_code == 0, done.output
    if outcome is not None:
        [intent] = opened
        assert f"recovered: intent {intent['seq']} {outcome}" in " ".join(done.output.split()), done.output
    assert failpoint.startswith("erasure") or "repaired:" in done.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert not _holding(_partitions(wh), at_the_edge["token"], wh) and ledger.verify(_vault_of(wh), wh) == []
    assert intents.open_intents(ledger.entries(_vault_of(wh))) == []
