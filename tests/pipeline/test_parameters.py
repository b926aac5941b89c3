"""The run's one parameter model: an export date is parsed once, at the edge, into a dt.date;
every way of giving one (text from the command line or a deployment's form, a date) is the same
run, and a day that is not one is refused naming it."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from flows.pipeline.parameters import RunParameters


@given(st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31)))
def test_a_date_is_a_date_however_it_was_given(day):
    as_text, as_date = RunParameters(date=day.isoformat()), RunParameters(date=day)
    assert as_text == as_date and as_text.date == day and isinstance(as_text.date, dt.date)
    assert RunParameters.model_validate_json(as_text.model_dump_json()) == as_text  # as Prefect stores it


@given(st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31)), st.integers(0, 400))
def test_a_range_that_ends_before_it_starts_is_refused(start, days):
    end = start + dt.timedelta(days=days)
    assert RunParameters(start=start.isoformat(), end=end.isoformat()).end == end
    if days:
        with pytest.raises(ValidationError, match="is after end"):
            RunParameters(start=end, end=start)


@pytest.mark.parametrize("text", ["2026-02-30", "2026-3-1", "yesterday", "20260301x"])
def test_a_day_not_in_the_calendar_is_refused_naming_it(text):
    with pytest.raises(ValidationError, match=f"'{text}' is not a day of the calendar"):
        RunParameters(date=text)
