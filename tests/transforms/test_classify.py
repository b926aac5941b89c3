"""Classification: detectors, the blind benchmark on generated exports, the CLI and drafts."""

import datetime as dt
import json
import random
import re

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.onboarding.propose import references
from flows.runtime.paths import POLICIES
from flows.storage.landing import sample_csv, sniff_encoding
from sample_data.notes import full_width
from transforms.classify import KINDS, classify_column, classify_table, mask, score
from transforms.policy import load_policies, load_policy

REFS = references()


def kind_of(values, header="col_x"):
    return classify_column(header, pa.array(values, pa.string()), REFS).kind


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["11010519491231002X", "11010519491231002x", "310101198905314620"], "prc_id"),
        (["E12345678", "G87654321", "EA1234567"], "passport"),
        (["H12345678", "M1234567890", "H87654321"], "hk_mo_permit"),
        (["11010519491231002X", "E12345678", "H12345678", "12345678", "TK1234567"], "document_number"),
        (["13812345678", "+86 138 1234 5678", "86-139-8765-4321", full_width("15912345678"), "138 1234 5678"], "mobile"),
        (["021-62345678", "(0571)88888888", "010 12345678"], "landline"),
        (["li.na88@163.com", "wang@qq.com", "a_b@example.co.jp"], "email"),
        (["6222021234567890128", "622202******0128", "4111111111111111"], "bank_card"),
        (["oX3a-5c7pQxyzABCDEFGHIJKLMNO", "o_abcdefghijklmnopqrstuvwxyz", "o1234567890ABCDEFGHIJ-_abcde"], "wechat_openid"),
        (["王芳", "欧阳娜娜", "张伟", "李秀英", "陈静", "刘洋", "赵磊", "SMITH JOHN", "司马光"], "person_name"),
        (["浦东新区张杨路500号12楼1203室", "黄浦区南京东路100弄2号301室", "海淀区知春路1号"], "address"),
        (["200120", "100080", "310013"], "postal_code"),
        (["1988-07-14", "1990/3/5", "1975-12-01"], "birth_date"),
        (["MU523", "9C8517", "CX367", "ADM0302"], "flight_no"),
        (["20260301", "20251231", "20260115"], "date"),
        (["男", "女", "女"], "sex"),
        (["CHN", "JPN", "KOR"], "country_code"),
        (["上海市", "江苏省", "广东省"], "province"),
    ],
)
def test_detectors(values, kind):
    # Enough distinct values for kinds that need them; placeholders are not evidence.
    values = values * 3 + ["无", "-", "N/A"]
    assert kind_of(values) == kind


def test_values_that_only_look_like_identifiers():
    assert kind_of(["310101199003071235"] * 3) != "prc_id"  # bad check digit
    assert kind_of(["6222021234567890121", "6222021234567890122"]) != "bank_card"  # not Luhn
    assert kind_of(["普卡", "银卡", "金卡", "白金卡", "黑金卡"] * 20 + ["见备注"] * 5) == "category"  # tiers, not names
    assert kind_of(["10012345678", "11012345678", "12099999999"]) == "integer"  # order numbers, not mobiles


def test_header_breaks_ties_and_speaks_for_empty_columns():
    assert classify_column("手机号码", pa.array(["", "", ""]), REFS).kind == "mobile"
    assert classify_column("product_name", pa.array(["兰蔻小黑瓶精华 50ml", "SK-II神仙水 230ml"] * 5), REFS).kind != "person_name"
    both = classify_column("证件号码", pa.array(["11010519491231002X", "E12345678"] * 5), REFS)
    values_only = classify_column("col_7", pa.array(["11010519491231002X", "E12345678"] * 5), REFS)
    assert both.kind == values_only.kind == "document_number" and both.confidence > values_only.confidence


def test_masking_shows_shape_not_value():
    assert mask("13812345678") == "1**********" and mask("王芳") == "王*"
    assert mask("PVG-T2-D", identifying=False) == "P******D"


def _blind(table: pa.Table, truth: dict, seed: int):
    order = list(range(table.num_columns))
    random.Random(seed).shuffle(order)
    names = [f"c{i}" for i in range(table.num_columns)]
    return (
        pa.table([table.column(j) for j in order], names=names),
        {names[i]: truth[table.column_names[j]] for i, j in enumerate(order)},
    )


def test_blind_classification_of_generated_exports(landing):
    """Headers renamed to nothing and columns shuffled: values alone must name every column."""
    predicted, truth = {}, {}
    for source, policy in load_policies(POLICIES).items():
        path = sorted(landing.glob(policy.files.format(date="*", yyyymmdd="*").replace("**", "*")))[0]
        table = sample_csv(path, sniff_encoding(path), 5000)
        blind, labels = _blind(table, {h: policy.match_header(h).kind for h in table.column_names}, seed=len(source))
        predicted |= {f"{source}.{p.column}": p.kind for p in classify_table(blind, REFS)}
        truth |= {f"{source}.{c}": k for c, k in labels.items()}
    result = score(predicted, truth)
    assert result.columns == 58
    assert result.micro_f1 >= 0.98, result.confusions
    assert result.direct_identifiers_found == result.direct_identifiers == 16


def _raw_identifier_values(path) -> set[str]:
    table = sample_csv(path, sniff_encoding(path), 5000)
    raw = set()
    for name in table.column_names:
        p = classify_column(name, table[name], REFS)
        if KINDS[p.kind][0] == "direct_identifier":
            raw |= {v for v in table[name].to_pylist() if v and len(v) >= 4}
    return raw


def test_cli_json_for_a_file_and_for_a_directory(landing):
    file = sorted(landing.glob("membership/*/*.csv"))[0]
    result = CliRunner().invoke(app, ["classify", str(file), "--format", "json"])
    assert result.exit_code == 0, result.output
    proposals = json.loads(result.output)
    doc = proposals["证件号码"]
    assert (doc["role"], doc["kind"]) == ("direct_identifier", "document_number") and doc["confidence"] >= 0.95
    assert all(set(v) == {"role", "kind", "confidence"} for v in proposals.values())
    result = CliRunner().invoke(app, ["classify", str(landing / "after_sales"), "--format", "json"])
    by_file = json.loads(result.output)
    assert set(by_file) == {str(p) for p in (landing / "after_sales").rglob("*.csv")}
    assert all(v["description"]["kind"] == "free_text" for v in by_file.values())


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_cli_never_prints_a_raw_value(landing, fmt):
    for file in [sorted(landing.glob(f"{s}/*/*.csv"))[0] for s in ("pos", "membership", "after_sales")]:
        output = CliRunner().invoke(app, ["classify", str(file), "--format", fmt]).output
        leaked = [v for v in _raw_identifier_values(file) if v in output]
        assert not leaked, (file.name, len(leaked))


def test_draft_policy_loads_and_matches_the_reviewed_kinds(landing, policy_copy):
    shipped = load_policies(POLICIES)["membership"]
    file = sorted(landing.glob("membership/*/*.csv"))[0]
    out = policy_copy / "draft.yaml"
    result = CliRunner().invoke(app, ["classify", str(file), "--out", str(out)])
    assert result.exit_code == 0 and "review it before use" in result.output
    text = out.read_text("utf-8")
    assert (
        text.startswith("# DRAFT") and "encoding: gb18030" in text and "files: membership/{date}/members_{yyyymmdd}*.csv" in text
    )
    draft = load_policy(out)
    assert {c.aliases[0] if c.aliases else c.name: c.kind for c in draft.columns} == {
        c.aliases[0]: c.kind for c in shipped.columns
    }
    assert draft.entity == "customer_id" and draft.column("doc_no").output_name == "customer_id"
    assert all(c.family in ("suppression", "pseudonymization") for c in draft.columns if c.role == "direct_identifier")
    assert re.search(r"# person_name \(confidence [01]\.\d+\): \d+ of \d+ non-empty values matched", text)


def test_classify_refuses_an_unknown_format(landing):
    result = CliRunner().invoke(app, ["classify", str(landing), "--format", "xml"])
    assert result.exit_code == 2


def test_dates_are_judged_against_today():
    young = classify_column("d", pa.array(["2020-01-01", "2021-05-05", "2019-03-03"]), REFS)
    assert young.kind == "date"  # too recent to be birth dates
    old = classify_column(
        "d", pa.array(["1980-01-01", "1975-05-05"]), type(REFS)(REFS.countries, REFS.airports, dt.date(2026, 1, 1))
    )
    assert old.kind == "birth_date"


def test_labels_with_an_identifier_in_a_few_rows_are_never_proposed_insensitive():
    """An after-sales `resolution` of short labels, one of which a clerk typed a mobile into."""
    labels = ["已退款", "已换货", "已回访", "已关闭"] * 50 + ["已短信通知13812345678"]
    proposal = classify_column("resolution", pa.array(labels), REFS)
    assert proposal.kind == "free_text" and proposal.role == "free_text"
    assert "13812345678" not in " ".join(proposal.samples)
