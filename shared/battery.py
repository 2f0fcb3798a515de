"""Battery physics, one model for planner, simulator, oracle, environment and inverter simulator.

Sign convention: ``charge_kw`` and ``discharge_kw`` are AC-side powers, both >= 0.
Stored energy changes by ``charge_kw * charge_efficiency * hours`` and
``- discharge_kw / discharge_efficiency * hours``. A single signed ``battery_kw`` is
positive when charging.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import BatteryConfig

@dataclass(frozen=True)
class BatteryStep:
    charge_kw: float
    discharge_kw: float
    soc_start_kwh: float
    soc_end_kwh: float

    @property
    def battery_kw(self) -> float:
        """Signed AC power, positive when charging."""
        return self.charge_kw - self.discharge_kw


def soc_after_kwh(soc_kwh: float, charge_kw: float, discharge_kw: float, hours: float, battery: BatteryConfig) -> float:
    """Stored energy after charging/discharging at constant AC power for ``hours``."""
    return (
        soc_kwh
        + charge_kw * battery.charge_efficiency * hours
        - discharge_kw / battery.discharge_efficiency * hours
    )


def power_limits_kw(
    soc_kwh: float,
    hours: float,
    battery: BatteryConfig,
    floor_kwh: float | None = None,
    ceiling_kwh: float | None = None,
) -> tuple[float, float]:
    """Largest (charge_kw, discharge_kw) possible for ``hours`` from ``soc_kwh`` within power and SoC limits.

    ``floor_kwh``/``ceiling_kwh`` tighten the hard SoC limits (e.g. the executor's reserve).
    """
    floor = battery.min_soc_kwh if floor_kwh is None else max(battery.min_soc_kwh, floor_kwh)
    ceiling = battery.max_soc_kwh if ceiling_kwh is None else min(battery.max_soc_kwh, ceiling_kwh)
    headroom_kwh = max(0.0, ceiling - soc_kwh)
    available_kwh = max(0.0, soc_kwh - floor)
    max_charge = min(battery.max_charge_kw, headroom_kwh / (battery.charge_efficiency * hours))
    max_discharge = min(battery.max_discharge_kw, available_kwh * battery.discharge_efficiency / hours)
    return max(0.0, max_charge), max(0.0, max_discharge)


def step(
    soc_kwh: float,
    battery_kw: float,
    hours: float,
    battery: BatteryConfig,
    floor_kwh: float | None = None,
    ceiling_kwh: float | None = None,
) -> BatteryStep:
    """Apply a signed power request (positive = charge) for ``hours``, clamped to what physics allows."""
    max_charge, max_discharge = power_limits_kw(soc_kwh, hours, battery, floor_kwh, ceiling_kwh)
    if battery_kw >= 0:
        charge, discharge = min(battery_kw, max_charge), 0.0
    else:
        charge, discharge = 0.0, min(-battery_kw, max_discharge)
    end = soc_after_kwh(soc_kwh, charge, discharge, hours, battery)
    # Round-off must not push the SoC out of its limits (a start outside them is kept as measured).
    end = min(max(end, min(battery.min_soc_kwh, soc_kwh)), max(battery.max_soc_kwh, soc_kwh))
    return BatteryStep(charge_kw=charge, discharge_kw=discharge, soc_start_kwh=soc_kwh, soc_end_kwh=end)


def wear_cost(charge_kw: float, discharge_kw: float, hours: float, battery: BatteryConfig) -> float:
    """Wear cost of the throughput (charge + discharge energy on the AC side)."""
    return battery.wear_cost_per_kwh * (charge_kw + discharge_kw) * hours
