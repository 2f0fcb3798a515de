"""The oracle service over a real broker and database: nightly run, cmd/oracle/run, stored and published."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from services.oracle.service import OracleService
from shared.clock import SimClock
from shared.contracts import CommandMsg, ObservationMsg, PriceSlot, PricesMsg, decode, encode
from shared.slots import local_day_slots
from shared.storage import Store
from tests.conftest import make_site, running, wait_for
from tests.test_service_runtime import Watcher

DAY = date(2025, 10, 1)


def _fill(store: Store, site) -> None:
    """A day in Stockholm: 1 kW load, no PV, no battery use (what the live system did); import
    0.10 before 06:00 local and 0.50 after."""
    index = local_day_slots(DAY, site.tz)
    local_hours = index.tz_convert(site.tz).hour
    store.store_prices(PricesMsg(
        site_id=site.site_id, currency="EUR", resolution_minutes=15,
        slots=[PriceSlot(start=ts.to_pydatetime(), import_price_per_kwh=0.10 if h < 6 else 0.50,
                         export_price_per_kwh=0.0) for ts, h in zip(index, local_hours)]))
    store.store_observations([
        ObservationMsg(site_id=site.site_id, slot_start=ts.to_pydatetime(), load_kwh=0.25, pv_kwh=0.0,
                       import_kwh=0.25, export_kwh=0.0, charge_kwh=0.0, discharge_kwh=0.0, soc_end_frac=0.0)
        for ts in index])


@pytest.fixture
def rig(tmp_path: Path, broker_mqtt):
    site = make_site(tmp_path, broker_mqtt, battery={"capacity_kwh": 4, "max_charge_kw": 4, "max_discharge_kw": 4,
                                                     "charge_efficiency": 1.0, "discharge_efficiency": 1.0,
                                                     "min_soc_frac": 0.0, "reserve_soc_frac": 0.0,
                                                     "terminal_value_per_kwh": 0.0})
    store = Store.open(site.database.url.get_secret_value())
    _fill(store, site)
    # 01:00 local on the next day: the nightly run is due
    clock = SimClock(datetime(2025, 10, 1, 23, 0, tzinfo=UTC), accel=1.0)
    watcher = Watcher(broker_mqtt["host"], broker_mqtt["port"], f"darkstar/{site.site_id}/#")
    service = OracleService(site, store=store, clock=clock)
    with running(service, watcher, store):
        yield site, service, store, watcher


def test_nightly_run_stores_and_publishes_yesterdays_oracle_and_regret(rig):
    site, service, store, watcher = rig
    service.tick()
    base = f"darkstar/{site.site_id}"
    msg = decode(wait_for(lambda: watcher.on(f"{base}/oracle/result"))[0])
    assert msg.day == "2025-10-01"
    realized = 6 * 0.10 + 18 * 0.50  # what the house paid: no battery use
    assert msg.realized_cost == pytest.approx(realized)
    assert msg.oracle_cost == pytest.approx(realized + 4 * 0.10 - 4 * 0.50, abs=1e-6)
    assert msg.regret == pytest.approx(1.6, abs=1e-6)
    # the self-consumption rule never charges from the grid: with no PV it pays what the house paid
    assert msg.breakdown["rule_cost"] == pytest.approx(realized, abs=1e-6)
    assert msg.breakdown["rule_soc_end_kwh"] == pytest.approx(0.0)
    rows = store.oracle_results(site.site_id)
    assert rows.loc[DAY, "regret"] == pytest.approx(1.6, abs=1e-6)
    assert rows.loc[DAY, "breakdown"]["rule_cost"] == pytest.approx(realized, abs=1e-6)  # the Money page's bar
    service.tick()  # once per night
    assert len(watcher.on(f"{base}/oracle/result")) == 1


def test_cmd_run_replies_with_the_result_and_a_day_without_data_is_an_error_reply(rig):
    site, service, _store, watcher = rig
    base = f"darkstar/{site.site_id}"
    ok = CommandMsg(site_id=site.site_id, args={"day": "2025-10-01"})
    watcher.publish(f"{base}/cmd/oracle/run", encode(ok))
    reply = wait_for(lambda: [decode(p) for p in watcher.on(f"{base}/cmd/oracle/run/result")
                              if decode(p).correlation_id == ok.correlation_id])[0]
    assert reply.status == "ok" and reply.data["oracle_cost"] == pytest.approx(8.0, abs=1e-6)
    bad = CommandMsg(site_id=site.site_id, args={"day": "2025-09-01"})
    watcher.publish(f"{base}/cmd/oracle/run", encode(bad))
    reply = wait_for(lambda: [decode(p) for p in watcher.on(f"{base}/cmd/oracle/run/result")
                              if decode(p).correlation_id == bad.correlation_id])[0]
    assert reply.status == "error" and "no observations" in reply.error
