"""Darkstar's MQTT discovery as a real Home Assistant core takes it: registry ids, units and classes,
the device's version and web app link, energy-dashboard validation, a button press that reaches the
executor, and no retained message left behind.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import wait_for
from ha_core import HACore, discovering_executor, ha_site

from services.planner.service import PlannerService
from shared.contracts import EnergyTotalsMsg, PriceNowMsg, encode, topic
from shared.homeassistant import discovery_messages

pytestmark = pytest.mark.mosquitto


def slug(text: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def publish_retained(messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    for t, payload in messages:
        client.publish(t, payload, qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_discovered_entities_in_the_real_registry_and_a_button_reaches_the_executor(
        tmp_path: Path, ha_core: HACore, home: dict[str, str]) -> None:
    token = ha_core.long_lived_token(f"darkstar-{uuid.uuid4().hex[:6]}")
    site = ha_site(tmp_path, ha_core, home, token)
    planner = PlannerService(site)
    prefix, base = ha_core.discovery_prefix, site.mqtt.base_topic
    with discovering_executor(site, ha_core) as (executor, node):
        # The planner's entities without running a planner: the same publisher, the same payloads.
        planner_configs = discovery_messages(base, prefix, site.site_id, site.name, "planner", planner.ha_entities(),
                                             configuration_url="http://127.0.0.1:8080")
        publish_retained([*planner_configs, (topic(base, site.site_id, "status", service="planner"), b"online")])
        # Values for the energy sensors and the price, as the executor and forecaster publish them.
        now = datetime.now(timezone.utc)
        publish_retained([
            (topic(base, site.site_id, "energy_totals"),
             encode(EnergyTotalsMsg(site_id=site.site_id, since=now - timedelta(hours=1), import_kwh=1.25,
                                    export_kwh=0.5, pv_kwh=2.0, charge_kwh=0.7, discharge_kwh=0.2,
                                    saving=0.375, currency=site.tariff.currency))),
            (topic(base, site.site_id, "price_now"),
             encode(PriceNowMsg(site_id=site.site_id, currency="EUR", slot_start=now, import_price_per_kwh=0.231,
                                export_price_per_kwh=0.05))),
        ])
        expected = {json.loads(p)["unique_id"]: json.loads(p) for _, p in planner_configs}
        expected.update({json.loads(p)["unique_id"]: json.loads(p) for _, p in discovery_messages(
            base, prefix, site.site_id, site.name, "executor", executor.ha_entities(),
            configuration_url=executor.dashboard_url())})

        def registered() -> dict[str, dict[str, Any]]:
            entries = ha_core.ws("config/entity_registry/list")
            found = {e["unique_id"]: e for e in entries if e.get("platform") == "mqtt"}
            return found if set(expected) <= set(found) else {}

        found = wait_for(registered, 30, 0.5)
        device_name = f"Darkstar {site.name}"
        new_ids = tuple(int(x) for x in ha_core.version.split(".")[:2]) >= (2025, 10)
        for unique_id, config in expected.items():
            entry = found[unique_id]
            component = config["default_entity_id"].split(".")[0]
            # default_entity_id is honoured from 2025.10; older cores name the entity device + name.
            want = config["default_entity_id"] if new_ids else f"{component}.{slug(device_name)}_{slug(config['name'])}"
            assert entry["entity_id"] == want, (unique_id, entry["entity_id"])
        # Units and classes as HA holds them (registry entry + state attributes).
        import_energy = found[f"{node}_grid_import_energy"]["entity_id"]
        attrs = wait_for(lambda: (ha_core.state(import_energy) or {}).get("attributes", {}).get("state_class"), 10)
        state = ha_core.state(import_energy)
        assert attrs == "total_increasing"
        assert state["attributes"]["unit_of_measurement"] == "kWh"
        assert state["attributes"]["device_class"] == "energy"
        assert float(state["state"]) == pytest.approx(1.25)
        # the battery's money saving: monetary takes state_class total (it may fall), unit the site currency
        saving = wait_for(lambda: (s := ha_core.state(found[f"{node}_battery_saving"]["entity_id"]))
                          and s["state"] not in ("unknown", "unavailable") and s)
        assert float(saving["state"]) == pytest.approx(0.375)
        assert saving["attributes"]["device_class"] == "monetary" and saving["attributes"]["state_class"] == "total"
        assert saving["attributes"]["unit_of_measurement"] == site.tariff.currency
        plan_sensor = found[f"{node}_plan"]["entity_id"]
        assert ha_core.state(plan_sensor)["state"] == "unknown"  # no plan yet: no template error either
        devices = ha_core.ws("config/device_registry/list")
        device = next(d for d in devices if [["mqtt", node]] == d["identifiers"])
        assert device["sw_version"] and device["configuration_url"] == executor.dashboard_url()
        # HA's own energy dashboard check: import counter and price entity are accepted (no unit/class issue).
        ha_core.ws("energy/save_prefs", energy_sources=[{
            "type": "grid",
            "flow_from": [{"stat_energy_from": import_energy, "stat_cost": None, "entity_energy_price": None,
                           "number_energy_price": 0.2}],
            "flow_to": [{"stat_energy_to": found[f"{node}_grid_export_energy"]["entity_id"], "stat_compensation": None,
                         "entity_energy_price": None, "number_energy_price": 0.05}],
            "cost_adjustment_day": 0}])
        issues = ha_core.ws("energy/validate")["energy_sources"][0]
        bad = [i for i in issues if i["type"] in ("entity_unexpected_unit_energy", "entity_unexpected_state_class",
                                                  "entity_unexpected_device_class", "entity_not_defined")]
        assert bad == [], issues
        # A button pressed through HA's API reaches the executor (HA -> Mosquitto -> executor).
        pause_button = found[f"{node}_executor_pause"]["entity_id"]
        wait_for(lambda: (ha_core.state(pause_button) or {}).get("state") != "unavailable", 20, 0.2)
        ha_core.rest("POST", "/api/services/button/press", {"entity_id": pause_button})
        wait_for(lambda: executor.loop.state_msg().override is not None
                 and executor.loop.state_msg().override.kind == "pause", 20)
        paused_switch = found[f"{node}_executor_paused"]["entity_id"]
        wait_for(lambda: (ha_core.state(paused_switch) or {}).get("state") == "on", 20, 0.2)
        # The planner's controls set in HA reach Darkstar as retained context (any service holds it).
        risk = found[f"{node}_risk"]["entity_id"]
        wait_for(lambda: (ha_core.state(risk) or {}).get("state") != "unavailable", 20, 0.2)
        ha_core.rest("POST", "/api/services/select/select_option", {"entity_id": risk, "option": "cautious"})
        wait_for(lambda: executor.context_value("risk") == "cautious", 20)
        reserve = found[f"{node}_reserve_soc"]["entity_id"]
        ha_core.rest("POST", "/api/services/number/set_value", {"entity_id": reserve, "value": 30})
        wait_for(lambda: executor.context_value("reserve_soc_frac") == pytest.approx(0.3), 20)
        wait_for(lambda: (ha_core.state(reserve) or {}).get("state") == "30", 20, 0.2)  # and HA shows it back
        # Empty (cleared) payload on the template sensors: state unknown, no "value_json is undefined".
        publish_retained([(topic(base, site.site_id, "energy_totals"), b"")])
        wait_for(lambda: ha_core.state(import_energy)["state"] in ("unknown", "1.25"), 10)
        time.sleep(1.0)
        assert "value_json' is undefined" not in ha_core.log_text()


def test_ev_departure_chosen_in_home_assistant_reaches_darkstar_as_the_next_such_local_time(
        tmp_path: Path, ha_core: HACore, home: dict[str, str]) -> None:
    from zoneinfo import ZoneInfo

    from shared.config import EVConfig

    token = ha_core.long_lived_token(f"darkstar-{uuid.uuid4().hex[:6]}")
    site = ha_site(tmp_path, ha_core, home, token)
    with_ev = site.model_copy(update={"evs": [EVConfig(name="car", max_charge_kw=11.0)]})
    prefix, base = ha_core.discovery_prefix, site.mqtt.base_topic
    with discovering_executor(site, ha_core) as (executor, node):
        publish_retained([*discovery_messages(base, prefix, site.site_id, site.name, "planner",
                                              PlannerService(with_ev).ha_entities()),
                          (topic(base, site.site_id, "status", service="planner"), b"online")])

        def departure_entity() -> str | None:
            entries = ha_core.ws("config/entity_registry/list")
            return next((e["entity_id"] for e in entries if e.get("unique_id") == f"{node}_ev_departure"), None)

        entity = wait_for(departure_entity, 30, 0.5)
        wait_for(lambda: (ha_core.state(entity) or {}).get("state") != "unavailable", 20, 0.2)
        assert "23:30" in ha_core.state(entity)["attributes"]["options"]  # any half hour, not only mornings
        ha_core.rest("POST", "/api/services/select/select_option", {"entity_id": entity, "option": "06:30"})
        value = wait_for(lambda: executor.context_value("ev_departure"), 20)
        departure = datetime.fromisoformat(str(value))
        local = departure.astimezone(ZoneInfo(ha_core.ws("get_config")["time_zone"]))
        assert (local.hour, local.minute) == (6, 30) and departure.tzinfo is not None
        assert timedelta(0) < departure - datetime.now(timezone.utc) <= timedelta(days=1)  # the next 06:30
