"""A criterion on a sensitive column added to a policy goes through every room without a line
for it outside transforms/criteria.py: recursive (c, l)-diversity declared on membership's points
is searched for by the engine, recorded in the file's footer, checked by the GX gate, read back as
the partition's model, held to by `tuomin risk` and said by the data dictionary; and it holds on
the rows as published."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from typer.testing import CliRunner

from flows.cli import app
from flows.storage import dictionary
from flows.storage.footer import read_footer, read_record
from tests.conftest import run_flow
from tests.leaks import find_leaks, raw_identifiers
from transforms.criteria import RecursiveDiversity

C, L = 1.25, 2  # below the 1.5 the levels l-diversity needs already give: the engine must act for it


def test_recursive_diversity_declared_in_a_policy_holds_on_what_is_published(prefect_server, landing, policy_copy, tmp_path):
    policy = policy_copy / "membership.yaml"
    after = "    - {attribute: points, l: 2}\n"
    declared = f"  recursive_diversity:\n    - {{attribute: points, c: {C}, l: {L}}}\n"
    policy.write_text(policy.read_text().replace(after, after + declared))
    run = run_flow(landing, tmp_path, date="2026-03-02", policies=str(policy_copy))
    assert run.state.is_completed(), run.summary
    [path] = run.warehouse.glob("dataset=membership/period=*/part-0.parquet")

    footer = read_footer(path)  # the file records it under its kind, as the policy declared it
    assert footer["recursive_diversity"] == [{"attribute": "points", "column": "points", "c": float(C), "l": L}]
    record = read_record(path)
    assert RecursiveDiversity("points", float(C), L) in record.model().columns

    [check] = [c for c in footer["validation"]["checks"] if c["expectation"] == "expect_classes_to_meet_criterion"]
    assert check["success"] and check["arguments"]["criterion"]["kind"] == "recursive_diversity"
    assert 0 < check["observed"] < C  # the worst class's r1 / (r_l + ...): below c

    rows = pq.read_table(path).to_pandas()  # the rows as published, class by class
    for _, group in rows.groupby(record.quasi_identifiers, dropna=False):
        r = sorted(group["points"].value_counts(dropna=False).tolist(), reverse=True)
        assert r[0] < C * sum(r[L - 1 :]), r

    risk = CliRunner().invoke(app, ["risk", "--warehouse", str(run.warehouse), "--format", "json"])
    assert risk.exit_code == 0, risk.output
    assert json.loads(risk.output)["singled_out_share"] == 0

    points = next(c for c in dictionary.build(run.warehouse)["datasets"]["membership"]["columns"] if c["column"] == "points")
    assert any("recursive (c, l)-diversity" in said for said in points["held_to"]), points["held_to"]
    assert any("(l-diversity)" in said for said in points["held_to"])

    # What the new criterion adds to the file (its entry, its check's arguments and figure), to
    # `tuomin risk` and to the dictionary holds names and figures only, never a raw value.
    texts = [json.dumps(footer, ensure_ascii=False), risk.output, json.dumps(points, ensure_ascii=False)]
    assert not find_leaks(texts, raw_identifiers(landing))
