"""Benchmark: a flood of garbage on the bus; command round trip, error events and memory under it.

    uv run python benchmarks/flood.py [--n 5000] [--json]

One process runs the embedded stack (amqtt broker with logins, SQLite, all services) and a
client (not the one sending commands) logged in as a user granted everything (a compromised producer: the ACL would stop
anyone else before a service sees anything). It publishes ``--n`` garbage messages (QoS 1) on
``plan``, ``prices`` and ``telemetry``: broken JSON, 3000-deep nesting, 5000-digit integers,
NaN, a 99 EUR/kWh price, telemetry from 9999. Meanwhile it sends ``clear_manual_blocks`` to the
planner every 50 ms and times the reply. Reported: command round trip before and under the
flood (median, p95, max), error events on the bus and rows in the events table, process RSS
growth. Targets (issue #11): round trip <= 100 ms, RSS growth <= 50 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.stack import Stack  # noqa: E402
from shared.broker import port_is_open  # noqa: E402
from shared.config import site_config_from_dict  # noqa: E402
from shared.contracts import CommandMsg, PriceSlot, PricesMsg, encode  # noqa: E402

BENCH = ("bench", "bench-password-not-secret")  # the commander (Home Assistant, say)
FLOODER = ("flooder", "flooder-password-not-secret")  # a compromised home system, granted everything


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def garbage(site_id: str, i: int) -> tuple[str, bytes]:
    now = datetime.now(timezone.utc)
    spike = PricesMsg(site_id=site_id, currency="EUR", resolution_minutes=15, source="bench",
                      slots=[PriceSlot(start=now + timedelta(minutes=15 * k), import_price_per_kwh=99.0 if k == 3 else 0.2,
                                       export_price_per_kwh=0.05) for k in range(8)])
    kinds = [
        ("plan", b"{not json" + str(i).encode()),
        ("plan", b"[" * 3000 + b"]" * 3000),
        ("plan", b'{"schema":"darkstar.plan/1","site_id":"' + site_id.encode() + b'","n":' + b"9" * 5000 + b"}"),
        ("telemetry", json.dumps({"schema": "darkstar.telemetry/1", "site_id": site_id, "ts": now.isoformat(),
                                  "soc_kwh": float("nan")}).encode()),
        ("telemetry", json.dumps({"schema": "darkstar.telemetry/1", "site_id": site_id,
                                  "ts": "9999-12-31T00:00:00+00:00", "soc_frac": 0.5}).encode()),
        ("prices", encode(spike)),
    ]
    return kinds[i % len(kinds)]


class Bench:
    def __init__(self, host: str, port: int, base: str) -> None:
        self.base = base
        self.replies: dict[str, float] = {}
        self.errors = 0
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self.client.username_pw_set(*BENCH)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(
            [(f"{base}/cmd/planner/+/result", 1), (f"{base}/events/error", 1)])
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        if msg.topic.endswith("events/error"):
            with self.lock:
                self.errors += 1
            return
        cid = json.loads(msg.payload).get("correlation_id")
        with self.lock:
            self.replies[cid] = time.perf_counter()

    def round_trip_ms(self, site_id: str, timeout_s: float = 30.0) -> float:
        cmd = CommandMsg(site_id=site_id, issued_by="bench", reason="round trip")
        started = time.perf_counter()
        self.client.publish(f"{self.base}/cmd/planner/clear_manual_blocks", encode(cmd), qos=1)
        deadline = started + timeout_s
        while time.perf_counter() < deadline:
            with self.lock:
                done = self.replies.pop(cmd.correlation_id, None)
            if done is not None:
                return (done - started) * 1000
            time.sleep(0.001)
        return timeout_s * 1000


def summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"median": statistics.median(values), "p95": values[int(0.95 * (len(values) - 1))], "max": values[-1],
            "n": len(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        site = site_config_from_dict({
            "site_id": "flood-bench",
            "location": {"latitude": 55.4, "longitude": 13.2, "timezone": "Europe/Stockholm"},
            "battery": {"capacity_kwh": 10, "max_charge_kw": 5, "max_discharge_kw": 5},
            "pv": {"arrays": [{"kwp": 5}]},
            "mqtt": {"port": port, "credentials_file": f"{tmp}/creds.json"},
            "database": {"url": f"sqlite:///{tmp}/bench.db"},
            "http": {"ports": {}},
            "auth": {"users": [{"name": BENCH[0], "password": BENCH[1], "grants": ["*"]},
                               {"name": FLOODER[0], "password": FLOODER[1], "grants": ["*"]}]},
            "executor": {"modbus": {"port": free_port(), "timeout_s": 0.2, "retries": 0}},
        }, environ={})
        stack = Stack(site)
        stack.start()
        try:
            assert port_is_open("127.0.0.1", port)
            bench = Bench("127.0.0.1", port, f"darkstar/{site.site_id}")
            time.sleep(2)  # let start-up settle
            before = [bench.round_trip_ms(site.site_id) for _ in range(30)]
            rss_before = rss_mb()
            errors_before = bench.errors
            rows_before = len(stack.store.recent_events(site.site_id, kind="error", limit=100000))

            flood_done = threading.Event()
            # the flooder is another login than the one sending commands (an attacker is not Home Assistant;
            # the embedded broker's rate rule is per login: mqtt.max_publish_per_s / publish_burst)
            flooder = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
            flooder.username_pw_set(*FLOODER)
            flooder.max_queued_messages_set(0)
            flooder.connect("127.0.0.1", port)
            flooder.loop_start()

            def flood() -> None:
                for i in range(args.n):
                    kind, payload = garbage(site.site_id, i)
                    flooder.publish(f"darkstar/{site.site_id}/{kind}", payload, qos=1)
                flood_done.set()

            t0 = time.perf_counter()
            threading.Thread(target=flood, daemon=True).start()
            during: list[float] = []
            while not flood_done.is_set() or len(during) < 10:
                during.append(bench.round_trip_ms(site.site_id))
                time.sleep(0.05)
            publish_s = time.perf_counter() - t0
            time.sleep(5)  # consumers drain their queues
            flooder.disconnect()
            flooder.loop_stop()
            after = [bench.round_trip_ms(site.site_id) for _ in range(10)]
            rss_after = rss_mb()
            rows_after = len(stack.store.recent_events(site.site_id, kind="error", limit=100000))
            results = {
                "garbage_messages": args.n, "flood_publish_s": round(publish_s, 2),
                "rtt_before_ms": summary(before), "rtt_during_ms": summary(during), "rtt_after_ms": summary(after),
                "error_events_on_bus": bench.errors - errors_before,
                "error_rows_stored": rows_after - rows_before,
                "load_avg_1min": float(Path("/proc/loadavg").read_text().split()[0]),
                "rss_before_mb": round(rss_before, 1), "rss_after_mb": round(rss_after, 1),
                "rss_growth_mb": round(rss_after - rss_before, 1),
                "cpu_count": os.cpu_count(),
            }
        finally:
            stack.stop()
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for key, value in results.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
            print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
