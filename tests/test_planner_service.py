"""The planner service over a real broker: inputs in, a valid retained plan out; no SoC, no plan."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.planner.service import PlannerService
from shared.clock import SimClock
from shared.contracts import (
    CommandMsg,
    ContextMsg,
    ForecastMsg,
    ForecastSlot,
    PlanMsg,
    PriceSlot,
    PricesMsg,
    TelemetryMsg,
    decode,
    encode,
)
from shared.sitedata import load_site_data
from shared.tariff import price_curve_from_data
from tests.conftest import EXAMPLE_DATA, make_site, running, wait_for
from tests.test_service_runtime import Watcher

NOW = datetime(2025, 8, 1, 6, 5, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def recorded() -> pd.DataFrame:
    return load_site_data(EXAMPLE_DATA / "se4_home_2025-07_2025-10.csv.gz").frame


def bus_inputs(site, frame: pd.DataFrame) -> tuple[PricesMsg, ForecastMsg]:
    window = frame.loc[pd.Timestamp("2025-08-01T06:00Z"):pd.Timestamp("2025-08-03T05:45Z")]
    prices = price_curve_from_data(window, site)
    hourly = prices.iloc[::4]  # the day-ahead market publishes hourly prices here
    pmsg = PricesMsg(site_id=site.site_id, area="SE4", currency=site.tariff.currency, resolution_minutes=60,
                     slots=[PriceSlot(start=ts, spot_per_kwh=r.spot_per_kwh, import_price_per_kwh=r.import_price_per_kwh,
                                      export_price_per_kwh=r.export_price_per_kwh) for ts, r in hourly.iterrows()])
    load, pv = window["load_kw"].ffill().to_numpy(), window["pv_kw"].ffill().to_numpy()
    fmsg = ForecastMsg(site_id=site.site_id, model_id="recorded-as-forecast", slots=[
        ForecastSlot(start=ts, load_p10_kw=0.8 * load[i], load_p50_kw=load[i], load_p90_kw=1.2 * load[i],
                     pv_p10_kw=0.7 * pv[i], pv_p50_kw=pv[i], pv_p90_kw=1.1 * pv[i])
        for i, ts in enumerate(window.index)])
    return pmsg, fmsg


def feed_and_wait_for_plan(site, watcher, recorded, **telemetry):
    """Publish prices, forecast and one telemetry reading; return the bus base once a plan is out."""
    prices, forecast = bus_inputs(site, recorded)
    base = f"darkstar/{site.site_id}"
    for topic, msg in (("prices", prices), ("forecast", forecast),
                       ("telemetry", TelemetryMsg(site_id=site.site_id, ts=NOW, **telemetry))):
        watcher.publish(f"{base}/{topic}", encode(msg))
    wait_for(lambda: watcher.on(f"{base}/plan"), timeout_s=30)
    return base


@pytest.fixture
def planner(tmp_path: Path, broker_mqtt):
    site = make_site(tmp_path, broker_mqtt, tariff={"currency": "EUR", "price_source": "nordpool",
                                                    "energy_tax_per_kwh": 0.04, "vat_frac": 0.25})
    watcher = Watcher(broker_mqtt["host"], broker_mqtt["port"], f"darkstar/{site.site_id}/#")
    service = PlannerService(site, clock=SimClock(NOW, accel=1.0))
    with running(service, watcher):
        yield site, service, watcher


def test_a_plan_is_published_from_prices_forecast_and_measured_soc(planner, recorded):
    site, service, watcher = planner
    prices, forecast = bus_inputs(site, recorded)
    base = f"darkstar/{site.site_id}"
    watcher.publish(f"{base}/prices", encode(prices))
    watcher.publish(f"{base}/forecast", encode(forecast))
    watcher.publish(f"{base}/telemetry", encode(TelemetryMsg(site_id=site.site_id, ts=NOW, soc_frac=0.5)))
    plan = decode(wait_for(lambda: watcher.on(f"{base}/plan"), timeout_s=30)[-1])
    assert isinstance(plan, PlanMsg) and not plan.fallback
    assert plan.inputs["prices_id"] == prices.prices_id and plan.inputs["forecast_id"] == forecast.forecast_id
    assert plan.valid_until > plan.created_at
    assert len(plan.slots) == 192  # 48 h of prices and forecast from 06:00 UTC
    assert plan.slots[0].start == datetime(2025, 8, 1, 6, 0, tzinfo=timezone.utc)
    # energy balance in every slot: import + pv + discharge = load + charge + export + water (+ curtail)
    for s in plan.slots:
        supply = s.import_kw + (s.pv_kw or 0) + s.discharge_kw
        demand = (s.load_kw or 0) + s.charge_kw + s.export_kw + s.water_kw + s.ev_kw + s.pv_curtail_kw
        assert supply == pytest.approx(demand, abs=1e-4)
        assert not (s.charge_kw > 1e-6 and s.discharge_kw > 1e-6)
        assert 0 <= s.soc_kwh <= site.battery.capacity_kwh + 1e-6
    # the first slot starts from the measured SoC (5 kWh) and its price is carried for the executor
    first = plan.slots[0]
    assert first.import_price_per_kwh == pytest.approx(prices.slots[0].import_price_per_kwh)
    delta = first.charge_kw * site.battery.charge_efficiency - first.discharge_kw / site.battery.discharge_efficiency
    assert first.soc_kwh == pytest.approx(5.0 + delta * 0.25, abs=1e-3)
    # the money adds up
    c = plan.cost
    assert c.total_cost == pytest.approx(c.import_cost - c.export_revenue + c.wear_cost + c.capacity_cost
                                         + c.penalty_cost, abs=1e-6)


def test_no_measured_soc_means_no_plan_and_an_error_event(planner, recorded):
    site, service, watcher = planner
    prices, forecast = bus_inputs(site, recorded)
    base = f"darkstar/{site.site_id}"
    watcher.publish(f"{base}/prices", encode(prices))
    watcher.publish(f"{base}/forecast", encode(forecast))
    watcher.publish(f"{base}/telemetry", encode(TelemetryMsg(site_id=site.site_id, ts=NOW, soc_frac=None,
                                                             pv_kw=1.0)))
    watcher.publish(f"{base}/cmd/planner/replan", encode(CommandMsg(site_id=site.site_id, correlation_id="r1")))
    reply = decode(wait_for(lambda: watcher.on(f"{base}/cmd/planner/replan/result"))[-1])
    assert reply.status == "error" and "SoC" in reply.error
    errors = [decode(p).why for p in watcher.on(f"{base}/events/error")]
    assert any("no fresh measured battery SoC" in e for e in errors)
    assert watcher.on(f"{base}/plan") == []


def test_context_change_replans_and_vacation_is_honoured(planner, recorded):
    site, service, watcher = planner
    base = feed_and_wait_for_plan(site, watcher, recorded, soc_kwh=6.0)
    watcher.publish(f"{base}/context/vacation", encode(ContextMsg(site_id=site.site_id, name="vacation", value=True)))
    wait_for(lambda: any("context vacation changed" in decode(p).inputs["trigger"] for p in watcher.on(f"{base}/plan")),
             timeout_s=30)
    assert service.context_value("vacation") is True


def test_a_manual_block_becomes_part_of_the_plan(planner, recorded):
    site, service, watcher = planner
    base = feed_and_wait_for_plan(site, watcher, recorded, soc_kwh=2.0)
    block = CommandMsg(site_id=site.site_id, args={"start": "2025-08-01T10:00:00+00:00",
                                                   "end": "2025-08-01T11:00:00+00:00", "action": "charge",
                                                   "power_kw": 3.0})
    watcher.publish(f"{base}/cmd/planner/manual_block", encode(block))
    wait_for(lambda: any(s.start.hour == 10 and s.charge_kw >= 2.99
                         for s in decode(watcher.on(f"{base}/plan")[-1]).slots), timeout_s=30)
    plan = decode(watcher.on(f"{base}/plan")[-1])
    charging = [s.charge_kw for s in plan.slots if s.start.hour == 10 and s.start.day == 1]
    assert np.allclose(charging, 3.0, atol=1e-4)


def test_without_a_charger_the_cars_soc_from_home_assistant_sets_the_energy_it_needs(tmp_path: Path):
    """HA reads the car's SoC (context ev_soc_frac from the executor); no charger computes ev_target_kwh,
    so the planner does: (wanted - SoC) x battery, not the configured fixed target_kwh."""
    site = make_site(tmp_path, {"embedded": True}, evs=[
        {"name": "car", "battery_kwh": 60, "max_charge_kw": 11, "target_kwh": 10, "target_soc_frac": 0.8}])
    service = PlannerService(site, clock=SimClock(NOW, accel=1.0))

    def ctx(**values):
        service.context = {name: ContextMsg(site_id=site.site_id, name=name, value=v) for name, v in values.items()}
        return service._context(NOW)

    assert "ev_target_kwh" not in ctx()  # SoC unknown: the model's own target_kwh applies, no guess
    assert ctx(ev_soc_frac=0.4)["ev_target_kwh"] == pytest.approx(24.0)
    assert ctx(ev_soc_frac=0.4, ev_target_soc_frac=0.5)["ev_target_kwh"] == pytest.approx(6.0)  # wanted, from HA/web
    assert ctx(ev_soc_frac=0.9)["ev_target_kwh"] == 0.0  # already above the target
    assert ctx(ev_soc_frac=0.4, ev_target_kwh=3.0)["ev_target_kwh"] == 3.0  # a charger's own figure wins
