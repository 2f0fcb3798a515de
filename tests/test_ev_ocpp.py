"""The executor drives an OCPP 1.6J charge point: a charge point simulated with the same ``ocpp``
library connects over a real websocket on localhost, and the car draws what its profile allows."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
import websockets

from services.demo.chargepoint import SimChargePoint
from tests.ev_helpers import PASSWORD, SLOT, ev_config, ev_plan, ocpp_rig, settle

START = datetime(2026, 1, 12, 18, 0, tzinfo=timezone.utc)


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def test_boot_installs_the_fallback_and_asks_for_power_energy_and_soc() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(fallback_a=7.0), START) as rig:
            assert rig.cp.config["MeterValuesSampledData"] == "Power.Active.Import,Energy.Active.Import.Register,SoC"
            default = rig.cp.profiles["TxDefaultProfile"]
            assert default["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 7.0
            reading = await rig.controller.charger.read()
            assert reading.connected and reading.plugged is False and not reading.faulted

    run(scenario())


def test_wrong_password_and_unknown_identity_are_refused_before_any_ocpp_message() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(), START) as rig:
            port = rig.system.port
            wrong = SimChargePoint("cp-garage", f"ws://127.0.0.1:{port}/ocpp/cp-garage", "guess")
            with pytest.raises(websockets.exceptions.InvalidStatus, match="401"):
                await wrong.connect()
            stranger = SimChargePoint("cp-other", f"ws://127.0.0.1:{port}/ocpp/cp-other", PASSWORD)
            with pytest.raises(websockets.exceptions.InvalidStatus, match="404"):
                await stranger.connect()
            assert rig.system.refused == 2
            # the real charge point's session is untouched
            assert (await rig.controller.charger.read()).connected

    run(scenario())


def test_plugging_in_starts_a_transaction_whose_profile_follows_the_plan_per_slot() -> None:
    async def scenario() -> None:
        ev = ev_config(phases=3)
        async with ocpp_rig(ev, START) as rig:
            rig.plan[0] = ev_plan(START, [6.9, 0.0, 11.04, 11.04], valid_for=timedelta(hours=1))
            await rig.cp.plug()
            await rig.tick()
            assert rig.cp.transaction_id is not None
            assert rig.cp.limit_a() == pytest.approx(10.0)  # 6.9 kW / (3 x 230 V)
            assert rig.cp.power_kw == pytest.approx(6.9)
            # the profile on the charger already holds the next slots: no message needed at the boundary
            assert rig.cp.limit_a(START + SLOT) == 0.0
            assert rig.cp.limit_a(START + 2 * SLOT) == pytest.approx(16.0)
            # it ends with the plan: afterwards the charger's fallback (TxDefaultProfile 6 A) applies
            assert rig.cp.limit_a(START + timedelta(hours=1, minutes=1)) == 6.0
            assert ("ev_plugged", True) in rig.context

    run(scenario())


def test_single_phase_charger_gets_amps_for_one_phase() -> None:
    async def scenario() -> None:
        ev = ev_config(phases=1, max_current_a=32.0)
        async with ocpp_rig(ev, START) as rig:
            rig.plan[0] = ev_plan(START, [3.68])
            await rig.cp.plug()
            await rig.tick()
            assert rig.cp.limit_a() == pytest.approx(16.0)  # 3.68 kW / 230 V
            profile = rig.cp.profiles["TxProfile"]["chargingSchedule"]["chargingSchedulePeriod"][0]
            assert profile["numberPhases"] == 1

    run(scenario())


def test_a_new_plan_changes_the_profile_and_measured_power_reaches_telemetry() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(), START) as rig:
            rig.plan[0] = ev_plan(START, [11.04] * 4)
            await rig.cp.plug()
            await rig.tick()
            assert rig.cp.power_kw == pytest.approx(11.0)  # the car's onboard charger is the limit
            rig.clock.advance(60)
            rig.plan[0] = ev_plan(START, [4.14] * 4, created=START + timedelta(minutes=1))
            await rig.tick()
            assert rig.cp.limit_a() == pytest.approx(6.0)
            await rig.tick()
            reading = rig.controller.reading
            assert reading.charging and reading.power_kw == pytest.approx(4.14)
            assert reading.soc_frac is not None and reading.soc_frac > 0.3

    run(scenario())


def test_below_the_minimum_current_the_car_waits_in_a_transaction_that_the_fallback_ends() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(fallback_a=6.0), START) as rig:
            rig.plan[0] = ev_plan(START, [2.0], valid_for=timedelta(minutes=30))  # 2.9 A: below 6 A no charging
            await rig.cp.plug()
            decision = await rig.tick()
            assert decision.command.limit_a == 0.0
            # waiting, but inside a transaction: if Darkstar falls silent now, the car still charges
            assert rig.cp.transaction_id is not None and rig.cp.power_kw == 0.0
            assert rig.cp.limit_a() == 0.0 and rig.cp.limit_a(START + timedelta(minutes=31)) == 6.0

    run(scenario())


def test_a_car_that_waits_for_its_slot_is_charged_at_the_fallback_when_darkstar_stops() -> None:
    """The plan waits for cheap night hours; Darkstar stops (or its plan goes stale) before them."""
    async def scenario() -> None:
        async with ocpp_rig(ev_config(fallback_a=6.0), START) as rig:
            await rig.cp.plug()
            await settle(rig.cp)
            await rig.controller.shutdown()
            await settle(rig.cp)
            rig.cp.step()
            # the transaction carries the fallback current itself (not only the default profile)
            assert rig.cp.transaction_id is not None
            assert rig.cp.profiles["TxProfile"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 6.0
            assert rig.cp.limit_a() == 6.0 and rig.cp.power_kw == pytest.approx(6 * 3 * 0.23)

    run(scenario())


def test_a_rejected_profile_falls_back_and_raises_an_alarm() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(fallback_a=6.0), START) as rig:
            rig.plan[0] = ev_plan(START, [11.04] * 4)
            await rig.cp.plug()
            await rig.tick()
            assert rig.cp.limit_a() == pytest.approx(16.0)
            rig.cp.reject_profiles = True
            rig.plan[0] = ev_plan(START, [4.14] * 4, created=START + timedelta(seconds=1))
            await rig.tick()
            # the 16 A profile must not stay in force when the lower one is refused
            assert "TxProfile" not in rig.cp.profiles
            assert rig.cp.limit_a() == 6.0
            assert "charger_command_refused" in rig.controller.state()["alarms"]
            assert any("charger_command_refused" in what for what, _ in rig.reports)

    run(scenario())


def test_a_faulted_connector_is_reported_and_the_planner_told_the_car_is_unavailable() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(), START) as rig:
            rig.plan[0] = ev_plan(START, [6.9] * 4)
            await rig.cp.plug()
            await rig.tick()
            await rig.cp.fault()
            await settle(rig.cp)
            decision = await rig.tick()
            assert decision.source == "faulted" and "charger_faulted" in decision.alarms
            assert [v for n, v in rig.context if n == "ev_plugged"] == [True, False]
            assert rig.cp.power_kw == 0.0

    run(scenario())


def test_a_stale_plan_puts_the_charger_on_its_fallback_current() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(fallback_a=6.0), START) as rig:
            rig.plan[0] = ev_plan(START, [11.04] * 4, valid_for=timedelta(minutes=30))
            await rig.cp.plug()
            await rig.tick()
            assert rig.cp.limit_a() == pytest.approx(16.0)
            rig.clock.advance(31 * 60)
            decision = await rig.tick()
            assert decision.fallback and "ev_plan_expired" in decision.alarms
            assert "TxProfile" not in rig.cp.profiles and rig.cp.limit_a() == 6.0

    run(scenario())


def test_disconnect_leaves_only_a_profile_that_expires_and_reconnect_restores_the_plan() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(fallback_a=6.0), START) as rig:
            rig.plan[0] = ev_plan(START, [11.04] * 8, valid_for=timedelta(minutes=45))
            await rig.cp.plug()
            await rig.tick()
            await rig.cp.disconnect()
            await asyncio.sleep(0.1)
            decision = await rig.tick()
            assert decision.source == "unreachable" and "charger_unreachable" in decision.alarms
            # Darkstar cannot reach it: what it left behind ends with the plan's validity
            assert rig.cp.limit_a(START + timedelta(minutes=46)) == 6.0
            await rig.cp.connect()
            await settle(rig.cp)
            rig.clock.advance(60)
            await rig.tick()
            assert rig.cp.limit_a() == pytest.approx(16.0)
            assert rig.system.states["cp-garage"].connections == 2

    run(scenario())


def test_shutdown_clears_darkstars_profile() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(fallback_a=8.0), START) as rig:
            rig.plan[0] = ev_plan(START, [11.04] * 4)
            await rig.cp.plug()
            await rig.tick()
            await rig.controller.shutdown()
            await settle(rig.cp)
            assert "TxProfile" not in rig.cp.profiles and rig.cp.limit_a() == 8.0

    run(scenario())


def test_measured_power_off_the_command_asks_for_a_replan_once() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(deviation_s=120), START, soc_frac=1.0) as rig:  # the car is full
            rig.plan[0] = ev_plan(START, [11.04] * 4)
            await rig.cp.plug()
            await rig.tick()
            assert rig.replans == []
            for _ in range(4):
                rig.clock.advance(60)
                await rig.tick()
            assert len(rig.replans) == 1 and "draws 0.0 kW" in rig.replans[0]

    run(scenario())


def test_charge_now_overrides_a_plan_that_waits_until_the_target_soc() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(), START, soc_frac=0.5) as rig:
            rig.plan[0] = ev_plan(START, [0.0] * 4)
            await rig.cp.plug()
            await rig.tick()
            assert rig.cp.power_kw == 0.0
            rig.controller.charge_now(0.55, ttl_s=3600)
            decision = await rig.tick()
            assert decision.source == "quick" and rig.cp.limit_a() == pytest.approx(16.0)
            # leased, not for the whole hour: a Darkstar that died now leaves 16 A for <= 30 min
            assert decision.command.until <= START + timedelta(minutes=30)
            assert rig.cp.limit_a(START + timedelta(minutes=31)) < 16.0
            rig.clock.advance(20 * 60)  # 11 kW x 1/3 h x 0.9 = 3.3 kWh = 5.5 % of 60 kWh
            await settle(rig.cp)
            decision = await rig.tick()
            assert rig.controller.quick is None and decision.source == "plan"
            assert rig.cp.limit_a() == 0.0

    run(scenario())


def test_import_guard_cuts_the_ev_when_the_house_takes_more_than_planned() -> None:
    from services.executor.inverter import Telemetry

    async def scenario() -> None:
        grid = [Telemetry(ts=START, grid_kw=0.0)]
        async with ocpp_rig(ev_config(), START, telemetry=lambda: grid[0], guard=True) as rig:
            rig.plan[0] = ev_plan(START, [11.04] * 4, import_kw=[11.5] * 4)
            await rig.cp.plug()
            await rig.tick()
            assert rig.cp.limit_a() == pytest.approx(16.0)
            # a 4 kW kettle and oven on top: grid 11.0 (car) + 4.5 (house) = 15.5 kW against 11.5 planned
            grid[0] = Telemetry(ts=rig.clock.advance(10), grid_kw=15.5)
            decision = await rig.tick()
            assert decision.source == "guard"
            # EV cap = 11.5 + 0.2 - (15.5 - 11.0) = 7.2 kW -> 10.4 A
            assert rig.cp.limit_a() == pytest.approx(10.4)

    run(scenario())


def test_a_malformed_message_is_answered_reported_and_the_session_goes_on() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(), START) as rig:
            errors: list[tuple[str, str]] = []
            rig.system.on_error = lambda what, why: errors.append((what, why))
            ws = rig.cp._connection
            await ws.send('[2,"bad-1","MeterValues",{"connectorId":"one","meterValue":[]}]')  # wrong type
            # the charge point's receive loop queues answers: a CallError to the bad call comes back
            answer = await asyncio.wait_for(rig.cp._response_queue.get(), 5)
            assert type(answer).__name__ == "CallError" and answer.unique_id == "bad-1"
            await ws.send("this is not OCPP")
            await asyncio.sleep(0.2)
            assert [w for w, _ in errors] == ["ocpp/cp-garage", "ocpp/cp-garage"]
            assert "MeterValues rejected" in errors[0][1] and "not an OCPP-J message" in errors[1][1]
            await rig.cp.plug()  # the session carries on
            assert (await rig.controller.charger.read()).plugged

    run(scenario())


def test_an_ocpp_port_in_use_fails_the_start_loudly() -> None:
    import socket

    from services.executor.chargers import build_chargers
    from shared.clock import ManualClock
    from shared.config import site_config_from_dict

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        site = site_config_from_dict({
            "site_id": "ev-port", "location": {"latitude": 55.4, "longitude": 13.2},
            "evs": [ev_config().model_dump(mode="json") | {"charger": {**ev_config().charger.model_dump(mode="json"),
                                                                      "password": PASSWORD}}],
            "executor": {"ocpp": {"host": "127.0.0.1", "port": port}}}, environ={})
        chargers = build_chargers(site, ManualClock(START))
        with pytest.raises(RuntimeError, match="EV chargers could not start"):
            chargers.runner.start()


def test_remote_stop_ends_the_transaction_at_the_charge_point() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(), START) as rig:
            rig.plan[0] = ev_plan(START, [6.9] * 4)
            await rig.cp.plug()
            await rig.tick()
            assert rig.cp.transaction_id is not None
            rig.clock.advance(600)  # 10 minutes at 6.9 kW: 1.15 kWh on the meter
            await settle(rig.cp)
            await rig.controller.charger.stop_transaction()
            await settle(rig.cp)
            assert rig.cp.transaction_id is None and rig.cp.power_kw == 0.0
            assert rig.system.states["cp-garage"].connector(1).transaction_id is None
            reading = await rig.controller.charger.read()
            assert reading.plugged and not reading.charging
            assert reading.energy_kwh == pytest.approx(1.15, abs=0.01)  # StopTransaction's meterStop

    run(scenario())


def test_shadow_mode_and_pause_send_nothing_to_the_charger_as_to_the_inverter() -> None:
    async def scenario() -> None:
        async with ocpp_rig(ev_config(fallback_a=6.0), START) as rig:
            rig.plan[0] = ev_plan(START, [11.04] * 4)
            rig.hands_off[0] = "shadow mode"
            await rig.cp.plug()
            decision = await rig.tick()
            assert "shadow mode: not sent" in decision.reason and decision.command.limit_a == pytest.approx(16.0)
            assert rig.cp.transaction_id is None and "TxProfile" not in rig.cp.profiles
            await rig.controller.shutdown()  # shadow: Darkstar never touched it, not even at shut-down
            await settle(rig.cp)
            assert rig.cp.transaction_id is None

            rig.hands_off[0] = None  # shadow off: the plan reaches the charger
            await rig.tick()
            assert rig.cp.transaction_id is not None and rig.cp.limit_a() == pytest.approx(16.0)

            rig.hands_off[0] = "executor paused until later"  # paused: a new plan is not sent
            rig.clock.advance(60)
            rig.plan[0] = ev_plan(START, [4.14] * 4, created=START + timedelta(minutes=1))
            decision = await rig.tick()
            assert decision.reason.startswith("executor paused") and rig.cp.limit_a() == pytest.approx(16.0)
            rig.hands_off[0] = None  # resumed: sent afresh
            await rig.tick()
            assert rig.cp.limit_a() == pytest.approx(6.0)

    run(scenario())


def test_a_wallbox_that_never_learns_the_soc_uses_the_cars_own_reading_from_home_assistant() -> None:
    from services.executor.inverter import Telemetry

    async def scenario() -> None:
        car = [Telemetry(ts=START, values={"ev_soc": 0.5})]  # the car's integration in HA, via the executor
        async with ocpp_rig(ev_config(), START, soc_frac=0.5, telemetry=lambda: car[0], reports_soc=False) as rig:
            rig.plan[0] = ev_plan(START, [0.0] * 4)
            await rig.cp.plug()
            await rig.cp.send_meter_values()
            await settle(rig.cp)
            await rig.tick()
            assert rig.system.states["cp-garage"].connector(1).soc_frac is None  # the wallbox does not know
            assert ("ev_target_kwh", pytest.approx(18.0)) in rig.context  # (0.8 - 0.5) x 60 kWh from HA's SoC
            rig.controller.charge_now(0.55, ttl_s=3600)
            assert (await rig.tick()).source == "quick"
            car[0] = Telemetry(ts=rig.clock.advance(600), values={"ev_soc": 0.56})  # HA sees the target reached
            assert (await rig.tick()).source == "plan" and rig.controller.quick is None
            car[0] = Telemetry(ts=START, values={"ev_soc": 0.9})  # a stale reading is no SoC at all
            rig.clock.advance(3600)
            await rig.tick()
            assert rig.controller.reading.soc_frac is None

    run(scenario())


def test_heartbeat_and_the_authorize_policy_for_tags_presented_at_the_wallbox() -> None:
    from ocpp.v16 import call

    async def scenario() -> None:
        async with ocpp_rig(ev_config(authorize="id_tags", allowed_id_tags=["family-card"]), START) as rig:
            beat = await rig.cp.call(call.Heartbeat())
            assert beat.current_time  # the central system's clock, for the charge point's
            assert (await rig.cp.call(call.Authorize(id_tag="family-card"))).id_tag_info["status"] == "Accepted"
            assert (await rig.cp.call(call.Authorize(id_tag="darkstar"))).id_tag_info["status"] == "Accepted"
            assert (await rig.cp.call(call.Authorize(id_tag="stranger"))).id_tag_info["status"] == "Invalid"
            # a transaction started at the wallbox with an unknown tag is not recorded as running
            await rig.cp.plug()
            refused = await rig.cp.call(call.StartTransaction(connector_id=1, id_tag="stranger", meter_start=0,
                                                              timestamp=START.isoformat()))
            assert refused.id_tag_info["status"] == "Invalid"
            assert rig.system.states["cp-garage"].connector(1).transaction_id is None

    run(scenario())



def test_a_transaction_darkstar_did_not_start_is_followed_not_restarted() -> None:
    """After a Darkstar restart the car may already be charging: its MeterValues name the transaction."""
    from ocpp.v16 import call

    async def scenario() -> None:
        async with ocpp_rig(ev_config(), START) as rig:
            await rig.cp.plug()
            started = await rig.cp.call(call.StartTransaction(connector_id=1, id_tag="darkstar", meter_start=0,
                                                              timestamp=START.isoformat()))
            rig.cp.transaction_id, rig.cp.tx_start = started.transaction_id, START
            rig.system.states["cp-garage"].connector(1).transaction_id = None  # as a central system that restarted
            await rig.cp.send_status()
            await rig.cp.send_meter_values()
            await settle(rig.cp)
            assert rig.system.states["cp-garage"].connector(1).transaction_id == started.transaction_id
            rig.plan[0] = ev_plan(START, [4.14] * 4)
            await rig.tick()
            assert rig.cp.transaction_id == started.transaction_id  # the same session, now following the plan
            assert rig.cp.limit_a() == pytest.approx(6.0)

    run(scenario())
