"""The service runtime over a real broker: errors reported not fatal, discovery, health, admin token."""

from __future__ import annotations

import json
import threading
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from services.planner.service import PlannerService
from shared.contracts import TOPICS, CommandMsg, PriceSlot, PricesMsg, decode, encode, kind_of_topic
from tests.conftest import ROOT, TESTER, make_site, running, wait_for


class Watcher:
    """A plain MQTT client that records everything under a filter (what Home Assistant would see)."""

    def __init__(self, host: str, port: int, *topic_filters: str, login: tuple[str, str] | None = TESTER) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        if login is not None:
            self.client.username_pw_set(*login)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe([(t, 1) for t in topic_filters])
        self.client.on_subscribe = lambda c, u, mid, r, p: self.subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "watcher could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def on(self, topic_name: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic_name]

    def publish(self, topic_name: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic_name, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self, clear_retained: bool = True) -> None:
        """Disconnect; first clear what tests left retained, so a shared broker does not fill up."""
        if clear_retained:
            with self.lock:
                seen = {t for t, p, _ in self.messages if p}
            for topic_name in seen:
                found = kind_of_topic("darkstar", topic_name)
                if topic_name.startswith("homeassistant/") or (found and TOPICS[found[1]].retained):
                    self.client.publish(topic_name, b"", qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


def prices(site_id: str, n: int = 4) -> PricesMsg:
    t0 = datetime(2025, 10, 1, tzinfo=timezone.utc)
    return PricesMsg(site_id=site_id, currency="EUR", resolution_minutes=15,
                     slots=[PriceSlot(start=t0 + timedelta(minutes=15 * i), import_price_per_kwh=0.2,
                                      export_price_per_kwh=0.05) for i in range(n)])


@pytest.fixture
def running_planner(tmp_path: Path, broker_mqtt):
    site = make_site(tmp_path, broker_mqtt)
    node = f"darkstar_{site.site_id.replace('-', '_')}"
    watcher = Watcher(broker_mqtt["host"], broker_mqtt["port"], f"darkstar/{site.site_id}/#", f"homeassistant/+/{node}/#")
    service = PlannerService(site)
    with running(service, watcher):
        yield site, service, watcher


def test_malformed_messages_become_error_events_and_the_service_keeps_running(running_planner):
    site, service, watcher = running_planner
    base = f"darkstar/{site.site_id}"
    watcher.publish(f"{base}/prices", b"{not json")
    watcher.publish(f"{base}/prices", json.dumps({"schema": "darkstar.prices/9", "site_id": site.site_id}).encode())
    bad = json.loads(encode(prices(site.site_id)))
    bad["slots"][0]["import_price_per_kwh"] = "cheap"
    watcher.publish(f"{base}/prices", json.dumps(bad).encode())
    errors = wait_for(lambda: len(watcher.on(f"{base}/events/error")) >= 3 and watcher.on(f"{base}/events/error"))
    reasons = [decode(p).why for p in errors]
    assert any("JSON" in r for r in reasons)
    assert any("major version 9" in r for r in reasons)
    assert any("slots.0.import_price_per_kwh" in r for r in reasons)
    assert all(decode(p).who == "planner" for p in errors)
    # still alive: a valid message is taken
    watcher.publish(f"{base}/prices", encode(prices(site.site_id)))
    wait_for(lambda: "prices" in service.latest)
    assert service.m_rejected.labels(kind="prices")._value.get() == 3


def test_status_is_retained_online_and_discovery_is_published(running_planner):
    site, service, watcher = running_planner
    node = f"darkstar_{site.site_id.replace('-', '_')}"
    status_topic = f"darkstar/{site.site_id}/planner/status"
    wait_for(lambda: watcher.on(status_topic))
    assert watcher.on(status_topic)[-1] == b"online"
    cfg_topic = f"homeassistant/button/{node}/replan/config"
    config = json.loads(wait_for(lambda: watcher.on(cfg_topic))[-1])
    assert config["command_topic"] == f"darkstar/{site.site_id}/cmd/planner/replan"
    assert config["availability"][0]["topic"] == status_topic
    assert config["device"]["identifiers"] == [node]
    # pressing the button sends a valid command
    decode(config["payload_press"])


def test_commands_get_a_reply_with_correlation_id(running_planner):
    site, service, watcher = running_planner
    cmd = CommandMsg(site_id=site.site_id, correlation_id="abc-1")
    watcher.publish(f"darkstar/{site.site_id}/cmd/planner/replan", encode(cmd))
    watcher.publish(f"darkstar/{site.site_id}/cmd/planner/explode", encode(CommandMsg(site_id=site.site_id)))
    result = decode(wait_for(lambda: watcher.on(f"darkstar/{site.site_id}/cmd/planner/replan/result"))[-1])
    # no prices, forecast or SoC yet: the reply says why there is no plan
    assert result.correlation_id == "abc-1" and result.status == "error" and "no plan" in result.error
    failed = decode(wait_for(lambda: watcher.on(f"darkstar/{site.site_id}/cmd/planner/explode/result"))[-1])
    assert failed.status == "error" and "unknown action" in failed.error and failed.data == {}


def test_context_from_any_mqtt_client_is_validated_and_available(running_planner):
    site, service, watcher = running_planner
    base = f"darkstar/{site.site_id}/context"
    watcher.publish(f"{base}/vacation",
                    json.dumps({"schema": "darkstar.context/1", "site_id": site.site_id, "name": "vacation",
                                "value": True}).encode(), retain=True)
    watcher.publish(f"{base}/away",
                    json.dumps({"schema": "darkstar.context/1", "site_id": site.site_id, "name": "away",
                                "value": "yes"}).encode())
    wait_for(lambda: service.context_value("vacation") is True)
    errors = wait_for(lambda: watcher.on(f"darkstar/{site.site_id}/events/error"))
    assert "true/false" in decode(errors[-1]).why
    assert service.context_value("away") is None
    watcher.publish(f"{base}/vacation", b"", retain=True)  # clear the retained context


def test_http_health_metrics_and_admin_token(running_planner):
    site, service, watcher = running_planner
    client = TestClient(service.build_app())
    health = client.get("/healthz").json()
    assert health["status"] == "alive"
    assert health["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    ready = client.get("/readyz")
    assert ready.status_code == 503  # no prices or forecast received yet: honestly not ready
    body = ready.json()
    assert body["broker"] == "ok" and body["inputs"]["prices"] == "never received"
    assert "darkstar_mqtt_connected 1.0" in client.get("/metrics").text
    action = "/admin/command/clear_manual_blocks"
    assert client.post(action).status_code == 401
    assert client.post(action, headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.post(action, headers={"Authorization": "Bearer test-admin-token"})
    assert ok.status_code == 200 and ok.json()["status"] == "ok"
    failed = client.post("/admin/command/replan", headers={"Authorization": "Bearer test-admin-token"})
    assert failed.status_code == 400 and "no plan" in failed.json()["detail"]
    assert "test-admin-token" not in client.get("/openapi.json").text


def test_fleet_replicas_split_inputs_through_a_shared_subscription(tmp_path: Path, mosquitto):
    site = make_site(tmp_path, {**mosquitto, "share_group": "planners"})
    replicas = [PlannerService(site), PlannerService(site)]
    for replica in replicas:
        replica.start()
    watcher = Watcher(mosquitto["host"], mosquitto["port"], f"darkstar/{site.site_id}/#")
    try:
        assert all(r.mqtt.wait_connected(10) for r in replicas)
        assert replicas[0].mqtt.client_id != replicas[1].mqtt.client_id
        for _ in range(10):
            watcher.publish(f"darkstar/{site.site_id}/prices", encode(prices(site.site_id)))
        received = lambda: [r.m_received.labels(kind="prices")._value.get() for r in replicas]  # noqa: E731
        wait_for(lambda: sum(received()) >= 10)
        assert sum(received()) == 10  # each message handled once by the fleet, not once per replica
    finally:
        for replica in replicas:
            replica.stop()
        watcher.close()
