"""The EV component of the Kepler model: plug sessions, energy by departure, minimum power;
and its solver hooks (hour rounding, the staged solve's stage-2 bounds)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pulp

from shared.config import EVConfig
from shared.cost import hour_groups
from shared.optimize.components import Component
from shared.optimize.model import GE, LE, Model


def ev_sessions(m: Model, ev: EVConfig, first: bool) -> list[tuple[np.ndarray, pd.Timestamp]]:
    """Plug sessions (slot mask, departure) overlapping the horizon, from the configured daily window.

    The session running at the start follows the context: not plugged -> no session; a
    departure given -> it replaces the configured one.
    """
    tz = m.site.tz
    sessions = []
    d0 = m.local_dates[0] - timedelta(days=1)
    d_end = m.local_dates[-1]
    day = d0
    while day <= d_end:
        plug = pd.Timestamp(datetime.combine(day, ev.plugged_from), tz=tz)
        dep_day = day + timedelta(days=1) if ev.departure <= ev.plugged_from else day
        dep = pd.Timestamp(datetime.combine(dep_day, ev.departure), tz=tz)
        day += timedelta(days=1)
        plug, dep = plug.tz_convert("UTC"), dep.tz_convert("UTC")
        if dep <= m.index[0] or plug > m.index[-1]:
            continue
        sessions.append([plug, dep])
    out = []
    ctx_plugged, ctx_dep = m.inputs.ev_plugged, m.inputs.ev_departure
    for k, (plug, dep) in enumerate(sessions):
        current = plug <= m.index[0] < dep
        if current and first:
            if ctx_plugged is False:
                continue
            if ctx_dep is not None:
                dep = pd.Timestamp(ctx_dep).tz_convert("UTC")
        elif first and ctx_plugged and k == 0 and not current:
            pass
        mask = (m.index >= plug) & (m.index < dep)
        if mask.any():
            out.append((mask, dep))
    if first and ctx_plugged and not any(mask[0] for mask, _ in out):
        # plugged outside the configured window: charge until the given (or the next configured) departure
        dep = pd.Timestamp(ctx_dep).tz_convert("UTC") if ctx_dep is not None else (out[0][1] if out else m.index[-1])
        mask = (m.index >= m.index[0]) & (m.index < dep)
        out = [(mask, dep)] + [(mk & ~mask, d) for mk, d in out if (mk & ~mask).any()]
    return out


@dataclass
class EV(Component):
    """An EV: charges only while plugged; energy by departure is soft with a high penalty.

    On/off or a minimum power makes the power semi-continuous (one binary per plugged slot);
    without a minimum a modulating charger is continuous. Whether the home battery may feed the
    car is a setting: if not, the car charges only from the grid and PV.
    """

    ev: EVConfig
    number: int
    # True: a relaxation for the staged solve (see solve.solve_staged): one binary per clock hour,
    # the hour's energy either 0 or at least one slot at minimum power
    hourly: bool = False
    name = "ev"
    peak_block_cuts_valid = False  # the peak x block cuts were derived (and measured) without a car on the bus

    def build(self, m: Model) -> None:
        ev, i, dt = self.ev, self.number, m.dt
        p = f"ev{i}"
        first = i == 0
        sessions = ev_sessions(m, ev, first)
        plugged = np.zeros(m.T, dtype=bool)
        for mask, _ in sessions:
            plugged |= mask
        self.plugged = plugged
        needs_binary = (not ev.modulating) or ev.min_charge_kw > 0
        self.power = m.slot_vars(f"{p}_charge_kw", 0.0, ev.max_charge_kw, mask=plugged)
        m.add_slot_flow(self.power, -1.0)
        self.on = None
        if needs_binary:
            low = ev.max_charge_kw if not ev.modulating else ev.min_charge_kw
            self.low_kw = low
            self.on_slots: dict[int, pulp.LpVariable] = {}
            self.on_hours: dict[int, pulp.LpVariable] = {}
            if self.hourly:
                hours = hour_groups(m.index)
                for hr in np.unique(hours[plugged]):
                    slots = np.flatnonzero(plugged & (hours == hr))
                    u = m.var(f"{p}_on_hour_h{int(hr):03d}", binary=True)
                    self.on_hours[int(hr)] = u
                    for t in slots:
                        m.row(f"{p}_max_power_t{t:03d}", [(self.power.vars[t], 1.0), (u, -ev.max_charge_kw)], LE, 0.0)
                    m.row(f"{p}_min_energy_h{int(hr):03d}", [(self.power.vars[t], dt) for t in slots] + [(u, -low * dt)],
                          GE, 0.0)
            for t in (np.flatnonzero(plugged) if not self.hourly else []):
                z = m.var(f"{p}_on_t{t:03d}", binary=True)
                self.on_slots[int(t)] = z
                v = self.power.vars[t]
                m.row(f"{p}_max_power_t{t:03d}", [(v, 1.0), (z, -ev.max_charge_kw)], LE, 0.0)
                m.row(f"{p}_min_power_t{t:03d}", [(v, 1.0), (z, -low)], GE, 0.0)
            self.on = True
        self.short_vars = []
        horizon_end = m.index[-1] + pd.Timedelta(minutes=15)
        for k, (mask, dep) in enumerate(sessions):
            slots = [self.power.vars[t] for t in np.flatnonzero(mask)]
            m.row(f"{p}_session{k}_max_energy", [(v, ev.charge_efficiency * dt) for v in slots], LE, ev.battery_kwh)
            target = ev.target_kwh
            if first and k == 0 and mask[0] and m.inputs.ev_target_kwh is not None:
                target = m.inputs.ev_target_kwh
            if dep > horizon_end or target <= 0:
                continue  # departs after the horizon: the next plans see it
            s = m.var(f"{p}_session{k}_shortfall_kwh", 0.0, target)
            self.short_vars.append(s)
            m.row(f"{p}_session{k}_target", [(s, 1.0)] + [(v, ev.charge_efficiency * dt) for v in slots], GE, target)
            m.cost("ev_shortfall_penalty", [(s, ev.shortfall_penalty_per_kwh)])
        if not ev.battery_may_feed_ev and "battery_discharge_kw" in m.shared:
            imp, curt = m.shared["grid_import_kw"], m.shared["pv_curtail_kw"]
            for t in np.flatnonzero(plugged):
                terms = [(self.power.vars[t], 1.0), (imp.vars[t], -1.0)]
                if curt.vars[t] is not None:
                    terms.append((curt.vars[t], 1.0))
                m.row(f"{p}_not_from_battery_t{t:03d}", terms, LE, float(m.pv_kw[t] - curt.fixed[t]))

    def extract(self, m: Model, x: np.ndarray) -> None:
        m.columns[f"ev{self.number}_kw"] = self.power.value(x)
        m.columns["ev_kw"] = m.columns.get("ev_kw", 0.0) + m.columns[f"ev{self.number}_kw"]

    def shortfall_kwh(self, x: np.ndarray) -> float:
        return float(sum(x[s.index] for s in self.short_vars))

    # ----------------------------------------------------------------- solver hooks

    def shortfall(self, x: np.ndarray) -> tuple[str, str, float] | None:
        return "ev", self.ev.name, self.shortfall_kwh(x)

    def incumbent_fix(self, m: Model, x: np.ndarray, bus_dual: np.ndarray, on_above: float) -> dict[int, float]:
        """Hours on wherever the LP charged more than ``on_above`` (the fixed LP then spreads the energy)."""
        if not getattr(self, "on_hours", None):
            return {}
        return {u.index: 1.0 if x[u.index] > on_above else 0.0 for u in self.on_hours.values()}

    def staged_bounds(self, m: Model, x: np.ndarray) -> tuple[list[int], list[float], list[float]]:
        """Stage 2 of the staged solve: each hour's energy over as many slots as can each take the
        minimum power; those slots get [min, max], the others 0."""
        cols: list[int] = []
        lows: list[float] = []
        ups: list[float] = []
        if not getattr(self, "on_hours", None):
            return cols, lows, ups
        hours = hour_groups(m.index)
        for hr in self.on_hours:
            slots = np.flatnonzero(self.plugged & (hours == hr))
            power = np.array([x[self.power.vars[t].index] for t in slots])
            energy = float(power.sum()) * m.dt
            k = min(len(slots), int(np.floor(energy / (self.low_kw * m.dt) + 1e-6)))
            on = set(slots[np.argsort(-power, kind="stable")[:k]].tolist())
            cols.append(self.on_hours[hr].index)
            lows.append(1.0 if k else 0.0)
            ups.append(1.0 if k else 0.0)
            for t in slots:
                cols.append(self.power.vars[t].index)
                lows.append(self.low_kw if int(t) in on else 0.0)
                ups.append(self.ev.max_charge_kw if int(t) in on else 0.0)
        return cols, lows, ups
