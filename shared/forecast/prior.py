"""Cold-start forecast: what a new site is planned on before it has a day of measured history.

PV: the physical clear-sky power of the site's arrays (pvlib, :func:`shared.forecast.solar.pv_physical_kw`)
times a monthly clear-sky index prior (the share of clear-sky energy an average month delivers);
p90 is clear sky, p10 an overcast day. Load: ``forecaster.load_prior_daily_kwh`` spread over the
day with a standard household shape; p10/p90 a wide band around it. The forecast says it is a
prior (model id ``prior``, ``fallback`` true, a note), and the forecaster leaves it for the
measured-history baseline after one day and for a trained Aurora model once that model beats
the prior on recent measured days (:mod:`shared.forecast.coldstart`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.forecast.solar import pv_physical_kw, solar_geometry

MODEL_ID = "prior"
# Mean clear-sky index per month for mid/northern-European latitudes (measured PV energy over
# clear-sky energy): ~0.3 in mid-winter to ~0.65 in early summer, the range PVGIS monthly
# averages show for 50-60 deg N. A prior only: the first measured day replaces it.
CLEAR_SKY_INDEX_BY_MONTH = (0.30, 0.40, 0.50, 0.55, 0.62, 0.65, 0.65, 0.60, 0.52, 0.42, 0.32, 0.28)
OVERCAST_FRAC = 0.15  # p10: a fully overcast day still gives ~15 % of clear sky
# Hourly household load shape (local time), after the BDEW H0 standard load profile (weekday,
# transition season), normalised to mean 1: night trough, morning rise, evening peak.
LOAD_SHAPE = np.array([0.58, 0.47, 0.42, 0.40, 0.41, 0.48, 0.73, 0.97, 1.05, 1.08, 1.10, 1.15,
                       1.24, 1.18, 1.07, 1.00, 1.02, 1.20, 1.45, 1.57, 1.49, 1.30, 1.05, 0.79])
LOAD_SHAPE = LOAD_SHAPE / LOAD_SHAPE.mean()
LOAD_P10_FRAC, LOAD_P90_FRAC = 0.6, 1.7


def prior_forecast(site: SiteConfig, index: pd.DatetimeIndex) -> pd.DataFrame:
    """Load and PV quantiles (kW) per slot of ``index`` (UTC slot starts) from site data alone."""
    geometry = solar_geometry(index, site.location)
    clear_kw = pv_physical_kw(site.pv, geometry).fillna(0.0).to_numpy()
    month = pd.DatetimeIndex(index).tz_convert(site.tz).month.to_numpy()
    k = np.asarray(CLEAR_SKY_INDEX_BY_MONTH)[month - 1]
    hour = pd.DatetimeIndex(index).tz_convert(site.tz).hour.to_numpy()
    load_kw = site.forecaster.load_prior_daily_kwh / 24.0 * LOAD_SHAPE[hour]
    return pd.DataFrame({
        "load_p10_kw": load_kw * LOAD_P10_FRAC, "load_p50_kw": load_kw, "load_p90_kw": load_kw * LOAD_P90_FRAC,
        "pv_p10_kw": clear_kw * OVERCAST_FRAC, "pv_p50_kw": clear_kw * k, "pv_p90_kw": clear_kw,
    }, index=index)
