"""Darkstar reads the home from a real Home Assistant core and drives its stand-in inverter entities.

The core (tests/ha_core.py) has input_number helpers standing in for an inverter's sensors
(SoC in %, PV in W, grid in kW with the opposite sign, battery in W) and an input_select /
input_number / input_boolean standing in for its controls.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from ha_core import HACore, ha_site

from services.executor.ha_profile import load_ha_profile
from services.executor.homeassistant import HomeAssistantInverter
from services.executor.inverter import Intent, InverterError
from services.executor.loop import extra_readings

pytestmark = pytest.mark.mosquitto


class Rig:
    """A HomeAssistantInverter on its own event loop thread, as the executor runs it."""

    def __init__(self, inverter: HomeAssistantInverter) -> None:
        self.inverter = inverter
        self.loop = asyncio.new_event_loop()
        import threading

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout_s: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def read(self) -> Any:
        return self.run(self.inverter.read_telemetry())

    def close(self) -> None:
        self.run(self.inverter.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def rig_for(site: Any) -> Rig:
    profile = load_ha_profile(site.homeassistant.profile)
    return Rig(HomeAssistantInverter(site, profile, clock=lambda: datetime.now(timezone.utc)))


def test_live_states_arrive_in_darkstar_units_and_signs(tmp_path: Path, ha_core: HACore, home: dict[str, str]) -> None:
    token = ha_core.long_lived_token(f"darkstar-{uuid.uuid4().hex[:6]}")
    rig = rig_for(ha_site(tmp_path, ha_core, home, token))
    try:
        t = rig.read()
        assert t.soc_frac == pytest.approx(0.55)
        assert t.soc_kwh == pytest.approx(5.5)  # 10 kWh battery
        assert t.pv_kw == pytest.approx(3.2)  # W -> kW
        assert t.grid_kw == pytest.approx(-0.8)  # the meter's export-positive kW, turned to import-positive
        assert t.battery_kw == pytest.approx(1.5)
        # no load entity: the balance pv + grid - battery = 3.2 - 0.8 - 1.5
        assert t.load_kw == pytest.approx(0.9)
        assert t.values["import_energy"] == pytest.approx(1234.5)
        # read and carried on the bus (telemetry fields; the executor also publishes the car's as context)
        extra = extra_readings(t.values)
        assert extra == {"water_temp_c": pytest.approx(60.0), "ev_plugged": True}  # 140 °F
        ha_core.set_number(home["pv_power"], 4100)
        wait_for(lambda: rig.read().pv_kw == pytest.approx(4.1), 10)
        # the only alarm: the site prices in EUR, this HA counts money in SEK
        assert [a for a in rig.inverter.alarms()] == [
            "homeassistant: site currency EUR differs from Home Assistant's SEK; its energy dashboard would "
            "count Darkstar's prices as SEK"]
    finally:
        rig.close()


def test_unavailable_unit_change_and_renamed_entity_give_alarms_naming_the_entity(
        tmp_path: Path, ha_core: HACore, home: dict[str, str]) -> None:
    token = ha_core.long_lived_token(f"darkstar-{uuid.uuid4().hex[:6]}")
    tag = uuid.uuid4().hex[:4]
    pv = ha_core.add_number(f"pv2 {tag}", "W", initial=2000)
    site = ha_site(tmp_path, ha_core, {**home, "pv_power": pv}, token)
    rig = rig_for(site)
    try:
        assert rig.read().pv_kw == pytest.approx(2.0)
        # The unit changes to one that is not power: no value, an alarm naming the entity.
        item_id = pv.split(".", 1)[1]
        ha_core.ws("input_number/update", input_number_id=item_id, name=f"pv2 {tag}", min=-100000, max=100000,
                   step=0.001, mode="box", unit_of_measurement="°C")
        wait_for(lambda: rig.read().pv_kw is None, 10)
        assert any(pv in a and "not a power unit" in a for a in rig.inverter.alarms())
        # Back to kW (HA keeps the number): 2000 kW is read as kW, the unit it now says.
        ha_core.ws("input_number/update", input_number_id=item_id, name=f"pv2 {tag}", min=-100000, max=100000,
                   step=0.001, mode="box", unit_of_measurement="kW")
        ha_core.set_number(pv, 2.5)
        wait_for(lambda: rig.read().pv_kw == pytest.approx(2.5), 10)
        # Renamed in HA's entity registry: the configured id is gone.
        ha_core.ws("config/entity_registry/update", entity_id=pv, new_entity_id=f"{pv}_renamed")
        wait_for(lambda: rig.read().pv_kw is None, 10)
        assert any(pv in a and "not found" in a for a in rig.inverter.alarms())
        t = rig.read()
        assert t.soc_frac == pytest.approx(0.55)  # the other entities still count
        assert t.load_kw is None  # the balance needs PV: not guessed
    finally:
        rig.close()


def test_intents_move_the_stand_in_inverter_controls_with_read_back(tmp_path: Path, ha_core: HACore,
                                                                    home: dict[str, str]) -> None:
    token = ha_core.long_lived_token(f"darkstar-{uuid.uuid4().hex[:6]}")
    rig = rig_for(ha_site(tmp_path, ha_core, home, token))
    try:
        rig.read()
        result = rig.run(rig.inverter.apply(Intent(mode="charge", power_kw=3.2, water_kw=3.0)))
        assert result.ok and result.verified, result
        assert ha_core.state(home["mode"])["state"] == "Charge"
        assert float(ha_core.state(home["charge_power"])["state"]) == pytest.approx(3200)
        assert ha_core.state(home["water_heater"])["state"] == "on"
        # More than the battery may take (5 kW) is clamped before it reaches HA.
        result = rig.run(rig.inverter.apply(Intent(mode="charge", power_kw=9.0, water_kw=0.0)))
        assert result.ok and result.clamped
        assert float(ha_core.state(home["charge_power"])["state"]) == pytest.approx(5000)
        assert ha_core.state(home["water_heater"])["state"] == "off"
        # The same intent again writes nothing: every entity already shows it.
        again = rig.run(rig.inverter.apply(Intent(mode="charge", power_kw=5.0, water_kw=0.0)))
        assert again.ok and again.writes == [] and set(again.skipped) >= {home["mode"], home["charge_power"]}
        result = rig.run(rig.inverter.apply(Intent(mode="hold")))
        assert result.verified and ha_core.state(home["mode"])["state"] == "Hold"
    finally:
        rig.close()


def test_writes_to_one_entity_are_rate_limited(tmp_path: Path, ha_core: HACore, home: dict[str, str]) -> None:
    token = ha_core.long_lived_token(f"darkstar-{uuid.uuid4().hex[:6]}")
    site = ha_site(tmp_path, ha_core, home, token)
    site = site.model_copy(update={"homeassistant": site.homeassistant.model_copy(update={"min_write_interval_s": 600})})
    rig = rig_for(site)
    try:
        rig.read()
        first = rig.run(rig.inverter.apply(Intent(mode="discharge", power_kw=1.0)))
        assert first.ok
        second = rig.run(rig.inverter.apply(Intent(mode="discharge", power_kw=2.0)))
        assert not second.ok and "min_write_interval_s" in (second.error or "")
        assert float(ha_core.state(home["discharge_power"])["state"]) == pytest.approx(1000)
    finally:
        rig.close()


@pytest.mark.timeout(900)  # two HA start-ups on a shared 2-core machine
def test_revoked_token_and_restart_are_failed_reads_then_recover(tmp_path: Path, ha_core: HACore,
                                                                 home: dict[str, str]) -> None:
    name = f"darkstar-{uuid.uuid4().hex[:6]}"
    token = ha_core.long_lived_token(name)
    rig = rig_for(ha_site(tmp_path, ha_core, home, token))
    try:
        assert rig.read().soc_frac is not None
        ha_core.revoke(name)

        def refused() -> bool:
            try:
                rig.read()
            except InverterError as err:
                return "refused the token" in str(err)
            return False

        wait_for(refused, 20, 0.5)
        assert token not in " ".join(rig.inverter.alarms())  # never the secret itself
        assert any("homeassistant.token" in a for a in rig.inverter.alarms())
    finally:
        rig.close()
    # A new token, then HA restarts: reads fail while it is down and come back on their own.
    token = ha_core.long_lived_token(f"darkstar-{uuid.uuid4().hex[:6]}")
    rig = rig_for(ha_site(tmp_path, ha_core, home, token))
    try:
        epoch = rig.read().connection_epoch
        ha_core.stop()  # graceful, as a restart from HA's UI or a service manager (a kill loses .storage writes)
        wait_for(lambda: not rig.inverter.live.connected.is_set(), 20)
        with pytest.raises(InverterError, match="connect"):
            rig.read()
        ha_core.start()
        t = wait_for(lambda: _try_read(rig), 240, 0.5)  # HA start-up on a busy 2-core machine
        assert t.connection_epoch > epoch  # the loop re-writes its command after a reconnect
        assert t.soc_frac == pytest.approx(0.55)
    finally:
        rig.close()


def _try_read(rig: Rig) -> Any:
    try:
        return rig.read()
    except InverterError:
        return None


def test_an_unavailable_entity_and_one_that_stopped_updating_give_no_value_and_an_alarm(
        tmp_path: Path, ha_core: HACore, home: dict[str, str]) -> None:
    token = ha_core.long_lived_token(f"darkstar-{uuid.uuid4().hex[:6]}")
    pv = ha_core.add_number(f"pv3 {uuid.uuid4().hex[:4]}", "W", initial=1500)
    site = ha_site(tmp_path, ha_core, {**home, "pv_power": {"entity_id": pv, "max_age_s": 3}}, token)
    rig = rig_for(site)
    try:
        ha_core.set_number(pv, 1600)
        wait_for(lambda: rig.read().pv_kw == pytest.approx(1.6), 10)
        # the integration behind it goes away: HA says unavailable (as it does for a dead inverter)
        ha_core.rest("POST", f"/api/states/{pv}", {"state": "unavailable", "attributes": {"unit_of_measurement": "W"}})
        wait_for(lambda: rig.read().pv_kw is None, 10)
        assert any(pv in a and "unavailable" in a for a in rig.inverter.alarms())
        ha_core.set_number(pv, 1700)
        wait_for(lambda: rig.read().pv_kw == pytest.approx(1.7), 10)
        # then it freezes: the last value stays in HA, but no update comes for longer than max_age_s
        wait_for(lambda: rig.read().pv_kw is None, 10)
        assert any(pv in a and "stale" in a and "max_age_s 3" in a for a in rig.inverter.alarms())
        assert rig.read().soc_frac == pytest.approx(0.55)  # entities without max_age_s are not affected
        ha_core.set_number(pv, 1800)
        wait_for(lambda: rig.read().pv_kw == pytest.approx(1.8), 10)
    finally:
        rig.close()
