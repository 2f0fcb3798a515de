"""History from Home Assistant into observations: the slot arithmetic on hand-made cases, and
``darkstar import ha`` against a real core holding 30 days of imported long-term statistics."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ha_core import HACore, ha_site

from shared.ha.history import counter_energy_kwh, step_energy_kwh
from shared.slots import local_day_bounds

T0 = pd.Timestamp("2025-10-01T10:00Z")


def test_a_power_step_function_becomes_slot_energies_and_unknown_stays_uncovered():
    times = pd.DatetimeIndex([T0, T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)])
    # 3 kW for 10 min, -1.5 kW (export) for 10 min, then unknown until the end
    energy, covered = step_energy_kwh(times, np.array([3.0, -1.5, np.nan]), T0, T0 + timedelta(minutes=30))
    assert energy["pos"].iloc[0] == pytest.approx(0.5)  # 3 kW x 10 min
    assert energy["neg"].iloc[0] == pytest.approx(0.125)  # 1.5 kW x 5 min in the first slot
    assert energy["neg"].iloc[1] == pytest.approx(0.125)
    assert covered.iloc[0] == pytest.approx(1.0)
    assert covered.iloc[1] == pytest.approx(1 / 3)  # only 5 of 15 min known: the import drops the slot


def test_a_counter_gives_its_increase_per_slot_and_a_reset_is_not_negative_energy():
    times = pd.DatetimeIndex([T0, T0 + timedelta(minutes=14), T0 + timedelta(minutes=29), T0 + timedelta(minutes=31),
                              T0 + timedelta(minutes=44)])
    per_slot = counter_energy_kwh(times, np.array([100.0, 100.4, 101.0, 0.2, 0.5]), T0, T0 + timedelta(minutes=45))
    assert list(per_slot.round(6)) == [pytest.approx(0.4), pytest.approx(0.6), pytest.approx(0.5)]


@pytest.mark.mosquitto
def test_darkstar_import_ha_turns_30_days_of_statistics_into_observations(
        tmp_path: Path, ha_core: HACore, home: dict[str, str]) -> None:
    from services.forecaster.import_cli import run
    from shared.runtime import open_store

    tag = uuid.uuid4().hex[:4]
    pv = ha_core.add_number(f"pv hist {tag}", "W", initial=0)
    meter = ha_core.add_number(f"import hist {tag}", "kWh", 0, 10**7, initial=0)
    now = pd.Timestamp.now(tz="UTC").floor("h")
    hours = pd.date_range(now - timedelta(days=31), now - timedelta(hours=1), freq="h")
    # PV: 2000 W mean from 10 to 14 UTC, else 0; meter: +1.2 kWh every hour
    pv_stats = [{"start": h.isoformat(), "mean": 2000.0 if 10 <= h.hour < 14 else 0.0, "min": 0.0, "max": 2500.0}
                for h in hours]
    meter_stats = [{"start": h.isoformat(), "state": 1.2 * (i + 1), "sum": 1.2 * (i + 1)} for i, h in enumerate(hours)]
    for entity, unit, stats, mean in ((pv, "W", pv_stats, True), (meter, "kWh", meter_stats, False)):
        ha_core.ws("recorder/import_statistics", metadata={
            "has_mean": mean, "has_sum": not mean, "name": None, "source": "recorder", "statistic_id": entity,
            "unit_of_measurement": unit}, stats=stats)
    token = ha_core.long_lived_token(f"darkstar-{uuid.uuid4().hex[:6]}")
    site = ha_site(tmp_path, ha_core, {**home, "pv_power": pv, "import_energy": meter}, token)
    site_file = tmp_path / "site.yaml"
    data = json.loads(site.model_dump_json())
    data["homeassistant"]["token"] = token
    data["http"]["admin_token"] = "test-admin-token"
    data["database"]["url"] = site.database.url.get_secret_value()
    data["mqtt"].pop("password", None)
    site_file.write_text(json.dumps(data))
    first_day = (now - timedelta(days=30)).tz_convert(site.tz).date()
    last_day = (now - timedelta(days=1)).tz_convert(site.tz).date()
    args = argparse.Namespace(source="ha", site=site_file, date_from=str(first_day), date_to=str(last_day),
                              json=True, quiet=True)
    ha_core.ws("recorder/info")  # the recorder has committed the imported rows once it answers
    deadline = pd.Timestamp.now() + pd.Timedelta(seconds=20)
    while True:
        stats = ha_core.ws("recorder/statistics_during_period", start_time=hours[0].isoformat(),
                           statistic_ids=[pv, meter], period="hour", types=["mean", "change"])
        if min(len(stats.get(pv, [])), len(stats.get(meter, []))) >= len(hours) - 1 or pd.Timestamp.now() > deadline:
            break
        time.sleep(0.2)
    assert run(args) == 0
    store = open_store(site)
    try:
        start, _ = local_day_bounds(first_day, site.tz)
        obs = store.observations_between(site.site_id, start.to_pydatetime(), now.to_pydatetime())
    finally:
        store.close()
    days = (last_day - first_day).days + 1
    assert len(obs) >= days * 96 - 8  # every slot of the range (a DST day has 92 or 100)
    noon = obs.loc[obs.index.hour == 11, "pv_kwh"].dropna()
    night = obs.loc[obs.index.hour == 2, "pv_kwh"].dropna()
    assert len(noon) >= days * 4 - 4 and noon.round(6).eq(0.5).all()  # 2 kW mean x 15 min
    assert night.round(6).eq(0.0).all()
    assert obs["import_kwh"].dropna().round(6).eq(0.3).all()  # 1.2 kWh per hour spread over four slots
    assert obs["import_kwh"].notna().sum() >= days * 96 - 8


def test_without_a_load_sensor_the_house_load_follows_from_the_balance_of_each_slot():
    from shared.ha.history import derive_load

    index = pd.date_range("2026-01-12T10:00Z", periods=3, freq="15min", name="slot_start")
    obs = pd.DataFrame({"pv_kwh": [1.0, 0.5, 0.2], "import_kwh": [0.0, 0.4, np.nan], "export_kwh": [0.3, 0.0, 0.0],
                        "charge_kwh": [0.2, 0.0, 0.0], "discharge_kwh": [0.0, 0.1, 0.0],
                        "water_kwh": [0.25, 0.0, 0.0]}, index=index)
    out = derive_load(obs)
    # 1.0 pv - 0.3 exported - 0.2 into the battery - 0.25 for the water heater = 0.25 kWh of house load
    assert out["load_kwh"].iloc[0] == pytest.approx(0.25)
    assert out["load_kwh"].iloc[1] == pytest.approx(0.5 + 0.4 + 0.1)
    assert np.isnan(out["load_kwh"].iloc[2])  # import unknown: no load, never a guess
    measured = derive_load(obs.assign(load_kwh=[0.9, np.nan, np.nan]))
    assert measured["load_kwh"].iloc[0] == 0.9  # a measured load is kept
    # energy balance of every derived slot (what the simulator and the oracle assume)
    r = out.iloc[:2]
    balance = r.pv_kwh + r.import_kwh + r.discharge_kwh - r.load_kwh - r.export_kwh - r.charge_kwh - r.water_kwh
    assert np.allclose(balance, 0.0)


def test_live_telemetry_derives_the_load_by_the_same_rule_as_the_import():
    from datetime import datetime, timezone

    from services.executor.homeassistant import telemetry_from

    t = telemetry_from({"pv_power": 3.0, "grid_power": 1.0, "battery_power": 0.5, "water_heater_power": 2.0},
                       datetime(2026, 1, 12, 10, tzinfo=timezone.utc), 10.0, 1)
    assert t.load_kw == pytest.approx(3.0 + 1.0 - 0.5 - 2.0)  # the heater is measured apart, not house load
    assert telemetry_from({"pv_power": 3.0, "grid_power": 1.0}, t.ts, 10.0, 1).load_kw is None  # no battery: no load


def test_darkstar_import_csv_stores_slot_energies_once_and_the_range_is_inclusive(tmp_path: Path):
    import gzip

    from conftest import EXAMPLE_DATA, make_site

    from services.forecaster.import_cli import run as import_run
    from shared.runtime import open_store

    site = make_site(tmp_path, {"embedded": True})
    site_file = tmp_path / "site.yaml"
    data = json.loads(site.model_dump_json())
    data["http"]["admin_token"] = "test-admin-token"
    data["database"]["url"] = site.database.url.get_secret_value()
    data["mqtt"].pop("password", None)
    site_file.write_text(json.dumps(data))
    export = tmp_path / "export.csv"
    with gzip.open(EXAMPLE_DATA / "se4_home_2025-07_2025-10.csv.gz", "rt") as src:
        export.write_text(src.read())
    args = argparse.Namespace(source="csv", site=site_file, data=export, date_from="2025-08-01",
                              date_to="2025-08-02", json=True, quiet=True)
    assert import_run(args) == 0
    assert import_run(args) == 0  # twice: upserts, nothing doubled
    store = open_store(site)
    try:
        obs = store.observations_between(site.site_id, pd.Timestamp("2025-07-30T00:00Z").to_pydatetime(),
                                         pd.Timestamp("2025-08-05T00:00Z").to_pydatetime())
    finally:
        store.close()
    assert len(obs) == 2 * 96  # two local days, both included
    frame = pd.read_csv(export, parse_dates=["timestamp"]).set_index("timestamp")
    frame.index = pd.to_datetime(frame.index, utc=True)
    slot = obs.index[40]
    assert obs.loc[slot, "load_kwh"] == pytest.approx(frame.loc[slot, "load_kw"] * 0.25)
    assert obs.loc[slot, "pv_kwh"] == pytest.approx(frame.loc[slot, "pv_kw"] * 0.25)
