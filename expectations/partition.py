"""Custom expectations on a partition's classes: k-anonymity, each criterion on a sensitive
column (transforms/criteria.py, through one metric), and "no direct identifier anywhere".

Each is a table metric (computed with the same code `tuomin assess` uses) plus a BatchExpectation
that compares it to the policy. Results carry numbers only (k, counts per column and kind),
never a value from the data, so validation results and Data Docs stay free of personal data.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa
from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider
from great_expectations.validator.metric_configuration import MetricConfiguration

from expectations.sentence import Described, listed
from transforms import detectors
from transforms import metrics as privacy
from transforms.criteria import PEOPLE, ColumnCriterion, KAnonymity, LDiversity, column_criterion

CRITERIA = "tuomin.criteria"


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


class TableCriteria(TableMetricProvider):
    """Per criterion on a sensitive column ({kind, column, parameters}): the classes it fails and
    the figure of the worst class (ColumnCriterion.figure), from the statistics it needs."""

    metric_name = CRITERIA
    value_keys = ("quasi_identifiers", "criteria", "count_column")

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):  # noqa: N805
        df = _frame(execution_engine, metric_domain_kwargs)
        found = []
        for recorded in metric_value_kwargs["criteria"]:
            criterion = column_criterion(recorded["kind"], recorded["column"], recorded["parameters"])
            if df.empty:  # no class to fail
                found.append({"failing": 0, "figure": None})
                continue
            qis, count = list(metric_value_kwargs["quasi_identifiers"]), metric_value_kwargs.get("count_column")
            _, stats = privacy.class_statistics(df, qis, criterion.needs, count=count)
            found.append({"failing": int(criterion.fails(stats).sum()), "figure": criterion.figure(stats)})
        return found


class _OnClasses(Described):
    """An expectation that every class meets criteria on sensitive columns (`criteria()`), read
    through the one metric above; observed: the worst class's figure."""

    metric_dependencies: ClassVar[tuple[str, ...]] = (CRITERIA,)

    def criteria(self) -> list[ColumnCriterion]:
        raise NotImplementedError

    # The metric's arguments follow from the expectation's own (the criteria it names).
    def get_validation_dependencies(self, execution_engine=None, runtime_configuration=None):
        dependencies = super().get_validation_dependencies(execution_engine, runtime_configuration)
        domain = dependencies.get_metric_configuration(CRITERIA).metric_domain_kwargs
        criteria = [{"kind": c.kind, "column": c.column, "parameters": c.parameters()} for c in self.criteria()]
        arguments = {"quasi_identifiers": self.quasi_identifiers, "criteria": criteria, "count_column": self.count_column}
        dependencies.set_metric_configuration(CRITERIA, MetricConfiguration(CRITERIA, domain, arguments))
        return dependencies

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        found = metrics[CRITERIA]
        figures = [f["figure"] for f in found]
        return {"success": all(f["failing"] == 0 for f in found), "result": {"observed_value": self.worst(figures)}}

    def worst(self, figures: list) -> Any:
        return figures[0] if len(figures) == 1 else figures


class ExpectClassesToMeetCriterion(_OnClasses):
    """Every equivalence class meets a criterion on a sensitive column (transforms/criteria.py:
    `criterion` is {kind, column, parameters}, as a footer records it). Observed: the worst
    class's figure (ColumnCriterion.figure)."""

    quasi_identifiers: list[str]
    criterion: dict[str, Any]
    count_column: str | None = None

    success_keys: ClassVar[tuple[str, ...]] = ("quasi_identifiers", "criterion", "count_column")

    @classmethod
    def sentence(cls, kwargs: dict) -> str:
        c = kwargs.get("criterion") or {}
        said = column_criterion(c["kind"], c["column"], c["parameters"]).sentence() if c else "(no criterion)"
        return f"Within every group alike on {listed(kwargs.get('quasi_identifiers'))}: {said}."

    def criteria(self) -> list[ColumnCriterion]:
        return [column_criterion(self.criterion["kind"], self.criterion["column"], self.criterion["parameters"])]


class ExpectTableToBeLDiverse(_OnClasses):
    """Within every equivalence class, each sensitive attribute has at least l distinct values
    (measure "distinct") or an entropy of at least log(l) (measure "entropy"): l-diversity's own
    name and arguments, as the files published since it was first checked record them. Observed:
    the least effective l of a class."""

    quasi_identifiers: list[str]
    sensitive: list[str]
    l: float
    measure: str = "distinct"
    count_column: str | None = None

    success_keys: ClassVar[tuple[str, ...]] = ("quasi_identifiers", "sensitive", "l", "measure", "count_column")

    @classmethod
    def sentence(cls, kwargs: dict) -> str:
        how = "an entropy of at least log(l)" if kwargs.get("measure") == "entropy" else "at least l distinct values"
        return (
            f"Within every group alike on {listed(kwargs.get('quasi_identifiers'))}, {listed(kwargs.get('sensitive'))} "
            f"takes {how}, l = {kwargs.get('l')} (l-diversity)."
        )

    def criteria(self) -> list[ColumnCriterion]:
        return [column_criterion("l_diversity", s, {"l": self.l, "measure": self.measure}) for s in self.sensitive]

    def worst(self, figures: list) -> Any:
        known = [f for f in figures if f is not None]
        return min(known) if known else None


def criterion_expectation(criterion: ColumnCriterion, quasi_identifiers: list[str], count_column: str | None) -> _OnClasses:
    """The expectation that checks a criterion on a sensitive column over a partition's classes."""
    if isinstance(criterion, LDiversity):
        return ExpectTableToBeLDiverse(
            quasi_identifiers=quasi_identifiers,
            sensitive=[criterion.column],
            l=criterion.l,
            measure=criterion.measure,
            count_column=count_column,
        )
    recorded = {"kind": criterion.kind, "column": criterion.column, "parameters": criterion.parameters()}
    return ExpectClassesToMeetCriterion(quasi_identifiers=quasi_identifiers, criterion=recorded, count_column=count_column)


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
