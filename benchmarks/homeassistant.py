"""Benchmark: a new site on a real Home Assistant core: history import, first plans, telemetry latency.

    uv run python benchmarks/homeassistant.py [--days 30] [--json]

Needs the HA venv (.ci/steps/40-homeassistant.sh). Steps, all against a real HA core on loopback:
1. HA gets stand-in entities and ``--days`` of hourly long-term statistics made from the SE4
   home's recorded load and PV (examples/data, shifted to end now), as HA keeps them.
2. ``darkstar import ha`` (in-process, the CLI's functions) pulls them into a new site's database:
   rows, seconds, rows/s.
3. ``darkstar up`` (the embedded stack, in-process) starts on that site with the HA executor
   backend; timed from the import's start: first plan, first Aurora forecast, first plan made on it.
4. WebSocket telemetry latency: an input_number set through HA's REST API until Darkstar's live
   entity cache holds the new value (median and p95 of ``--samples``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from ha_core import HACore, find_ha_venv  # noqa: E402
from shared.sitedata import load_site_data  # noqa: E402

DATA = ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_history(core: HACore, ids: dict[str, str], days: int) -> int:
    """Hourly statistics for PV and load (mean W) and the grid import counter, from the SE4 home."""
    frame = load_site_data(DATA).frame[["load_kw", "pv_kw"]].resample("1h").mean().dropna()
    frame = frame.iloc[-days * 24:]
    now = pd.Timestamp.now(tz="UTC").floor("h")
    frame.index = pd.date_range(end=now - timedelta(hours=1), periods=len(frame), freq="h", tz="UTC")
    rows = 0
    for role, col in (("pv_power", "pv_kw"), ("load_power", "load_kw")):
        stats = [{"start": t.isoformat(), "mean": float(v) * 1000, "min": 0.0, "max": float(v) * 1000}
                 for t, v in frame[col].items()]
        core.ws("recorder/import_statistics", metadata={"has_mean": True, "has_sum": False, "name": None,
                "source": "recorder", "statistic_id": ids[role], "unit_of_measurement": "W"}, stats=stats)
        rows += len(stats)
    total = (frame["load_kw"] - frame["pv_kw"]).clip(lower=0).cumsum()
    core.ws("recorder/import_statistics", metadata={"has_mean": False, "has_sum": True, "name": None,
            "source": "recorder", "statistic_id": ids["import_energy"], "unit_of_measurement": "kWh"},
            stats=[{"start": t.isoformat(), "state": float(v), "sum": float(v)} for t, v in total.items()])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = core.ws("recorder/statistics_during_period", start_time=frame.index[0].isoformat(),
                      statistic_ids=list(ids.values()), period="hour", types=["mean"])
        if all(len(got.get(ids[r], [])) >= len(frame) - 1 for r in ("pv_power", "load_power")):
            break
        time.sleep(0.5)
    return rows


def site_file(tmp: Path, core: HACore, ids: dict[str, str], token: str) -> Path:
    data = yaml.safe_load((ROOT / "examples" / "se4-home.yaml").read_text())
    data.update({"site_id": f"bench-{uuid.uuid4().hex[:6]}", "database": {"url": f"sqlite:///{tmp / 'ds.db'}"}})
    data["tariff"].update({"price_source": "fixed", "fixed_import_price_per_kwh": 0.12,
                           "fixed_export_price_per_kwh": 0.04})
    data["mqtt"] = {"embedded": True, "port": free_port()}
    data["http"] = {"ports": {n: free_port() for n in ("dashboard", "forecaster", "planner", "executor", "trainer",
                                                        "oracle", "web")}}
    data["forecaster"] = {"weather_source": "none", "model_dir": str(tmp / "models")}
    data["trainer"] = {"model_dir": str(tmp / "models")}
    data["executor"] = {"backend": "homeassistant", "tick_s": 5}
    data["homeassistant"] = {
        "url": core.url, "token": token, "profile": "generic", "min_write_interval_s": 0,
        "entities": {r: ids[r] for r in ("battery_soc", "pv_power", "load_power", "grid_power", "battery_power",
                                        "import_energy")},
        "controls": {c: ids[c] for c in ("mode", "charge_power", "discharge_power")}}
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def telemetry_latency(core: HACore, site: Any, entity: str, samples: int) -> list[float]:
    from shared.ha.live import LiveEntities

    seen: dict[str, float] = {}
    live = LiveEntities(site.homeassistant, on_change=lambda e: seen.__setitem__(e, time.perf_counter()))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    task = asyncio.run_coroutine_threadsafe(live.run(), loop)
    asyncio.run_coroutine_threadsafe(live.connected.wait(), loop).result(60)
    out = []
    for i in range(samples):
        value = 1000 + i
        seen.pop(entity, None)
        t0 = time.perf_counter()
        core.set_number(entity, value)
        while not (entity in seen and float(live.states[entity].state or 0) == value):
            time.sleep(0.0005)
        out.append((seen[entity] - t0) * 1000)
    asyncio.run_coroutine_threadsafe(live.stop(), loop).result(10)
    task.cancel()
    loop.call_soon_threadsafe(loop.stop)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    venv = find_ha_venv()
    if venv is None:
        print("no Home Assistant venv: run .ci/steps/40-homeassistant.sh", file=sys.stderr)
        return 2
    core = HACore(venv)
    tmp = Path(tempfile.mkdtemp(prefix="darkstar-ha-bench-"))
    result: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} cores",
                              "load_avg_1min": round(os.getloadavg()[0], 1), "history_days": args.days}
    stack = None
    try:
        t = time.perf_counter()
        core.start()
        core.onboard()
        result["ha_version"] = core.ws("get_config")["version"]
        result["ha_start_s"] = round(time.perf_counter() - t, 1)
        ids = {
            "battery_soc": core.add_number("soc", "%", 0, 100, initial=50),
            "pv_power": core.add_number("pv", "W", initial=0), "load_power": core.add_number("load", "W", initial=800),
            "grid_power": core.add_number("grid", "W", initial=800),
            "battery_power": core.add_number("battery", "W", initial=0),
            "import_energy": core.add_number("import", "kWh", 0, 10**8, initial=0),
            "charge_power": core.add_number("charge w", "W", 0, 20000, initial=0),
            "discharge_power": core.add_number("discharge w", "W", 0, 20000, initial=0),
        }
        core.ws("input_select/create", name="mode", options=["Self consumption", "Hold", "Charge", "Discharge"])
        ids["mode"] = "input_select.mode"
        result["statistics_rows_seeded"] = seed_history(core, ids, args.days)
        token = core.long_lived_token("darkstar-bench")
        path = site_file(tmp, core, ids, token)

        from services.forecaster.import_cli import import_ha, observations_from_frame, store_observations
        from services.stack import Stack
        from shared.config import load_site_config
        from shared.mqtt import MqttClient

        site = load_site_config(path, environ={})
        today = pd.Timestamp.now(tz=site.tz).normalize()
        t0 = time.perf_counter()
        frame = import_ha(site, (today - timedelta(days=args.days)).tz_convert("UTC"),
                          pd.Timestamp.now(tz="UTC").floor("15min"))
        fetched = time.perf_counter()
        msgs = observations_from_frame(frame, site.site_id)
        rows = store_observations(site, msgs)
        t_import = time.perf_counter() - t0
        result.update({"import_rows": rows, "import_s": round(t_import, 2),
                       "import_fetch_s": round(fetched - t0, 2),
                       "import_rows_per_s": round(rows / t_import, 1),
                       "import_rows_per_s_fetch_and_convert": round(rows / (fetched - t0), 1)})
        events: dict[str, float] = {}
        forecasts: dict[str, str] = {}

        def on_message(topic_name: str, payload: bytes, retained: bool) -> None:
            data = json.loads(payload)
            now = time.perf_counter() - t0
            if topic_name.endswith("/forecast"):
                forecasts[data["forecast_id"]] = data["model_id"]
                events.setdefault(f"first_forecast_{data['model_id'].split('-')[0]}_s", now)
            elif topic_name.endswith("/plan"):
                events.setdefault("first_plan_s", now)
                model = forecasts.get(data["inputs"].get("forecast_id"), "")
                if model.startswith("aurora"):
                    events.setdefault("first_aurora_plan_s", now)

        stack = Stack(site)
        stack.start()
        watcher = MqttClient(site.mqtt, site.site_id, "bench")
        for kind in ("forecast", "plan"):
            watcher.subscribe(f"darkstar/{site.site_id}/{kind}", on_message)
        watcher.start()
        deadline = time.perf_counter() + 600
        while "first_aurora_plan_s" not in events and time.perf_counter() < deadline:
            time.sleep(0.2)
        watcher.stop()
        result.update({k: round(v, 1) for k, v in events.items()})
        result["forecast_models"] = sorted(set(forecasts.values()))
        stack.stop()
        stack = None
        lat = telemetry_latency(core, site, ids["pv_power"], args.samples)
        result.update({"telemetry_latency_median_ms": round(statistics.median(lat), 1),
                       "telemetry_latency_p95_ms": round(sorted(lat)[int(0.95 * (len(lat) - 1))], 1),
                       "telemetry_samples": len(lat)})
    finally:
        if stack is not None:
            stack.stop()
        core.stop()
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:40} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
