"""Benchmark: publish -> validate -> store latency of one observation message, and idle memory of `darkstar up`.

    uv run python benchmarks/bus_store.py [--n 300] [--json]

Latency is measured in one process: a plain MQTT client publishes an ObservationMsg (QoS 1);
the recorder service (forecaster) receives it, validates it against the contract and upserts it
into SQLite; the clock stops when the row is committed. Runs over the embedded amqtt broker and
over the machine's Mosquitto (127.0.0.1:1883). Memory: RSS of a `darkstar up` process after
it has settled (embedded broker, SQLite, all five services, HTTP servers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.forecaster.service import ForecasterService  # noqa: E402
from shared.broker import EmbeddedBroker, port_is_open  # noqa: E402
from shared.config import MQTTConfig, site_config_from_dict  # noqa: E402
from shared.contracts import ObservationMsg  # noqa: E402
from shared.mqtt import MqttClient  # noqa: E402
from shared.runtime import open_store  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TimedRecorder(ForecasterService):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.done = threading.Event()
        self.stored_at = 0.0

    def record(self, msg) -> None:
        super().record(msg)
        self.stored_at = time.perf_counter()
        self.done.set()


def measure(mqtt: dict, n: int, workdir: Path) -> dict[str, float]:
    site = site_config_from_dict(
        {
            "site_id": f"bench-{os.getpid()}",
            "location": {"latitude": 55.4, "longitude": 13.2, "timezone": "Europe/Stockholm"},
            "mqtt": mqtt,
            "database": {"url": f"sqlite:///{workdir / 'bench.db'}"},
        },
        environ={},
    )
    store = open_store(site)
    recorder = TimedRecorder(site, store=store)
    recorder.start()
    assert recorder.mqtt.wait_connected(10)
    publisher = MqttClient(MQTTConfig(**mqtt), site.site_id, "executor", persistent_session=False)  # observations are the executor's
    publisher.start()
    assert publisher.wait_connected(10)
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    latencies_ms = []
    for i in range(n):
        msg = ObservationMsg(site_id=site.site_id, slot_start=t0 + timedelta(minutes=15 * i), load_kwh=0.3,
                             pv_kwh=0.1, import_kwh=0.2, export_kwh=0.0, soc_end_frac=0.5)
        recorder.done.clear()
        started = time.perf_counter()
        publisher.publish_msg("observations", msg)
        if not recorder.done.wait(5):
            raise RuntimeError("observation was not stored within 5 s")
        latencies_ms.append((recorder.stored_at - started) * 1000)
    publisher.stop()
    recorder.stop()
    latencies_ms.sort()
    return {
        "median_ms": round(statistics.median(latencies_ms), 3),
        "p95_ms": round(latencies_ms[int(0.95 * (len(latencies_ms) - 1))], 3),
        "n": n,
    }


def idle_memory_mb(settle_s: float = 8.0) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DARKSTAR__MQTT__PORT": str(free_port()),
               "DARKSTAR__DATABASE__URL": f"sqlite:///{tmp}/idle.db"}
        for name, port in (("dashboard", 18080), ("forecaster", 18081), ("planner", 18082), ("executor", 18083),
                           ("trainer", 18084), ("oracle", 18085)):
            env[f"DARKSTAR__HTTP__PORTS__{name.upper()}"] = str(port)
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not port_is_open("127.0.0.1", 18080):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("darkstar up did not start")
                time.sleep(0.2)
            time.sleep(settle_s)
            with open(f"/proc/{proc.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return round(int(line.split()[1]) / 1024, 1)
        finally:
            proc.terminate()
            proc.wait(30)
    raise RuntimeError("could not read RSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        mqtt = {"embedded": True, "host": "127.0.0.1", "port": free_port(), "credentials_file": f"{tmp}/creds.json"}
        broker = EmbeddedBroker(MQTTConfig(**mqtt))
        broker.start()
        try:
            print("embedded broker ...", file=sys.stderr)
            emb = measure(mqtt, args.n, Path(tmp))
        finally:
            broker.stop()
        results.update({f"embedded_{k}": v for k, v in emb.items()})
    if port_is_open("127.0.0.1", 1883):
        with tempfile.TemporaryDirectory() as tmp:
            print("mosquitto ...", file=sys.stderr)
            mos = measure({"embedded": False, "host": "127.0.0.1", "port": 1883}, args.n, Path(tmp))
            results.update({f"mosquitto_{k}": v for k, v in mos.items()})
    else:
        print("Mosquitto not running on 127.0.0.1:1883: skipped", file=sys.stderr)
    print("darkstar up idle memory ...", file=sys.stderr)
    results["up_idle_rss_mb"] = idle_memory_mb()
    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key:>28}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
