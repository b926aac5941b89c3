"""Policies load strictly, name file/source/column in every error, and cover every column."""

import pyarrow as pa
import pytest

from transforms.policy import PolicyError, load_policies, load_policy
from transforms.steps import ExportError, conform


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_shipped_policies_cover_the_spec(policy_copy):
    from sample_data.generator import CASE_COLUMNS, MEMBERSHIP_HEADER, POS_COLUMNS

    policies = load_policies(policy_copy)
    assert set(policies) == {"pos", "membership", "after_sales"}
    for source, headers in (("pos", POS_COLUMNS), ("membership", MEMBERSHIP_HEADER), ("after_sales", CASE_COLUMNS)):
        assert all(policies[source].match_header(h) for h in headers), source
        assert all(c.purpose and c.pipl for c in policies[source].columns)
    # Every direct identifier is dropped, pseudonymized or redacted; nothing is kept as it was.
    for policy in policies.values():
        for column in policy.columns:
            if column.role in ("direct_identifier", "free_text"):
                assert column.family in ("suppression", "pseudonymization", "redaction"), column.name


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "transform: drop\n  buyer_name",
            "transform: shred\n  buyer_name",
            "column 'member_no': transform: Value error, unknown transform",
        ),
        ("params: {domain: customer, normalize: document}", "params: {domian: customer, normalize: document}", "column 'doc_no'"),
        ("levels: [0, 2], weight: 8}", "levels: [3, 2], weight: 8}", "column 'store_code'"),
        (
            "  product_name:\n    role: insensitive\n    kind: category\n    pipl: none\n"
            "    purpose: The SKU's name; product covers it.\n    transform: drop",
            "  product_name:\n    role: insensitive\n    kind: category\n    pipl: none\n"
            "    purpose: The SKU's name; product covers it.\n    transform: keep",
            "column 'product_name': value: Value error, a published column of a dataset about people describes a person",
        ),
        (
            "  buyer_name:\n    role: direct_identifier\n    kind: person_name\n    pipl: general\n"
            "    purpose: Not needed for any analysis.\n    transform: drop",
            "  buyer_name:\n    role: direct_identifier\n    kind: person_name\n    pipl: general\n"
            "    purpose: Not needed for any analysis.\n    transform: keep",
            "column 'buyer_name': value: Value error, a direct_identifier cannot be published",
        ),
    ],
)
def test_errors_name_file_source_and_column(policy_copy, old, new, message):
    path = policy_copy / "pos.yaml"
    _edit(path, old, new)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert str(path) in str(err.value) and "source 'pos'" in str(err.value) and message.split(":")[0] in str(err.value)


def test_missing_hierarchy_file_is_named(policy_copy):
    (policy_copy / "hierarchies" / "store.csv").unlink()
    with pytest.raises(PolicyError, match="column 'store_code': hierarchy file .*store.csv not found"):
        load_policy(policy_copy / "pos.yaml")


def test_policy_hash_covers_hierarchy_files(policy_copy):
    before = load_policy(policy_copy / "pos.yaml").sha256
    with (policy_copy / "hierarchies" / "store.csv").open("a") as fh:
        fh.write("PVG-T3-D,airport,*\n")
    assert load_policy(policy_copy / "pos.yaml").sha256 != before


def test_conform_fails_closed(policy_copy):
    policy = load_policies(policy_copy)["membership"]
    headers = [h for c in policy.columns for h in c.aliases[:1]]
    table = pa.table({h: pa.array(["x"]) for h in headers})
    assert conform(table, policy, "m.csv").column_names == [c.name for c in policy.columns]
    with pytest.raises(ExportError, match=r"m.csv: column\(s\) \['会员卡面号'\] are not covered .* tuomin classify m.csv"):
        conform(table.append_column("会员卡面号", pa.array(["x"])), policy, "m.csv")
    with pytest.raises(ExportError, match=r"required column\(s\) \['name'\] are missing"):
        conform(table.drop_columns(["姓名"]), policy, "m.csv")
    dup = pa.Table.from_arrays([pa.array(["x"])] * (len(headers) + 1), names=headers + ["会员编号"])
    with pytest.raises(ExportError, match="appear more than once"):
        conform(dup, policy, "m.csv")


def test_optional_columns_may_be_missing(policy_copy):
    _edit(
        policy_copy / "membership.yaml",
        "  wechat_openid:\n    aliases: [微信OpenID]\n",
        "  wechat_openid:\n    aliases: [微信OpenID]\n    required: false\n",
    )
    policy = load_policies(policy_copy)["membership"]
    headers = [c.aliases[0] for c in policy.columns if c.name != "wechat_openid"]
    out = conform(pa.table({h: pa.array(["x"]) for h in headers}), policy, "m.csv")
    assert out["wechat_openid"].null_count == 1


def test_retention_is_required_and_counts_from_the_export_date(policy_copy):
    import datetime as dt

    path = policy_copy / "membership.yaml"
    retention = load_policy(path).retention
    assert retention.keep_until(dt.date(2028, 2, 29)) == dt.date(2031, 2, 28)
    assert not retention.expired(dt.date(2026, 3, 1), dt.date(2029, 3, 1))
    assert retention.expired(dt.date(2026, 3, 1), dt.date(2029, 3, 2))
    assert not retention.raw_expired(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    assert retention.raw_expired(dt.date(2026, 3, 1), dt.date(2026, 4, 1))
    assert "PIPL Art. 47" in retention.deletion_ground
    text = path.read_text("utf-8")
    path.write_text(text[: text.index("retention:")] + text[text.index("\ncolumns:") :], "utf-8")
    with pytest.raises(PolicyError, match="source 'membership': retention: Field required"):
        load_policy(path)


def test_a_floor_raises_the_lowest_level_the_engine_may_choose_and_nothing_else():
    from flows.runtime.paths import POLICIES
    from transforms.policy import load_policies

    pos = load_policies(POLICIES)["pos"]
    chosen = [c for c in pos.quasi_identifiers if c.level_range[0] < c.level_range[1]]
    first, second = chosen[0], chosen[1]
    raised = pos.at_least({first.published_name: first.level_range[0] + 1, second.published_name: 99})
    assert raised.column(first.name).level_range == (first.level_range[0] + 1, first.level_range[1])
    assert raised.column(second.name).level_range == (second.level_range[1], second.level_range[1])  # capped
    others = [c.name for c in pos.columns if c.name not in (first.name, second.name)]
    assert [raised.column(n).model_dump() for n in others] == [pos.column(n).model_dump() for n in others]
    assert pos.column(first.name).level_range == first.level_range and raised.sha256 == pos.sha256


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("  recursive_diversity:\n    - {attribute: points, c: 3, l: 2}\n", None),
        ("  recursive_diversity:\n    - {attribute: points, c: 3, l: 1}\n", "l: Input should be greater"),
        ("  recursive_diversity:\n    - {attribute: name, c: 3, l: 2}\n", "'name' is not a published"),
        ("  t_closeness:\n    - {attribute: points, t: 0.2}\n", "Extra inputs are not permitted"),
        ("  recursive_diversity:\n    - {c: 3, l: 2}\n", "each entry is {attribute"),
    ],
    ids=["declared", "out-of-bounds", "not-published", "unknown-kind", "no-attribute"],
)
def test_a_criterion_on_a_sensitive_column_is_declared_under_its_kind(policy_copy, new, message):
    """Any criterion of transforms/criteria.COLUMN_CRITERIA is declared under its kind's key; its
    parameters are checked as the criterion's class says, and an error names file and source."""
    from transforms.criteria import LDiversity, RecursiveDiversity

    path = policy_copy / "membership.yaml"
    _edit(path, "    - {attribute: points, l: 2}\n", "    - {attribute: points, l: 2}\n" + new)
    if message is None:
        model = load_policy(path).model
        assert model.columns == (
            LDiversity("lifetime_spend", 2.0),
            LDiversity("points", 2.0),
            RecursiveDiversity("points", 3.0, 2),
        )
        assert model.sensitive == ("lifetime_spend", "points")
        return
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert str(path) in str(err.value) and "source 'membership'" in str(err.value) and message in str(err.value)


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("by: {store: 0}", "question 'q': 'store' is not a published quasi-identifier"),
        ("by: {product: -1}", "question 'q': product at level -1"),
        ("by: {}", "questions.0.by"),
        ("by: {product: 2}\n    extra: 1", "questions.0.extra"),
    ],
)
def test_a_question_asks_only_what_the_policy_publishes(policy_copy, question, message):
    """A declared question names published quasi-identifiers at levels the policy can publish:
    anything else is refused at load, naming the file, the source and the question."""
    path = policy_copy / "pos.yaml"
    _edit(
        path,
        "questions:\n",
        f"questions:\n  - name: q\n    ask: a question\n    measure: rows\n    period: day\n    {question}\n",
    )
    with pytest.raises(PolicyError) as found:
        load_policies(policy_copy)
    assert str(path) in str(found.value) and "'pos'" in str(found.value) and message in str(found.value)


def test_shipped_questions_load(policy_copy):
    policies = load_policies(policy_copy)
    assert [q.name for q in policies["pos"].questions][:2] == ["lines_by_category_week_channel", "buyers_by_continent_month"]
    assert [q.by for q in policies["after_sales"].questions] == [{"case_type": 0}]
