"""Recorder: telemetry power readings -> per-slot energies (kWh) with coverage, and daily data quality.

Each reading's power is held from its timestamp until the next reading, but never longer than
``max_hold`` (a silent meter is a gap, not a constant). Energy of a slot is what was measured over
its covered part only; ``coverage_frac`` says how much of the slot that was. Nothing is filled in.
"""

from __future__ import annotations

from datetime import date, timedelta, tzinfo

import numpy as np
import pandas as pd

from shared.slots import SLOT, UTC, floor_slot, local_day_slots

CORE_FIELDS = ("pv_kw", "load_kw", "grid_import_kw", "grid_export_kw")
BATTERY_FIELDS = ("battery_charge_kw", "battery_discharge_kw")
POWER_FIELDS = CORE_FIELDS + BATTERY_FIELDS
SOC_FIELD = "soc_frac"
GRADES = ("clean", "gaps", "battery_missing")


def slot_energies(
    readings: pd.DataFrame,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    max_hold: timedelta = timedelta(minutes=2),
) -> pd.DataFrame:
    """Integrate power readings (kW, tz-aware index) into slots [start, end).

    Returns one row per slot: ``<field>_kwh`` for every power field present (``pv_kw`` ->
    ``pv_kwh``), ``<field>_coverage_frac``, ``coverage_frac`` (the least-covered core field),
    ``battery_coverage_frac`` and ``soc_end_frac`` (last SoC reading in the slot).
    """
    if readings.index.tz is None:
        raise ValueError("readings need tz-aware timestamps")
    readings = readings.sort_index()
    readings = readings[~readings.index.duplicated(keep="last")]
    ts = pd.DatetimeIndex(readings.index).tz_convert(UTC)
    start = floor_slot(ts[0]) if start is None else floor_slot(start)
    end = (floor_slot(ts[-1]) + SLOT) if end is None else pd.Timestamp(end).tz_convert(UTC)
    slots = pd.date_range(start, end, freq=SLOT, inclusive="left", tz=UTC, name="slot_start")
    n_slots = len(slots)
    slot_s = SLOT.total_seconds()
    t = (ts - start).total_seconds().to_numpy()
    # each reading holds until the next one, at most max_hold, and not past `end`
    nxt = np.append(t[1:], np.inf)
    stop = np.minimum(np.minimum(nxt, t + max_hold.total_seconds()), (end - start).total_seconds())
    begin = np.maximum(t, 0.0)
    out = pd.DataFrame(index=slots)
    fields = [f for f in POWER_FIELDS if f in readings.columns]
    if not fields:
        raise ValueError(f"readings have none of the power fields {', '.join(POWER_FIELDS)}")
    first_slot = np.floor(begin / slot_s).astype(np.int64)
    last_slot = np.ceil(stop / slot_s).astype(np.int64) - 1
    for f in fields:
        power = readings[f].to_numpy(dtype=float)
        energy = np.zeros(n_slots)
        covered = np.zeros(n_slots)
        valid = np.isfinite(power) & (stop > begin)
        for i in np.flatnonzero(valid):
            for k in range(max(first_slot[i], 0), min(last_slot[i], n_slots - 1) + 1):
                lo = max(begin[i], k * slot_s)
                hi = min(stop[i], (k + 1) * slot_s)
                if hi > lo:
                    covered[k] += hi - lo
                    energy[k] += power[i] * (hi - lo) / 3600.0
        cov = covered / slot_s
        out[f.replace("_kw", "_kwh")] = np.where(cov > 0, energy, np.nan)
        out[f"{f.replace('_kw', '')}_coverage_frac"] = cov
    core = [f"{f.replace('_kw', '')}_coverage_frac" for f in CORE_FIELDS if f in fields]
    bat = [f"{f.replace('_kw', '')}_coverage_frac" for f in BATTERY_FIELDS if f in fields]
    out["coverage_frac"] = out[core].min(axis=1) if core else 0.0
    out["battery_coverage_frac"] = out[bat].min(axis=1) if bat else 0.0
    if SOC_FIELD in readings.columns:
        soc = pd.Series(readings[SOC_FIELD].to_numpy(dtype=float), index=ts).dropna()
        soc = soc[(soc.index >= start) & (soc.index < end)]
        out["soc_end_frac"] = soc.groupby(soc.index.floor(SLOT)).last().reindex(slots)
    else:
        out["soc_end_frac"] = np.nan
    return out


def grade_days(
    slots: pd.DataFrame,
    tz: tzinfo,
    has_battery: bool = True,
    min_coverage_frac: float = 0.95,
    days: list[date] | None = None,
) -> pd.DataFrame:
    """Data quality per local day: ``clean``, ``gaps`` (a slot missing or under-covered) or
    ``battery_missing`` (load/PV/grid complete, battery readings not).

    Columns: slots_expected (92/96/100 on DST days), slots_complete, coverage_frac, grade.
    """
    local = slots.index.tz_convert(tz)
    if days is None:
        days = sorted(set(local.date))
    rows = []
    for d in days:
        expected = local_day_slots(d, tz)
        day = slots.reindex(expected)
        cov = day["coverage_frac"].fillna(0.0)
        complete = int((cov >= min_coverage_frac).sum())
        bat_cov = day["battery_coverage_frac"].fillna(0.0) if "battery_coverage_frac" in day else cov * 0
        if complete < len(expected):
            grade = "gaps"
        elif has_battery and bool((bat_cov < min_coverage_frac).any()):
            grade = "battery_missing"
        else:
            grade = "clean"
        rows.append({"local_date": d, "slots_expected": len(expected), "slots_complete": complete,
                     "coverage_frac": float(cov.mean()), "grade": grade})
    return pd.DataFrame(rows).set_index("local_date")


class SlotRecorder:
    """Streaming wrapper: add readings as they come, take finished slots when a slot closes."""

    def __init__(self, max_hold: timedelta = timedelta(minutes=2)) -> None:
        self.max_hold = max_hold
        self._buffer: list[tuple[pd.Timestamp, dict[str, float]]] = []
        self._next_slot: pd.Timestamp | None = None

    def add(self, timestamp: pd.Timestamp, reading: dict[str, float]) -> None:
        ts = pd.Timestamp(timestamp)
        if ts.tzinfo is None:
            raise ValueError(f"reading at {ts} has no time zone")
        if self._next_slot is None:
            self._next_slot = floor_slot(ts)
        self._buffer.append((ts.tz_convert(UTC), dict(reading)))

    def finished(self, now: pd.Timestamp) -> pd.DataFrame:
        """Energies of every slot that ended at or before ``now`` and was not returned yet."""
        if not self._buffer or self._next_slot is None:
            return pd.DataFrame()
        end = floor_slot(now)
        if end <= self._next_slot:
            return pd.DataFrame()
        frame = pd.DataFrame([r for _, r in self._buffer], index=pd.DatetimeIndex([t for t, _ in self._buffer]))
        out = slot_energies(frame, self._next_slot, end, self.max_hold)
        # keep the last reading before `end` (it may hold into the next slot) and everything after
        keep_from = max((i for i, (t, _) in enumerate(self._buffer) if t < end), default=0)
        self._buffer = self._buffer[keep_from:]
        self._next_slot = end
        return out
