"""The EV controls as a real Home Assistant core takes them from discovery: the target-SoC number
sets the executor's context, the "charge now" button reaches the charger controller."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from conftest import free_port, make_site, wait_for
from ha_core import HACore, discovering_executor

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
    with discovering_executor(site, ha_core) as (executor, node):

        def registered() -> dict[str, str]:
            entries = ha_core.ws("config/entity_registry/list")
            found = {e["unique_id"]: e["entity_id"] for e in entries if e.get("platform") == "mqtt"}
            wanted = (f"{node}_ev_target_soc", f"{node}_ev_charge_now", f"{node}_ev_power", f"{node}_ev_soc",
                      f"{node}_ev_charge_now_soc")
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
        # "charge now to X %" for any X: the number's set is the command
        ha_core.rest("POST", "/api/services/number/set_value", {"entity_id": found[f"{node}_ev_charge_now_soc"],
                                                                 "value": 65})
        wait_for(lambda: controller.quick is not None and controller.quick.target_soc_frac == pytest.approx(0.65), 20)


def test_a_home_assistant_charger_follows_the_plan_and_falls_back(tmp_path: Path, ha_core: HACore) -> None:
    """type: homeassistant over the HA backend: HA helpers stand in for a wallbox integration's entities."""
    import asyncio
    from datetime import datetime, timedelta, timezone

    from services.executor.chargers.controller import ChargerController
    from services.executor.chargers.homeassistant import HomeAssistantCharger
    from shared.clock import ManualClock
    from tests.ev_helpers import ev_plan

    tag = uuid.uuid4().hex[:4]
    power = ha_core.add_number(f"wallbox power {tag}", "W", 0, 30000, initial=0)
    soc = ha_core.add_number(f"car soc {tag}", "%", 0, 100, initial=41)
    current = ha_core.add_number(f"wallbox current {tag}", "A", 0, 32, initial=16)
    for name in ("plugged", "charging"):
        ha_core.ws("input_boolean/create", name=f"wallbox {name} {tag}")
    plugged, charging = f"input_boolean.wallbox_plugged_{tag}", f"input_boolean.wallbox_charging_{tag}"
    wait_for(lambda: ha_core.state(plugged) and ha_core.state(charging), 10)
    ha_core.rest("POST", "/api/services/input_boolean/turn_on", {"entity_id": plugged})
    token = ha_core.long_lived_token(f"darkstar-ev-{tag}")
    site = make_site(
        tmp_path, {"embedded": False, "host": "127.0.0.1", "port": 1883},
        homeassistant={"url": ha_core.url, "token": token, "min_write_interval_s": 0,
                       "entities": {"ev_plugged": plugged, "ev_power": power, "ev_soc": soc},
                       "controls": {"ev_current": current, "ev_charging": charging}},
        evs=[{"name": "car", "battery_kwh": 60, "max_charge_kw": 11.0,
              "charger": {"type": "homeassistant", "fallback": {"mode": "current", "current_a": 6}}}])
    ev = site.evs[0]
    start = datetime.now(timezone.utc)
    plan = [ev_plan(start, [6.9] * 4)]

    async def scenario() -> None:
        charger = HomeAssistantCharger(ev.name, ev.charger, site)
        controller = ChargerController(ev, charger, clock=ManualClock(start), plan=lambda: plan[0])
        await charger.start()
        try:
            decision = await controller.tick()
            assert decision.source == "plan" and controller.reading.plugged
            assert controller.reading.soc_frac == pytest.approx(0.41)
            assert float(ha_core.state(current)["state"]) == pytest.approx(10.0)  # 6.9 kW / (3 x 230 V)
            assert ha_core.state(charging)["state"] == "on"
            ha_core.set_number(power, 6900)
            await asyncio.sleep(0.5)
            await controller.tick()
            assert controller.reading.power_kw == pytest.approx(6.9)
            plan[0] = ev_plan(start, [0.0] * 4, created=start + timedelta(seconds=1))
            await controller.tick()
            assert ha_core.state(charging)["state"] == "off"
            await controller.shutdown()
            assert float(ha_core.state(current)["state"]) == pytest.approx(6.0)
            assert ha_core.state(charging)["state"] == "on"
        finally:
            await charger.close()

    asyncio.run(scenario())
