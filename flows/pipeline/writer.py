"""The one way published rows are checked on their way to the warehouse: a run's pass 2 (every
unit of a dataset through one writer), an erasure's rewrite, and a review's re-check of what is
published all go through a PartitionWriter.

    check      each batch, as it passes: the gate's content checks (schema, no identifier) on the
               distinct values of every CHECK_ROWS rows or so, and its classes
               (transforms/plan.count_classes, with the unit's label when there are several)
               spilled to the work area
    close      after the last batch: the classes counted out of core (DuckDB), k and l validated on
               them once (GX), the unit a column of every class; the class frame and the combined
               outcome. GX runs a number of times that follows the rows, never the units
    stage      the checked batches into the run's staging directory (flows/storage/warehouse.stage),
               the metadata made from `close`'s result after the last batch

Publishing is the rename that follows (warehouse.publish), done by the caller once everything that
must hold across partitions (the release gate) holds too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from expectations.suite import Gate, Outcome, validate
from flows.storage import warehouse as warehouse_io
from flows.storage.footer import PartitionRecord
from flows.storage.spill import Spill
from transforms.outofcore import class_table
from transforms.plan import PEOPLE, ROWS, count_classes, distinct_values
from transforms.policy import SourcePolicy
from transforms.units import UNIT

CHECK_ROWS = 250_000  # published rows whose distinct values one content check reads


@dataclass(frozen=True)
class ClassColumns:
    """What a partition's classes are made of: the quasi-identifiers, the person (entity) and the
    sensitive columns; what k, l and the risk figures are computed from."""

    qis: tuple[str, ...]
    entity: str | None
    sensitive: tuple[str, ...]

    @classmethod
    def of_policy(cls, policy: SourcePolicy, units: bool = False) -> ClassColumns:
        """A source's classes; with `units`, each class is also keyed by its unit's label (a
        run's pass 2 checks every unit of a dataset at once)."""
        qis = tuple(c.output_name for c in policy.quasi_identifiers if c.output_name)
        return cls(((UNIT,) if units else ()) + qis, policy.entity, tuple(policy.sensitive_outputs))

    @classmethod
    def of_gate(cls, gate: Gate) -> ClassColumns:
        """A published partition's, as its file records them (through the gate it passed)."""
        return cls(gate.quasi_identifiers, gate.entity, gate.model.sensitive)

    @property
    def keys(self) -> list[str]:
        return list(dict.fromkeys([*self.qis, *([self.entity] if self.entity else []), *self.sensitive]))

    def count(self, table: pa.Table) -> pa.Table:
        """One batch's classes: distinct (QI values, entity id, sensitive values) with row counts."""
        return count_classes(table, self.keys, self.entity)

    def table(self, parts: list[Path | pa.Table], where: Path) -> pa.Table:
        """Pieces of classes merged, out of core (transforms/outofcore.class_table)."""
        sensitive = [s for s in self.sensitive if s not in self.qis]
        return class_table(parts, list(self.qis), self.entity, sensitive, ROWS, PEOPLE, where)

    def frame(self, parts: list[Path | pa.Table], where: Path) -> pd.DataFrame:
        return self.table(parts, where).to_pandas()


class PartitionWriter:
    """One partition's batches checked as they pass (see the module's docstring)."""

    def __init__(self, gate: Gate, columns: ClassColumns, project: Path, run_name: str, work: Path):
        self.gate, self.columns, self.project, self.run_name, self.work = gate, columns, project, run_name, work
        self.outcomes: list[Outcome] = []
        self.classes = Spill(work / "classes.parquet")
        self.rows = 0
        self.pending: list[pa.Table] = []  # distinct values not yet checked

    def check(self, tables: Iterable[pa.Table], unit: str | None = None) -> Iterator[pa.Table]:
        """The batches, checked as they pass; `unit` labels their classes (columns with a unit)."""
        for table in tables:
            self.pending.append(distinct_values(table))
            if sum(t.num_rows for t in self.pending) >= CHECK_ROWS:
                self._check_content()
            counted = (
                table if unit is None else table.append_column(UNIT, pa.repeat(pa.scalar(unit, pa.string()), table.num_rows))
            )
            self.classes.write(self.columns.count(counted))
            self.rows += table.num_rows
            yield table

    def _check_content(self) -> None:
        if self.pending:
            values = distinct_values(pa.concat_tables(self.pending)) if len(self.pending) > 1 else self.pending[0]
            self.outcomes.append(validate(self.gate.content(), values.to_pandas(), self.project, self.run_name))
            self.pending = []

    def close(self) -> tuple[pd.DataFrame, Outcome]:
        """The classes of everything checked, and every check's outcome together."""
        self._check_content()
        frame = self.columns.frame([self.classes.close()], self.work / "classes")
        if self.gate.quasi_identifiers:
            classes = dataclasses.replace(self.gate.classes(ROWS, PEOPLE), quasi_identifiers=self.columns.qis)
            self.outcomes.append(validate(classes, frame, self.project, self.run_name))
        return frame, Outcome.combine(self.outcomes)

    def stage(
        self,
        warehouse: Path,
        run_id: str,
        dataset: str,
        period: str,
        tables: Iterable[pa.Table],
        fields: dict[str, dict[str, str]],
        metadata: Callable[[pd.DataFrame, Outcome], PartitionRecord],
        arrange: Callable[[Iterator[pa.Table]], Iterable[pa.Table]] = lambda checked: checked,
    ) -> Path:
        """The checked batches, in the order `arrange` gives them (a run's published order), as the
        staged file of the partition; `metadata(classes, outcome)` goes into its footer."""
        return warehouse_io.stage(
            warehouse, run_id, dataset, period, arrange(self.check(tables)), fields, lambda: metadata(*self.close())
        )
