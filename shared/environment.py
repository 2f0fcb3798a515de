"""Antares Gym environment: one local day of the site, slot by slot (gymnasium API).

``reset(options={"day": date})`` builds the planner inputs for that day (the day's prices,
which are published the day before; load/PV forecast ``perfect`` or ``naive``, see
:mod:`shared.backtest`) and solves a schedule with the planner. ``step(action)`` advances one
15-min slot with :mod:`shared.simulator`:

- ``action=None`` follows the planner as the live executor runs each slot (the simulator's
  ``executor`` rule, :func:`shared.simulator.executor_rules`): fixed-command slots (grid
  charging, holding, discharging to export) follow the setpoint, the other slots run in
  self-consumption mode on the measured load and PV; the same rule as the backtest, import
  guard included (:mod:`shared.execution`, on by default with a capacity tariff).
  When the SoC has drifted from the plan's by more than ``site.planner.soc_drift_replan_frac``
  of the capacity (e.g. after overrides), the planner replans the rest of the day from the
  measured SoC, as the live planner would.
- an array ``[battery_kw]`` (+ = charge) overrides the battery power; it is clamped to the
  power and SoC limits by :func:`shared.battery.step` and the grid takes the rest.

Reward per slot = -(import cost - export revenue + battery wear) in the site currency, from
:func:`shared.cost.plan_cost` (capacity charges are a monthly matter and are not in the reward).

Observation (float32, :data:`OBSERVATION_FIELDS`, in this order):

== ======================== ==========================================================
 0 ``tod_sin``              sin(2 pi x local time of day / 24 h) at the slot start
 1 ``tod_cos``              cos(...)
 2 ``day_progress_frac``    slots done / slots in the day
 3 ``soc_frac``             stored energy / capacity
 4 ``import_price``         import price of this slot (per kWh)
 5 ``export_price``         export price of this slot
 6 ``import_price_next4h``  mean import price of the next 16 slots of the day (incl. this one)
 7 ``import_price_rest_min`` lowest import price in the rest of the day
 8 ``import_price_rest_max`` highest import price in the rest of the day
 9 ``load_fc_kw``           load forecast for this slot
10 ``pv_fc_kw``             PV forecast for this slot
11 ``load_fc_next4h_kw``    mean load forecast over the next 16 slots
12 ``pv_fc_next4h_kw``      mean PV forecast over the next 16 slots
13 ``load_last_kw``         load measured in the previous slot (0 at the first slot)
14 ``pv_last_kw``           PV measured in the previous slot (0 at the first slot)
15 ``planner_battery_kw``   the planner's setpoint for this slot (+ = charge)
== ======================== ==========================================================

Deterministic: the same day gives the same episode (no randomness inside).
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from shared.config import SiteConfig
from shared.cost import plan_cost
from shared.oracle import actuals, battery_pv_site
from shared.simulator import execute_slot, executor_rules
from shared.slots import SLOT_HOURS, local_day_slots

OBSERVATION_FIELDS = (
    "tod_sin", "tod_cos", "day_progress_frac", "soc_frac", "import_price", "export_price", "import_price_next4h",
    "import_price_rest_min", "import_price_rest_max", "load_fc_kw", "pv_fc_kw", "load_fc_next4h_kw",
    "pv_fc_next4h_kw", "load_last_kw", "pv_last_kw", "planner_battery_kw",
)
LOOKAHEAD_SLOTS = 16


class AntaresMPCEnv(gym.Env):
    """One local day per episode; see the module doc for actions, reward and observation."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, site: SiteConfig, frame: pd.DataFrame, day: date | None = None,
                 forecast: Literal["perfect", "naive"] = "naive", soc_kwh: float | None = None) -> None:
        from shared.forecast.replay import NaiveForecast, PerfectForecast

        self.site = battery_pv_site(site)
        if self.site.battery is None:
            raise ValueError("AntaresMPCEnv needs a site with a battery")
        self.frame = frame
        self.forecaster = PerfectForecast(frame) if forecast == "perfect" else NaiveForecast(frame)
        self.soc_start_kwh = self.site.battery.reserve_soc_kwh if soc_kwh is None else float(soc_kwh)
        if day is None:  # the first whole local day with a day of history before it (for the naive forecast)
            day = (frame.index[0].tz_convert(self.site.tz) + pd.Timedelta(days=2)).date()
        self.default_day = day
        b = self.site.battery
        self.action_space = spaces.Box(low=np.float32(-b.max_discharge_kw), high=np.float32(b.max_charge_kw),
                                       shape=(1,), dtype=np.float32)
        self.observation_space = spaces.Box(low=-np.inf, high=np.inf, shape=(len(OBSERVATION_FIELDS),), dtype=np.float32)
        self._t = 0
        self._soc = self.soc_start_kwh

    # ------------------------------------------------------------------ planning

    def _plan(self, start: int) -> None:
        from shared.optimize import PlanInputs, solve_plan

        idx = self.index[start:]
        inputs = PlanInputs(index=idx, load_kw=self.load_fc[start:], pv_kw=self.pv_fc[start:],
                            prices=self.prices.iloc[start:], soc_kwh=self._soc)
        plan = solve_plan(inputs, self.site)
        self.setpoint_kw[start:] = (plan.slots["charge_kw"] - plan.slots["discharge_kw"]).to_numpy()
        self.rules[start:] = executor_rules(plan.slots)
        self.curtail_kw[start:] = plan.slots["pv_curtail_kw"].to_numpy()
        self.plan_import_kw[start:] = plan.slots["import_kw"].to_numpy()  # the import guard's cap
        self.plan_soc_kwh[start:] = plan.slots["soc_kwh"].to_numpy()
        self.replans += 1

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        day = (options or {}).get("day", self.default_day)
        if isinstance(day, str):
            day = date.fromisoformat(day)
        self.day = day
        self.index = local_day_slots(day, self.site.tz)
        act = actuals(self.frame, self.site, self.index)
        self.load_kw, self.pv_kw, self.prices = act.load_kw, act.pv_kw, act.prices
        self.load_fc, self.pv_fc = self.forecaster.forecast(self.index[0], self.index)
        n = len(self.index)
        self.setpoint_kw = np.zeros(n)
        self.curtail_kw = np.zeros(n)
        self.plan_import_kw = np.zeros(n)
        self.plan_soc_kwh = np.zeros(n)
        self.rules: list[str] = ["setpoint"] * n
        self.replans = 0
        self._t = 0
        self._soc = float((options or {}).get("soc_kwh", self.soc_start_kwh))
        self._plan(0)
        return self._observation(), {"day": day.isoformat(), "slots": n}

    # ------------------------------------------------------------------ stepping

    def _observation(self) -> np.ndarray:
        t = min(self._t, len(self.index) - 1)
        local = self.index[t].tz_convert(self.site.tz)
        hours = local.hour + local.minute / 60.0
        imp = self.prices["import_price_per_kwh"].to_numpy()
        exp = self.prices["export_price_per_kwh"].to_numpy()
        ahead = slice(t, t + LOOKAHEAD_SLOTS)
        obs = [
            np.sin(2 * np.pi * hours / 24.0), np.cos(2 * np.pi * hours / 24.0), self._t / len(self.index),
            self._soc / self.site.battery.capacity_kwh, imp[t], exp[t], imp[ahead].mean(), imp[t:].min(), imp[t:].max(),
            self.load_fc[t], self.pv_fc[t], self.load_fc[ahead].mean(), self.pv_fc[ahead].mean(),
            self.load_kw[t - 1] if t > 0 else 0.0, self.pv_kw[t - 1] if t > 0 else 0.0, self.setpoint_kw[t],
        ]
        return np.asarray(obs, dtype=np.float32)

    def step(self, action):
        if self._t >= len(self.index):
            raise RuntimeError("episode is over: call reset()")
        t = self._t
        b = self.site.battery
        follow = action is None
        if follow and t > 0 and abs(self._soc - self.plan_soc_kwh[t - 1]) > self.site.planner.soc_drift_replan_frac * b.capacity_kwh:
            self._plan(t)
        if follow:
            o = execute_slot(self.site, self._soc, self.load_kw[t], self.pv_kw[t], self.setpoint_kw[t],
                             load_forecast_kw=self.load_fc[t], pv_forecast_kw=self.pv_fc[t],
                             pv_curtail_kw=self.curtail_kw[t], rule=self.rules[t],
                             planned_import_kw=self.plan_import_kw[t])
        else:
            request = float(np.asarray(action, dtype=float).reshape(-1)[0])
            if not np.isfinite(request):
                raise ValueError(f"action must be a finite battery power in kW, got {action!r}")
            o = execute_slot(self.site, self._soc, self.load_kw[t], self.pv_kw[t], request, rule="setpoint")
        flows = pd.DataFrame({"import_kw": [o.import_kw], "export_kw": [o.export_kw], "charge_kw": [o.charge_kw],
                              "discharge_kw": [o.discharge_kw]}, index=self.index[t:t + 1])
        cost = plan_cost(flows, self.prices.iloc[t:t + 1], self.site, slot_hours=SLOT_HOURS)
        slot_cost = cost.import_cost - cost.export_revenue + cost.wear_cost
        self._soc = o.soc_kwh
        self._t += 1
        terminated = self._t >= len(self.index)
        info = {
            "slot_start": self.index[t].isoformat(), "followed_planner": follow, "battery_kw": o.battery_kw,
            "import_kw": o.import_kw, "export_kw": o.export_kw, "soc_kwh": o.soc_kwh, "cost": slot_cost,
            "replans": self.replans,
        }
        return self._observation(), float(-slot_cost), terminated, False, info
