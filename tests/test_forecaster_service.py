"""The forecaster service on a recorded replay: knowable prices only, forecasts, recorder, model training."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from services.forecaster.service import ForecasterService
from shared.clock import SimClock
from shared.contracts import ForecastMsg, PricesMsg, decode
from shared.storage.repository import Store
from tests.conftest import EXAMPLE_DATA, make_site, wait_for
from tests.test_service_runtime import Watcher

SE4 = str(EXAMPLE_DATA / "se4_home_2025-07_2025-10.csv.gz")


def make(tmp_path: Path, mqtt: dict, now: datetime, **forecaster):
    site = make_site(tmp_path, mqtt, tariff={"currency": "EUR", "price_source": "nordpool", "vat_frac": 0.25,
                                             "energy_tax_per_kwh": 0.04},
                     forecaster={"replay_data": SE4, "model_dir": str(tmp_path / "models"), "retrain_hours": 10000,
                                 **forecaster})
    store = Store.open(site.database.url.get_secret_value())
    return site, store, ForecasterService(site, store=store, clock=SimClock(now, accel=1.0))


def test_before_the_auction_only_today_is_published_and_after_it_tomorrow_too(tmp_path: Path, broker_mqtt):
    morning = datetime(2025, 9, 1, 8, 0, tzinfo=timezone.utc)  # 10:00 in Stockholm, auction at 13:00
    site, store, service = make(tmp_path, broker_mqtt, morning, history_days=9)
    watcher = Watcher(broker_mqtt["host"], broker_mqtt["port"], f"darkstar/{site.site_id}/#")
    service.start()
    try:
        prices = decode(wait_for(lambda: watcher.on(f"darkstar/{site.site_id}/prices"), timeout_s=20)[0])
        assert isinstance(prices, PricesMsg)
        last_local = pd.Timestamp(prices.slots[-1].start).tz_convert(site.tz)
        assert last_local.date().isoformat() == "2025-09-01" and len(prices.slots) == 96
        # import price = (spot + tax) * (1 + VAT), from the recorded spot price
        spot = prices.slots[40].spot_per_kwh
        assert prices.slots[40].import_price_per_kwh == pytest.approx((spot + 0.04) * 1.25)
        # the forecast comes before any model: a flagged baseline from measured history only
        forecast = decode(wait_for(lambda: watcher.on(f"darkstar/{site.site_id}/forecast"), timeout_s=20)[0])
        assert isinstance(forecast, ForecastMsg) and forecast.fallback and len(forecast.slots) == 192
        assert all(s.load_p10_kw <= s.load_p50_kw <= s.load_p90_kw for s in forecast.slots)
        # after the auction time the curve grows to the end of tomorrow
        after = service.refresh_prices(datetime(2025, 9, 1, 11, 30, tzinfo=timezone.utc))
        assert after is not None and len(after.slots) == 192
        # the recorder stored what went over the bus
        wait_for(lambda: store.count("prices", site.site_id) == 192 and store.count("forecasts", site.site_id) >= 192)
    finally:
        service.stop()
        watcher.close()
        store.close()


def test_a_trained_model_replaces_the_baseline_and_is_saved(tmp_path: Path, embedded_broker):
    mqtt = dict(embedded_broker.mqtt)
    now = datetime(2025, 8, 20, 10, 0, tzinfo=timezone.utc)
    site, store, service = make(tmp_path, mqtt, now, history_days=30)
    try:
        report = service.train(now)
        assert report["trained"] and service.models is not None
        # the trainer's artifact names: aurora_v1_<last day>_<hash>.pkl with its card
        saved = list((tmp_path / "models").glob("aurora_v1_20250819_*.pkl"))
        assert len(saved) == 1 and saved[0].with_name(saved[0].name.replace(".pkl", ".card.json")).exists()
        # trained strictly on the past
        assert pd.Timestamp(service.models.card["train_to"]) <= pd.Timestamp(now)
        service.start()
        forecast = service.publish_forecast(now)
        assert forecast.model_id == service.models.model_id
        night = [s for s in forecast.slots if pd.Timestamp(s.start).tz_convert(site.tz).hour in (0, 1, 2)]
        assert night and all(s.pv_p90_kw == 0 for s in night)
    finally:
        service.stop()
        store.close()


def test_a_new_site_gets_a_cold_start_prior_that_says_so(tmp_path: Path, embedded_broker):
    mqtt = dict(embedded_broker.mqtt)
    now = datetime(2025, 7, 2, 20, 0, tzinfo=timezone.utc)  # the recording starts on 2025-07-02 15:00
    site, store, service = make(tmp_path, mqtt, now, history_days=9)
    try:
        assert service.train(now)["trained"] is False
        service.start()
        forecast = service.publish_forecast(now)
        assert forecast is not None and forecast.model_id == "prior" and forecast.fallback
        assert any("cold start prior" in n for n in forecast.notes)
        frame = pd.DataFrame([s.model_dump() for s in forecast.slots]).set_index("start")
        local = pd.DatetimeIndex(frame.index).tz_convert(site.tz)
        night = frame[(local.hour >= 0) & (local.hour < 3)]
        assert (night["pv_p90_kw"] == 0).all()  # physics: no sun, no PV
        assert (frame["pv_p10_kw"] <= frame["pv_p50_kw"]).all() and (frame["pv_p50_kw"] <= frame["pv_p90_kw"]).all()
        first_day = frame[local.date == local[0].date() + pd.Timedelta(days=1)]
        assert first_day["load_p50_kw"].sum() * 0.25 == pytest.approx(site.forecaster.load_prior_daily_kwh)
        # July at 55 deg N: midday PV between an overcast day and clear sky, within the arrays' size
        assert 0 < frame["pv_p50_kw"].max() <= site.pv.kwp_total
    finally:
        service.stop()
        store.close()
