"""The GX gate, run for real: it passes good batches, fails bad ones, and never quotes values."""

import json

import pandas as pd

from expectations.suite import Gate, validate
from transforms.criteria import LDiversity, PrivacyModel, RecursiveDiversity


def _gate(**kw):
    base = dict(
        dataset="t",
        columns=("city", "customer_id", "note"),
        quasi_identifiers=("city",),
        entity="customer_id",
        model=PrivacyModel(2),
        string_columns=("city", "customer_id", "note"),
    )
    return Gate(**{**base, **kw})


def test_k_is_counted_in_entities():
    frame = pd.DataFrame({"city": ["SH", "SH", "BJ", "BJ"], "customer_id": ["a", "a", "b", "c"], "note": ["ok"] * 4})
    outcome = validate(_gate(), frame)
    k_check = next(c for c in outcome.checks if c["expectation"] == "expect_table_to_be_k_anonymous")
    assert not outcome.success and k_check["observed"] == 1
    frame.loc[1, "customer_id"] = "d"
    assert validate(_gate(), frame).success


def test_identifiers_are_found_in_any_width_and_counted_not_quoted():
    values = ["顾客手机１３８ １２３４ ５６７８", "邮箱 li.na@163.com", "卡号 6222 0212 3456 7890 128", "证件11010519491231002x"]
    frame = pd.DataFrame({"city": ["SH"] * 4, "customer_id": ["a", "b", "c", "d"], "note": values})
    outcome = validate(_gate(), frame)
    scan = next(c for c in outcome.checks if c["expectation"] == "expect_no_direct_identifiers")
    assert not outcome.success
    assert scan["observed"] == {"note.mobile": 1, "note.email": 1, "note.bank_card": 1, "note.prc_id": 1}
    dumped = json.dumps(outcome.checks, ensure_ascii=False)
    assert not any(token in dumped for token in ("1234", "li.na", "0212", "19491231"))


def test_schema_drift_fails():
    frame = pd.DataFrame({"city": ["SH", "SH"], "customer_id": ["a", "b"], "note": ["", ""], "extra": [1, 2]})
    outcome = validate(_gate(), frame)
    assert not outcome.success and "expect_table_columns_to_match_set" in outcome.failures()[0]


def test_an_expectation_that_raises_is_a_failure_without_its_message():
    frame = pd.DataFrame({"city": ["SH"], "customer_id": ["a"], "note": ["x"]})
    outcome = validate(_gate(quasi_identifiers=("no_such_column",)), frame)
    k_check = next(c for c in outcome.checks if c["expectation"] == "expect_table_to_be_k_anonymous")
    assert not outcome.success and k_check == {**k_check, "success": False, "exception": "raised an exception"}


def test_l_diversity_expectation():
    frame = pd.DataFrame(
        {
            "city": ["SH"] * 3 + ["BJ"] * 3,
            "customer_id": list("abcdef"),
            "note": [""] * 6,
            "band": ["low", "high", "low", "low", "low", "low"],
        }
    )
    gate = _gate(columns=("band", "city", "customer_id", "note"), model=PrivacyModel(2, (LDiversity("band", 2),)))
    outcome = validate(gate, frame)
    check = next(c for c in outcome.checks if c["expectation"] == "expect_table_to_be_l_diverse")
    assert not outcome.success and check["observed"] == 1
    frame.loc[3, "band"] = "high"
    assert validate(gate, frame).success


def test_any_other_criterion_is_checked_through_the_one_criteria_metric():
    """A criterion on a sensitive column other than l-diversity (recursive (c, l)-diversity) is
    checked by expect_classes_to_meet_criterion, its observed value the worst class's figure."""
    frame = pd.DataFrame(
        {
            "city": ["SH"] * 4 + ["BJ"] * 4,
            "customer_id": list("abcdefgh"),
            "note": [""] * 8,
            "band": ["low", "high", "low", "high", "low", "low", "low", "high"],  # BJ: r1 = 3, r2 = 1
        }
    )
    model = PrivacyModel(2, (RecursiveDiversity("band", 3, 2),))
    gate = _gate(columns=("band", "city", "customer_id", "note"), model=model)
    outcome = validate(gate, frame)
    check = next(c for c in outcome.checks if c["expectation"] == "expect_classes_to_meet_criterion")
    assert not outcome.success and check["observed"] == 3.0 and not check["exception"]
    assert check["arguments"]["criterion"] == {"kind": "recursive_diversity", "column": "band", "parameters": {"c": 3, "l": 2}}
    frame.loc[6, "band"] = "high"  # BJ 2:2
    assert validate(gate, frame).success


def test_a_run_name_that_reads_as_a_date_with_an_offset_is_still_a_name(tmp_path):
    """GX parses a run name as a date when no time is given: a run id whose hex digits are all
    decimal read as a UTC offset beyond 24 hours and failed the run (about 1 run in 16)."""
    frame = pd.DataFrame({"city": ["SH", "SH"], "customer_id": ["a", "b"], "note": ["", ""]})
    outcome = validate(_gate(), frame, project=tmp_path, run_name="20261205T233012Z-283746")
    assert outcome.success


def test_results_and_data_docs_hold_no_values(tmp_path):
    from expectations.suite import build_docs

    frame = pd.DataFrame({"city": ["SH", "SH"], "customer_id": ["a", "b"], "note": ["手机13812345678", "王芳"]})
    outcome = validate(_gate(), frame, project=tmp_path, run_name="test run")
    assert not outcome.success
    site = build_docs(tmp_path)
    assert site.startswith("file://")
    files = [p for p in tmp_path.rglob("*") if p.suffix in (".html", ".json")]
    assert any(p.suffix == ".html" for p in files)
    assert not [p for p in files if "13812345678" in p.read_text(errors="ignore") or "王芳" in p.read_text(errors="ignore")]


def test_a_partition_records_the_gate_it_passed(published):
    """Erasure re-validates a partition against the gate its file records; under an unchanged
    policy that is the policy's own gate."""
    import pyarrow.parquet as pq

    from flows.runtime.paths import POLICIES
    from flows.storage.footer import read_record
    from transforms.policy import load_policies

    policies = load_policies(POLICIES)
    paths = sorted(published.warehouse.glob("dataset=*/period=*/part-0.parquet"))
    assert len(paths) == 5  # a partition per unit: 2 days of POS and of cases, the latest CRM snapshot
    for path in paths:
        record, schema = read_record(path), pq.read_schema(path)
        assert record.gate(schema) == Gate.of(policies[record.dataset], schema), path
