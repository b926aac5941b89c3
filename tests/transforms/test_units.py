"""transforms/units.py: a row's period from its own date."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.units import FORMATS, periods

_moments = st.lists(
    st.one_of(st.none(), st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2040, 12, 31))),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(moments=_moments, grain=st.sampled_from(["day", "week", "month"]), as_dates=st.booleans())
def test_each_period_is_the_strftime_of_its_own_day(moments, grain, as_dates):
    """Each distinct day is formatted once and looked up: the labels are those of formatting
    every row (ISO weeks across a year's end included), nulls staying null."""
    values = pa.array([m.date() if m and as_dates else m for m in moments], pa.date32() if as_dates else pa.timestamp("s"))
    expected = pc.strftime(values.cast(pa.timestamp("s")) if as_dates else values, format=FORMATS[grain])
    assert periods(values, grain).to_pylist() == expected.to_pylist()
    assert periods(pa.chunked_array([values, values]), grain).to_pylist() == expected.to_pylist() * 2
