"""The operators and hierarchies policies name, beyond the basics in test_transforms."""

import datetime as dt
import hashlib
import hmac

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sample_data.notes import labelled_notes
from transforms.hierarchy import AddressHierarchy, AreaHierarchy, BandHierarchy, encode
from transforms.operators import OPERATORS, Mask, Suppress, mask
from transforms.pseudonymize import Pseudonymizer, base32
from transforms.redact import NameMatcher, redact_text

KEY = b"k" * 32


def test_every_operator_has_a_technique_family():
    families = {name: op.family for name, op in OPERATORS.items()}
    assert families == {
        "keep": "none",
        "drop": "suppression",
        "pseudonymize": "pseudonymization",
        "generalize": "generalization",
        "mask": "masking",
        "suppress": "suppression",
        "redact": "redaction",
    }


def test_mask_keeps_first_and_last():
    assert mask(pa.array(["13812345678", "6222021234567890123", "ab", None]), 3, 4).to_pylist() == [
        "138****5678",
        "622************0123",
        "**",
        None,
    ]
    assert Mask(keep_first=6, keep_last=4, normalize="document").apply(
        pa.array(["6222 0212 3456 7890 123"]), None
    ).to_pylist() == ["622202*********0123"]
    assert Mask(keep_first=3, keep_last=4, normalize="mobile").apply(pa.array(["+86 138 1234 5678"]), None).to_pylist() == [
        "138****5678"
    ]


@given(st.lists(st.text(min_size=0, max_size=30), min_size=1, max_size=20), st.integers(0, 4), st.integers(0, 4))
def test_mask_never_reveals_more_than_it_keeps(values, first, last):
    out = mask(pa.array(values), first, last).to_pylist()
    for value, masked in zip(values, out):
        assert len(masked) == len(value)
        shown = sum(1 for a, b in zip(value, masked) if a == b and b != "*")
        assert shown <= first + last or len(value) == 0


def test_cell_suppression_nulls_rare_values():
    out = Suppress(min_count=2).apply(pa.array(["a", "a", "b", None, "c", "c"]), None)
    assert out.to_pylist() == ["a", "a", None, None, "c", "c"]


def test_tokens_are_not_unkeyed_hashes():
    """A token must never equal any plain hash of the value: those fall to a dictionary attack."""
    value = "13812345678"
    token = Pseudonymizer(KEY).token(value, "customer")
    plain = [f(s.encode()).digest() for f in (hashlib.sha256, hashlib.sha1, hashlib.md5) for s in (value, "customer\x00" + value)]

    def as_token(digest: bytes) -> str:
        return base32(np.frombuffer(digest[:15], np.uint8).reshape(1, 15)).decode()

    assert token not in {as_token(d) for d in plain}
    assert token == as_token(hmac.new(KEY, b"customer\x00" + value.encode(), "sha256").digest())


def test_area_code_hierarchy_is_qualified_and_monotone():
    ids = pa.array(["11010519491231002X", "220104199001011235", "E12345678", None, "310115"])
    area = AreaHierarchy(["county", "prefecture", "province"])
    assert area.generalize(ids, 1).to_pylist() == ["北京市朝阳区", "吉林省长春市朝阳区", "*", "*", "上海市浦东新区"]
    assert area.generalize(ids, 3).to_pylist() == ["北京市", "吉林省", "*", "*", "上海市"]
    encode("area", ids, area)  # raises if a coarser level splits a group


def test_address_text_to_city_and_province():
    texts = pa.array(
        [
            "浦东新区张杨路500号",
            "江苏省苏州市姑苏区人民路1号",
            "广东深圳南山区科苑路3号",
            "朝阳区建国路1号",
            "北京朝阳区",
            "无地址",
            None,
        ]
    )
    hierarchy = AddressHierarchy(["prefecture", "province"])
    assert hierarchy.generalize(texts, 1).to_pylist() == ["上海市", "江苏省苏州市", "广东省深圳市", "*", "北京市", "*", "*"]
    assert hierarchy.generalize(texts, 2).to_pylist() == ["上海市", "江苏省", "广东省", "*", "北京市", "*", "*"]
    encode("address", texts, hierarchy)


def test_top_and_bottom_coding():
    bands = BandHierarchy([[0, 1000, 5000]], clip=(0, 5000))
    values = pa.array([-5, 12, 4999, 6000, None], pa.int64())
    assert bands.generalize(values, 1).to_pylist() == ["<0", "12", "4999", ">=5000", None]
    assert bands.generalize(values, 2).to_pylist() == ["<0", "[0, 1000)", "[1000, 5000)", ">=5000", None]
    encode("points", values, bands)


def test_redaction_recall_on_labelled_notes():
    """The benchmark's notes, smaller: nothing inserted survives (structured or names)."""
    notes, names = labelled_notes(1500, seed=4)
    matcher = NameMatcher(names)
    missed = [
        (kind, written) for text, identifiers in notes for kind, written in identifiers if written in redact_text(text, matcher)
    ]
    assert not missed, missed[:5]


def _add_id_area(policy_dir, params: str) -> None:
    """Give the membership policy a column derived from doc_no: where the ID card was issued."""
    path = policy_dir / "membership.yaml"
    path.write_text(
        path.read_text().replace(
            "columns:\n",
            f"""columns:
  id_area:
    from: doc_no
    role: quasi_identifier
    kind: document_number
    pipl: sensitive
    purpose: Where members' ID cards were issued.
    transform: generalize
    params: {params}
    output: id_province
""",
            1,
        )
    )


@pytest.mark.parametrize("level", [0, 1])
def test_identifying_kinds_are_generalized_from_level_one(policy_copy, level):
    from transforms.policy import PolicyError, load_policy

    _add_id_area(policy_copy, f"{{hierarchy: {{area: [prefecture, province]}}, levels: [{level}, 3]}}")
    path = policy_copy / "membership.yaml"
    if level == 0:
        with pytest.raises(PolicyError, match="identify a person; generalize them from level 1 up"):
            load_policy(path)
    else:
        column = load_policy(path).column("id_area")
        assert column.input_name == "doc_no" and column.quasi


def anonymize(parsed, tokens, policy, ctx, snapshot: dt.date):
    """Both passes of transforms/plan.py over one table held in memory; `snapshot`: the export
    date, which a snapshot source's rows take as their unit."""
    import numpy as np

    from transforms.operators import Suppress
    from transforms.plan import count_values, finish, hierarchies, merge, solve, stage, tally
    from transforms.units import labels

    staged = stage(parsed, tokens, np.zeros(parsed.num_rows, bool), policy, labels(parsed, policy.unit, snapshot))
    built = hierarchies(policy, ctx)
    plan = solve(merge([tally(staged, policy, ctx, built)], policy), policy, built, set())
    if any(isinstance(c.operator, Suppress) for c in policy.columns):
        plan = plan.with_counts(count_values(staged, policy, set()), policy)
    return plan, finish(staged, plan, policy, ctx, built, set())


def test_a_derived_column_reads_its_source(policy_copy, landing):
    """doc_no feeds both the customer token and the province of issue."""
    from tests.conftest import read_all
    from transforms.operators import Context
    from transforms.policy import load_policies
    from transforms.steps import entity_tokens, parse_table

    _add_id_area(policy_copy, "{hierarchy: {area: [province]}, level: 1}")
    policy = load_policies(policy_copy)["membership"]
    table = parse_table(read_all(landing, policy, dt.date(2026, 3, 1)), policy).table
    pseudonymizer = Pseudonymizer(KEY)
    ctx = Context(pseudonymizer, policy_copy, NameMatcher([]), policy.privacy.reference_date)
    plan, out = anonymize(table, entity_tokens(table, policy, pseudonymizer), policy, ctx, dt.date(2026, 3, 1))
    provinces = set(out.table["id_province"].to_pylist())
    assert "上海市" in provinces and "*" in provinces  # passports and permits have no area code
    assert "id_province" in plan.levels and "customer_id" in out.table.column_names
