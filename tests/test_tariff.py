"""Tariff: one price curve for forecaster, planner, simulator and oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.config import site_config_from_dict
from shared.tariff import PriceError, price_curve, priced_slots


def site(**tariff):
    return site_config_from_dict(
        {"site_id": "t", "location": {"latitude": 55.0, "longitude": 13.0, "timezone": "Europe/Stockholm"},
         "tariff": tariff},
        environ={},
    )


def test_import_price_is_spot_plus_fee_plus_tax_times_vat_and_export_is_spot_plus_bonus_minus_fee():
    s = site(grid_fee_per_kwh=0.02, energy_tax_per_kwh=0.04, vat_frac=0.25, export_bonus_per_kwh=0.01,
             export_fee_per_kwh=0.003)
    idx = pd.date_range("2025-08-05T00:00Z", periods=4, freq="15min")
    p = price_curve(idx, s, spot=np.array([0.10, -0.20, 0.0, 1.0]))
    np.testing.assert_allclose(p["import_price_per_kwh"], (np.array([0.10, -0.20, 0.0, 1.0]) + 0.06) * 1.25)
    np.testing.assert_allclose(p["export_price_per_kwh"], np.array([0.10, -0.20, 0.0, 1.0]) + 0.007)
    assert p["import_price_per_kwh"].iloc[1] < 0  # negative prices stay negative


def test_time_of_use_fee_follows_local_time_months_and_weekdays():
    s = site(grid_fee_per_kwh=0.01,
             grid_fee_schedule=[{"start": "06:00", "end": "22:00", "fee_per_kwh": 0.05, "months": [1], "weekdays_only": True}])
    # 2025-01-06 is a Monday; 05:45 and 06:00 local are 04:45 and 05:00 UTC (CET)
    idx = pd.DatetimeIndex(pd.to_datetime(["2025-01-06T04:45Z", "2025-01-06T05:00Z", "2025-01-06T20:45Z",
                                           "2025-01-06T21:00Z", "2025-01-04T12:00Z", "2025-02-03T12:00Z"]))
    p = price_curve(idx, s, spot=np.zeros(6))
    np.testing.assert_allclose(p["import_price_per_kwh"], [0.01, 0.05, 0.05, 0.01, 0.01, 0.01])


def test_wrapping_window_past_midnight():
    s = site(grid_fee_schedule=[{"start": "22:00", "end": "06:00", "fee_per_kwh": -0.01}])
    idx = pd.DatetimeIndex(pd.to_datetime(["2025-08-05T19:45Z", "2025-08-05T20:00Z", "2025-08-06T03:45Z",
                                           "2025-08-06T04:00Z"]))  # CEST: 21:45, 22:00, 05:45, 06:00
    p = price_curve(idx, s, spot=np.zeros(4))
    np.testing.assert_allclose(p["import_price_per_kwh"], [0.0, -0.01, -0.01, 0.0])


def test_fixed_prices_disabled_export_and_recorded_prices():
    idx = pd.date_range("2025-08-05T00:00Z", periods=3, freq="15min")
    fixed = price_curve(idx, site(fixed_import_price_per_kwh=0.3, fixed_export_price_per_kwh=0.05))
    assert fixed["import_price_per_kwh"].tolist() == [0.3] * 3 and fixed["export_price_per_kwh"].tolist() == [0.05] * 3
    no_export = price_curve(idx, site(export_enabled=False), spot=np.ones(3))
    assert no_export["export_price_per_kwh"].tolist() == [0.0] * 3
    data = price_curve(idx, site(price_source="data"), import_price=pd.Series([0.2, 0.3, 0.4], index=idx),
                       export_price=pd.Series([0.1, 0.1, -0.1], index=idx))
    assert data["import_price_per_kwh"].tolist() == [0.2, 0.3, 0.4]
    assert data["export_price_per_kwh"].tolist() == [0.1, 0.1, -0.1]


def test_missing_prices_are_refused_naming_the_slot_or_end_the_horizon():
    idx = pd.date_range("2025-08-05T00:00Z", periods=4, freq="15min")
    spot = np.array([0.1, 0.2, np.nan, np.nan])
    with pytest.raises(PriceError, match="2025-08-05T00:30"):
        price_curve(idx, site(), spot=spot)
    curve = price_curve(idx, site(), spot=spot, allow_missing=True)
    assert priced_slots(curve) == 2
    with pytest.raises(PriceError, match="import_price"):
        price_curve(idx, site(price_source="data"))
