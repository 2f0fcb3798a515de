"""The trainer service over a real broker and database: scheduled retraining, commands, events, runs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.trainer.service import TrainerService
from shared.clock import SimClock
from shared.config import site_config_from_dict, yaml_load
from shared.contracts import CommandMsg, decode, encode
from shared.registry import ModelRegistry
from shared.storage import Store
from tests.conftest import running, wait_for
from tests.test_service_runtime import Watcher

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "citylearn_building_1.csv.gz"
AUTH = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
def rig(tmp_path: Path, embedded_broker):
    data = yaml_load((ROOT / "examples" / "citylearn-home.yaml").read_text())
    data.update({
        "site_id": f"t-{uuid.uuid4().hex[:10]}",
        "mqtt": dict(embedded_broker.mqtt),
        "database": {"url": f"sqlite:///{tmp_path / 'darkstar.db'}"},
        "http": {"admin_token": "test-admin-token"},
        "trainer": {"data": str(DATA), "history_days": 5, "kinds": ["antares"], "validation_frac": 0.3,
                    # a 5-day toy policy is far from the MPC: a wide margin so the approval path runs
                    "antares_max_excess_vs_mpc_frac": 10.0,
                    "model_dir": str(tmp_path / "models"), "seed": 1},
    })
    site = site_config_from_dict(data, environ={})
    store = Store.open(site.database.url.get_secret_value())
    # 12:00 local (UTC-8) on 2016-08-12: the last whole day is 2016-08-11
    clock = SimClock(datetime(2016, 8, 12, 20, 0, tzinfo=UTC), accel=1.0)
    watcher = Watcher(embedded_broker.host, embedded_broker.port, f"darkstar/{site.site_id}/#")
    service = TrainerService(site, store=store, clock=clock)
    with running(service, watcher, store):
        yield site, service, store, watcher


def _events(watcher: Watcher, base: str) -> list:
    return [decode(p) for p in watcher.on(f"{base}/trainer/run")]


def test_weekly_schedule_trains_records_registers_and_publishes(rig):
    site, service, store, watcher = rig
    base = f"darkstar/{site.site_id}"
    service.tick()  # just started, nothing recorded: the first scheduled run is a week away
    assert not service.busy
    service.last_run_at = service.clock.now() - timedelta(days=7)
    service.tick()
    service.wait(240)
    events = wait_for(lambda: (e := _events(watcher, base)) and len(e) >= 2 and e)
    assert [e.status for e in events] == ["started", "finished"]
    done = events[1]
    assert done.target == "antares" and done.model_id.startswith("antares_v1_20160811_")
    for key in ("policy_cost", "mpc_cost", "oracle_cost", "charge_kw_mae", "discharge_kw_rmse", "export_kw_mae"):
        assert key in done.metrics
    row = store.training_run(site.site_id, done.run_id)
    assert row["status"] == "finished" and row["started_at"] is not None and row["finished_at"] is not None
    assert row["params"]["seed"] == 1 and row["params"]["num_rounds"] > 0
    extra = row["extra"]
    assert extra["from"] == "2016-08-07" and extra["to"] == "2016-08-11"
    assert extra["split"]["train_to"] < extra["split"]["validation_from"]
    assert extra["targets"] == ["charge_kw", "discharge_kw", "export_kw"] and extra["dataset_version"]
    assert all(Path(p).exists() for p in extra["artifacts"])
    current = ModelRegistry(store, site.site_id).current("antares")
    assert current is not None and current.model_id == done.model_id and current.run_id == done.run_id
    # the schedule is satisfied for another week
    service.tick()
    assert not service.busy
    client = TestClient(service.build_app())
    runs = client.get("/admin/runs", headers=AUTH).json()
    assert runs["running"] is False and runs["runs"][0]["run_id"] == done.run_id
    assert client.get("/admin/runs").status_code == 401
    buttons = [e for e in service.ha_entities() if e.component == "button"]
    assert [b.command_topic for b in buttons] == ["cmd/trainer/retrain"]


def test_retrain_command_and_admin_route_report_a_failed_job_and_the_service_keeps_running(rig):
    site, service, store, watcher = rig
    base = f"darkstar/{site.site_id}"
    cmd = CommandMsg(site_id=site.site_id, args={"kinds": ["aurora"]})  # 5 days: too few for Aurora
    watcher.publish(f"{base}/cmd/trainer/retrain", encode(cmd))
    reply = wait_for(lambda: [decode(p) for p in watcher.on(f"{base}/cmd/trainer/retrain/result")
                              if decode(p).correlation_id == cmd.correlation_id])[0]
    assert reply.status == "ok" and reply.data["started"] is True and reply.data["kinds"] == ["aurora"]
    service.wait(60)
    failed = wait_for(lambda: [e for e in _events(watcher, base) if e.status == "failed"])[0]
    assert failed.target == "aurora" and "at least" in failed.detail
    assert store.training_run(site.site_id, failed.run_id)["status"] == "failed"
    errors = wait_for(lambda: watcher.on(f"{base}/events/error"))
    assert "training aurora" in decode(errors[0]).what
    client = TestClient(service.build_app())
    assert client.post("/admin/retrain", json={"kinds": ["zeus"]}, headers=AUTH).status_code == 400
    assert client.post("/admin/retrain", json={"kinds": ["aurora"]}).status_code == 401
    ok = client.post("/admin/retrain", json={"kinds": ["aurora"], "to": "2016-08-10"}, headers=AUTH)
    assert ok.status_code == 200 and ok.json()["started"] is True
    service.wait(60)
    assert not service.busy


def test_live_history_from_the_database_becomes_a_training_frame(tmp_path):
    from datetime import date

    from services.trainer.service import frame_from_store
    from shared.antares.episodes import grade_frame_days
    from shared.contracts import ObservationMsg, PriceSlot, PricesMsg
    from shared.slots import local_day_slots

    data = yaml_load((ROOT / "examples" / "citylearn-home.yaml").read_text())
    site = site_config_from_dict(data, environ={})
    store = Store.open(f"sqlite:///{tmp_path / 'live.db'}")
    try:
        day = date(2016, 8, 5)
        index = local_day_slots(day, site.tz)
        for issued, price in ((datetime(2016, 8, 4, 12, tzinfo=UTC), 0.30), (datetime(2016, 8, 4, 20, tzinfo=UTC), 0.20)):
            store.store_prices(PricesMsg(site_id=site.site_id, currency="USD", resolution_minutes=15, issued_at=issued,
                                         slots=[PriceSlot(start=ts.to_pydatetime(), import_price_per_kwh=price,
                                                          export_price_per_kwh=0.0) for ts in index]))
        store.store_observations([
            ObservationMsg(site_id=site.site_id, slot_start=ts.to_pydatetime(), load_kwh=0.5, pv_kwh=0.25,
                           import_kwh=0.25, export_kwh=0.0, charge_kwh=0.0, discharge_kwh=0.0,
                           soc_end_frac=None if k == 40 else 0.5)
            for k, ts in enumerate(index)])
        start, end = index[0].to_pydatetime(), (index[-1] + timedelta(minutes=15)).to_pydatetime()
        frame, weather = frame_from_store(store, site.site_id, start, end)
    finally:
        store.close()
    assert len(frame) == 96 and weather is None
    assert frame["load_kw"].eq(2.0).all() and frame["pv_kw"].eq(1.0).all()  # kWh per 15 min -> kW
    assert frame["import_price"].eq(0.20).all()  # the latest-issued curve wins
    # one slot without a battery reading: load/PV/prices complete, so only the battery targets lose the day
    assert grade_frame_days(frame, site, [day]) == {day: "battery_missing"}
