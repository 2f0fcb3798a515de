"""Oracle service shell: perfect-hindsight optimum of each finished day and the MPC's regret.

Nightly (the first tick after ``RUN_AFTER`` local time) it computes yesterday, and on
``cmd/oracle/run`` (args: ``day`` YYYY-MM-DD, default yesterday) any day: it reads the day's
observations and prices from the database, runs :func:`shared.oracle.oracle_day_from`, stores
``oracle_daily_results`` (date, cost breakdown, realized cost, regret = realized - oracle; the
breakdown also holds ``rule_cost``: the self-consumption rule on the same day from the same SoC)
and publishes ``oracle/result``. A day that cannot be computed (not over yet, a slot without
observed load/PV, no observations, a missing price) becomes an ``events/error`` message and a
command error reply; the service keeps running. The regret compares costs adjusted for the
energy each side left in the battery (the one rule of :mod:`shared.cost`) when the measured
SoC before and after the day are known; ``breakdown.regret_soc_adjusted`` says whether it was.
"""

from __future__ import annotations

from datetime import date, time, timedelta
from typing import Any, ClassVar

from shared.contracts import CommandMsg, OracleResultMsg
from shared.homeassistant import Entity, command_button
from shared.service import Service

RUN_AFTER = time(0, 30)  # local time: the last slot's observation of yesterday has arrived by then


class OracleService(Service):
    name: ClassVar[str] = "oracle"
    inputs: ClassVar[dict[str, float | None]] = {"observations": None, "plan": None}
    tick_s: ClassVar[float | None] = 300.0

    def register_commands(self) -> None:
        self.register_command("run", self._cmd_run)

    def on_start(self) -> None:
        self.last_day_done: date | None = None

    # ------------------------------------------------------------------ work

    def yesterday(self) -> date:
        return (self.clock.now().astimezone(self.site.tz) - timedelta(days=1)).date()

    def compute_day(self, day: date) -> OracleResultMsg:
        """Oracle of one local day from the database; stored and published. Raises ValueError if it cannot."""
        from shared.backtest import self_consumption_flows
        from shared.cost import adjusted_money, plan_cost, stored_energy_value_per_kwh
        from shared.oracle import observed_day, oracle_day_from
        from shared.simulator import money
        from shared.slots import local_day_bounds

        if self.store is None:
            raise ValueError("the oracle service needs the database (observations and prices)")
        start, end = local_day_bounds(day, self.site.tz)
        observations = self.store.observations_between(self.site.site_id, start - timedelta(hours=1), end)
        prices = self.store.prices_between(self.site.site_id, start, end)
        seen = observed_day(day, observations, prices, self.site, now=self.clock.now())
        od = oracle_day_from(day, seen.act, self.site, soc_kwh=seen.soc_before_kwh)
        realized_cost = money(seen.realized) if seen.realized is not None else None
        value = stored_energy_value_per_kwh(seen.act.prices["import_price_per_kwh"], self.site.battery)
        breakdown = {k: round(float(v), 6) for k, v in od.cost.to_dict().items()}
        breakdown.update(soc_start_kwh=round(od.soc_start_kwh, 4), soc_end_kwh=round(od.soc_end_kwh, 4),
                         solve_s=round(od.solve_s, 4), end_soc_value_per_kwh=round(value, 6),
                         oracle_adjusted_cost=round(adjusted_money(od.oracle_cost, od.soc_start_kwh, od.soc_end_kwh,
                                                                   value), 6))
        # the self-consumption rule on the same measured day from the same SoC, by the one cost model
        rule = self_consumption_flows(seen.act, self.site, od.soc_start_kwh)
        rule_soc_end = float(rule["soc_kwh"].iloc[-1])
        rule_cost = money(plan_cost(rule, seen.act.prices, self.site))
        breakdown.update(rule_cost=round(rule_cost, 6), rule_soc_end_kwh=round(rule_soc_end, 4),
                         rule_adjusted_cost=round(adjusted_money(rule_cost, od.soc_start_kwh, rule_soc_end, value), 6))
        regret = None
        if realized_cost is not None:
            regret = realized_cost - od.oracle_cost
            # both ends measured: the realized day started where the oracle did
            adjusted = seen.soc_after_kwh is not None and seen.soc_before_kwh is not None
            if adjusted:
                realized_adj = adjusted_money(realized_cost, od.soc_start_kwh, seen.soc_after_kwh, value)
                breakdown.update(realized_soc_end_kwh=round(seen.soc_after_kwh, 4),
                                 realized_adjusted_cost=round(realized_adj, 6))
                regret = realized_adj - breakdown["oracle_adjusted_cost"]
            breakdown["regret_soc_adjusted"] = float(adjusted)
        msg = OracleResultMsg(
            site_id=self.site.site_id, day=day.isoformat(), currency=self.site.tariff.currency,
            oracle_cost=round(od.oracle_cost, 6), realized_cost=None if realized_cost is None else round(realized_cost, 6),
            regret=None if regret is None else round(regret, 6), breakdown=breakdown,
        )
        self.store.store_oracle_result(msg)
        self.publish("oracle_result", msg)
        return msg

    def tick(self) -> None:
        now_local = self.clock.now().astimezone(self.site.tz)
        day = self.yesterday()
        if now_local.time() < RUN_AFTER or self.last_day_done == day:
            return
        self.last_day_done = day  # one attempt per night; cmd/oracle/run retries by hand
        try:
            self.compute_day(day)
        except ValueError as err:
            self.report_error(f"nightly oracle {day.isoformat()}", str(err), None)

    def _cmd_run(self, msg: CommandMsg) -> dict[str, Any]:
        raw = msg.args.get("day")
        try:
            day = date.fromisoformat(str(raw)) if raw else self.yesterday()
        except ValueError:
            raise ValueError(f"args.day: not a date (YYYY-MM-DD): {raw!r}") from None
        result = self.compute_day(day)
        return result.model_dump(mode="json", exclude={"schema_"})

    def ha_entities(self) -> list[Entity]:
        return [
            command_button(self.site.site_id, "oracle_run", "Oracle: compute yesterday", "oracle/run",
                           "mdi:crystal-ball"),
        ]
