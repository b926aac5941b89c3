"""Custom expectations on the person-level record of a release (transforms/risk.person_frame: one
row per person, numbers only): the criteria of ../shared/privacy-model.md that a per-partition k
cannot show.

    ExpectPeopleToBeKmAnonymous   every person hides among k others on their own attributes and
                                  any m items they hold (entity-level k when m = 0; (k, k^m))
    ExpectPeopleToBeLDiverse      a sensitive attribute takes l values in each person's class
    ExpectEachPersonInOneUnit     no token joins a person's rows across datasets or dates

Each result is one number: how many people fail it.
"""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider
from great_expectations.validator.metric_configuration import MetricConfiguration

from expectations.partition import _frame
from expectations.sentence import Described

METRIC = "tuomin.people_failing"


class PeopleFailing(TableMetricProvider):
    """How many people (rows of the person frame with a value in `column`) fall below `at_least`
    (a number, or the name of a column holding each person's own bound) or above `at_most`."""

    metric_name = METRIC
    value_keys = ("column", "at_least", "at_most")

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):  # noqa: N805
        frame = _frame(execution_engine, metric_domain_kwargs)
        return int(
            failing(frame, metric_value_kwargs["column"], metric_value_kwargs["at_least"], metric_value_kwargs["at_most"]).sum()
        )


def failing(frame: pd.DataFrame, column: str, at_least: float | str | None, at_most: float | None) -> pd.Series:
    """Which people fail a bound: below `at_least` (a number or a column of per-person bounds) or
    above `at_most`; a person without a value in `column` (no such attribute) fails nothing."""
    values = frame[column]
    out = pd.Series(False, index=frame.index)
    if at_least is not None:
        out |= values < (frame[at_least] if isinstance(at_least, str) else at_least)
    if at_most is not None:
        out |= values > at_most
    return out & values.notna()


def failing_people(frame: pd.DataFrame, check: dict) -> pd.Series:
    """The people a recorded check ({expectation, arguments}, as expectations/suite.validate
    keeps it) failed: where the gate names the datasets they are in."""
    kind = {c.expectation_type: c for c in (ExpectPeopleToBeKmAnonymous, ExpectPeopleToBeLDiverse, ExpectEachPersonInOneUnit)}
    return failing(frame, *kind[check["expectation"]](**check["arguments"])._bounds())


class _OnPeople(Described):
    metric_dependencies: ClassVar[tuple[str, ...]] = (METRIC,)

    # What is read follows from the expectation's own arguments (k^m reads support_m against each
    # person's k), so the metric's arguments are set here rather than taken from the kwargs by name.
    def get_validation_dependencies(self, execution_engine=None, runtime_configuration=None):
        dependencies = super().get_validation_dependencies(execution_engine, runtime_configuration)
        domain = dependencies.get_metric_configuration(METRIC).metric_domain_kwargs
        column, at_least, at_most = self._bounds()
        dependencies.set_metric_configuration(
            METRIC, MetricConfiguration(METRIC, domain, {"column": column, "at_least": at_least, "at_most": at_most})
        )
        return dependencies

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        failing = metrics[METRIC]
        return {"success": failing == 0, "result": {"observed_value": failing}}


class ExpectPeopleToBeKmAnonymous(_OnPeople):
    """Every person-level record is shared by at least k people (column `k`: the k of the
    datasets it is in) on its relational attributes and every itemset of at most m of its items
    ((k, k^m)-anonymity; m = 0 is entity-level k). Observed: the people who are not."""

    m: int = 0

    success_keys: ClassVar[tuple[str, ...]] = ("m",)

    @classmethod
    def sentence(cls, kwargs: dict) -> str:
        m = kwargs.get("m", 0)
        knows = "their own attributes" if not m else f"their own attributes and any {m} of their purchases or contacts"
        return f"Every person is shared by at least k people (their datasets' k) on {knows} ((k, k^m)-anonymity, m = {m})."

    def _bounds(self):
        return f"support_{self.m}", "k", None


class ExpectPeopleToBeLDiverse(_OnPeople):
    """A sensitive attribute (`dataset.column`) takes at least l distinct values in the relational
    class of every person who has it: given all that is published beside it, it is not certain.
    Observed: the people whose class has fewer."""

    attribute: str
    l: int

    success_keys: ClassVar[tuple[str, ...]] = ("attribute", "l")

    @classmethod
    def sentence(cls, kwargs: dict) -> str:
        return (
            f"Given everything published beside it, {kwargs.get('attribute')} takes at least {kwargs.get('l')} distinct "
            "values among the people of every person's group: it is never certain (l-diversity)."
        )

    def _bounds(self):
        return f"l:{self.attribute}", self.l, None


class ExpectEachPersonInOneUnit(_OnPeople):
    """No person-level record spans two units (a dataset on a date): a token shared outside the
    unit it was keyed to would join them. Observed: the people whose rows span more."""

    success_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def sentence(cls, kwargs: dict) -> str:
        return "No person's records span two units (a dataset on a date): no token joins them."

    def _bounds(self):
        return "units", None, 1
