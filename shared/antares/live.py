"""Episodes from the live planner's own runs (``system_id = "live"``), read back from the database.

For each slot of a local day: the plan the executor was following (the newest plan created at
or before the slot start that has the slot), what that plan knew for the rest of the day
(its prices and load/PV forecasts) and the measured state at the slot start (the previous
slot's observation: SoC, load, PV). Targets are that plan's decisions for the slot. Only
days where every slot has such a plan and measured load/PV are used; a day with a missing
battery reading is kept with ``battery_weight = 0``. These rows never mix with simulated
ones (:func:`shared.antares.episodes.check_one_system`).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from shared.antares.episodes import LIVE_SYSTEM_ID, TARGETS, EpisodeSet
from shared.antares.features import FEATURES, DayInputs, decision_features
from shared.config import SiteConfig
from shared.slots import SLOT_HOURS, local_day_bounds, local_day_slots

_PLAN_COLS = ("charge_kw", "discharge_kw", "export_kw", "load_kw", "pv_kw", "import_price_per_kwh",
              "export_price_per_kwh")


def _plan_slots(store: Any, site_id: str, system_id: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Plan slots in [start, end) with their plan's creation time (read-only query)."""
    from sqlalchemy import select

    from shared.storage import models as m

    p, s = m.Plan.__table__, m.PlanSlotRow.__table__
    query = (select(s.c.plan_id, s.c.slot_start, p.c.created_at, *(s.c[c] for c in _PLAN_COLS))
             .join(p, (p.c.site_id == s.c.site_id) & (p.c.system_id == s.c.system_id) & (p.c.plan_id == s.c.plan_id))
             .where(s.c.site_id == site_id, s.c.system_id == system_id, s.c.slot_start >= start.to_pydatetime(),
                    s.c.slot_start < end.to_pydatetime()))
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame.from_records([tuple(r) for r in rows],
                                      columns=["plan_id", "slot_start", "created_at", *_PLAN_COLS])
    for col in ("slot_start", "created_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    for col in _PLAN_COLS:
        frame[col] = frame[col].astype("float64")
    return frame


def live_episodes(store: Any, site: SiteConfig, date_from: date, date_to: date,
                  system_id: str = LIVE_SYSTEM_ID) -> EpisodeSet:
    """Episode rows (same columns as :func:`shared.antares.episodes.record_episodes`) from stored plans
    and observations of ``system_id`` on local days ``date_from``..``date_to``."""
    if site.battery is None:
        raise ValueError("live episodes need a site with a battery")
    b = site.battery
    start, _ = local_day_bounds(date_from, site.tz)
    _, end = local_day_bounds(date_to, site.tz)
    slots = _plan_slots(store, site.site_id, system_id, start, end)
    obs = store.observations_between(site.site_id, (start - timedelta(minutes=15)).to_pydatetime(),
                                     end.to_pydatetime(), system_id=system_id)
    chunks, summary, notes = [], [], []
    day = date_from
    while day <= date_to:
        index = local_day_slots(day, site.tz)
        rows = _day_rows(index, site, slots, obs, b)
        if rows is None:
            summary.append({"day": day, "grade": "gaps", "mpc_cost": np.nan, "soc_start_kwh": np.nan,
                            "soc_end_kwh": np.nan, "used": False})
        else:
            rows.insert(0, "day", day)
            rows["system_id"] = system_id
            grade = "clean" if rows["soc_start_kwh"].notna().all() else "battery_missing"
            rows["battery_weight"] = 1.0 if grade == "clean" else 0.0
            chunks.append(rows)
            summary.append({"day": day, "grade": grade, "mpc_cost": float(rows["cost"].sum()),
                            "soc_start_kwh": float(rows["soc_start_kwh"].iloc[0]),
                            "soc_end_kwh": float(rows["soc_start_kwh"].iloc[-1]), "used": True})
        day += timedelta(days=1)
    return EpisodeSet.assemble(
        chunks, summary, "live", notes, skipped_note="without a plan or measurements for every slot skipped",
        empty_error=f"no live day with plans and measurements for every slot between {date_from} and {date_to}")


def _day_rows(index: pd.DatetimeIndex, site: SiteConfig, slots: pd.DataFrame, obs: pd.DataFrame,
              b: Any) -> pd.DataFrame | None:
    n = len(index)
    slots = slots[(slots["slot_start"] >= index[0]) & (slots["slot_start"] <= index[-1])]
    feats = np.zeros((n, len(FEATURES)))
    targets = np.zeros((n, len(TARGETS)))
    costs = np.zeros(n)
    socs = np.full(n, np.nan)
    for t, ts in enumerate(index):
        known = slots[slots["created_at"] <= ts]
        have = known[known["slot_start"] == ts]
        if have.empty:
            return None
        plan_id = have.sort_values("created_at")["plan_id"].iloc[-1]
        plan = known[known["plan_id"] == plan_id].set_index("slot_start").reindex(index[t:])
        cols = ["load_kw", "pv_kw", "import_price_per_kwh", "export_price_per_kwh"]
        if plan[cols].isna().any().any():
            return None  # the plan did not cover the rest of the day: no honest features
        filled = plan[cols].reindex(index).fillna(0.0)  # slots before t are never read by the features
        day_in = DayInputs.build(index, site.tz, filled["import_price_per_kwh"], filled["export_price_per_kwh"],
                                 filled["load_kw"], filled["pv_kw"])
        prev = ts - timedelta(minutes=15)
        now_obs = obs.loc[ts] if ts in obs.index else None
        if now_obs is None or pd.isna(now_obs["load_kwh"]) or pd.isna(now_obs["pv_kwh"]):
            return None
        prev_obs = obs.loc[prev] if prev in obs.index else None
        soc = float(prev_obs["soc_end_frac"]) * b.capacity_kwh if prev_obs is not None and \
            pd.notna(prev_obs.get("soc_end_frac")) else np.nan
        load_last = float(prev_obs["load_kwh"]) / SLOT_HOURS if t and prev_obs is not None else 0.0
        pv_last = float(prev_obs["pv_kwh"]) / SLOT_HOURS if t and prev_obs is not None else 0.0
        feats[t] = decision_features(day_in, t, soc, load_last, pv_last, b)
        first = plan.iloc[0]
        targets[t] = (first["charge_kw"], first["discharge_kw"], first["export_kw"])
        socs[t] = soc
        imp_kwh = float(now_obs.get("import_kwh") or 0.0)
        exp_kwh = float(now_obs.get("export_kwh") or 0.0)
        costs[t] = imp_kwh * first["import_price_per_kwh"] - exp_kwh * first["export_price_per_kwh"]
    rows = pd.DataFrame(feats, index=index, columns=list(FEATURES))
    rows[list(TARGETS)] = targets
    rows["cost"] = costs
    rows["soc_start_kwh"] = socs
    return rows
