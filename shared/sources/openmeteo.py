"""Open-Meteo weather: forecast (api.open-meteo.com/v1/forecast) and archive
(archive-api.open-meteo.com/v1/archive), hourly or 15-minutely, no key needed.

Response: ``{"utc_offset_seconds": 0, "hourly_units": {...}, "hourly": {"time": [...],
"temperature_2m": [...], "shortwave_radiation": [...], ...}}``; errors are HTTP 400 with
``{"error": true, "reason": "..."}``. Radiation values are the MEAN OVER THE PRECEDING interval
(hour or 15 min), temperature and cloud cover are instantaneous at the time stamp. We return a
frame on the 15-min UTC slot grid: temp_c, ghi_wm2, dni_wm2, dhi_wm2, cloud_cover_pct.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from shared.slots import SLOT
from shared.sources.base import SourceClient, SourceError, SourceParseError

FORECAST_URL = "https://api.open-meteo.com/v1/forecast"
ARCHIVE_URL = "https://archive-api.open-meteo.com/v1/archive"
VARIABLES = {
    "temperature_2m": "temp_c",
    "shortwave_radiation": "ghi_wm2",
    "direct_normal_irradiance": "dni_wm2",
    "diffuse_radiation": "dhi_wm2",
    "cloud_cover": "cloud_cover_pct",
}
INTERVAL_MEANS = {"ghi_wm2", "dni_wm2", "dhi_wm2"}


def parse_openmeteo(payload: bytes | str | dict) -> pd.DataFrame:
    """Weather on the 15-min UTC slot grid from a forecast or archive response."""
    try:
        doc = json.loads(payload) if isinstance(payload, (bytes, str)) else payload
    except json.JSONDecodeError as err:
        raise SourceParseError(f"open-meteo: response is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise SourceParseError("open-meteo: response is not a JSON object")
    if doc.get("error"):
        raise SourceError(f"open-meteo: request refused: {doc.get('reason', 'no reason given')}")
    block_name = "minutely_15" if "minutely_15" in doc else "hourly" if "hourly" in doc else None
    if block_name is None:
        raise SourceParseError("open-meteo: response has neither 'hourly' nor 'minutely_15' data")
    block = doc[block_name]
    step = SLOT if block_name == "minutely_15" else timedelta(hours=1)
    if "time" not in block:
        raise SourceParseError(f"open-meteo: '{block_name}' has no 'time' array")
    offset = pd.Timedelta(seconds=int(doc.get("utc_offset_seconds", 0)))
    # times are local wall-clock strings with the offset given once for the response
    stamps = pd.DatetimeIndex(pd.to_datetime(block["time"], format="ISO8601")) - offset
    stamps = stamps.tz_localize("UTC")
    n = len(stamps)
    cols: dict[str, pd.Series] = {}
    for api_name, col in VARIABLES.items():
        if api_name not in block:
            continue
        vals = block[api_name]
        if len(vals) != n:
            raise SourceParseError(f"open-meteo: '{api_name}' has {len(vals)} values for {n} times")
        s = pd.Series(pd.to_numeric(pd.Series(vals, dtype=object), errors="coerce").to_numpy(dtype=float), index=stamps)
        if col in INTERVAL_MEANS:
            s.index = s.index - step  # value at T is the mean over [T - step, T): label by the start
        cols[col] = s
    if not cols:
        raise SourceParseError(f"open-meteo: '{block_name}' has none of {', '.join(VARIABLES)}")
    start = min(s.index[0] for s in cols.values())
    end = max(s.index[-1] for s in cols.values()) + step
    grid = pd.date_range(start, end, freq=SLOT, inclusive="left", tz="UTC", name="slot_start")
    out = pd.DataFrame(index=grid)
    for col, s in cols.items():
        if step == SLOT:
            out[col] = s.reindex(grid)
        elif col in INTERVAL_MEANS:
            out[col] = s.reindex(grid, method="ffill", limit=3)  # the hour's mean holds for its 4 slots
        else:
            # instantaneous samples: linear in time between neighbouring samples, never across a gap
            out[col] = s.reindex(s.index.union(grid)).interpolate(method="time", limit=3, limit_area="inside").reindex(grid)
    if "cloud_cover_pct" in out:
        out["cloud_cover_pct"] = out["cloud_cover_pct"].clip(0, 100)
    return out


@dataclass
class OpenMeteoClient(SourceClient):
    """Weather forecast and archive for one location."""

    latitude: float = 0.0
    longitude: float = 0.0
    forecast_url: str = FORECAST_URL
    archive_url: str = ARCHIVE_URL
    fifteen_minutely: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.name = "open-meteo"
        if not (-90 <= self.latitude <= 90 and -180 <= self.longitude <= 180):
            raise SourceError(f"open-meteo: invalid location {self.latitude}, {self.longitude}")

    def _request(self, url: str, params: dict, what: str) -> pd.DataFrame:
        resp = self.get(url, params, what)
        if resp.status_code not in (200, 400):
            raise SourceError(f"open-meteo: HTTP {resp.status_code} for {what}")
        return parse_openmeteo(resp.content)

    def forecast(self, days: int = 3) -> pd.DataFrame:
        """Forecast from today (UTC) for ``days`` days, cached for ``max_age``."""
        block = "minutely_15" if self.fifteen_minutely else "hourly"
        params = {"latitude": self.latitude, "longitude": self.longitude, block: ",".join(VARIABLES),
                  "timezone": "GMT", "forecast_days": days}
        return self.cached(("forecast", days, block), lambda: self._request(self.forecast_url, params, "forecast"))

    def archive(self, first: date, last: date) -> pd.DataFrame:
        """Historical (reanalysis) weather for UTC days first..last (inclusive), hourly data."""
        if last < first:
            raise SourceError(f"open-meteo: archive range ends ({last}) before it starts ({first})")
        params = {"latitude": self.latitude, "longitude": self.longitude, "start_date": first.isoformat(),
                  "end_date": last.isoformat(), "hourly": ",".join(VARIABLES), "timezone": "GMT"}
        return self.cached(("archive", first, last),
                           lambda: self._request(self.archive_url, params, f"archive {first}..{last}"))
