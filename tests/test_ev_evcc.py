"""The evcc backend against an HTTP stand-in that answers in the shapes of evcc's published API.

evcc itself is a Go program that cannot be installed here: the stand-in serves the hand-written
``/api/state`` of tests/fixtures/evcc (see its README for provenance) over real HTTP on localhost
and applies the setter endpoints to it the way evcc documents them. What this proves is that
Darkstar calls the documented endpoints with the right values and reads the documented fields.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from services.executor.chargers.base import ChargeCommand
from services.executor.chargers.controller import ChargerController
from services.executor.chargers.evcc import EvccCharger
from shared.clock import ManualClock
from shared.config import EVConfig
from tests.ev_helpers import ev_plan

STATE = json.loads((Path(__file__).parent / "fixtures" / "evcc" / "state.json").read_text())
START = datetime(2026, 1, 12, 22, 0, tzinfo=timezone.utc)


class EvccStandIn:
    """Serves /api/state and applies POST /api/loadpoints/{id}/{mode|maxcurrent|mincurrent}/{value}."""

    def __init__(self) -> None:
        self.state = copy.deepcopy(STATE)
        self.posts: list[str] = []
        self.down = False
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if stand_in.down:
                    self._answer(503, {"error": "not ready"})
                elif self.path == "/api/state":
                    self._answer(200, stand_in.state)
                else:
                    self._answer(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                stand_in.posts.append(self.path)
                parts = self.path.strip("/").split("/")
                if parts[:2] == ["api", "loadpoints"] and len(parts) == 5:
                    lp = stand_in.state["result"]["loadpoints"][int(parts[2]) - 1]
                    key = {"mode": "mode", "maxcurrent": "maxCurrent", "mincurrent": "minCurrent"}.get(parts[3])
                    if key is None:
                        return self._answer(404, {"error": "not found"})
                    if key == "mode" and parts[4] not in ("off", "pv", "minpv", "now"):
                        return self._answer(400, {"error": f"invalid mode {parts[4]}"})
                    value: Any = parts[4] if key == "mode" else float(parts[4])
                    lp[key] = value
                    return self._answer(200, {"result": value})
                if parts[:2] == ["api", "vehicles"] and parts[3:5] == ["plan", "soc"]:
                    return self._answer(200, {"result": {"soc": int(parts[5]), "time": parts[6]}})
                return self._answer(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def loadpoint(self, n: int = 1) -> dict[str, Any]:
        return self.state["result"]["loadpoints"][n - 1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def evcc() -> Iterator[EvccStandIn]:
    stand_in = EvccStandIn()
    yield stand_in
    stand_in.close()


def evcc_ev(url: str, loadpoint: str = "1", fallback: str = "current") -> EVConfig:
    return EVConfig(name="car", battery_kwh=60, max_charge_kw=11.0, target_soc_frac=0.8,
                    charger={"type": "evcc", "identity": loadpoint, "url": url,
                             "fallback": {"mode": fallback, "current_a": 8.0}})


def test_reads_plugged_soc_and_power_from_the_loadpoint(evcc: EvccStandIn) -> None:
    async def scenario() -> None:
        charger = EvccCharger("car", evcc_ev(evcc.url).charger)
        evcc.loadpoint().update(chargePower=7360, charging=True, chargedEnergy=2500)
        reading = await charger.read()
        assert reading.connected and reading.plugged and reading.charging
        assert reading.power_kw == pytest.approx(7.36) and reading.energy_kwh == pytest.approx(2.5)
        assert reading.soc_frac == pytest.approx(0.54)
        empty = await EvccCharger("car2", evcc_ev(evcc.url, "2").charger).read()
        assert empty.plugged is False and empty.soc_frac is None  # vehicleSoc 0 of no vehicle: unknown
        await charger.close()

    asyncio.run(scenario())


def test_plan_power_becomes_mode_now_at_the_slots_current_and_no_power_mode_off(evcc: EvccStandIn) -> None:
    async def scenario() -> None:
        ev = evcc_ev(evcc.url)
        clock = ManualClock(START)
        plan = [ev_plan(START, [6.9, 0.0])]
        controller = ChargerController(ev, EvccCharger("car", ev.charger), clock=clock, plan=lambda: plan[0])
        await controller.tick()
        assert evcc.posts == ["/api/loadpoints/1/maxcurrent/10", "/api/loadpoints/1/mode/now"]
        assert evcc.loadpoint()["mode"] == "now" and evcc.loadpoint()["maxCurrent"] == 10
        clock.advance(15 * 60)
        await controller.tick()
        assert evcc.posts[-1] == "/api/loadpoints/1/mode/off"
        await controller.charger.close()

    asyncio.run(scenario())


def test_fallback_hands_evcc_its_own_plan_and_a_minimum_current(evcc: EvccStandIn) -> None:
    async def scenario() -> None:
        ev = evcc_ev(evcc.url)
        charger = EvccCharger("car", ev.charger)
        await charger.read()
        departure = START + timedelta(hours=9)
        await charger.apply(ChargeCommand(16.0, 11.0, until=START + timedelta(hours=1), target_soc_frac=0.8,
                                          departure=departure))
        await charger.fallback()
        assert evcc.loadpoint()["mode"] == "minpv" and evcc.loadpoint()["minCurrent"] == 8
        assert evcc.posts[-1] == "/api/vehicles/model3/plan/soc/80/2026-01-13T07:00:00Z"
        await charger.close()

    asyncio.run(scenario())


def test_evcc_unreachable_is_a_disconnected_charger_not_a_guess(evcc: EvccStandIn) -> None:
    async def scenario() -> None:
        ev = evcc_ev(evcc.url)
        controller = ChargerController(ev, EvccCharger("car", ev.charger), clock=ManualClock(START),
                                       plan=lambda: ev_plan(START, [6.9]))
        evcc.down = True
        decision = await controller.tick()
        assert decision.source == "unreachable" and controller.reading.power_kw is None
        assert evcc.posts == []
        await controller.charger.close()

    asyncio.run(scenario())


def test_a_config_without_url_or_loadpoint_fails_at_start_with_the_key_path() -> None:
    from shared.config import ConfigError, site_config_from_dict

    with pytest.raises(ConfigError, match=r"evs\.0\.charger: .*evcc charger needs the url"):
        site_config_from_dict({"site_id": "x", "location": {"latitude": 1, "longitude": 1},
                               "evs": [{"max_charge_kw": 11, "charger": {"type": "evcc", "identity": "1"}}]},
                              environ={})
