"""The unit a person-level record lives in: what one published partition holds, decided by the
rows' own dates, never by the file that delivered them (../shared/privacy-model.md, "Units follow
the rows").

    events      a source of events (purchases, contacts) declares the column that dates each row
                and a grain: the unit is one business period of that date (a day by default, or
                an ISO week or a month). A person's record is their rows of one period: a
                buyer-day, a buyer-week … Rows outside the delivering file's window are placed by
                their own date; a closing dump and the same rows as daily files make the same units.
    snapshot    a source of profiles (the CRM, a full snapshot a day) publishes one unit, the
                latest snapshot: each snapshot repeats the same people, so publishing more would
                grow neither the answers nor anything but the intruder's view (snapshots chain).

A period is named by a label in the type of its grain, as generalized time is published: a day
'2026-03-01', a week '2026-W10', a month '2026-03'; a snapshot by its export date. Values relative
to a date (a departure's lead time) count from the row's own business date.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from transforms.policy import Unit

Grain = Literal["day", "week", "month"]
FORMATS: dict[str, str] = {"day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m"}
UNIT = "__unit"  # the unit's label beside the staged and tallied rows


def periods(dates: pa.Array | pa.ChunkedArray, grain: Grain) -> pa.Array:
    """Each row's period label from its business date or time (local time, as exported); null
    where the date is null."""
    # A period depends on the day only: each distinct day is formatted once (strftime per row
    # is most of pass 1's time on a file of one or a few days).
    days = pc.dictionary_encode(business_days(dates))
    named = pc.strftime(days.dictionary.cast(pa.timestamp("s")), format=FORMATS[grain])
    return pc.take(named, days.indices)


def labels(parsed: pa.Table, unit: Unit, snapshot: dt.date) -> pa.Array:
    """Each row's unit label: the period of its own date, or for a snapshot source the snapshot's
    date (`snapshot`, the export date of the file that delivered it)."""
    if unit.column is None:
        return pa.repeat(pa.scalar(snapshot.isoformat(), pa.string()), parsed.num_rows)
    return periods(parsed[unit.column], unit.grain)


def business_days(dates: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The business day (a date) of each row's date or time."""
    values = dates.combine_chunks() if isinstance(dates, pa.ChunkedArray) else dates
    return values.cast(pa.date32()) if not pa.types.is_date(values.type) else values


def days_after(values: pa.Array | pa.ChunkedArray, reference: pa.Array) -> pa.Array:
    """Whole days from each row's business day (`reference`, dates) to its date in `values`
    (a departure's lead time), as int32; null where either is null."""
    target = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return pc.subtract(business_days(target).cast(pa.int32()), business_days(reference).cast(pa.int32()))


def grain_of(label: str) -> Grain:
    """A period's grain from its label's shape (a snapshot's label is a day)."""
    return "week" if "-W" in label else "month" if len(label) == 7 else "day"


def first_day(label: str, grain: Grain | None = None) -> dt.date:
    """The first day of a period (a snapshot's label is its day); the grain from the label when not given."""
    grain = grain or grain_of(label)
    if grain == "week":
        year, week = label.split("-W")
        return dt.date.fromisocalendar(int(year), int(week), 1)
    if grain == "month":
        return dt.date.fromisoformat(label + "-01")
    return dt.date.fromisoformat(label)


def last_day(label: str, grain: Grain | None = None) -> dt.date:
    """The last day of a period."""
    grain = grain or grain_of(label)
    start = first_day(label, grain)
    if grain == "week":
        return start + dt.timedelta(days=6)
    if grain == "month":
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    return start


def unit_ids(labels: list[str]) -> np.ndarray:
    """A 60-bit integer per unit label. A person's id in one unit is their token's id XOR their
    unit's (person_ids): the same customer in two units is two person-level records to the engine,
    as their published tokens are. Two records share an id only by a ~2^-60 accident, which could
    only count two people as one (stricter, never looser)."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(label.encode(), digest_size=8).digest(), "big") >> 4 for label in labels], np.int64
    )


def person_ids(token_ids: pa.Array, units: pa.Array) -> pa.Array:
    """Each row's person-level record as an integer: its token id (transforms.pseudonymize.token_ids)
    combined with its unit label's id; null where there is no token (a row of its own)."""
    encoded = pc.dictionary_encode(units.combine_chunks() if isinstance(units, pa.ChunkedArray) else units)
    ids = unit_ids(encoded.dictionary.to_pylist())
    unit = ids[np.asarray(encoded.indices.to_numpy(zero_copy_only=False))]
    tokens = token_ids.combine_chunks() if isinstance(token_ids, pa.ChunkedArray) else token_ids
    values = np.asarray(pc.fill_null(tokens, 0).to_numpy(zero_copy_only=False), np.int64) ^ unit
    return pa.array(values, pa.int64(), mask=tokens.is_null().to_numpy(zero_copy_only=False))
