"""Nobody unauthenticated moves the battery: the embedded broker's logins and topic ACL end to end.

A real executor drives the Modbus inverter simulator (tests/test_executor_service.py's rig) over
the embedded broker, which here also knows a Home Assistant user (context and executor commands)
and a read-only viewer. Every refusal is checked against the inverter's registers, not a log line.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from shared.config import ConfigError, MQTTConfig
from shared.contracts import CommandMsg, encode
from tests.conftest import embedded_mqtt, make_site, start_embedded_broker, wait_for
from tests.test_executor_service import charge_plan, make_rig  # noqa: F401 - the rig fixture
from tests.test_service_runtime import Watcher

HA = ("homeassistant", "ha-password-for-tests")
VIEWER = ("viewer", "viewer-password-for-tests")


@pytest.fixture
def broker_mqtt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Embedded broker only (the machine's Mosquitto is anonymous); with an HA user and a viewer."""
    broker = start_embedded_broker(embedded_mqtt(tmp_path_factory.mktemp("bus")), users=[
        {"name": HA[0], "password": HA[1], "grants": ["context:*", "command:executor/*", "publish:discovery"]},
        {"name": VIEWER[0], "password": VIEWER[1], "grants": []},
    ])
    yield dict(broker.mqtt)
    broker.stop()


def _connect(mqtt: dict[str, Any], login: tuple[str, str] | None) -> tuple[paho.Client, Any]:
    """Connect a plain client; return it and the broker's CONNACK reason."""
    done = threading.Event()
    result: dict[str, Any] = {}
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    if login:
        client.username_pw_set(*login)

    def on_connect(c: paho.Client, u: Any, f: Any, reason: Any, p: Any) -> None:
        result["reason"] = reason
        done.set()

    client.on_connect = on_connect
    client.connect(mqtt["host"], mqtt["port"])
    client.loop_start()
    assert done.wait(10), "no CONNACK"
    return client, result["reason"]


def test_anonymous_command_is_refused_and_moves_nothing(make_rig, broker_mqtt) -> None:
    r = make_rig(soc_frac=0.5)
    wait_for(lambda: r.messages("telemetry"))
    assert r.sim.command.mode == 0
    force = CommandMsg(site_id=r.site.site_id, args={"power_kw": 10.0}, ttl_s=7 * 86400)
    cmd_topic = f"{r.base}/cmd/executor/force_export"

    anonymous, reason = _connect(broker_mqtt, None)
    assert reason.is_failure, "the embedded broker must refuse a client without credentials"
    anonymous.loop_stop()
    wrong, reason = _connect(broker_mqtt, (HA[0], "not-the-password"))
    assert reason.is_failure
    wrong.loop_stop()
    # a logged-in user without the grant: the broker drops the command before any service sees it
    viewer, reason = _connect(broker_mqtt, VIEWER)
    assert not reason.is_failure
    viewer.publish(cmd_topic, encode(force), qos=1).wait_for_publish(5)
    viewer.disconnect()
    viewer.loop_stop()

    # a granted user is obeyed (the path works), and the viewer's command never arrived
    ha = Watcher(broker_mqtt["host"], broker_mqtt["port"], f"{r.base}/cmd/executor/+/result", login=HA)
    try:
        pause = CommandMsg(site_id=r.site.site_id, args={}, ttl_s=600, issued_by="homeassistant", reason="test")
        ha.publish(f"{r.base}/cmd/executor/pause", encode(pause))
        wait_for(lambda: ha.on(f"{r.base}/cmd/executor/pause/result"))
    finally:
        ha.close(clear_retained=False)
    assert not r.watcher.on(cmd_topic), "the broker delivered an ungranted command"
    assert not r.messages("cmd/executor/force_export/result")
    assert all(row["override_kind"] != "force_export" for row in r.log_rows())


def test_forged_plan_from_anyone_but_the_planner_is_dropped(make_rig, broker_mqtt) -> None:
    r = make_rig(soc_frac=0.3)
    wait_for(lambda: r.messages("telemetry"))
    forged = charge_plan(r.site.site_id, charge_kw=5.0)
    forged = forged.model_copy(update={"valid_until": datetime(2099, 1, 1, tzinfo=timezone.utc)})
    ha = Watcher(broker_mqtt["host"], broker_mqtt["port"], f"{r.base}/plan", login=HA)
    try:
        ha.publish(f"{r.base}/plan", encode(forged))  # HA may send commands, not plans
    finally:
        ha.close(clear_retained=False)
    # the executor's own identity may not publish a plan either (only the planner's)
    from shared.mqtt import MqttClient

    as_executor = MqttClient(MQTTConfig(**broker_mqtt), r.site.site_id, "executor", client_id="forger",
                             persistent_session=False)
    as_executor.start()
    try:
        assert as_executor.wait_connected(10)
        as_executor.publish(f"{r.base}/plan", encode(forged), qos=1).wait_for_publish(5)
    finally:
        as_executor.stop()
    genuine = charge_plan(r.site.site_id, charge_kw=2.0)
    r.publish("plan", encode(genuine))  # the harness holds every grant: stands in for the planner
    wait_for(lambda: [m for m in r.messages("executor/state") if m.plan_id == genuine.plan_id])
    assert all(m.plan_id != forged.plan_id for m in r.messages("executor/state"))
    assert all(m.plan_id != forged.plan_id for m in r.messages("plan")), "the broker delivered a forged plan"


def test_credentials_are_generated_owner_only_and_a_lan_bind_needs_tls(tmp_path: Path) -> None:
    mqtt = embedded_mqtt(tmp_path)
    broker = start_embedded_broker(mqtt)
    try:
        site = make_site(tmp_path, mqtt)
        from services.planner.service import PlannerService

        planner = PlannerService(site, store=None)
        planner.start()
        try:
            assert planner.mqtt.wait_connected(10)
        finally:
            planner.stop()
    finally:
        broker.stop()
    creds = Path(mqtt["credentials_file"])
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    assert "planner" in creds.read_text()
    with pytest.raises(ConfigError, match=r"mqtt: .*without TLS"):
        make_site(tmp_path, {"embedded": True, "host": "0.0.0.0"})
    assert make_site(tmp_path, {"embedded": True, "host": "0.0.0.0", "allow_insecure_lan": True}).mqtt.allow_insecure_lan


def test_plan_valid_beyond_its_horizon_and_overlong_overrides_are_refused(make_rig) -> None:
    r = make_rig(soc_frac=0.3)
    wait_for(lambda: r.messages("telemetry"))
    # even from the planner's own login: a plan claiming validity until 2099 is not followed
    forever = charge_plan(r.site.site_id, charge_kw=5.0)
    forever = forever.model_copy(update={"valid_until": datetime(2099, 1, 1, tzinfo=timezone.utc)})
    r.publish("plan", encode(forever))
    refusal = wait_for(lambda: [e for e in r.messages("events/error") if forever.plan_id in e.why])[0]
    assert "beyond created_at + the planner horizon (48 h" in refusal.why
    assert all(m.plan_id != forever.plan_id for m in r.messages("executor/state"))

    # force_export for 7 days: refused (default maximum 24 h), and nothing changes
    reply = r.command("force_export", ttl_s=7 * 86400, power_kw=10.0)
    assert reply.status == "error" and "at most 86400 s" in reply.error
    # a pause without a TTL gets the maximum, never "forever"
    reply = r.command("pause")
    assert reply.status == "ok" and reply.data["paused"]
    until = datetime.fromisoformat(reply.data["paused_until"])
    assert until - r.service.clock.now() <= timedelta(hours=24)
    # who and why are stored with every command, refused ones too
    events = r.store.recent_events(r.site.site_id, kind="command")
    assert {e["what"] for e in events} >= {"executor/force_export", "executor/pause"}
    assert any(e["what"] == "executor/force_export" and "error" in str(e["data"]) for e in events)
