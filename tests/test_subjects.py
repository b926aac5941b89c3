"""Data subjects' requests on generated data: `tuomin subjects lookup` and `tuomin subjects erase`,
with identifiers written in the spec's other shapes, and a person the exports do not hold."""

from __future__ import annotations

import csv
import datetime as dt
import re
import shutil
import stat

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows import ledger
from flows.cli import app
from tests.conftest import TEST_KEY, run_flow
from tests.leaks import norm, read_landing
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


def _lookup(landing, tmp_path, option: str, value: str):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["subjects", "lookup", option, value, "--out", str(out), "--landing", str(landing),
                                        "--warehouse", str(tmp_path / "wh")])
    return result, sorted(out.glob("*.csv")) if out.exists() else []


def _records(path) -> dict[str, set]:
    rows = list(csv.DictReader(path.open(encoding="utf-8-sig")))
    found: dict[str, set] = {}
    for r in rows:
        found.setdefault(r["来源"], set()).add((r["文件"], r["行号"]))
    return found


@pytest.mark.parametrize("option, shape", [
    ("--doc-no", lambda p: p["doc_no"].lower().translate(FULL_WIDTH)),
    ("--mobile", lambda p: f"+86 {p['mobile'][:3]} {p['mobile'][3:7]} {p['mobile'][7:]}"),
    ("--member-no", lambda p: p["member_no"].lower()),
])
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
    [entry] = [e for e in ledger.entries(tmp_path / "wh") if e["kind"] == "subject_lookup"]
    assert entry["data"]["records"] == sum(len(v) for v in found.values())
    ledger_text = (tmp_path / "wh" / ledger.LEDGER).read_text()
    assert not any(v in norm(ledger_text) for v in (person["doc_no"], person["mobile"], person["member_no"]))


def test_requests_about_one_identifier_in_two_shapes_share_one_ledger_hash(landing, tmp_path, person):
    """The ledger can show two requests concern the same identifier without holding it."""
    hashes = []
    for n, value in enumerate((person["doc_no"], person["doc_no"].lower().translate(FULL_WIDTH))):
        _lookup(landing, tmp_path / str(n), "--doc-no", value)
        [entry] = [e for e in ledger.entries(tmp_path / str(n) / "wh") if e["kind"] == "subject_lookup"]
        hashes.append(entry["data"]["subject"])
    assert hashes[0] == hashes[1] and hashes[0] != Pseudonymizer(TEST_KEY.encode()).token(person["doc_no"], "customer")


def test_a_person_with_no_records_gets_no_file(landing, tmp_path):
    result, files = _lookup(landing, tmp_path, "--doc-no", ABSENT_ID)
    assert result.exit_code == 0 and "no record of this person" in result.output and files == []
    [entry] = [e for e in ledger.entries(tmp_path / "wh") if e["kind"] == "subject_lookup"]
    assert entry["data"]["records"] == 0


@pytest.mark.parametrize("option, value, message", [
    ("--doc-no", ABSENT_ID[:-1] + "1", "fails its check digit"),
    ("--mobile", "12345", "not a 手机号码"),
    ("--member-no", "M-1", "not a 会员编号"),
])
def test_an_identifier_that_cannot_be_one_is_refused_without_echoing_it(landing, tmp_path, option, value, message):
    result = CliRunner().invoke(app, ["subjects", "erase", option, value, "--landing", str(tmp_path / "l"),
                                        "--warehouse", str(tmp_path / "wh")])
    assert result.exit_code == 2 and message in result.output and value not in result.output
    assert not (tmp_path / "l").exists() and not (tmp_path / "wh").exists()


def test_erase_adds_the_person_once_and_the_next_run_leaves_them_out(prefect_server, landing, tmp_path, person):
    copy = tmp_path / "landing"
    shutil.copytree(landing, copy)
    before = (copy / "requests" / "erasure.csv").read_text(encoding="utf-8").splitlines()
    shaped = person["doc_no"].lower().translate(FULL_WIDTH)
    args = ["subjects", "erase", "--doc-no", shaped, "--landing", str(copy), "--warehouse", str(tmp_path / "out" / "warehouse")]
    first, again = CliRunner().invoke(app, args), CliRunner().invoke(app, args)
    assert first.exit_code == 0 and "added to requests/erasure.csv" in first.output
    assert again.exit_code == 0 and "already on requests/erasure.csv" in again.output
    after = (copy / "requests" / "erasure.csv").read_text(encoding="utf-8").splitlines()
    assert after[:-1] == before and after[-1].split(",")[1:] == [person["doc_no"], "", ""]  # normalized, once
    kinds = [e["kind"] for e in ledger.entries(tmp_path / "out" / "warehouse")]
    assert kinds == ["erasure_requested", "erasure_requested"]
    run = run_flow(copy, tmp_path / "out", date="2026-03-01")
    assert run.state.is_completed(), run.state.message
    token = Pseudonymizer(TEST_KEY.encode()).token(person["doc_no"], "customer")
    for path in (tmp_path / "out" / "warehouse").rglob("*.parquet"):
        assert token not in pq.read_table(path, columns=["customer_id"])["customer_id"].to_pylist(), path


def test_notify_builds_one_batch_per_channel_from_the_latest_snapshot(published, landing, tmp_path):
    import pandas as pd

    from flows import purge
    from flows.landing import Landing
    from flows.paths import POLICIES
    from transforms.policy import load_policies

    out, wh = tmp_path / "notices", tmp_path / "wh"
    shutil.copytree(published.warehouse, wh)  # a warehouse where the raw data is replaced, so purge would take it
    result = CliRunner().invoke(app, [
        "subjects", "notify", "--out", str(out), "--closing-date", "2026年12月31日", "--delete-by", "2027年3月31日",
        "--requests-by", "2027年1月31日", "--contact", "客服热线 400-000-0000", "--landing", str(landing), "--warehouse", str(wh)])
    assert result.exit_code == 0, result.output
    latest = sorted((landing / "membership").glob("*/*.csv"))[-1]
    crm = pd.read_csv(latest, dtype=str, encoding="gb18030", keep_default_na=False)
    requests = pd.read_csv(landing / "requests" / "erasure.csv", dtype=str, keep_default_na=False)
    def listed(column: str, normalize) -> set[str]:
        return {normalize(v) for v in requests[column] if v}

    def mobile_of(v: str) -> str:
        return re.sub(r"^86", "", norm(v))

    mobiles = crm["手机号码"].map(mobile_of)
    erased = (crm["会员编号"].isin(listed("member_no", str)) | crm["证件号码"].map(norm).isin(listed("doc_no", norm))
              | mobiles.isin(listed("mobile", mobile_of)))
    reachable = ~erased & mobiles.str.fullmatch(r"1[3-9]\d{9}")
    sms, email = pd.read_csv(out / "sms.csv", dtype=str), pd.read_csv(out / "email.csv", dtype=str)
    assert set(sms["mobile"]) == set(mobiles[reachable]) and erased.sum() > 0
    assert not set(crm.loc[erased, "电子邮箱"]) & set(email["email"]) and not set(mobiles[erased]) & set(sms["mobile"])
    assert set(email["email"]) <= set(crm.loc[~erased & ~reachable, "电子邮箱"])
    assert sms["content"].str.contains("2026年12月31日").all() and email["body"].str.contains("客服热线 400-000-0000").all()
    for path in (out / "sms.csv", out / "email.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    entry = ledger.entries(wh)[-1]
    data = entry["data"]
    assert entry["kind"] == "notices" and data["members"] == len(crm) and data["erased"] == erased.sum()
    assert (data["sms"], data["email"]) == (len(sms), len(email))
    assert data["unreachable"] == (~erased & ~reachable & ~crm["电子邮箱"].str.contains("@")).sum()
    assert not set(sms["mobile"]) & set(re.findall(r"\d{11}", (wh / ledger.LEDGER).read_text()))
    # The batch is raw personal data: purge deletes it with the snapshot date's raw files.
    [plan] = [p for p in purge.plan(Landing(landing), wh, tmp_path / "restricted", load_policies(POLICIES),
                                    dt.date.fromisoformat(latest.parent.name) + dt.timedelta(days=400)) if p.export_date == dt.date.fromisoformat(latest.parent.name)]
    assert plan.held is None
    assert {f["path"] for f in plan.files if f["area"] == "notices"} == {str((out / n).resolve()) for n in ("sms.csv", "email.csv")}


def test_erase_after_the_key_is_destroyed_says_published_data_can_no_longer_be_linked(landing, tmp_path, person, monkeypatch):
    copy, wh = tmp_path / "landing", tmp_path / "wh"
    shutil.copytree(landing, copy)
    monkeypatch.delenv("TUOMIN_PSEUDONYM_KEY")
    args = ["subjects", "erase", "--member-no", person["member_no"], "--landing", str(copy), "--warehouse", str(wh)]
    missing = CliRunner().invoke(app, args)  # no key, and none destroyed: set it first
    assert missing.exit_code == 2 and not wh.exists()
    ledger.append(wh, "key_destroyed", {"key": "pseudonym", "key_id": "k1-0000", "method": "test"})
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "can no longer be linked" in " ".join(result.output.split()) and person["member_no"] not in result.output
    entry = ledger.entries(wh)[-1]
    assert entry["kind"] == "erasure_requested" and entry["data"]["subject"] is None and entry["data"]["added"] is True
