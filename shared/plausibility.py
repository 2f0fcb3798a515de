"""Is a contract-valid message physically possible at this site? One rule per quantity, from the config.

The contracts (shared/contracts.py) bound what any site could send; this bounds what *this*
site can: a power above the main fuse, the battery's converter or the PV array (plus
``plausibility.power_margin_frac``), a stored energy above the battery, a slot energy above
power x duration, a price outside ``plausibility.price_min/max_per_kwh``, a live timestamp far
from now. Every service runs it on every message it receives (``Service._on_raw``), so a
refused message is reported on ``events/error`` and never stored or acted on.

Fields are recognised by name (units are in the names, STYLE.md), so a new field ``*_kw`` in a
contract is bounded without touching this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from shared.config import SiteConfig
from shared.contracts import Message, ObservationMsg, TelemetryMsg

PRICE_FIELDS = ("spot_per_kwh", "import_price_per_kwh", "export_price_per_kwh", "next_import_price_per_kwh",
                "next_export_price_per_kwh")
CUMULATIVE = ("energy_totals",)  # counters since a start: no per-slot bound


class SiteLimits:
    """The largest power (kW) each flow of the site can have, margin included."""

    def __init__(self, site: SiteConfig) -> None:
        m = 1.0 + site.plausibility.power_margin_frac
        battery = site.battery
        self.battery_kw = m * (max(battery.max_charge_kw, battery.max_discharge_kw) if battery else 0.0)
        self.capacity_kwh = (battery.capacity_kwh if battery else 0.0) * m
        pv = site.pv.kwp_total
        if site.pv.inverter_ac_limit_kw:
            pv = min(pv, site.pv.inverter_ac_limit_kw) if pv else site.pv.inverter_ac_limit_kw
        self.pv_kw = m * pv
        self.grid_kw = m * max(site.grid.max_import_kw, site.grid.max_export_kw)
        self.water_kw = m * sum(h.power_kw for h in site.water_heaters)
        self.ev_kw = m * sum(ev.max_charge_kw for ev in site.evs)
        # whatever a household can consume: all it can draw from the grid, the PV and the battery
        self.load_kw = self.grid_kw + self.pv_kw + self.battery_kw
        self.price_min = site.plausibility.price_min_per_kwh
        self.price_max = site.plausibility.price_max_per_kwh
        self.live_window = timedelta(seconds=site.plausibility.live_window_s)

    def power_limit(self, field: str) -> float:
        """Bound for a power field named ``field`` (``charge_kw``, ``pv_p90_kw``, ``grid_kw``...)."""
        name = field.removesuffix("_kw").removesuffix("_kwh")
        for keys, limit in ((("charge", "discharge", "battery"), self.battery_kw),
                            (("import", "export", "grid"), self.grid_kw),
                            (("pv",), self.pv_kw), (("water",), self.water_kw), (("ev",), self.ev_kw)):
            if any(name == k or name.startswith(k + "_") for k in keys):
                return limit
        return self.load_kw


def _fields(model: BaseModel, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(dotted path, field name, value) of every leaf field, through nested models and lists."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        where = f"{path}{name}"
        if isinstance(value, BaseModel):
            yield from _fields(value, where + ".")
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            for i, item in enumerate(value):
                yield from _fields(item, f"{where}[{i}].")
        else:
            yield where, name, value


def implausible(kind: str, msg: Message, limits: SiteLimits, now: datetime) -> str | None:
    """The first reason ``msg`` cannot be true at the site of ``limits`` at ``now``, or None when plausible."""
    slot_h = getattr(msg, "duration_minutes", None) or getattr(msg, "resolution_minutes", 15)
    slot_h = slot_h / 60
    for where, name, value in _fields(msg):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if name in PRICE_FIELDS:
            if not limits.price_min <= value <= limits.price_max:
                return (f"{where} = {value:g} per kWh is outside the plausible band [{limits.price_min:g}, "
                        f"{limits.price_max:g}] (plausibility.price_min/max_per_kwh)")
        elif name.endswith("_per_kwh") or name.endswith("target_kwh"):
            continue  # money per energy is not a price curve; targets are checked by their consumer
        elif name == "soc_kwh":
            if value > limits.capacity_kwh:
                return f"{where} = {value:g} kWh is more than the battery holds ({limits.capacity_kwh:.1f} kWh with margin)"
        elif name.endswith("_kw"):
            if abs(value) > limits.power_limit(name):
                return f"{where} = {value:g} kW is beyond what this site can do ({limits.power_limit(name):.1f} kW with margin)"
        elif name.endswith("_kwh") and kind not in CUMULATIVE:
            bound = limits.power_limit(name) * slot_h
            if abs(value) > bound:
                return f"{where} = {value:g} kWh is more than power x duration allows ({bound:.2f} kWh per slot)"
    return _time_problem(msg, limits, now)


def _time_problem(msg: Message, limits: SiteLimits, now: datetime) -> str | None:
    if isinstance(msg, TelemetryMsg) and abs(msg.ts - now) > limits.live_window:
        return (f"ts {msg.ts.isoformat()} is more than {limits.live_window.total_seconds():g} s from now "
                f"({now.isoformat()}): not live telemetry")
    # observations may arrive late (QoS-1 backlog after an outage, history import), never from the future
    if isinstance(msg, ObservationMsg) and msg.slot_start > now + limits.live_window:
        return f"slot_start {msg.slot_start.isoformat()} is in the future (now {now.isoformat()})"
    return None
