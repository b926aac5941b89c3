"""Custom expectations: k-anonymity and "no direct identifier anywhere".

Each is a table metric (computed with the same code `tuomin assess` uses) plus a BatchExpectation
that compares it to the policy. Results carry numbers only (k, counts per column and kind),
never a value from the data, so validation results and Data Docs stay free of personal data.
"""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa
from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider

from expectations.sentence import Described, listed
from transforms import detectors
from transforms import metrics as privacy
from transforms.criteria import PEOPLE, KAnonymity, LDiversity


def _frame(execution_engine, metric_domain_kwargs):
    df, _, _ = execution_engine.get_compute_domain(domain_kwargs=metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
    return df


class TableKAnonymity(TableMetricProvider):
    metric_name = "tuomin.k_anonymity"
    value_keys = ("quasi_identifiers", "entity_column", "count_column")

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):  # noqa: N805
        df = _frame(execution_engine, metric_domain_kwargs)
        return privacy.k_anonymity(
            df,
            list(metric_value_kwargs["quasi_identifiers"]),
            metric_value_kwargs["entity_column"],
            metric_value_kwargs.get("count_column"),
        )


class ExpectTableToBeKAnonymous(Described):
    """Every equivalence class over the quasi-identifiers holds at least k rows, or k distinct
    entities when entity_column is given (one person with many rows counts once). With
    count_column, each row is a distinct combination standing for that many rows (the compact
    form the streaming pipeline validates)."""

    quasi_identifiers: list[str]
    k: int
    entity_column: str | None = None
    count_column: str | None = None

    metric_dependencies: ClassVar[tuple[str, ...]] = ("tuomin.k_anonymity",)
    success_keys: ClassVar[tuple[str, ...]] = ("quasi_identifiers", "k", "entity_column", "count_column")

    @classmethod
    def sentence(cls, kwargs: dict) -> str:
        whom = "people (distinct customers)" if kwargs.get("entity_column") or kwargs.get("count_column") else "rows"
        return (
            f"Every group of records alike on {listed(kwargs.get('quasi_identifiers'))} holds at least "
            f"{kwargs.get('k')} {whom} (k-anonymity)."
        )

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        observed = metrics["tuomin.k_anonymity"]
        # An empty table has no class to violate k; publishing nothing is safe.
        fails = KAnonymity(self.k).fails({PEOPLE: observed})
        return {"success": observed == 0 or not fails, "result": {"observed_value": observed}}


class TableLDiversity(TableMetricProvider):
    metric_name = "tuomin.l_diversity"
    value_keys = ("quasi_identifiers", "sensitive", "measure", "count_column")

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):  # noqa: N805
        df = _frame(execution_engine, metric_domain_kwargs)
        if df.empty:
            return None
        ids = privacy.class_ids(df, list(metric_value_kwargs["quasi_identifiers"]))
        key = "l_distinct" if metric_value_kwargs["measure"] == "distinct" else "l_entropy"
        count = metric_value_kwargs.get("count_column")
        weights = df[count].to_numpy() if count else None
        return min(privacy.sensitive_figures(ids, df[s], weights)[key] for s in metric_value_kwargs["sensitive"])


class ExpectTableToBeLDiverse(Described):
    """Within every equivalence class, each sensitive attribute has at least l distinct values
    (measure "distinct") or an entropy of at least log(l) (measure "entropy")."""

    quasi_identifiers: list[str]
    sensitive: list[str]
    l: float
    measure: str = "distinct"
    count_column: str | None = None

    metric_dependencies: ClassVar[tuple[str, ...]] = ("tuomin.l_diversity",)
    success_keys: ClassVar[tuple[str, ...]] = ("quasi_identifiers", "sensitive", "l", "measure", "count_column")

    @classmethod
    def sentence(cls, kwargs: dict) -> str:
        how = "an entropy of at least log(l)" if kwargs.get("measure") == "entropy" else "at least l distinct values"
        return (
            f"Within every group alike on {listed(kwargs.get('quasi_identifiers'))}, {listed(kwargs.get('sensitive'))} "
            f"takes {how}, l = {kwargs.get('l')} (l-diversity)."
        )

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        observed = metrics["tuomin.l_diversity"]
        return {
            "success": observed is None or not LDiversity("", self.l, self.measure).fails_effective(observed),
            "result": {"observed_value": observed},
        }


class TableIdentifierHits(TableMetricProvider):
    metric_name = "tuomin.identifier_hits"
    value_keys = ("columns",)

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):  # noqa: N805
        df = _frame(execution_engine, metric_domain_kwargs)
        hits = {}
        for column in metric_value_kwargs["columns"]:
            counts = detectors.scan(pa.array(df[column].astype("str"), from_pandas=True))
            hits.update({f"{column}.{kind}": n for kind, n in counts.items() if n})
        return hits


class ExpectNoDirectIdentifiers(Described):
    """No value of the given string columns contains a resident ID (check digit valid), a mobile,
    an e-mail address or a card number (Luhn valid), in any width or with separators."""

    columns: list[str]

    metric_dependencies: ClassVar[tuple[str, ...]] = ("tuomin.identifier_hits",)
    success_keys: ClassVar[tuple[str, ...]] = ("columns",)

    @classmethod
    def sentence(cls, kwargs: dict) -> str:
        return (
            f"No value of {listed(kwargs.get('columns'))} holds a resident ID, mobile, e-mail address or card number "
            "(by check digit or Luhn, in any width or with separators)."
        )

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        hits = metrics["tuomin.identifier_hits"]
        return {"success": not hits, "result": {"observed_value": hits}}
