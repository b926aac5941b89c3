"""Where a date's steps run. The date pipeline (flows/pipeline/stages.py) names its work as Steps
and hands them to an Executor; it never asks which one. `Inline` runs them here, one after the
other, with nothing else needed: that is how the pipeline runs without Prefect (tests, a debugger,
a notebook). The flow (flows/pipeline/anonymize.py) runs them as Prefect tasks instead, with
retries and on a thread pool or a Dask cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Step:
    """One unit of work a runner may place elsewhere (another thread, a Dask worker): a module-level
    function and small, picklable arguments (paths, policies, ids; never the key or raw rows)."""

    fn: Callable[..., Any]
    args: tuple
    name: str  # what a runner shows, e.g. scan-pos-2026-03-01-0
    reads_landing: bool = False  # a read from the landing area: worth retrying when it fails transiently


class Executor(Protocol):
    def run(self, steps: Sequence[Step]) -> list:
        """Every step's result in order. Every step has ended before any result is read, so that a
        failure does not leave others running after their date has failed; the first failure is
        raised."""
        ...

    def call(self, step: Step) -> Any:
        """One step, on the calling thread."""
        ...


class Inline:
    """The steps here, in order: a failure stops the ones after it from starting."""

    def run(self, steps: Sequence[Step]) -> list:
        return [self.call(step) for step in steps]

    def call(self, step: Step) -> Any:
        return step.fn(*step.args)
