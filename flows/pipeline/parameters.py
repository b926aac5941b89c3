"""The anonymize-exports flow's one parameter: what to anonymize, from where, to where, and how.

A pydantic model, so the flow validates it before anything starts (a date that does not exist, a
range that ends before it starts, two ways of choosing dates at once: each refused naming the
field), and Prefect's UI shows each field's description beside it in a deployment's run form.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import typing
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from flows.runtime import paths


def day(value: str) -> dt.date:
    """An export date as given (the command line, a deployment's parameters, a URL): parsed here,
    once; from then on a run holds a dt.date."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a day of the calendar in the form YYYY-MM-DD") from None


class RunParameters(BaseModel):
    """What one run of anonymize-exports does. Which export files: those of `date` alone, or of
    `start` to `end` (a backfill), or `every` file found; by default those not yet read or
    changed since. Their rows are published in the units of their own dates (a release)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    landing: str = Field(
        str(paths.SAMPLE_LANDING), description="The landing area the exports are read from: a path or an fsspec URL."
    )
    warehouse: str = Field(str(paths.WAREHOUSE), description="Where the anonymized, hive-partitioned Parquet is published.")
    restricted: str = Field(
        str(paths.RESTRICTED),
        description="The restricted area (owner-only): ledger, backups, quarantine, work files, GX results.",
    )
    policies: str = Field(str(paths.POLICIES), description="The reviewed policy files, one per source.")
    date: dt.date | None = Field(None, description="One export date (YYYY-MM-DD).")
    start: dt.date | None = Field(None, description="First export date of a backfill (YYYY-MM-DD); none: from the first found.")
    end: dt.date | None = Field(None, description="Last export date of a backfill (YYYY-MM-DD); none: to the last found.")
    every: bool = Field(False, description="Every date found (or in the range), even those already published and unchanged.")
    drop_unknown: bool = Field(False, description="Drop (and record) columns no policy covers instead of failing the run.")
    backup: bool = Field(
        True, description="Back up each date's raw files, encrypted, before anything else (needs the backup key)."
    )
    rotate_key: bool = Field(
        False,
        description="Accept a pseudonym key other than the warehouse's: recorded in the ledger, every date republished under it.",
    )
    max_unit_rows: int = Field(
        2_000_000,
        ge=1,
        description="Rows one unit (a day of purchases) may hold; a larger unit is refused before the search "
        "(a 2 M-line day peaks at 1.9 GiB on 2 cores).",
    )
    runner: Literal["threads", "dask"] = Field(
        "threads", description="Where the per-file and per-partition work runs: a thread pool, or a Dask cluster."
    )
    dask_address: str | None = Field(None, description="A Dask scheduler to use (runner dask); default: a local cluster.")
    # Set by the command line and the deployments, not by a person: left out of the form the UI shows.
    trigger: SkipJsonSchema[str | None] = Field(
        None, description="Who started the run, as the ledger records it (default: the deployment or python)."
    )

    @field_validator("landing", "warehouse", "restricted", "policies", mode="before")
    @classmethod
    def _a_path_as_text(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("date", "start", "end", mode="before")
    @classmethod
    def _a_real_day(cls, value: object) -> object:
        return day(value) if isinstance(value, str) else value  # a date stays one; anything else: pydantic says

    @model_validator(mode="after")
    def _one_choice_of_dates(self) -> RunParameters:
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        if self.date and (self.start or self.end):
            raise ValueError("choose the dates one way: a date, or a range from start to end, not both")
        return self


def _described(name: str) -> Any:
    """A flow parameter's type with the description RunParameters gives the same field."""
    return Annotated[str, Field(description=RunParameters.model_fields[name].description)]


# The closing flows' parameters (review, retention, purge, erasure), described once: the Prefect UI
# shows each description beside its field.
LandingUrl = _described("landing")
Warehouse = _described("warehouse")
Restricted = _described("restricted")
Policies = _described("policies")
Trigger = Annotated[str, Field(description="Who started it, as the ledger records it (set by the command or the deployment).")]
AsOf = Annotated[dt.date | None, Field(description="The day to decide as of (YYYY-MM-DD; default today): to plan ahead.")]


F = TypeVar("F", bound=typing.Callable[..., Any])


def with_help(fn: F) -> F:
    """The flow function with an Args section in its docstring, made from its parameters' Annotated
    descriptions: Prefect reads parameter help from the docstring, and this way each description
    is written once (above) for every flow that takes the parameter."""
    lines = []
    for name, hint in typing.get_type_hints(fn, include_extras=True).items():
        described = [m.description for m in getattr(hint, "__metadata__", ()) if getattr(m, "description", None)]
        if described:
            lines.append(f"    {name}: {described[0]}")
    if lines:
        fn.__doc__ = inspect.cleandoc(fn.__doc__ or "") + "\n\nArgs:\n" + "\n".join(lines)
    return fn
