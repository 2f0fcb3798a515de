"""The token-free way in: a real Home Assistant core publishes its entities with ``mqtt_statestream``
on the test Mosquitto, and Darkstar's HA backend (``homeassistant.input: statestream``) reads them
with the same units, signs and alarms as over the WebSocket API, and writes nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from conftest import wait_for
from ha_core import HACore, ha_site, retained_cleanup
from test_ha_live import rig_for

from services.executor.inverter import Intent
from shared.config import ConfigError

pytestmark = pytest.mark.mosquitto


def test_statestream_readings_arrive_in_darkstar_units_without_a_token(tmp_path: Path, ha_core: HACore,
                                                                        home: dict[str, str]) -> None:
    tag = uuid.uuid4().hex[:6]
    base = f"darkstar-ss-{tag}"
    ids = {"battery_soc": ha_core.add_number(f"ss soc {tag}", "%", 0, 100, initial=40),
           "pv_power": ha_core.add_number(f"ss pv {tag}", "W", initial=2500),
           "grid_power": ha_core.add_number(f"ss grid {tag}", "kW", initial=0.4),
           "battery_power": ha_core.add_number(f"ss battery {tag}", "W", initial=-700)}
    # HA's own integration, configured as a user would in configuration.yaml; it needs the MQTT
    # integration at start-up, so HA restarts with it
    config = ha_core.dir / "configuration.yaml"
    config.write_text(config.read_text() + (
        f"mqtt_statestream:\n  base_topic: {base}\n  publish_attributes: true\n  publish_timestamps: true\n"
        "  include:\n    entities:\n" + "".join(f"      - {e}\n" for e in ids.values())))
    ha_core.stop()
    ha_core.start()
    wait_for(lambda: "mqtt_statestream" in (ha_core.ws("get_config") or {}).get("components", []), 120, 1.0)
    for role, entity_id in ids.items():  # statestream publishes on change: give each a fresh value
        value = {"battery_soc": 41, "pv_power": 2600, "grid_power": 0.5, "battery_power": -800}[role]
        ha_core.set_number(entity_id, value)
    home_ss = {**home, **ids, "grid_power": ids["grid_power"]}
    site = ha_site(tmp_path, ha_core, home_ss, token="", input="statestream", statestream={"base_topic": base},
                   executor={"shadow_mode": True})
    assert site.homeassistant.token is None or not site.homeassistant.token.get_secret_value()
    rig = rig_for(site)
    try:
        t = wait_for(lambda: (r := rig.read()).pv_kw is not None and r.battery_kw is not None and r, 30)
        assert t.soc_frac == pytest.approx(0.41)
        assert t.pv_kw == pytest.approx(2.6)  # W -> kW, from the unit statestream publishes as an attribute
        assert t.grid_kw == pytest.approx(-0.5)  # sign -1 (ha_site: the meter counts export positive)
        assert t.battery_kw == pytest.approx(-0.8)
        assert t.load_kw == pytest.approx(2.6 - 0.5 + 0.8)  # the balance, as over the WebSocket API
        ha_core.set_number(ids["pv_power"], 3100)
        wait_for(lambda: rig.read().pv_kw == pytest.approx(3.1), 15)
        # an entity HA does not stream (not included): named, no value, nothing guessed
        assert any(home["import_energy"] in a and "no state on" in a for a in rig.inverter.alarms())
        # read only: a write is refused with the reason, nothing reaches HA
        result = rig.run(rig.inverter.apply(Intent(mode="charge", power_kw=2.0)))
        assert not result.ok and "read only" in (result.error or "")
    finally:
        rig.close()
        retained_cleanup([f"{base}/#"])


def test_statestream_outside_shadow_mode_is_refused_at_start_with_the_key(tmp_path: Path, ha_core: HACore,
                                                                          home: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="homeassistant.input: statestream is read only"):
        ha_site(tmp_path, ha_core, home, token="", input="statestream", executor={"shadow_mode": False})
