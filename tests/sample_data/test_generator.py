"""The sample generator writes the exports exactly as ../shared/spec/exports.md describes."""

import codecs
import re

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sample_data.generator import CASE_COLUMNS, MEMBERSHIP_HEADER, POS_COLUMNS, Config, _csv, generate
from tests.examples import examples
from transforms.identifiers import is_card_number, is_mobile, is_prc_id


@pytest.fixture(scope="module")
def frames(landing):
    pos = pd.concat(
        [pd.read_csv(p, dtype=str, encoding="utf-8-sig", keep_default_na=False) for p in sorted(landing.glob("pos/*/*.csv"))],
        ignore_index=True,
    )
    crm = pd.read_csv(sorted(landing.glob("membership/*/*.csv"))[-1], dtype=str, encoding="gb18030", keep_default_na=False)
    cases = pd.concat(
        [pd.read_csv(p, dtype=str, encoding="utf-8", keep_default_na=False) for p in sorted(landing.glob("after_sales/*/*.csv"))],
        ignore_index=True,
    )
    return pos, crm, cases


def test_same_seed_same_bytes(tmp_path):
    config = Config(days=2, rows=120, seed=3)
    generate(tmp_path / "a", config)
    generate(tmp_path / "b", config)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.csv"))
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    generate(tmp_path / "c", Config(days=2, rows=120, seed=4))
    assert (tmp_path / "a" / files[0]).read_bytes() != (tmp_path / "c" / files[0]).read_bytes()


def test_parts_give_the_same_bytes_on_any_number_of_processes(tmp_path):
    """Small parts force several per day (POS, CRM and cases), forked or in one process."""
    config = Config(days=2, rows=900, seed=5, part=200)
    generate(tmp_path / "forked", config, workers=2)
    generate(tmp_path / "serial", config, workers=1)
    files = sorted(p.relative_to(tmp_path / "forked") for p in (tmp_path / "forked").rglob("*.csv"))
    assert len(files) == 8 and not list((tmp_path / "forked").glob(".pieces-*"))
    assert all((tmp_path / "forked" / f).read_bytes() == (tmp_path / "serial" / f).read_bytes() for f in files)
    pos = pd.concat([pd.read_csv(p, dtype=str, encoding="utf-8-sig") for p in sorted((tmp_path / "forked").glob("pos/*/*.csv"))])
    assert len(pos) == 1800 and not pos.duplicated(["txn_id", "line_no"]).any()  # receipts numbered across parts
    crm = pd.read_csv(tmp_path / "forked/membership/2026-03-01/members_20260301.csv", dtype=str, encoding="gb18030")
    assert crm["会员编号"].is_unique and crm["证件号码"].str.upper().is_unique
    cases = pd.read_csv(tmp_path / "forked/after_sales/2026-03-01/cases_20260301.csv", dtype=str)
    assert list(cases["case_no"]) == [f"AS-20260301-{i:05d}" for i in range(1, len(cases) + 1)]


@examples(150)
@given(st.lists(st.tuples(st.text(max_size=12), st.one_of(st.none(), st.text(max_size=12))), min_size=1, max_size=20))
def test_csv_pieces_are_what_duckdb_writes(tmp_path_factory, rows):
    """Arrow's fast path (no value needs quotes) and DuckDB's writer give the same bytes."""
    rows = [(a.replace("\x00", ""), b and b.replace("\x00", "")) for a, b in rows]
    table = pa.table({"a": [a for a, _ in rows], "b": [b for _, b in rows]})
    tmp = tmp_path_factory.mktemp("csv")
    _csv(table, tmp / "ours.csv")
    duckdb.connect().from_arrow(table).write_csv(str(tmp / "duckdb.csv"), header=False)
    assert (tmp / "ours.csv").read_bytes() == (tmp / "duckdb.csv").read_bytes()


def test_the_bundled_sample_is_what_the_generator_makes(tmp_path):
    """Same bytes in another process too: nothing may depend on hash order (set iteration)."""
    from flows.runtime.paths import SAMPLE_LANDING

    generate(tmp_path, Config())
    files = sorted(p.relative_to(SAMPLE_LANDING) for p in SAMPLE_LANDING.rglob("*.csv"))
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.csv"))
    assert all((tmp_path / f).read_bytes() == (SAMPLE_LANDING / f).read_bytes() for f in files)


def test_layout_encodings_and_headers(landing):
    pos = sorted(landing.glob("pos/*/pos_lines_*.csv"))
    assert [p.parent.name for p in pos] == ["2026-03-01", "2026-03-02", "2026-03-02"]
    assert pos[-1].name == "pos_lines_20260302_part2.csv"  # the last day arrives split
    for p in pos:
        raw = p.read_bytes()
        assert raw.startswith(codecs.BOM_UTF8)
        assert raw[3:].split(b"\n")[0].decode() == ",".join(POS_COLUMNS)
    crm = (landing / "membership/2026-03-01/members_20260301.csv").read_bytes()
    assert crm.split(b"\n")[0].decode("gb18030") == ",".join(MEMBERSHIP_HEADER)
    with pytest.raises(UnicodeDecodeError):
        crm.decode("utf-8")  # really GB18030, not UTF-8
    cases = (landing / "after_sales/2026-03-01/cases_20260301.csv").read_bytes()
    assert not cases.startswith(codecs.BOM_UTF8) and cases.split(b"\n")[0].decode() == ",".join(CASE_COLUMNS)
    assert (landing / "requests/erasure.csv").read_text().startswith("requested_at,doc_no,mobile,member_no")


def test_resident_ids_match_birth_date_and_sex(frames):
    pos, crm, _ = frames
    ids = crm[crm["证件类型"] == "身份证"]
    assert len(ids) > 100
    assert all(is_prc_id(d.upper()) for d in ids["证件号码"])
    assert any(d.endswith("x") for d in pd.concat([pos["doc_no"], crm["证件号码"]]))  # lower-case x occurs
    for doc, born, sex in zip(ids["证件号码"], ids["出生日期"], ids["性别"]):
        y, m, d = (int(x) for x in re.split(r"[-/]", born))
        assert doc[6:14] == f"{y:04d}{m:02d}{d:02d}"
        if sex:
            assert (int(doc[16]) % 2 == 1) == (sex == "男")
    assert crm["出生日期"].str.contains("/").any() and crm["出生日期"].str.contains("-").any()


def test_documents_mobiles_and_cards_take_every_shape(frames):
    pos, crm, _ = frames
    assert set(pos["doc_type"]) == {"身份证", "护照", "港澳通行证", "台胞证"}
    assert pos["doc_no"].str.fullmatch(r"[EG]\d{8}").any() and pos["doc_no"].str.fullmatch(r"[HM]\d{8}(\d{2})?").any()
    mobiles = pd.concat([pos["mobile"], crm["手机号码"]])
    mobiles = mobiles[mobiles != ""]
    for shape in (r"1\d{10}", r"\+86 1\d{2} \d{4} \d{4}", r"86-1\d{2}-\d{4}-\d{4}"):
        assert mobiles.str.fullmatch(shape).any(), shape
    assert all(is_mobile(re.sub(r"\D", "", m)[-11:]) for m in mobiles)
    cards = pos.loc[pos["card_no"] != "", "card_no"]
    full, masked = cards[~cards.str.contains(r"\*")], cards[cards.str.contains(r"\*")]
    assert len(full) and len(masked) and all(is_card_number(c) for c in full)
    assert masked.str.fullmatch(r"\d{6}\*+\d{4}").all()
    assert (pos.loc[pos["payment_method"].isin(["支付宝", "微信支付", "现金"]), "card_no"] == "").all()


def test_one_person_is_consistent_across_systems(frames):
    pos, crm, cases = frames
    doc_of = dict(zip(crm["会员编号"], crm["证件号码"]))
    members = pos[pos["member_no"] != ""]
    assert len(members) and all(doc_of[m].upper() == d.upper() for m, d in zip(members["member_no"], members["doc_no"]))
    receipts = set(pos["txn_id"])
    linked = cases[cases["txn_id"] != ""]
    assert linked["txn_id"].isin(receipts).mean() > 0.5  # the rest refer to receipts before the window


def test_pos_amounts_add_up(frames):
    pos, _, _ = frames
    qty, price, discount, amount = (pos[c].astype(float) for c in ("qty", "unit_price", "discount", "amount"))
    assert ((qty * price - discount - amount).abs() < 0.005).all()
    assert (qty < 0).any()  # refunds


def test_free_text_embeds_identifiers_in_full_width():
    """On the bundled sample (75 cases; a fixture's 34 may by chance lack a template)."""
    from flows.runtime.paths import SAMPLE_LANDING

    cases = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in SAMPLE_LANDING.glob("after_sales/*/*.csv")])
    text = " ".join(cases["description"]) + " ".join(cases["resolution"])
    assert re.search(r"[０-９]{4}", text)
    assert "\n" in text and '"' in text and "," in text  # line breaks, quotes and commas inside fields
