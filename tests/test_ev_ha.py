"""The EV controls as a real Home Assistant core takes them from discovery: the target-SoC number
sets the executor's context, the "charge now" button reaches the charger controller."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from conftest import free_port, make_site, wait_for
from ha_core import HACore, retained_cleanup

from services.executor.service import ExecutorService
from tests.ev_helpers import PASSWORD

pytestmark = pytest.mark.mosquitto


def test_ev_target_number_and_charge_now_button_work_from_home_assistant(tmp_path: Path, ha_core: HACore) -> None:
    site = make_site(
        tmp_path, {"embedded": False, "host": "127.0.0.1", "port": 1883, "discovery_prefix": ha_core.discovery_prefix},
        name=f"ev {uuid.uuid4().hex[:4]}",
        evs=[{"name": "car", "battery_kwh": 60, "max_charge_kw": 11.0,
              "charger": {"type": "ocpp", "identity": "garage", "password": PASSWORD}}],
        executor={"modbus": {"port": free_port(), "timeout_s": 0.2, "retries": 0},
                  "ocpp": {"host": "127.0.0.1", "port": free_port()}})
    executor = ExecutorService(site)
    node = f"darkstar_{site.site_id.replace('-', '_')}"
    prefix, base = ha_core.discovery_prefix, site.mqtt.base_topic
    try:
        executor.start()
        assert executor.mqtt.wait_connected(10)

        def registered() -> dict[str, str]:
            entries = ha_core.ws("config/entity_registry/list")
            found = {e["unique_id"]: e["entity_id"] for e in entries if e.get("platform") == "mqtt"}
            wanted = (f"{node}_ev_target_soc", f"{node}_ev_charge_now", f"{node}_ev_power", f"{node}_ev_soc")
            return found if all(w in found for w in wanted) else {}

        found = wait_for(registered, 30, 0.5)
        number = found[f"{node}_ev_target_soc"]
        wait_for(lambda: (ha_core.state(number) or {}).get("state") not in (None, "unavailable"), 20, 0.2)
        ha_core.rest("POST", "/api/services/number/set_value", {"entity_id": number, "value": 70})
        # HA -> Mosquitto (retained context) -> the executor, whose charger uses it for the target
        wait_for(lambda: executor.context_value("ev_target_soc_frac") == pytest.approx(0.7), 20)
        assert executor.ev.chargers.controllers[0]._target_soc_frac() == pytest.approx(0.7)
        wait_for(lambda: (ha_core.state(number) or {}).get("state") == "70", 20, 0.2)
        button = found[f"{node}_ev_charge_now"]
        ha_core.rest("POST", "/api/services/button/press", {"entity_id": button})
        controller = executor.ev.chargers.controllers[0]
        wait_for(lambda: controller.quick is not None and controller.quick.target_soc_frac == 0.8, 20)
    finally:
        executor.stop()
        retained_cleanup([f"{prefix}/#", f"{base}/{site.site_id}/#"])
