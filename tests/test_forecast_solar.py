"""PV physics: clear sky near the array rating at noon, zero at night, GHI closure and orientation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.config import LocationConfig, PVArrayConfig, PVConfig
from shared.forecast.solar import complete_irradiance, pv_physical_kw, solar_geometry

pytestmark = pytest.mark.filterwarnings("ignore:.*dayofyear.*:DeprecationWarning")

TRELLEBORG = LocationConfig(latitude=55.38, longitude=13.16, altitude_m=10, timezone="Europe/Stockholm")
DAY = pd.date_range("2025-06-21T00:00Z", periods=96, freq="15min", tz="UTC")


def test_clear_sky_summer_noon_is_near_rating_and_night_is_zero():
    pv = PVConfig(arrays=[PVArrayConfig(kwp=10.0, tilt_deg=35, azimuth_deg=180, losses_frac=0.14)])
    geo = solar_geometry(DAY, TRELLEBORG)
    kw = pv_physical_kw(pv, geo)
    assert 6.5 < kw.max() < 10.0  # 10 kWp minus losses and heat
    assert (kw[geo["zenith_deg"] >= 90] == 0).all()
    assert kw.idxmax().hour in (10, 11)  # solar noon ~11:10 UTC at 13 E


def test_inverter_limit_clips_and_east_array_peaks_before_west():
    geo = solar_geometry(DAY, TRELLEBORG)
    east = pv_physical_kw(PVConfig(arrays=[PVArrayConfig(kwp=5, tilt_deg=40, azimuth_deg=90)]), geo)
    west = pv_physical_kw(PVConfig(arrays=[PVArrayConfig(kwp=5, tilt_deg=40, azimuth_deg=270)]), geo)
    assert east.idxmax() < west.idxmax()
    both = pv_physical_kw(PVConfig(arrays=[PVArrayConfig(kwp=8, tilt_deg=30)], inverter_ac_limit_kw=5.0), geo)
    assert both.max() == pytest.approx(5.0)


def test_ghi_is_derived_from_dni_and_dhi_and_missing_weather_stays_missing():
    geo = solar_geometry(DAY, TRELLEBORG)
    weather = pd.DataFrame({"dni_wm2": 600.0, "dhi_wm2": 100.0}, index=DAY)
    weather.iloc[40:44] = np.nan
    irr = complete_irradiance(weather, geo)
    cosz = np.cos(np.radians(geo["zenith_deg"].iloc[46]))
    assert irr["ghi_wm2"].iloc[46] == pytest.approx(600 * cosz + 100)
    assert irr["ghi_wm2"].iloc[40:44].isna().all()
    assert (irr.loc[geo["zenith_deg"] >= 90, "ghi_wm2"].dropna() == 0).all()
    kw = pv_physical_kw(PVConfig(arrays=[PVArrayConfig(kwp=4)]), geo, weather)
    assert kw.iloc[40:44].isna().all() and kw.iloc[46] > 0
