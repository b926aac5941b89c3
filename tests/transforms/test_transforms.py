"""Column transforms: normalization, parsing, pseudonyms, hierarchies, detection and redaction."""

import datetime as dt
import random
import re

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sample_data.notes import NoteWriter, Subject, full_width
from tests.examples import examples
from transforms import detectors
from transforms.hierarchy import AgeHierarchy, BandHierarchy, DatetimeHierarchy, PrefixHierarchy, TableHierarchy, encode
from transforms.parse import parse
from transforms.pseudonymize import Pseudonymizer, PseudonymKeyError
from transforms.redact import NameMatcher, redact_text
from transforms.text import document, mobile

KEY = b"k" * 32
mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


def test_mobile_and_document_normalization():
    shapes = ["+86 138 1234 5678", "86-138-1234-5678", "１３８１２３４５６７８", "13812345678", "0086 13812345678"]
    assert mobile(pa.array(shapes)).to_pylist() == ["13812345678"] * 5
    assert document(pa.array(["31010119900307123x", " e1234 5678", "", None])).to_pylist() == [
        "31010119900307123X",
        "E12345678",
        None,
        None,
    ]


def test_parsing_is_strict():
    dates, bad = parse(pa.array(["1988/7/14", "1988-07-14", "2026-02-30", "", "14/07/1988"]), "date", ["%Y-%m-%d", "%Y/%m/%d"])
    assert dates.to_pylist()[:2] == [dt.date(1988, 7, 14)] * 2
    assert bad.tolist() == [False, False, True, False, True]
    amounts, bad = parse(pa.array(["1,280.50", "１２.5", "-98.00", "12.345", "abc"]), "decimal")
    assert [str(v) if v is not None else None for v in amounts.to_pylist()] == ["1280.50", "12.50", "-98.00", None, None]
    assert bad.tolist() == [False, False, False, True, True]


@pytest.mark.parametrize("kind", ["string", "int", "decimal", "date", "datetime"])
def test_a_nul_byte_is_never_data(kind):
    """A value with a NUL byte is flagged (its row goes to quarantine), whatever its type."""
    good = {"string": "张伟", "int": "12", "decimal": "9.50", "date": "2026-03-01", "datetime": "2026-03-01 10:00:00"}[kind]
    _, bad = parse(pa.chunked_array([[good, good[:1] + "\x00" + good[1:]], [None, good]]), kind)
    assert bad.tolist() == [False, True, False, False]


identifier_texts = st.lists(
    st.one_of(
        st.none(),
        st.sampled_from(["+86 138 1234 5678", "１３８１２３４５６７８", "31010119900307123x", ""]),
        st.text("0123456789xX -+８６", max_size=14),
    ),
    max_size=30,
)


@given(identifier_texts)
def test_normalizing_a_column_is_normalizing_each_value(values):
    """Documents and mobiles are normalized once per distinct value: mapped back onto the rows,
    repeats, nulls and chunks included, the column must read as if each value were done alone."""
    column = pa.chunked_array(
        [pa.array(values[: len(values) // 2], pa.string()), pa.array(values[len(values) // 2 :], pa.string())]
    )
    for normalize in (document, mobile):
        assert normalize(column).to_pylist() == [normalize(pa.array([v], pa.string()))[0].as_py() for v in values]


@given(
    st.lists(
        st.one_of(st.none(), st.sampled_from(["1988/7/14", "1988-07-14", "2026-02-30", "", "14/07/1988", "2024-02-29"])),
        max_size=30,
    )
)
def test_parsing_a_column_is_parsing_each_value(values):
    """Dates are parsed once per distinct text; the rows must get what parsing each alone gives."""
    formats = ["%Y-%m-%d", "%Y/%m/%d"]
    parsed, bad = parse(pa.array(values, pa.string()), "date", formats)
    alone = [parse(pa.array([v], pa.string()), "date", formats) for v in values]
    assert parsed.to_pylist() == [p[0].as_py() for p, _ in alone]
    assert bad.tolist() == [b[0] for _, b in alone]


@given(st.lists(mobiles, min_size=1, max_size=20), st.sampled_from(["customer", "staff"]))
def test_pseudonyms_are_deterministic_and_hide_the_value(values, domain):
    p = Pseudonymizer(KEY)
    tokens = p.tokens(pa.array(values), domain, "mobile").to_pylist()
    assert tokens == p.tokens(pa.array(values), domain, "mobile").to_pylist()
    assert tokens == [p.token(v, domain) for v in values]
    for value, token in zip(values, tokens):
        assert re.fullmatch(r"[a-z2-7]{24}", token) and value not in token and value[-6:] not in token
    assert len(set(tokens)) == len(set(values))


@given(mobiles)
def test_keys_and_domains_give_unlinkable_tokens(value):
    a, b = Pseudonymizer(KEY), Pseudonymizer(b"j" * 32)
    assert a.token(value, "customer") != b.token(value, "customer")
    assert a.token(value, "customer") != a.token(value, "staff")
    assert a.key_id != b.key_id and KEY.decode() not in repr(a)


def test_short_or_missing_key_is_refused():
    with pytest.raises(PseudonymKeyError, match="31 bytes"):
        Pseudonymizer(b"x" * 31)


def _assert_monotone(hierarchy, values: pa.Array):
    """A coarser level never splits a class of the finer one (encode raises if it would)."""
    encoded = encode("x", values, hierarchy)
    for level in range(1, hierarchy.top + 1):
        finer, coarser = encoded.maps[level - 1][encoded.codes], encoded.maps[level][encoded.codes]
        assert all(len(set(coarser[finer == c])) == 1 for c in set(finer))
    assert encoded.sizes[-1] == 1  # the top level is one class


@given(st.lists(st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 1, 1)), min_size=1, max_size=40))
def test_datetime_truncation_is_monotone(values):
    _assert_monotone(DatetimeHierarchy(["hour", "day", "month", "year"]), pa.array(values, pa.timestamp("s")))


@given(st.lists(st.dates(min_value=dt.date(1930, 1, 1), max_value=dt.date(2008, 1, 1)), min_size=1, max_size=40))
def test_age_bands_are_monotone_and_correct(values):
    hierarchy = AgeHierarchy([1, 5, 10, 20], dt.date(2026, 3, 1))
    _assert_monotone(hierarchy, pa.array(values, pa.date32()))
    for born, age in zip(values, hierarchy.generalize(pa.array(values, pa.date32()), 1).to_pylist()):
        assert int(age) == 2026 - born.year - ((3, 1) < (born.month, born.day))


@given(
    st.lists(st.from_regex(r"[0-9]{6}", fullmatch=True), min_size=1, max_size=40),
    st.lists(st.integers(-100, 10**6), min_size=1, max_size=40),
)
def test_prefix_and_band_hierarchies_are_monotone(codes, amounts):
    _assert_monotone(PrefixHierarchy([4, 2]), pa.array(codes))
    _assert_monotone(BandHierarchy([[0, 100, 1000, 5000], [0, 1000]]), pa.array(amounts, pa.int64()))


def test_a_hierarchy_that_splits_a_class_is_refused():
    table = TableHierarchy([["a", "x", "p", "*"], ["b", "y", "p", "*"], ["c", "x", "q", "*"]])
    with pytest.raises(ValueError, match="not a coarsening"):
        encode("code", pa.array(["a", "b", "c"]), table)
    with pytest.raises(ValueError, match="coarsening"):
        BandHierarchy([[0, 100], [0, 50]])


def test_table_hierarchy_keeps_unknown_values_out_of_known_groups():
    h = TableHierarchy([["CHN", "Eastern Asia", "Asia", "*"]])
    assert [h.generalize(pa.array(["CHN", "XXX"]), lv).to_pylist() for lv in (1, 2, 3)] == [
        ["Eastern Asia", "*"],
        ["Asia", "*"],
        ["*", "*"],
    ]


def test_detectors_validate_what_they_find():
    text = "证件31010119900307123X 卡4111 1111 1111 1111 错卡4111111111111112 手机１３８-１２３４-５６７８ 单号20260301000481"
    kinds = [d.kind for _, _, d in detectors.find_identifiers(text)]
    assert kinds.count("bank_card") == 1 and "mobile" in kinds
    assert detectors.scan(pa.array([text, "clean", None])) == {"prc_id": 0, "mobile": 1, "email": 0, "bank_card": 1}


def _subject(rng: random.Random) -> Subject:
    return Subject(
        name=rng.choice(["王芳", "张伟", "SMITH JOHN"]),
        female=rng.random() < 0.5,
        mobile="1" + rng.choice("3589") + "".join(rng.choices("0123456789", k=9)),
        doc_type="身份证",
        doc_no="11010519491231002X",
        email="li.na88@163.com",
        address="浦东新区张杨路500号12楼1203室",
        card="6222021234567890128",
        flight="MU523",
        product="兰蔻小黑瓶精华 50ml",
        store="浦东机场T2免税店",
        amount="980.00",
    )


@examples(200)
@given(st.integers(0, 10**9))
def test_redaction_removes_every_embedded_identifier(seed):
    rng = random.Random(seed)
    subject = _subject(rng)
    writer = NoteWriter(rng)
    names = NameMatcher(["王芳", "张伟", "SMITH JOHN"])
    for note in (writer.description(subject, "退货"), writer.resolution(subject, "退货")):
        redacted = redact_text(note.text, names)
        for kind, written in note.identifiers:
            assert written not in redacted, (kind, note.text, redacted)
        assert not any(detectors.scan(pa.array([redacted])).values())


def test_redaction_keeps_the_text_around_identifiers():
    names = NameMatcher(["王芳"])
    text = f'顾客王芳，手机{full_width("13812345678")}，邮箱ａｂ＠ｑｑ．ｃｏｍ；李先生说："好"。'
    assert redact_text(text, names) == '顾客[姓名]，手机[手机号]，邮箱[邮箱]；[姓名]说："好"。'


def test_name_matcher_ignores_case_for_latin_names():
    assert NameMatcher(["SMITH JOHN"]).spans("contact Smith John today") == [(8, 18)]
    assert NameMatcher([]).spans("anything") == []


def test_scan_ignores_tokens():
    tokens = Pseudonymizer(KEY).tokens(pa.array([f"{i:011d}" for i in range(2000)]), "customer").to_pylist()
    assert detectors.scan(pa.array(tokens)) == dict.fromkeys(detectors.SCANNED_KINDS, 0)
    assert np.all([len(t) == 24 for t in tokens])


@given(
    st.lists(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1)), min_size=1, max_size=30),
    st.sampled_from(["hour", "day", "week", "month", "quarter", "year"]),
)
def test_datetime_truncation_is_correct(values, unit):
    import pandas as pd

    got = DatetimeHierarchy([unit]).generalize(pa.array(values, pa.timestamp("s")), 1).to_pylist()
    stamps = pd.DatetimeIndex(values)
    # Each unit in the type that says what it is (a month is a month, not its first day).
    expected = {
        "hour": [t.to_pydatetime() for t in stamps.floor("h")],
        "day": [t.date() for t in stamps.floor("D")],
        "week": [f"{t.isocalendar()[0]}-W{t.isocalendar()[1]:02d}" for t in stamps],
        "month": [f"{t.year}-{t.month:02d}" for t in stamps],
        "quarter": [f"{t.year}-Q{t.quarter}" for t in stamps],
        "year": [t.year for t in stamps],
    }[unit]
    assert got == expected


def test_hierarchies_accept_table_columns():
    """Table columns are chunked arrays; every hierarchy must take them as they come."""
    chunked = pa.chunked_array(
        [pa.array([dt.datetime(2026, 3, 4, 5)], pa.timestamp("s")), pa.array([dt.datetime(2026, 4, 5, 6)], pa.timestamp("s"))]
    )
    assert DatetimeHierarchy(["month"]).generalize(chunked, 1).to_pylist() == ["2026-03", "2026-04"]


@pytest.mark.parametrize("kind", ["date", "datetime"])
def test_a_date_no_export_can_hold_is_a_bad_value_not_data(kind):
    """9999-12-31 (or 1899) parses, but no retail export holds it: a bad value (its row is
    quarantined), never a date that breaks the arithmetic after it (a week or month later)."""
    from transforms.parse import parse

    suffix = "" if kind == "date" else " 10:00:00"
    values = pa.array([f"2026-03-01{suffix}", f"9999-12-31{suffix}", f"1899-12-31{suffix}", "", f"2199-12-31{suffix}"])
    typed, bad = parse(values, kind)
    assert bad.tolist() == [False, True, True, False, False]
    assert typed.null_count == 3 and typed[4].as_py().year == 2199
