"""Home Assistant states -> Darkstar quantities: unit conversion and sign per role. Pure functions.

A role's value is what Darkstar means by it: power in kW (battery positive = charging, grid
positive = import), energy counters in kWh, state of charge as a fraction 0..1, temperature in
degrees Celsius, plugged as true/false. An entity whose unit Darkstar does not know for its role,
or whose state is not a number, gives no value and a problem that names the entity: never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["power", "energy", "fraction", "temperature", "binary"]

ROLE_KIND: dict[str, Kind] = {
    "battery_soc": "fraction",
    "battery_power": "power",
    "pv_power": "power",
    "load_power": "power",
    "grid_power": "power",
    "water_heater_power": "power",
    "water_heater_temperature": "temperature",
    "ev_soc": "fraction",
    "ev_plugged": "binary",
    "ev_power": "power",
    "import_energy": "energy",
    "export_energy": "energy",
}
# Factor to Darkstar's unit (kW, kWh, fraction); HA's own unit spellings (homeassistant.const).
FACTORS: dict[Kind, dict[str, float]] = {
    "power": {"W": 0.001, "kW": 1.0, "MW": 1000.0},
    "energy": {"Wh": 0.001, "kWh": 1.0, "MWh": 1000.0},
    "fraction": {"%": 0.01},
}
UNAVAILABLE = ("unavailable", "unknown", "", "none")
BINARY_TRUE = ("on", "true", "yes", "home", "plugged", "connected", "charging", "1")
BINARY_FALSE = ("off", "false", "no", "not_home", "unplugged", "disconnected", "0")


@dataclass(frozen=True)
class RoleValue:
    """A converted value, or None with the reason (the problem names nothing secret)."""

    value: float | bool | None
    problem: str | None = None


def convert(role: str, state: str | None, unit: str | None, sign: int = 1) -> RoleValue:
    """One HA state of the entity playing ``role`` in Darkstar's unit and sign."""
    kind = ROLE_KIND[role]
    text = (state or "").strip()
    if text.lower() in UNAVAILABLE:
        return RoleValue(None, text.lower() or "empty state")
    if kind == "binary":
        if text.lower() in BINARY_TRUE:
            return RoleValue(True)
        if text.lower() in BINARY_FALSE:
            return RoleValue(False)
        return RoleValue(None, f"state {text[:30]!r} is not on/off")
    try:
        number = float(text)
    except ValueError:
        return RoleValue(None, f"state {text[:30]!r} is not a number")
    if number != number or number in (float("inf"), float("-inf")):
        return RoleValue(None, f"state {text[:30]!r} is not a finite number")
    if kind == "temperature":
        if unit in ("°C", None):
            return RoleValue(number)
        if unit == "°F":
            return RoleValue((number - 32.0) * 5.0 / 9.0)
        if unit == "K":
            return RoleValue(number - 273.15)
        return RoleValue(None, f"unit {unit!r} is not a temperature unit (°C, °F, K)")
    factors = FACTORS[kind]
    if unit not in factors:
        known = ", ".join(factors)
        return RoleValue(None, f"unit {unit!r} is not a {kind} unit ({known})")
    value = number * factors[unit]
    if kind == "power":
        value *= sign
    if kind == "fraction" and not 0.0 <= value <= 1.0:
        return RoleValue(None, f"state {text[:30]!r} {unit} is outside 0..100 %")
    return RoleValue(value)


def house_load(pv: float, grid: float, battery: float, water: float | None = None, ev: float | None = None) -> float:
    """House load from the balance when no entity measures it (kW or kWh alike, all the same slot or
    moment): pv + grid (import positive) - battery (charging positive), less the water heater and the
    car when they are measured apart (the contract's load excludes them), never below 0."""
    return max(0.0, pv + grid - battery - (water or 0.0) - (ev or 0.0))
