"""The slot grid: 15-minute slots aligned to the quarter hour in UTC, local days in the site's zone.

A slot is identified by its start (a tz-aware UTC timestamp). A local day has 96 slots, or
92 / 100 on the spring / autumn DST change days.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone, tzinfo

import pandas as pd

SLOT_MINUTES = 15
SLOT = timedelta(minutes=SLOT_MINUTES)
SLOT_HOURS = SLOT_MINUTES / 60.0
SLOTS_PER_HOUR = 60 // SLOT_MINUTES
UTC = timezone.utc


def as_utc(ts: datetime | pd.Timestamp | str) -> pd.Timestamp:
    """A timestamp in UTC; a naive one is refused because its meaning is a guess."""
    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp {stamp.isoformat()} has no UTC offset; give one (e.g. +01:00 or Z)")
    return stamp.tz_convert(UTC)


def floor_slot(ts: datetime | pd.Timestamp | str) -> pd.Timestamp:
    """Start of the slot that contains ``ts``."""
    return as_utc(ts).floor(f"{SLOT_MINUTES}min")


def ceil_slot(ts: datetime | pd.Timestamp | str) -> pd.Timestamp:
    return as_utc(ts).ceil(f"{SLOT_MINUTES}min")


def slot_range(start: datetime | pd.Timestamp | str, end: datetime | pd.Timestamp | str) -> pd.DatetimeIndex:
    """Slot starts from ``start`` (floored) up to but excluding ``end``."""
    first = floor_slot(start)
    last = as_utc(end)
    return pd.date_range(first, last, freq=f"{SLOT_MINUTES}min", inclusive="left", tz=UTC, name="slot_start")


def horizon_slots(start: datetime | pd.Timestamp | str, hours: float) -> pd.DatetimeIndex:
    first = floor_slot(start)
    return slot_range(first, first + pd.Timedelta(hours=hours))


def local_day_bounds(day: date, tz: tzinfo) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC start and end of a local calendar day (23, 24 or 25 hours long)."""
    start = pd.Timestamp(datetime(day.year, day.month, day.day), tz=tz)
    nxt = day + timedelta(days=1)
    end = pd.Timestamp(datetime(nxt.year, nxt.month, nxt.day), tz=tz)
    return start.tz_convert(UTC), end.tz_convert(UTC)


def local_day_slots(day: date, tz: tzinfo) -> pd.DatetimeIndex:
    """All slots of a local day: 96, or 92 / 100 on DST change days."""
    start, end = local_day_bounds(day, tz)
    return slot_range(start, end)


def local_dates(index: pd.DatetimeIndex, tz: tzinfo) -> pd.Index:
    """The local calendar date of each slot start."""
    return pd.Index(index.tz_convert(tz).date, name="local_date")


def expand_to_slots(series: pd.Series, kind: str = "power") -> pd.Series:
    """Expand a coarser series (e.g. hourly) to 15-minute slots.

    ``kind="power"`` (kW, prices, temperatures) repeats each value over its sub-slots;
    ``kind="energy"`` (kWh per interval) divides it evenly. The index must be tz-aware, regular,
    and a whole multiple of 15 minutes; the last interval is expanded to its full length.
    """
    if kind not in ("power", "energy"):
        raise ValueError(f"kind must be 'power' or 'energy', got {kind!r}")
    if series.empty:
        return series.copy()
    index = pd.DatetimeIndex(series.index)
    if index.tz is None:
        raise ValueError("series index has no time zone; slot timestamps must carry a UTC offset")
    index = index.tz_convert(UTC)
    step = infer_resolution(index)
    if step % SLOT != timedelta(0):
        raise ValueError(f"resolution {step} is not a whole multiple of {SLOT_MINUTES} minutes")
    factor = step // SLOT
    values = series.to_numpy()
    if kind == "energy":
        values = values / factor
    repeated = pd.Series(values, index=index).reindex(
        pd.date_range(index[0], index[-1] + step, freq=f"{SLOT_MINUTES}min", inclusive="left", tz=UTC),
        method="ffill",
        limit=factor - 1,
    )
    repeated.name = series.name
    repeated.index.name = "slot_start"
    return repeated


def infer_resolution(index: pd.DatetimeIndex) -> timedelta:
    """The most common step between timestamps (robust to gaps)."""
    if len(index) < 2:
        return SLOT
    diffs = pd.Series(index[1:] - index[:-1])
    return diffs.mode().iloc[0].to_pytimedelta()
