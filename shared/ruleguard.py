"""Never worse than the rule: the online switch from the MPC to the self-consumption rule.

Each finished local day the MPC's realized cost and the self-consumption rule's cost on the same
measured load and PV are priced by :func:`shared.cost.plan_cost` and adjusted for the stored energy
each left behind by the one rule of :func:`shared.cost.adjusted_money`. The regret is the MPC's
adjusted cost minus the rule's, summed over the last ``planner.rule_guard.window_days`` finished days.

``planner.rule_guard.mode``:

- ``off`` (default): always the MPC;
- ``auto``: the rule takes the battery once the regret exceeds ``margin_frac`` of the rule's cost
  over the window, and keeps it until the MPC is ahead again (regret <= 0; with the rule in charge
  its days add about nothing, so this happens when the MPC's bad days leave the window);
- ``on``: always the rule.

Used by the backtest's replay (``darkstar backtest``) so its money includes the switch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from shared.config import RuleGuardSettings
from shared.cost import adjusted_money

GuardMode = Literal["off", "auto", "on"]


@dataclass(frozen=True)
class DayMoney:
    """One finished local day: the MPC's and the rule's cost and their SoC at the day's start and end."""

    day: date
    mpc_cost: float
    mpc_soc_start_kwh: float
    mpc_soc_end_kwh: float
    rule_cost: float
    rule_soc_start_kwh: float
    rule_soc_end_kwh: float
    value_per_kwh: float  # shared.cost.stored_energy_value_per_kwh of the day's prices

    @property
    def mpc_adjusted(self) -> float:
        return adjusted_money(self.mpc_cost, self.mpc_soc_start_kwh, self.mpc_soc_end_kwh, self.value_per_kwh)

    @property
    def rule_adjusted(self) -> float:
        return adjusted_money(self.rule_cost, self.rule_soc_start_kwh, self.rule_soc_end_kwh, self.value_per_kwh)


@dataclass(frozen=True)
class GuardDecision:
    use_rule: bool
    regret: float  # MPC adjusted minus rule adjusted over the window (money; > 0: the MPC lost)
    allowed: float  # regret tolerated before switching
    days: int
    reason: str


def decide(history: Sequence[DayMoney], cfg: RuleGuardSettings, rule_active: bool = False) -> GuardDecision:
    """Whether the next plan's battery follows the rule; ``rule_active``: it does now (hysteresis)."""
    if cfg.mode == "off":
        return GuardDecision(False, 0.0, 0.0, 0, "rule guard off")
    window = sorted(history, key=lambda d: d.day)[-cfg.window_days:]
    regret = sum(d.mpc_adjusted - d.rule_adjusted for d in window)
    allowed = cfg.margin_frac * abs(sum(d.rule_adjusted for d in window))
    if cfg.mode == "on":
        return GuardDecision(True, regret, allowed, len(window), "rule guard on: the self-consumption rule always")
    if len(window) < cfg.window_days:
        # too little evidence: a partial window would switch on one unlucky day
        use = rule_active
    else:
        use = regret > 0 if rule_active else regret > allowed
    state = "follows the self-consumption rule" if use else "MPC"
    return GuardDecision(use, regret, allowed, len(window),
                         f"rule guard: {state}; MPC regret {regret:+.2f} over {len(window)} finished days "
                         f"(allowed {allowed:.2f})")
