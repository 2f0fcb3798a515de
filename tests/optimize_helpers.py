"""Small hand-made sites and inputs for the Kepler tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shared.config import SiteConfig, site_config_from_dict
from shared.optimize import PlanInputs
from shared.tariff import price_curve


def make_site(battery: dict[str, Any] | None = None, tz: str = "UTC", **extra: Any) -> SiteConfig:
    data: dict[str, Any] = {
        "site_id": "test",
        "location": {"latitude": 55.0, "longitude": 13.0, "timezone": tz},
        "grid": {"max_import_kw": 20.0, "max_export_kw": 20.0},
        "tariff": {"price_source": "data"},
        "planner": {"mode_switch_cost": 0.0, "setpoint_change_cost_per_kw": 0.0},
    }
    if battery is not None:
        data["battery"] = {"capacity_kwh": 1.0, "max_charge_kw": 4.0, "max_discharge_kw": 4.0,
                           "charge_efficiency": 1.0, "discharge_efficiency": 1.0, "min_soc_frac": 0.0,
                           "reserve_soc_frac": 0.0, "max_soc_frac": 1.0, "wear_cost_per_kwh": 0.0,
                           "terminal_value_per_kwh": 0.0, **battery}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return site_config_from_dict(data, environ={})


def make_inputs(site: SiteConfig, load_kw, pv_kw, import_price, export_price=None, start="2025-08-05T00:00Z",
                **kwargs: Any) -> PlanInputs:
    n = len(load_kw)
    index = pd.date_range(start, periods=n, freq="15min", name="slot_start")
    export_price = np.zeros(n) if export_price is None else np.asarray(export_price, float)
    prices = price_curve(index, site, import_price=np.asarray(import_price, float), export_price=export_price)
    return PlanInputs(index=index, load_kw=np.asarray(load_kw, float), pv_kw=np.asarray(pv_kw, float),
                      prices=prices, **kwargs)
