"""Home Assistant history -> 15-minute observations (energies per slot), the same rows the recorder writes.

Two sources over the WebSocket API, per configured role entity:

- recorder state history (``history/history_during_period``): every state change, kept about 10
  days by default. Power is integrated as a step function over each slot; an energy counter's
  slot energy is its increase across the slot (a decrease is a meter reset, never negative energy).
- long-term statistics (``recorder/statistics_during_period``, hourly, kept for good): hourly
  ``mean`` of power and hourly ``change`` of counters, spread evenly over the hour's four slots.
  A net grid mean cannot tell import from export within the hour; counters can, and are preferred.

Where both exist for a slot, the state history wins (it is finer). Pure conversion functions
below, the fetching in :func:`fetch_observations`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from shared.config import HomeAssistantConfig
from shared.ha.client import HAWebSocket
from shared.ha.units import ROLE_KIND, convert, house_load
from shared.progress import Progress
from shared.slots import SLOT

# role -> observation field(s); power roles split by sign where the contract has two fields
POWER_FIELDS: dict[str, tuple[str, str | None]] = {
    "pv_power": ("pv_kwh", None),
    "load_power": ("load_kwh", None),
    "grid_power": ("import_kwh", "export_kwh"),
    "battery_power": ("charge_kwh", "discharge_kwh"),
    "water_heater_power": ("water_kwh", None),
    "ev_power": ("ev_kwh", None),
}
COUNTER_FIELDS = {"import_energy": "import_kwh", "export_energy": "export_kwh"}
CHUNK_DAYS = 3  # history requests per chunk: bounded answers, visible progress


def _slot_index(start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    return pd.date_range(start.floor(SLOT), end.ceil(SLOT), freq=SLOT, inclusive="left", tz="UTC", name="slot_start")


def step_energy_kwh(times: pd.DatetimeIndex, values_kw: np.ndarray, start: pd.Timestamp,
                    end: pd.Timestamp) -> tuple[pd.Series, pd.Series]:
    """Positive and negative energy (kWh) per slot of a power step function (value holds until the next
    change; None/NaN = unknown, not covered). Also returns the covered share of each slot."""
    index = _slot_index(start, end)
    pos, neg, covered = (np.zeros(len(index)) for _ in range(3))
    bounds = list(times) + [end]
    for i, value in enumerate(values_kw):
        a, b = max(bounds[i], start), min(bounds[i + 1], end)
        if b <= a or not np.isfinite(value):
            continue
        t = a
        while t < b:
            slot = t.floor(SLOT)
            seg_end = min(b, slot + SLOT)
            k = index.get_loc(slot)
            hours = (seg_end - t).total_seconds() / 3600.0
            pos[k] += max(value, 0.0) * hours
            neg[k] += max(-value, 0.0) * hours
            covered[k] += hours * 4.0
            t = seg_end
    return (pd.DataFrame({"pos": pos, "neg": neg}, index=index),
            pd.Series(np.minimum(covered, 1.0), index=index))


def counter_energy_kwh(times: pd.DatetimeIndex, totals_kwh: np.ndarray, start: pd.Timestamp,
                       end: pd.Timestamp) -> pd.Series:
    """Energy per slot from a cumulative counter: the increase between the last readings at the slot's
    bounds; a decrease is a reset (the slot gets the new count since the reset)."""
    index = _slot_index(start, end)
    series = pd.Series(totals_kwh, index=times).dropna()
    series = series[~series.index.duplicated(keep="last")]
    if series.empty:
        return pd.Series(np.nan, index=index)
    step = series.diff()
    step[step < 0] = series[step < 0]  # reset to ~0: count from zero
    per_slot = step.iloc[1:].groupby(step.index[1:].floor(SLOT)).sum()
    out = per_slot.reindex(index)
    seen = series.index[0]
    out[(index + SLOT <= seen)] = np.nan
    return out


def observations_from_states(states: dict[str, list[dict[str, Any]]], config: HomeAssistantConfig,
                             start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Slot energies from ``history/history_during_period`` answers (compressed states: s, lu, a)."""
    index = _slot_index(start, end)
    out = pd.DataFrame(index=index)
    for role, spec in config.entities.items():
        rows = states.get(spec.entity_id) or []
        if not rows or (role not in POWER_FIELDS and role not in COUNTER_FIELDS and role != "battery_soc"):
            continue
        unit: str | None = spec.unit
        times, values = [], []
        for row in rows:
            unit = (row.get("a") or {}).get("unit_of_measurement", unit)  # attributes come when they change
            ts = row.get("lu", row.get("lc"))
            if ts is None:
                continue
            times.append(pd.Timestamp(float(ts), unit="s", tz="UTC"))
            value = convert(role, row.get("s"), unit, spec.sign).value
            values.append(np.nan if value is None else float(value))
        t_index = pd.DatetimeIndex(times)
        arr = np.asarray(values, dtype=float)
        if role in POWER_FIELDS:
            energy, covered = step_energy_kwh(t_index, arr, start, end)
            first, second = POWER_FIELDS[role]
            ok = covered >= 0.99
            out[first] = energy["pos"].where(ok)
            if second:
                out[second] = energy["neg"].where(ok)
        elif role in COUNTER_FIELDS:
            out[COUNTER_FIELDS[role]] = counter_energy_kwh(t_index, arr, start, end)
        else:  # SoC at the end of each slot: the last known value before the slot ends
            soc = pd.Series(arr, index=t_index).dropna()
            soc = soc[~soc.index.duplicated(keep="last")]
            out["soc_end_frac"] = soc.reindex(index + SLOT, method="ffill").to_numpy() if len(soc) else np.nan
    return out


def observations_from_statistics(stats: dict[str, list[dict[str, Any]]], config: HomeAssistantConfig,
                                 start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Slot energies from hourly long-term statistics (HA converted them to kW / kWh / %)."""
    index = _slot_index(start, end)
    out = pd.DataFrame(index=index)
    for role, spec in config.entities.items():
        rows = stats.get(spec.entity_id) or []
        if not rows:
            continue
        hours = pd.DatetimeIndex([pd.Timestamp(r["start"], unit="ms", tz="UTC") if isinstance(r["start"], (int, float))
                                  else pd.Timestamp(r["start"]).tz_convert("UTC") for r in rows])
        if role in POWER_FIELDS:
            mean_kw = pd.Series([r.get("mean") for r in rows], index=hours, dtype=float) * spec.sign
            per_slot = mean_kw.reindex(index, method="ffill", limit=3) * 0.25
            per_slot[index >= hours[-1] + pd.Timedelta(hours=1)] = np.nan
            first, second = POWER_FIELDS[role]
            out[first] = per_slot.clip(lower=0)
            if second:
                out[second] = (-per_slot).clip(lower=0)
        elif role in COUNTER_FIELDS:
            change = pd.Series([r.get("change") for r in rows], index=hours, dtype=float).clip(lower=0)
            per_slot = change.reindex(index, method="ffill", limit=3) / 4.0
            per_slot[index >= hours[-1] + pd.Timedelta(hours=1)] = np.nan
            out[COUNTER_FIELDS[role]] = per_slot
        elif role == "battery_soc":
            mean = pd.Series([r.get("mean") for r in rows], index=hours, dtype=float) / 100.0
            out["soc_end_frac"] = mean.reindex(index, method="ffill", limit=3)
    return out


def combine(fine: pd.DataFrame, coarse: pd.DataFrame) -> pd.DataFrame:
    """Per slot and field, the state-history value where it has one, else the statistics'; counters
    override power-derived import/export when both give a value. House load where no entity
    measures it: :func:`derive_load`."""
    cols = sorted(set(fine.columns) | set(coarse.columns))
    return derive_load(fine.reindex(columns=cols).combine_first(coarse.reindex(columns=cols)))


def derive_load(obs: pd.DataFrame) -> pd.DataFrame:
    """``load_kwh`` from the slot's balance where it is missing and PV, grid and battery are all
    known (the live path's rule, :func:`shared.ha.units.house_load`): most homes map no house-load
    sensor, and without a load history Aurora cannot train."""
    needed = ("pv_kwh", "import_kwh", "export_kwh", "charge_kwh", "discharge_kwh")
    if not all(c in obs.columns for c in needed):
        return obs
    out = obs.copy()
    if "load_kwh" not in out.columns:
        out["load_kwh"] = np.nan
    known = out[list(needed)].notna().all(axis=1) & out["load_kwh"].isna()
    zeros = pd.Series(0.0, index=out.index)
    water = out["water_kwh"].fillna(0.0) if "water_kwh" in out else zeros
    ev = out["ev_kwh"].fillna(0.0) if "ev_kwh" in out else zeros
    load = [house_load(r.pv_kwh, r.import_kwh - r.export_kwh, r.charge_kwh - r.discharge_kwh, w, e)
            for r, w, e in zip(out.loc[known].itertuples(), water[known], ev[known], strict=True)]
    out.loc[known, "load_kwh"] = load
    return out


def _stat_units() -> dict[str, str]:
    # HA converts statistics to these units server-side (recorder unit conversion).
    return {"power": "kW", "energy": "kWh"}


async def fetch_observations(client: HAWebSocket, config: HomeAssistantConfig, start: datetime, end: datetime,
                             progress: Progress | None = None) -> pd.DataFrame:
    """Observations (slot energies) for [start, end) from HA's state history and long-term statistics."""
    t0, t1 = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
    entity_ids = sorted({e.entity_id for role, e in config.entities.items() if ROLE_KIND[role] != "binary"})
    chunks = list(_chunks(t0, t1))
    total = len(chunks) + 1
    if progress:
        progress(0, total, "long-term statistics")
    stats = await client.call("recorder/statistics_during_period", timeout_s=120, start_time=t0.isoformat(),
                              end_time=t1.isoformat(), statistic_ids=entity_ids, period="hour",
                              types=["mean", "change"], units=_stat_units()) or {}
    coarse = observations_from_statistics(stats, config, t0, t1)
    fine_parts = []
    for i, (a, b) in enumerate(chunks, start=1):
        if progress:
            progress(i, total, f"state history {a:%Y-%m-%d}")
        states = await client.call("history/history_during_period", timeout_s=120, start_time=a.isoformat(),
                                   end_time=b.isoformat(), entity_ids=entity_ids, minimal_response=False,
                                   no_attributes=False, significant_changes_only=False) or {}
        fine_parts.append(observations_from_states(states, config, a, b))
    if progress:
        progress(total, total, "done")
    fine = pd.concat(fine_parts) if fine_parts else pd.DataFrame(index=_slot_index(t0, t1))
    return combine(fine, coarse)


def _chunks(start: pd.Timestamp, end: pd.Timestamp) -> Iterable[tuple[pd.Timestamp, pd.Timestamp]]:
    a = start
    while a < end:
        b = min(end, a + pd.Timedelta(days=CHUNK_DAYS))
        yield a, b
        a = b
