"""Evaluation in money: the learned policy, the MPC and the oracle on the same validation days.

The policy acts through :class:`shared.environment.AntaresMPCEnv`'s action hook. It decides a
battery setpoint from :func:`shared.antares.features.decision_features` (knowable information
only); the *executor* then runs it as it runs a planned slot (``executor_rule="executor"``, the
default, the rule the MPC gets in the env and the backtest: :func:`executor_rule_for_setpoint`):
grid charging, export from the battery and holding are fixed commands; anything else runs in
the inverter's self-consumption mode, where the battery follows the slot's measured surplus or
deficit. That is the executor's doing, not the policy's; the policy never sees the slot's
measurements. ``"absorb"``: a grid-setpoint inverter (the setpoint plus the measured forecast
error); ``"setpoint"``: the battery follows the setpoint only (the grid takes the error).

All three strategies start the first validation day from the SoC the MPC had there and carry
their own SoC from day to day; each day's money is import - export revenue + wear
(:func:`shared.cost.plan_cost`). The totals are compared adjusted for the energy each strategy
leaves in the battery (the one rule, :func:`shared.cost.adjusted_money`): a policy that drains
the battery on the last validation day must not look cheaper than the MPC for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import numpy as np
import pandas as pd

from shared.antares.episodes import EpisodeSet
from shared.antares.features import DayInputs, decision_features
from shared.antares.policy import AntaresPolicy
from shared.config import SiteConfig
from shared.cost import adjusted_money, stored_energy_value_per_kwh
from shared.progress import Progress
from shared.simulator import IDLE_EPS_KW

ExecutorRule = Literal["executor", "absorb", "setpoint"]


def executor_rule_for_setpoint(battery_kw: float, load_forecast_kw: float, pv_forecast_kw: float
                               ) -> Literal["setpoint", "self_consumption"]:
    """How the live executor would run a slot planned with this battery setpoint and forecast
    (``services/executor/control.py::intent_from_slot`` without a reason code): charging beyond
    the PV surplus (grid charging), discharging beyond the deficit (export) and idling while
    importing (hold) are fixed commands; the rest is self-consumption."""
    surplus_kw = pv_forecast_kw - load_forecast_kw
    if battery_kw > IDLE_EPS_KW and battery_kw > max(surplus_kw, 0.0) + IDLE_EPS_KW:
        return "setpoint"
    if battery_kw < -IDLE_EPS_KW and -battery_kw > max(-surplus_kw, 0.0) + IDLE_EPS_KW:
        return "setpoint"
    if abs(battery_kw) <= IDLE_EPS_KW and -surplus_kw > IDLE_EPS_KW:
        return "setpoint"
    return "self_consumption"


@dataclass
class MoneyReport:
    """Money on the validation days; ``*_cost`` are adjusted for the stored energy (``money``: before)."""

    days: list[date]
    policy_cost: float
    mpc_cost: float
    oracle_cost: float
    per_day: list[dict[str, Any]] = field(default_factory=list)
    soc_change_kwh: dict[str, float] = field(default_factory=dict)  # end - start per strategy, summed over the days
    end_soc_value_per_kwh: float = 0.0
    money: dict[str, float] = field(default_factory=dict)  # before the adjustment
    decision_ms_mean: float = float("nan")
    decision_ms_p99: float = float("nan")
    runtime_s: float = 0.0

    @property
    def policy_vs_mpc_frac(self) -> float:
        """(policy - MPC) / |MPC|: +0.03 means the policy paid 3 % more than the MPC."""
        return (self.policy_cost - self.mpc_cost) / abs(self.mpc_cost) if self.mpc_cost else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"validation_days": len(self.days), "validation_from": str(self.days[0]), "validation_to": str(self.days[-1]),
                "policy_cost": round(self.policy_cost, 6), "mpc_cost": round(self.mpc_cost, 6),
                "oracle_cost": round(self.oracle_cost, 6), "policy_vs_mpc_frac": round(self.policy_vs_mpc_frac, 6),
                "decision_ms_mean": round(self.decision_ms_mean, 4), "decision_ms_p99": round(self.decision_ms_p99, 4),
                "evaluation_s": round(self.runtime_s, 3), "end_soc_value_per_kwh": round(self.end_soc_value_per_kwh, 6),
                "soc_change_kwh": {k: round(v, 4) for k, v in self.soc_change_kwh.items()},
                "money_unadjusted": {k: round(v, 6) for k, v in self.money.items()}, "per_day": self.per_day}


def replay_policy(policy: AntaresPolicy, frame: pd.DataFrame, site: SiteConfig, days: list[date], soc_kwh: float,
                  *, forecast: Literal["naive", "perfect"] = "naive", executor_rule: ExecutorRule = "executor",
                  progress: Progress | None = None) -> tuple[dict[date, float], list[float], float]:
    """The policy acting on ``days`` in the Gym env: (cost per day, decision times in ms, end SoC)."""
    from shared.environment import AntaresMPCEnv

    env = AntaresMPCEnv(site, frame, day=days[0], forecast=forecast, soc_kwh=soc_kwh)
    b = env.site.battery
    soc = soc_kwh
    costs: dict[date, float] = {}
    decision_ms: list[float] = []
    for k, d in enumerate(days):
        env.reset(options={"day": d, "soc_kwh": soc})
        day_in = DayInputs.build(env.index, env.site.tz, env.prices["import_price_per_kwh"],
                                 env.prices["export_price_per_kwh"], env.load_fc, env.pv_fc)
        total = 0.0
        for t in range(len(env.index)):
            t0 = time.perf_counter()
            x = decision_features(day_in, t, soc, env.load_kw[t - 1] if t else 0.0, env.pv_kw[t - 1] if t else 0.0, b)
            setpoint = policy.battery_kw(x, b)
            decision_ms.append((time.perf_counter() - t0) * 1000.0)
            request = setpoint
            if executor_rule == "absorb":  # the executor's correction after the slot is measured
                request += (env.pv_kw[t] - env.pv_fc[t]) - (env.load_kw[t] - env.load_fc[t])
            elif executor_rule == "executor" and executor_rule_for_setpoint(
                    setpoint, env.load_fc[t], env.pv_fc[t]) == "self_consumption":
                request = env.pv_kw[t] - env.load_kw[t]  # the inverter follows the measured surplus/deficit
            _, reward, _, _, info = env.step(np.array([request], dtype=np.float32))
            total -= reward
            soc = info["soc_kwh"]
        costs[d] = total
        if progress:
            progress(k + 1, len(days), d.isoformat())
    return costs, decision_ms, soc


def oracle_days(frame: pd.DataFrame, site: SiteConfig, days: list[date], soc_kwh: float
                ) -> tuple[dict[date, float], float]:
    """The daily oracle on ``days`` (SoC carried): money per day and the end SoC."""
    from shared.oracle import oracle_day, oracle_site

    osite = oracle_site(site)
    out: dict[date, float] = {}
    soc = soc_kwh
    for d in days:
        od = oracle_day(frame, osite, d, soc)
        out[d] = od.oracle_cost
        soc = od.soc_end_kwh
    return out, soc


def validation_value_per_kwh(frame: pd.DataFrame, site: SiteConfig, days: list[date]) -> float:
    """The stored-energy value (the one rule of shared.cost) over the import prices of ``days``."""
    from shared.slots import local_day_slots
    from shared.tariff import price_curve_from_data

    index = local_day_slots(days[0], site.tz)
    for d in days[1:]:
        index = index.append(local_day_slots(d, site.tz))
    prices = price_curve_from_data(frame.reindex(index), site, allow_missing=True)
    return stored_energy_value_per_kwh(prices["import_price_per_kwh"], site.battery)


def evaluate_money(policy: AntaresPolicy, episodes: EpisodeSet, frame: pd.DataFrame, site: SiteConfig,
                   days: list[date], *, executor_rule: ExecutorRule = "executor",
                   with_oracle: bool = True, progress: Progress | None = None) -> MoneyReport:
    """Replay the validation ``days`` with the policy; compare with the MPC (its episodes) and the oracle."""
    t0 = time.perf_counter()
    days = sorted(days)
    soc0 = float(episodes.days.loc[days[0], "soc_start_kwh"])
    pol, decision_ms, pol_soc_end = replay_policy(policy, frame, site, days, soc0,  # type: ignore[arg-type]
                                                  forecast=episodes.forecast, executor_rule=executor_rule,
                                                  progress=progress)
    orc, orc_soc_end = oracle_days(frame, site, days, soc0) if with_oracle else ({d: float("nan") for d in days}, soc0)
    ep = episodes.days.loc[days]
    soc_change = {"policy": pol_soc_end - soc0, "oracle": orc_soc_end - soc0,
                  "mpc": float((ep["soc_end_kwh"] - ep["soc_start_kwh"]).sum())}
    money = {"policy": float(sum(pol.values())), "mpc": float(ep["mpc_cost"].sum()), "oracle": float(sum(orc.values()))}
    value = validation_value_per_kwh(frame, site, days)
    adjusted = {k: adjusted_money(money[k], 0.0, soc_change[k], value) for k in money}
    per_day = [{"date": d.isoformat(), "policy_cost": round(pol[d], 6),
                "mpc_cost": round(float(episodes.days.loc[d, "mpc_cost"]), 6), "oracle_cost": round(orc[d], 6)}
               for d in days]
    ms = np.asarray(decision_ms)
    return MoneyReport(days=days, policy_cost=adjusted["policy"], mpc_cost=adjusted["mpc"],
                       oracle_cost=adjusted["oracle"], per_day=per_day, soc_change_kwh=soc_change,
                       end_soc_value_per_kwh=value, money=money, decision_ms_mean=float(ms.mean()), decision_ms_p99=float(np.percentile(ms, 99)),
                       runtime_s=time.perf_counter() - t0)
