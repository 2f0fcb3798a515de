"""Plausibility from the site's physics: contract-valid but impossible messages are refused, reported, not stored.

The site (tests.conftest.make_site): 10 kWh battery at 5 kW, 5 kWp PV, 17 kW main fuse, 25 % margin.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.planner.service import PlannerService
from shared.contracts import (
    ContractError,
    ForecastMsg,
    ForecastSlot,
    ObservationMsg,
    PriceSlot,
    PricesMsg,
    TelemetryMsg,
    decode,
    encode,
)
from shared.plausibility import SiteLimits, implausible
from shared.storage.repository import Store
from tests.conftest import make_site, running, wait_for
from tests.test_service_runtime import Watcher

NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def prices(site_id: str, price: float = 0.2, at: int = 5) -> PricesMsg:
    slots = [PriceSlot(start=NOW + timedelta(minutes=15 * i), import_price_per_kwh=price if i == at else 0.2,
                       export_price_per_kwh=0.05) for i in range(96)]
    return PricesMsg(site_id=site_id, currency="EUR", resolution_minutes=15, source="test", slots=slots)


@pytest.fixture
def limits(tmp_path: Path) -> tuple[str, SiteLimits]:
    site = make_site(tmp_path, {"embedded": True})
    return site.site_id, SiteLimits(site)


def test_plausible_messages_pass(limits) -> None:
    site_id, lim = limits
    assert implausible("prices", prices(site_id), lim, NOW) is None
    telemetry = TelemetryMsg(site_id=site_id, ts=NOW, soc_frac=0.5, soc_kwh=5.0, pv_kw=4.8, load_kw=2.0,
                             grid_kw=-7.0, battery_kw=-5.0)
    assert implausible("telemetry", telemetry, lim, NOW + timedelta(seconds=30)) is None
    obs = ObservationMsg(site_id=site_id, slot_start=NOW - timedelta(days=3), load_kwh=1.2, pv_kwh=1.1,
                         import_kwh=4.0, charge_kwh=1.25)  # late observations (a backlog) are fine
    assert implausible("observations", obs, lim, NOW) is None


@pytest.mark.parametrize(("kind", "msg", "expected"), [
    ("prices", lambda s: prices(s, price=99.0), "99 per kWh is outside the plausible band [-1, 6]"),
    ("telemetry", lambda s: TelemetryMsg(site_id=s, ts=NOW, soc_kwh=1e6), "more than the battery holds"),
    ("telemetry", lambda s: TelemetryMsg(site_id=s, ts=NOW, battery_kw=40.0), "battery_kw = 40 kW is beyond"),
    ("telemetry", lambda s: TelemetryMsg(site_id=s, ts=NOW - timedelta(hours=2), soc_frac=0.5), "not live"),
    ("observations", lambda s: ObservationMsg(site_id=s, slot_start=NOW, import_kwh=1e6),
     "import_kwh = 1e+06 kWh is more than power x duration"),
    ("observations", lambda s: ObservationMsg(site_id=s, slot_start=datetime(9999, 12, 31, 23, 45, tzinfo=timezone.utc),
                                              load_kwh=0.2), "in the future"),
    ("forecast", lambda s: ForecastMsg(site_id=s, model_id="x", slots=[ForecastSlot(
        start=NOW, load_p10_kw=0, load_p50_kw=1, load_p90_kw=1e300, pv_p10_kw=0, pv_p50_kw=0, pv_p90_kw=0)]),
     "slots[0].load_p90_kw = 1e+300 kW is beyond"),
])
def test_impossible_values_are_named_with_where_and_why(limits, kind, msg, expected) -> None:
    site_id, lim = limits
    why = implausible(kind, msg(site_id), lim, NOW)
    assert why is not None and expected in why


@pytest.mark.parametrize(("payload", "why"), [
    (b'{"schema":"darkstar.telemetry/1","site_id":"s","ts":"2025-01-01T00:00:00Z","soc_kwh":Infinity}', "Infinity"),
    (b'{"schema":"darkstar.telemetry/1","site_id":"s","ts":"2025-01-01T00:00:00Z","soc_kwh":NaN}', "NaN"),
    (b'{"schema":"darkstar.telemetry/1","site_id":"s","ts":"2025-01-01T00:00:00Z","soc_kwh":1e999}', "overflows"),
    (b'{"schema":"darkstar.command/1","site_id":"s","args":' + b"[" * 3000 + b"]" * 3000 + b"}", "nested 3001 deep"),
    (b'{"schema":"darkstar.telemetry/1","site_id":"s","ts":"2025-01-01T00:00:00Z","soc_frac":' + b"9" * 5000 + b"}",
     "integer with 5000 digits"),
    (b'{"schema":"darkstar.error/1","site_id":"s","who":"x","what":"y","why":"' + b"w" * 5000 + b'"}',
     "why: a string longer than 4096"),
    # free-form fields the models do not type are bounded too (a 2 MB string in a command's args)
    (b'{"schema":"darkstar.command/1","site_id":"s","args":{"note":"' + b"n" * 100_000 + b'"}}',
     "args.note: a string longer than 4096"),
    (b'{"schema":"darkstar.command/1","site_id":"s","args":{"list":[1,{"' + b"k" * 5000 + b'":1}]}}',
     "args.list[1].<key>: a string longer than 4096"),
])
def test_hostile_json_is_refused_before_or_while_parsing(payload: bytes, why: str) -> None:
    with pytest.raises(ContractError) as err:
        decode(payload)
    assert why in err.value.why


def test_99_eur_per_kwh_price_is_refused_reported_and_never_stored_or_planned_on(tmp_path: Path, embedded_broker) -> None:
    from services.forecaster.service import ForecasterService

    site = make_site(tmp_path, dict(embedded_broker.mqtt))
    store = Store.open(site.database.url.get_secret_value())
    base = f"darkstar/{site.site_id}"
    watcher = Watcher(embedded_broker.host, embedded_broker.port, f"{base}/#")
    planner, recorder = PlannerService(site), ForecasterService(site, store=store)
    with running(recorder), running(planner, watcher, store):
        spike = prices(site.site_id, price=99.0)
        watcher.publish(f"{base}/prices", encode(spike))  # non-retained, inside the contract's +-100 bound
        reporters = lambda: {decode(p).who for p in watcher.on(f"{base}/events/error") if b"99 per kWh" in p}  # noqa: E731
        wait_for(lambda: reporters() == {"planner", "forecaster"})  # every consumer reports it
        assert "prices" not in planner.latest and store.latest_prices(site.site_id) is None
        good = prices(site.site_id)
        watcher.publish(f"{base}/prices", encode(good))
        wait_for(lambda: store.latest_prices(site.site_id) is not None)
        assert planner.latest["prices"].prices_id == good.prices_id
        assert json.loads(encode(store.latest_prices(site.site_id)))["prices_id"] == good.prices_id
