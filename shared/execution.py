"""The import guard: one rule for the live executor and the simulator.

A plan slot run as a fixed battery command (grid charging, hold = battery idle while
importing, a fixed discharge) leaves the grid to take every forecast error. Under a capacity
tariff each load spike above the forecast then becomes a billed peak. The guard caps the grid
import of such a slot at the plan's import plus a small margin:

    import = house_net_kw + battery_kw  <=  planned_import_kw + margin_kw

where ``house_net_kw`` is the measured load (+ water heater + EV) minus the usable PV, i.e.
everything but the battery. So the battery power is lowered to at most
``planned_import_kw + margin_kw - house_net_kw``: grid charging is reduced first (down to 0),
then the battery discharges to cover the rest, at most ``max_discharge_kw`` (the caller's
inverter limit, already reduced for the SoC above the reserve with
:func:`shared.battery.power_limits_kw`). The guard never raises the battery power (a slot with
less load than forecast is left alone) and never lowers a planned discharge's limit.

When it is on: ``executor.import_guard`` is ``auto`` (default: on when a capacity tariff is
configured; without one, spending stored energy on an unplanned spike at a cheap hour costs
more than it saves), ``on`` or ``off``; ``executor.import_guard_margin_kw`` (default 0.2 kW).
"""

from __future__ import annotations

import math

from shared.config import SiteConfig


def import_guard_enabled(site: SiteConfig) -> bool:
    """Whether the site's executor applies the import guard (``auto``: with a capacity tariff)."""
    mode = site.executor.import_guard
    if mode == "auto":
        return bool(site.tariff.capacity.enabled)
    return mode == "on"


def guard_battery_kw(
    setpoint_kw: float,
    planned_import_kw: float,
    house_net_kw: float,
    *,
    margin_kw: float,
    max_discharge_kw: float,
) -> float:
    """The battery power (+ = charge) for a fixed-command slot so that the grid import stays at most
    ``planned_import_kw + margin_kw`` (see module doc). ``max_discharge_kw`` >= 0 bounds the extra
    discharge (inverter limit, SoC above the reserve); a planned discharge deeper than it is kept."""
    values = {"setpoint_kw": setpoint_kw, "planned_import_kw": planned_import_kw,
              "house_net_kw": house_net_kw, "margin_kw": margin_kw, "max_discharge_kw": max_discharge_kw}
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"import guard: {name} must be finite, got {value}")
    # the most battery power that keeps the import within the cap
    cap_kw = max(0.0, planned_import_kw) + max(0.0, margin_kw) - house_net_kw
    if setpoint_kw <= cap_kw:
        return float(setpoint_kw)
    floor_kw = min(setpoint_kw, -max(0.0, max_discharge_kw))  # deepest discharge allowed
    return float(max(cap_kw, floor_kw))


def guard_ev_kw(ev_kw: float, planned_import_kw: float, other_net_kw: float, *, margin_kw: float) -> float:
    """The EV charging power under the same cap: grid import = ``other_net_kw`` (everything measured
    but the EV, battery included) + EV <= ``planned_import_kw + margin_kw``. Never raises the power,
    never below 0. The battery's guard acts on the same cap; the EV is cut by what remains above it."""
    for name, value in {"ev_kw": ev_kw, "planned_import_kw": planned_import_kw,
                        "other_net_kw": other_net_kw, "margin_kw": margin_kw}.items():
        if not math.isfinite(value):
            raise ValueError(f"import guard: {name} must be finite, got {value}")
    cap_kw = max(0.0, planned_import_kw) + max(0.0, margin_kw) - other_net_kw
    return float(max(0.0, min(ev_kw, cap_kw)))
