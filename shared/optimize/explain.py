"""Explanations: per-slot modes and reason codes, binding limits (LP duals), a plain-language reason."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.modes import REASON_CODES as MODE_MAP

if TYPE_CHECKING:
    from shared.optimize.inputs import PlanInputs
    from shared.optimize.model import Model
    from shared.optimize.result import PlanResult

FLOW_EPS_KW = 0.01

# reason codes, one per slot (the battery's decision and why): the one table is shared/modes.py
REASON_CODES = {code: spec.text for code, spec in MODE_MAP.items()}


def slot_modes(frame: pd.DataFrame) -> np.ndarray:
    ch, dis = frame["charge_kw"].to_numpy(), frame["discharge_kw"].to_numpy()
    return np.where(ch > FLOW_EPS_KW, "charge", np.where(dis > FLOW_EPS_KW, "discharge", "idle"))


def mode_changes_per_day(frame: pd.DataFrame, site: SiteConfig) -> dict[str, int]:
    modes = np.asarray(frame["mode"] if "mode" in frame else slot_modes(frame))
    dates = np.asarray(frame.index.tz_convert(site.tz).date)
    out: dict[str, int] = {}
    for t in range(len(modes)):
        key = dates[t].isoformat()
        out.setdefault(key, 0)
        if t > 0 and modes[t] != modes[t - 1]:
            out[key] += 1
    return out


def slot_reason_codes(frame: pd.DataFrame, m: Model) -> np.ndarray:
    ch, dis = frame["charge_kw"].to_numpy(), frame["discharge_kw"].to_numpy()
    imp, exp = frame["import_kw"].to_numpy(), frame["export_kw"].to_numpy()
    curt = frame["pv_curtail_kw"].to_numpy()
    surplus = frame["pv_kw"].to_numpy() - frame["load_kw"].to_numpy()
    codes = np.empty(m.T, dtype=object)
    future_max = np.maximum.accumulate(m.import_price[::-1])[::-1]
    for t in range(m.T):
        if m.manual_action[t]:
            codes[t] = f"manual_{m.manual_action[t]}"
        elif ch[t] > FLOW_EPS_KW:
            if m.import_price[t] < 0 and imp[t] > FLOW_EPS_KW:
                codes[t] = "charge_negative_price"
            elif imp[t] > FLOW_EPS_KW and ch[t] > max(surplus[t], 0.0) + FLOW_EPS_KW:
                codes[t] = "charge_grid_cheap"
            else:
                codes[t] = "charge_pv_surplus"
        elif dis[t] > FLOW_EPS_KW:
            codes[t] = "discharge_export" if exp[t] > FLOW_EPS_KW else "discharge_cover_load"
        elif curt[t] > FLOW_EPS_KW:
            codes[t] = "curtail_negative_export"
        elif imp[t] > FLOW_EPS_KW and frame["soc_kwh"].iloc[t] > (m.site.battery.min_soc_kwh + 0.1 if m.site.battery else np.inf) \
                and future_max[t] > m.import_price[t] + 1e-9:
            codes[t] = "hold_for_later"
        else:
            codes[t] = "idle"
    return codes


_LIMIT_PATTERNS = [
    (re.compile(r"^grid_import_kw_t(\d+)$"), "grid import limit (main fuse)", "col"),
    (re.compile(r"^grid_export_kw_t(\d+)$"), "grid export limit", "col"),
    (re.compile(r"^battery_charge_kw_t(\d+)$"), "battery charge power limit", "col"),
    (re.compile(r"^battery_discharge_kw_t(\d+)$"), "battery discharge power limit", "col"),
    (re.compile(r"^battery_soc_kwh_t(\d+)$"), "battery SoC limit", "col"),
    (re.compile(r"^capacity_peak_kw_p.*$|^capacity_daily_peak_kw_.*$"), "capacity peak so far", "col"),
    (re.compile(r"^(water\d+)_min_energy_(\w+)$"), "water heater daily minimum", "row"),
    (re.compile(r"^(water\d+)_max_gap_t(\d+)$"), "water heater max gap", "row"),
    (re.compile(r"^(ev\d+)_session(\d+)_target$"), "EV energy by departure", "row"),
    (re.compile(r"^capacity_peak_p.*$|^capacity_daily_peak_\d+_g.*$"), "capacity tariff peak", "row"),
]


def binding_limits(m: Model, x: np.ndarray, col_dual: np.ndarray, row_dual: np.ndarray,
                   eps: float = 1e-6) -> list[dict[str, Any]]:
    """Limits whose dual (in the fixed-binary LP) is non-zero: what a unit more of them is worth.

    ``value`` is the objective change per unit of the limit summed over the slots where it binds
    (currency per kW for power limits, per kWh for energy limits); negative = relaxing it saves money.
    """
    found: dict[str, dict[str, Any]] = {}

    def note(label: str, name: str, dual: float) -> None:
        entry = found.setdefault(label, {"limit": label, "value": 0.0, "binding_count": 0, "first": name})
        entry["value"] += float(dual)
        entry["binding_count"] += 1

    for v in m.prob.variables():
        d = col_dual[v.index]
        if abs(d) <= eps or v.cat != "Continuous":
            continue
        at_upper = v.upBound is not None and abs(x[v.index] - v.upBound) < 1e-6
        at_lower = v.lowBound is not None and abs(x[v.index] - v.lowBound) < 1e-6
        for pattern, label, kind in _LIMIT_PATTERNS:
            if kind == "col" and pattern.match(v.name):
                if label == "battery SoC limit" and (at_upper or at_lower):
                    note("battery SoC maximum" if at_upper else "battery SoC minimum", v.name, d)
                elif at_upper and (label != "capacity peak so far" or at_lower):
                    note(label, v.name, d)
                elif label == "capacity peak so far" and at_lower:
                    note(label, v.name, d)
                break
    for name, c in m.rows.items():
        d = row_dual[c.index]
        if abs(d) <= eps:
            continue
        for pattern, label, kind in _LIMIT_PATTERNS:
            if kind == "row" and pattern.match(name):
                note(label, name, d)
                break
    return sorted(found.values(), key=lambda e: -abs(e["value"]))


def _blocks(mask: np.ndarray) -> list[tuple[int, int]]:
    out, start = [], None
    for t, on in enumerate(list(mask) + [False]):
        if on and start is None:
            start = t
        elif not on and start is not None:
            out.append((start, t))
            start = None
    return out


def plan_reason(result: PlanResult, site: SiteConfig, inputs: PlanInputs) -> str:
    """A short plain-language reason, e.g. 'charging 02:00-04:00: cheapest 3 h before the 17:00 peak'."""
    f = result.slots
    tz = site.tz
    price = inputs.prices["import_price_per_kwh"].to_numpy()
    cur = site.tariff.currency
    local = f.index.tz_convert(tz)

    def hm(t: int) -> str:
        stamp = local[t] if t < len(local) else local[-1] + pd.Timedelta(minutes=15)
        # the weekday only when the time is not on the plan's first day, so "02:00" is unambiguous
        return stamp.strftime("%H:%M") if stamp.date() == local[0].date() else stamp.strftime("%a %H:%M")

    codes = f["reason_code"].to_numpy()
    parts: list[str] = []
    grid_charge = np.isin(codes, ["charge_grid_cheap", "charge_negative_price"])
    discharge = np.isin(codes, ["discharge_cover_load", "discharge_export"])
    blocks = _blocks(grid_charge)
    if blocks:
        charge = f["charge_kw"].to_numpy()
        a, b = max(blocks, key=lambda blk: float(charge[blk[0]:blk[1]].sum()))
        hours = (b - a) * inputs.slot_hours
        avg = float(np.mean(price[a:b]))
        later = [blk for blk in _blocks(discharge) if blk[0] >= b]
        rank = int(np.sum(price < avg - 1e-12) * inputs.slot_hours)
        text = f"charging {hm(a)}–{hm(b)}: {'paid to import' if avg < 0 else 'among the cheapest hours'} " \
               f"({avg:.3f} {cur}/kWh over {hours:g} h"
        text += f"; {rank:g} h of the horizon are cheaper)" if rank > 0 else ", the cheapest of the horizon)"
        if later:
            c, d = max(later, key=lambda blk: float(np.mean(price[blk[0]:blk[1]])))
            peak = float(np.mean(price[c:d]))
            if peak > avg:
                text += f" before the {hm(c)} peak ({peak:.3f} {cur}/kWh)"
            else:
                text += f" to cover {hm(c)}–{hm(d)} without raising the grid peak"
        parts.append(text)
    else:
        pv_store = _blocks(codes == "charge_pv_surplus")
        if pv_store:
            a, b = pv_store[0]
            parts.append(f"storing PV surplus {hm(a)}–{hm(b)} for later use")
    dis_blocks = _blocks(discharge)
    if dis_blocks and not blocks:
        c, d = dis_blocks[0]
        parts.append(f"discharging {hm(c)}–{hm(d)} to avoid buying at {float(np.mean(price[c:d])):.3f} {cur}/kWh")
    if not parts:
        spread = float(price.max() - price.min())
        parts.append(f"battery idle: the price spread ({spread:.3f} {cur}/kWh) does not cover losses and wear")
    if f["water_kw"].sum() > 0:
        parts.append(f"water heating {inputs.slot_hours * float((f['water_kw'] > 0).sum()):g} h in cheap slots")
    if f["ev_kw"].sum() > 0:
        ev_blocks = _blocks(f["ev_kw"].to_numpy() > FLOW_EPS_KW)
        parts.append(f"EV charging from {hm(ev_blocks[0][0])}")
    if result.strategy.notes:
        parts.extend(result.strategy.notes)
    return "; ".join(parts)
