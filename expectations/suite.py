"""The publication gate: a GX suite built from a source's policy and run on the anonymized batch.

    schema      ExpectTableColumnsToMatchSet: exactly the columns the policy publishes
    k           ExpectTableToBeKAnonymous over the quasi-identifiers, counted in entities
    no PII      ExpectNoDirectIdentifiers over every published string column

Results are reduced to numbers and names (no data values) before anything stores or prints them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

import expectations  # noqa: F401  (registers the custom expectations before any suite is built)
from expectations.anonymity import ExpectNoDirectIdentifiers, ExpectTableToBeKAnonymous

# Only our table-level expectations and the column-set check run, and none of them reports
# values; partial_unexpected_count=0 keeps it so should a column-map expectation ever be added.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0, "include_unexpected_rows": False}


@dataclass(frozen=True)
class Gate:
    dataset: str
    columns: tuple[str, ...]
    quasi_identifiers: tuple[str, ...]
    entity: str | None
    k: int
    string_columns: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    success: bool
    checks: tuple[dict, ...]  # {expectation, success, observed, exception}; numbers and names only

    def failures(self) -> list[str]:
        return [f"{c['expectation']} (observed {c['observed']})" + (f": {c['exception']}" if c["exception"] else "")
                for c in self.checks if not c["success"]]


@cache
def _context():
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _definition(gate: Gate):
    context = _context()
    name = f"tuomin-{gate.dataset}-{abs(hash(gate))}"
    try:
        return context.validation_definitions.get(name)
    except Exception:  # noqa: BLE001  (GX raises its own not-found types; any miss means build it)
        pass
    source = context.data_sources.add_or_update_pandas(name)
    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    suite.add_expectation(gx.expectations.ExpectTableColumnsToMatchSet(column_set=list(gate.columns), exact_match=True))
    if gate.quasi_identifiers:
        suite.add_expectation(ExpectTableToBeKAnonymous(
            quasi_identifiers=list(gate.quasi_identifiers), k=gate.k, entity_column=gate.entity))
    if gate.string_columns:
        suite.add_expectation(ExpectNoDirectIdentifiers(columns=list(gate.string_columns)))
    return context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))


def validate(gate: Gate, frame: pd.DataFrame) -> Outcome:
    result = _definition(gate).run(batch_parameters={"dataframe": frame}, result_format=RESULT_FORMAT)
    checks = []
    for r in result.results:
        raised = _raised(r.exception_info)
        checks.append({
            "expectation": r.expectation_config.type,
            # An expectation that raised did not pass, whatever GX's success flag says.
            "success": bool(r.success) and not raised,
            "observed": (r.result or {}).get("observed_value"),
            # GX's exception text can quote data, so only the fact is kept.
            "exception": "raised an exception" if raised else None,
        })
    return Outcome(all(c["success"] for c in checks) and bool(checks), tuple(checks))


def _raised(info) -> bool:
    """GX reports exceptions flat ({raised_exception: …}) or, when a metric failed, nested under
    each metric's configuration id; either way counts."""
    if not isinstance(info, dict):
        return False
    if "raised_exception" in info:
        return bool(info["raised_exception"])
    return any(_raised(v) for v in info.values())
