"""End to end over real brokers: services talk over MQTT and the recorder stores what they publish."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from services.forecaster.service import ForecasterService
from services.stack import Stack
from shared.config import MQTTConfig
from shared.contracts import ObservationMsg, PriceSlot, PricesMsg
from shared.mqtt import MqttClient
from shared.storage.repository import Store
from tests.conftest import ROOT, free_port, make_site, wait_for
from tests.test_service_runtime import Watcher

T0 = datetime(2025, 10, 25, 22, 0, tzinfo=timezone.utc)


def observations(site_id: str, n: int, first: int = 0) -> list[ObservationMsg]:
    return [
        ObservationMsg(site_id=site_id, slot_start=T0 + timedelta(minutes=15 * i), load_kwh=0.25 + i / 1000,
                       pv_kwh=0.0, import_kwh=0.25, export_kwh=0.0)
        for i in range(first, first + n)
    ]


@contextlib.contextmanager
def recorder_and_publisher(tmp_path: Path, mqtt: dict):
    """A recorder (forecaster) storing to SQLite and a plain publisher, both connected."""
    site = make_site(tmp_path, mqtt)
    store = Store.open(site.database.url.get_secret_value())
    recorder = ForecasterService(site, store=store)
    recorder.start()
    publisher = MqttClient(MQTTConfig(**mqtt), site.site_id, "executor")
    publisher.start()
    try:
        assert recorder.mqtt.wait_connected(10) and publisher.wait_connected(10)
        yield site, store, recorder, publisher
    finally:
        publisher.stop()
        recorder.stop()
        store.close()


@pytest.fixture
def stack(tmp_path: Path, broker_mqtt):
    site = make_site(tmp_path, broker_mqtt)
    running = Stack(site, with_broker=False)
    running.start()
    yield running
    running.stop()


def test_a_price_message_published_by_its_owner_is_stored_by_the_recorder(stack):
    site_id = stack.site.site_id
    planner = next(s for s in stack.services if s.name == "forecaster")  # only the forecaster may publish prices
    msg = PricesMsg(site_id=site_id, area="SE4", currency="EUR", resolution_minutes=15, source="test",
                    slots=[PriceSlot(start=T0 + timedelta(minutes=15 * i), spot_per_kwh=-0.05 + 0.01 * i,
                                     import_price_per_kwh=0.1 + 0.01 * i, export_price_per_kwh=-0.05)
                           for i in range(100)])  # 100 slots: the DST day
    planner.publish("prices", msg)
    stored = wait_for(lambda: stack.store.latest_prices(site_id))
    assert stored.prices_id == msg.prices_id
    assert [s.start for s in stored.slots] == [s.start for s in msg.slots]
    assert stored.slots[3].import_price_per_kwh == pytest.approx(0.13)
    # published again (retained re-delivery, a restart...): still one row per slot
    planner.publish("prices", msg)
    wait_for(lambda: stack.services[0].m_received.labels(kind="prices")._value.get() >= 2)
    assert stack.store.count("prices", site_id) == 100


def test_status_flips_to_offline_when_a_service_is_killed(stack, broker_mqtt):
    site_id = stack.site.site_id
    watcher = Watcher(broker_mqtt["host"], broker_mqtt["port"], f"darkstar/{site_id}/+/status")
    try:
        status = f"darkstar/{site_id}/oracle/status"
        wait_for(lambda: watcher.on(status) and watcher.on(status)[-1] == b"online")
        oracle = next(s for s in stack.services if s.name == "oracle")
        oracle.mqtt.kill()  # no clean disconnect: only the last will can tell
        wait_for(lambda: watcher.on(status)[-1] == b"offline", timeout_s=15)
        # the others are still online
        assert watcher.on(f"darkstar/{site_id}/planner/status")[-1] == b"online"
    finally:
        watcher.close()


def test_invalid_payloads_on_the_bus_are_reported_and_stored_as_events(stack, broker_mqtt):
    site_id = stack.site.site_id
    watcher = Watcher(broker_mqtt["host"], broker_mqtt["port"], f"darkstar/{site_id}/#")
    try:
        watcher.publish(f"darkstar/{site_id}/observations", b'{"schema":"darkstar.observation/1"}')
        topic = f"darkstar/{site_id}/observations"
        event = wait_for(lambda: [e for e in stack.store.recent_events(site_id, kind="error") if e["what"] == topic])[0]
        assert "slot_start" in event["why"] and event["payload_excerpt"].startswith('{"schema"')
        # and the stack still stores valid observations
        client = next(s for s in stack.services if s.name == "executor")
        for msg in observations(site_id, 3):
            client.publish("observations", msg)
        wait_for(lambda: stack.store.count("slot_observations", site_id) == 3)
    finally:
        watcher.close()


def test_qos1_messages_survive_a_mosquitto_restart(tmp_path: Path, private_mosquitto):
    """Messages published while the broker is down are delivered and stored after it comes back."""
    mqtt = {"embedded": False, "host": "127.0.0.1", "port": private_mosquitto.port}
    with recorder_and_publisher(tmp_path, mqtt) as (site, store, recorder, publisher):
        for msg in observations(site.site_id, 5):
            publisher.publish_msg("observations", msg)
        wait_for(lambda: store.count("slot_observations", site.site_id) == 5)
        private_mosquitto.stop()
        wait_for(lambda: not publisher.connected and not recorder.mqtt.connected)
        for msg in observations(site.site_id, 20, first=5):  # queued by the client while the broker is down
            publisher.publish_msg("observations", msg)
        private_mosquitto.start()
        assert recorder.mqtt.wait_connected(30) and publisher.wait_connected(30)
        wait_for(lambda: store.count("slot_observations", site.site_id) == 25, timeout_s=30)


def test_embedded_broker_restart_is_survived(tmp_path: Path, embedded_broker):
    mqtt = dict(embedded_broker.mqtt)
    with recorder_and_publisher(tmp_path, mqtt) as (site, store, recorder, publisher):
        embedded_broker.stop()
        wait_for(lambda: not recorder.mqtt.connected)
        embedded_broker.start()
        assert recorder.mqtt.wait_connected(40) and publisher.wait_connected(40)
        for msg in observations(site.site_id, 5):
            publisher.publish_msg("observations", msg)
        wait_for(lambda: store.count("slot_observations", site.site_id) == 5, timeout_s=20)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_or_killed_service_loses_no_message(tmp_path: Path, mosquitto, how: str):
    site = make_site(tmp_path, mosquitto)
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site.model_dump(mode="json") | {
        "mqtt": {"embedded": False, "host": "127.0.0.1", "port": 1883},
        "http": {"admin_token": None, "ports": {"forecaster": free_port()}},
        "database": {"url": f"sqlite:///{tmp_path / 'svc.db'}"},
    }))
    status = f"darkstar/{site.site_id}/forecaster/status"
    watcher = Watcher("127.0.0.1", 1883, f"darkstar/{site.site_id}/#")

    def start_service() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "services.forecaster", "--site", str(site_file)], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.DEVNULL)
        wait_for(lambda: watcher.on(status) and watcher.on(status)[-1] == b"online", timeout_s=30)
        return proc

    def stored() -> int:
        store = Store.open(f"sqlite:///{tmp_path / 'svc.db'}", migrate=False)
        try:
            return store.count("slot_observations", site.site_id)
        finally:
            store.close()

    proc = start_service()
    try:
        publisher = MqttClient(MQTTConfig(**mosquitto), site.site_id, "executor", persistent_session=False)
        publisher.start()
        assert publisher.wait_connected(10)
        for msg in observations(site.site_id, 200):
            publisher.publish_msg("observations", msg)
        publisher.stop()  # returns when the broker has all 200
        proc.send_signal(getattr(signal, how))  # most likely while messages are still being handled
        code = proc.wait(30)
        assert code == (0 if how == "SIGTERM" else -signal.SIGKILL)
        wait_for(lambda: watcher.on(status)[-1] == b"offline")  # said on stop, or the last will
        # whatever the service had not acknowledged is still queued for its persistent session
        if stored() < 200:
            proc = start_service()
            wait_for(lambda: stored() == 200, timeout_s=30)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        assert stored() == 200
    finally:
        if proc.poll() is None:
            proc.kill()
        watcher.close()
