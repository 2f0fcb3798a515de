"""Where the forecaster gets prices, weather and history: the live world or a recorded replay.

``LiveWorld``: day-ahead prices from Nord Pool or ENTSO-E (or fixed tariff prices), weather from
Open-Meteo, history from the database's measured slots. ``ReplayWorld``: a recorded site-data file
played back on the service's clock (demo, offline runs): only what was knowable at that moment
is returned — today's prices, tomorrow's after the daily auction time, history before now.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import pandas as pd

from shared.config import SiteConfig
from shared.sitedata import load_site_data
from shared.slots import SLOT, floor_slot, local_day_bounds
from shared.tariff import price_curve, price_curve_from_data

log = logging.getLogger("darkstar.forecaster")
WEATHER_COLUMNS = ("temp_c", "ghi_wm2", "dni_wm2", "dhi_wm2", "cloud_cover_pct")


class World(Protocol):
    source: str

    def prices(self, now: datetime) -> pd.DataFrame:
        """Per-slot spot/import/export prices published so far for today and (if out) tomorrow."""

    def weather(self, now: datetime) -> pd.DataFrame | None:
        """Weather forecast on the slot grid from a little before now to 48 h ahead, or None."""

    def history(self, now: datetime, days: int) -> pd.DataFrame:
        """Measured load_kw and pv_kw per slot before ``now`` (gaps stay NaN)."""

    def weather_history(self, now: datetime, days: int) -> pd.DataFrame | None:
        """The weather forecasts that were issued for the training period, or None."""


def _publishable_days(now: datetime, site: SiteConfig) -> tuple[date, date]:
    local_now = pd.Timestamp(now).tz_convert(site.tz)
    today = local_now.date()
    if not site.tariff.day_ahead:
        return today, today + timedelta(days=2)  # a time-of-use tariff is known in advance
    auction = site.tariff.auction_time_local
    after_auction = (local_now.hour, local_now.minute) >= (auction.hour, auction.minute)
    return today, today + timedelta(days=1 if after_auction else 0)


class ReplayWorld:
    """A recorded site-data file as the outside world (DESIGN §7 columns)."""

    def __init__(self, site: SiteConfig, path: str) -> None:
        self.site = site
        self.data = load_site_data(path)
        self.frame = self.data.frame
        self.source = f"replay:{path}"
        forecast_cols = {c: c.removesuffix("_fc24h") for c in self.frame.columns if c.endswith("_fc24h")}
        self._weather = self.frame[list(forecast_cols)].rename(columns=forecast_cols) if forecast_cols else None
        if self._weather is None:
            present = [c for c in WEATHER_COLUMNS if c in self.frame.columns]
            self._weather = self.frame[present] if present else None

    def prices(self, now: datetime) -> pd.DataFrame:
        first, last = _publishable_days(now, self.site)
        start, _ = local_day_bounds(first, self.site.tz)
        _, end = local_day_bounds(last, self.site.tz)
        window = self.frame.loc[(self.frame.index >= start) & (self.frame.index < end)]
        return price_curve_from_data(window, self.site, allow_missing=True).dropna(
            subset=["import_price_per_kwh", "export_price_per_kwh"])

    def weather(self, now: datetime) -> pd.DataFrame | None:
        if self._weather is None:
            return None
        start = floor_slot(now) - timedelta(hours=1)
        return self._weather.loc[(self._weather.index >= start) & (self._weather.index < start + timedelta(hours=50))]

    def weather_history(self, now: datetime, days: int) -> pd.DataFrame | None:
        if self._weather is None:
            return None
        end = floor_slot(now)
        return self._weather.loc[(self._weather.index >= end - timedelta(days=days)) & (self._weather.index < end)]

    def history(self, now: datetime, days: int) -> pd.DataFrame:
        end = floor_slot(now)
        return self.frame.loc[(self.frame.index >= end - timedelta(days=days)) & (self.frame.index < end),
                              ["load_kw", "pv_kw"]]


class LiveWorld:
    """Market and weather services over the network; history from the database."""

    def __init__(self, site: SiteConfig, store: Any) -> None:
        self.site = site
        self.store = store
        tariff = site.tariff
        self.source = tariff.price_source
        self.price_client: Any = None
        if tariff.price_source == "nordpool":
            from shared.sources.nordpool import NordPoolClient

            self.price_client = NordPoolClient(area=tariff.price_area or "SE4", currency=tariff.currency)
        elif tariff.price_source == "entsoe":
            from shared.sources.entsoe import EntsoeClient

            self.price_client = EntsoeClient(area=tariff.price_area or "SE4", token=tariff.entsoe_token)
        self.weather_client: Any = None
        if site.forecaster.weather_source == "open-meteo":
            from shared.sources.openmeteo import OpenMeteoClient

            self.weather_client = OpenMeteoClient(latitude=site.location.latitude, longitude=site.location.longitude)

    def prices(self, now: datetime) -> pd.DataFrame:
        first, last = _publishable_days(now, self.site)
        start, _ = local_day_bounds(first, self.site.tz)
        _, end = local_day_bounds(last, self.site.tz)
        index = pd.date_range(start, end, freq=SLOT, inclusive="left", name="slot_start")
        if self.site.tariff.price_source == "fixed":
            return price_curve(index, self.site)
        if self.site.tariff.price_source == "data":
            raise RuntimeError("tariff.price_source 'data' needs forecaster.replay_data (a recorded data file)")
        spot = self.price_client.spot_slots(start.to_pydatetime(), end.to_pydatetime()) \
            if self.site.tariff.price_source == "entsoe" else self.price_client.spot_slots(first, last)
        curve = price_curve(index, self.site, spot=spot.reindex(index), allow_missing=True)
        return curve.dropna(subset=["import_price_per_kwh", "export_price_per_kwh"])

    def weather(self, now: datetime) -> pd.DataFrame | None:
        if self.weather_client is None:
            return None
        try:
            return self.weather_client.forecast(days=3)
        except Exception as err:  # noqa: BLE001 - missing weather degrades to the fallback model
            log.warning("weather unavailable: %s", err)
            return None

    def weather_history(self, now: datetime, days: int) -> pd.DataFrame | None:
        weather = self.store.weather_between(self.site.site_id, now - timedelta(days=days), now)
        if weather is None or weather.empty:
            return None
        cols = [c for c in WEATHER_COLUMNS if c in weather.columns]
        return weather[cols] if cols else None

    def history(self, now: datetime, days: int) -> pd.DataFrame:
        obs = self.store.observations_between(self.site.site_id, now - timedelta(days=days), now)
        if obs is None or obs.empty:
            return pd.DataFrame(columns=["load_kw", "pv_kw"], index=pd.DatetimeIndex([], tz="UTC"))
        hours = SLOT.total_seconds() / 3600
        return pd.DataFrame({"load_kw": obs["load_kwh"] / hours, "pv_kw": obs["pv_kwh"] / hours}, index=obs.index)


def make_world(site: SiteConfig, store: Any) -> World:
    if site.forecaster.replay_data:
        return ReplayWorld(site, site.forecaster.replay_data)
    return LiveWorld(site, store)
