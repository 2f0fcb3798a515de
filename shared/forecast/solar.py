"""PV physics with pvlib: sun position, clear sky, plane-of-array irradiance, a physical power estimate.

Pure functions over a UTC slot index. The sun is evaluated at the slot MIDPOINT, because a slot's
power is the mean over the slot. Units are in the names (``*_wm2``, ``*_kw``, ``*_deg``).
References: pvlib.solarposition (NREL SPA), Ineichen/Perez clear sky with a fixed Linke turbidity,
Hay-Davies transposition, Faiman cell temperature, PVWatts DC model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib

from shared.config import LocationConfig, PVArrayConfig, PVConfig
from shared.slots import SLOT

# A fixed turbidity keeps clear sky free of data files and network; it only scales the
# clear-sky envelope, which the learned models and ratios correct anyway.
LINKE_TURBIDITY = 3.0
GAMMA_PDC_PER_C = -0.004  # typical crystalline-silicon power temperature coefficient


def solar_geometry(index: pd.DatetimeIndex, location: LocationConfig) -> pd.DataFrame:
    """Sun position and clear-sky irradiance at each slot's midpoint.

    Columns: zenith_deg (apparent), azimuth_deg, cs_ghi_wm2, cs_dni_wm2, cs_dhi_wm2, dni_extra_wm2.
    """
    mid = pd.DatetimeIndex(index) + SLOT / 2
    loc = pvlib.location.Location(location.latitude, location.longitude, tz="UTC", altitude=location.altitude_m)
    pos = loc.get_solarposition(mid)
    cs = loc.get_clearsky(mid, model="ineichen", linke_turbidity=LINKE_TURBIDITY, solar_position=pos)
    out = pd.DataFrame(
        {
            "zenith_deg": pos["apparent_zenith"].to_numpy(),
            "azimuth_deg": pos["azimuth"].to_numpy(),
            "cs_ghi_wm2": cs["ghi"].to_numpy(),
            "cs_dni_wm2": cs["dni"].to_numpy(),
            "cs_dhi_wm2": cs["dhi"].to_numpy(),
            "dni_extra_wm2": pvlib.irradiance.get_extra_radiation(mid).to_numpy(),
        },
        index=index,
    )
    return out


def ghi_from_components(dni_wm2: pd.Series, dhi_wm2: pd.Series, zenith_deg: pd.Series) -> pd.Series:
    """GHI = DNI * cos(zenith) + DHI (closure equation), for sources that give only DNI and DHI."""
    cosz = np.clip(np.cos(np.radians(zenith_deg.to_numpy())), 0.0, None)
    return pd.Series(dni_wm2.to_numpy() * cosz + dhi_wm2.to_numpy(), index=dni_wm2.index, name="ghi_wm2")


def complete_irradiance(weather: pd.DataFrame, geometry: pd.DataFrame) -> pd.DataFrame:
    """GHI, DNI and DHI from whatever the weather has (all three, DNI+DHI, or GHI only).

    Missing values stay missing. With GHI only, DNI/DHI are split with the Erbs model.
    """
    cols = set(weather.columns)
    zen = geometry["zenith_deg"]
    ghi = weather["ghi_wm2"] if "ghi_wm2" in cols else None
    dni = weather["dni_wm2"] if "dni_wm2" in cols else None
    dhi = weather["dhi_wm2"] if "dhi_wm2" in cols else None
    if ghi is None and dni is not None and dhi is not None:
        ghi = ghi_from_components(dni, dhi, zen)
    if ghi is not None and (dni is None or dhi is None):
        mid = pd.DatetimeIndex(weather.index) + SLOT / 2
        erbs = pvlib.irradiance.erbs(ghi.to_numpy(), zen.to_numpy(), mid)
        dni = pd.Series(np.asarray(erbs["dni"]), index=weather.index) if dni is None else dni
        dhi = pd.Series(np.asarray(erbs["dhi"]), index=weather.index) if dhi is None else dhi
    if ghi is None:
        raise ValueError("weather has no irradiance: need ghi_wm2, or dni_wm2 and dhi_wm2")
    night = zen.to_numpy() >= 90.0
    out = pd.DataFrame({"ghi_wm2": ghi, "dni_wm2": dni, "dhi_wm2": dhi}, index=weather.index).astype(float)
    out.loc[night] = out.loc[night].where(out.loc[night].isna(), 0.0)
    return out


def array_power_kw(
    array: PVArrayConfig,
    geometry: pd.DataFrame,
    ghi_wm2: pd.Series,
    dni_wm2: pd.Series,
    dhi_wm2: pd.Series,
    temp_c: pd.Series | None = None,
) -> pd.Series:
    """PVWatts DC power of one array (kW) from irradiance on its plane, Faiman cell temperature, losses."""
    poa = pvlib.irradiance.get_total_irradiance(
        surface_tilt=array.tilt_deg,
        surface_azimuth=array.azimuth_deg,
        solar_zenith=geometry["zenith_deg"],
        solar_azimuth=geometry["azimuth_deg"],
        dni=dni_wm2,
        ghi=ghi_wm2,
        dhi=dhi_wm2,
        dni_extra=geometry["dni_extra_wm2"],
        model="haydavies",
    )["poa_global"].clip(lower=0.0)
    air = temp_c if temp_c is not None else pd.Series(20.0, index=geometry.index)
    cell_c = pvlib.temperature.faiman(poa, air.fillna(20.0))
    dc_kw = pvlib.pvsystem.pvwatts_dc(poa, cell_c, pdc0=array.kwp, gamma_pdc=GAMMA_PDC_PER_C)
    power = pd.Series(np.asarray(dc_kw, dtype=float), index=geometry.index) * (1.0 - array.losses_frac)
    power[geometry["zenith_deg"].to_numpy() >= 90.0] = 0.0
    return power.clip(lower=0.0)


def pv_physical_kw(
    pv: PVConfig, geometry: pd.DataFrame, weather: pd.DataFrame | None = None
) -> pd.Series:
    """Physical PV estimate (kW, AC-clipped) summed over arrays.

    ``weather`` None -> clear sky. Slots where the weather has no irradiance stay NaN.
    """
    if not pv.arrays:
        return pd.Series(0.0, index=geometry.index, name="pv_phys_kw")
    if weather is None:
        irr = pd.DataFrame(
            {"ghi_wm2": geometry["cs_ghi_wm2"], "dni_wm2": geometry["cs_dni_wm2"], "dhi_wm2": geometry["cs_dhi_wm2"]}
        )
        temp = None
    else:
        irr = complete_irradiance(weather, geometry)
        temp = weather["temp_c"] if "temp_c" in weather.columns else None
    total = pd.Series(0.0, index=geometry.index)
    for array in pv.arrays:
        total = total + array_power_kw(array, geometry, irr["ghi_wm2"], irr["dni_wm2"], irr["dhi_wm2"], temp)
    missing = irr["ghi_wm2"].isna().to_numpy()
    if pv.inverter_ac_limit_kw is not None:
        total = total.clip(upper=pv.inverter_ac_limit_kw)
    total[missing] = np.nan
    total.name = "pv_phys_kw"
    return total
