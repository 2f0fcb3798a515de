"""A real Home Assistant core for the tests: its own venv (``.ci/steps/40-homeassistant.sh``), a fresh
config dir, HTTP on a free port, the MQTT integration on the test Mosquitto with a discovery prefix
of its own (so other tests' discovery topics never reach it), stand-in entities for an inverter and
meters, and an owner account made through the onboarding API.

Use the session fixture ``ha_core`` (import it into the test module). Without the venv the tests
that need it are skipped with the reason; CI always has it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.ha.client import HAWebSocket

HA_VERSIONS = ("2025.4.4", "2024.3.3")
CLIENT_ID = "http://darkstar.test/"


def find_ha_venv() -> Path | None:
    candidates = [os.environ.get("DARKSTAR_HA_VENV", "")]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "darkstar"
    candidates += [str(cache / f"homeassistant-{v}") for v in HA_VERSIONS]
    for c in candidates:
        if c and (Path(c) / "bin" / "python").exists():
            return Path(c)
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CONFIGURATION = """\
homeassistant:
  name: Darkstar test home
  latitude: 55.6
  longitude: 13.0
  elevation: 0
  unit_system: metric
  time_zone: Europe/Stockholm
  currency: SEK
  country: SE
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
websocket_api:
config:
recorder:
  commit_interval: 1
history:
energy:
input_number:
input_select:
input_boolean:
"""


class HACore:
    """One running Home Assistant core process and the calls the tests need."""

    def __init__(self, venv: Path) -> None:
        self.venv = venv
        self.dir = Path(tempfile.mkdtemp(prefix="darkstar-ha-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.discovery_prefix = f"ha-test-{uuid.uuid4().hex[:8]}"
        (self.dir / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.version = ""

    # ------------------------------------------------------------------ process
    def start(self, timeout_s: float = 180.0) -> None:
        log = open(self.dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.venv / "bin" / "python"), "-m", "homeassistant", "-c", str(self.dir), "--skip-pip"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Home Assistant exited with {self.proc.returncode}; see {self.dir}/stdout.log")
            try:
                if httpx.get(f"{self.url}/api/onboarding", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Home Assistant did not answer on {self.url} within {timeout_s:g} s")

    def stop(self) -> None:
        """Shut HA down with SIGTERM, as a service manager does (it saves its .storage first)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    # ------------------------------------------------------------------ set-up through HA's own APIs
    def onboard(self) -> None:
        """Create the owner through the onboarding API and take an access token (the auth code flow)."""
        answer = httpx.post(f"{self.url}/api/onboarding/users", json={
            "client_id": CLIENT_ID, "name": "Test Owner", "username": "owner", "password": "darkstar-test-pw",
            "language": "en"}, timeout=30)
        answer.raise_for_status()
        token = httpx.post(f"{self.url}/auth/token", data={
            "grant_type": "authorization_code", "code": answer.json()["auth_code"], "client_id": CLIENT_ID}, timeout=30)
        token.raise_for_status()
        self.token = token.json()["access_token"]

    def long_lived_token(self, name: str) -> str:
        return self.ws("auth/long_lived_access_token", client_name=name, lifespan=1)

    def revoke(self, name: str) -> None:
        """Delete the long-lived token called ``name`` (what a user does in their HA profile)."""
        tokens = self.ws("auth/refresh_tokens")
        token_id = next(t["id"] for t in tokens if t.get("client_name") == name)
        self.ws("auth/delete_refresh_token", refresh_token_id=token_id)

    def setup_mqtt(self) -> None:
        """The MQTT integration on the test Mosquitto, discovery under this core's own prefix."""
        flow = self.rest("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        entry = self.rest("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                          {"broker": "127.0.0.1", "port": 1883})
        entry_id = entry["result"]["entry_id"]
        options = self.rest("POST", "/api/config/config_entries/options/flow", {"handler": entry_id})
        self.rest("POST", f"/api/config/config_entries/options/flow/{options['flow_id']}", {
            "discovery": True, "discovery_prefix": self.discovery_prefix, "birth_enable": False,
            "will_enable": False})

    # ------------------------------------------------------------------ calls
    def rest(self, method: str, path: str, body: Any = None) -> Any:
        answer = httpx.request(method, f"{self.url}{path}", json=body, timeout=30,
                               headers={"Authorization": f"Bearer {self.token}"})
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def ws(self, command: str, **payload: Any) -> Any:
        async def once() -> Any:
            client = await HAWebSocket(self.url, self.token, timeout_s=30).connect()
            try:
                return await client.call(command, timeout_s=60, **payload)
            finally:
                await client.close()

        return asyncio.run(once())

    def state(self, entity_id: str) -> dict[str, Any] | None:
        try:
            return self.rest("GET", f"/api/states/{entity_id}")
        except httpx.HTTPStatusError as err:
            if err.response.status_code == 404:
                return None
            raise

    def set_number(self, entity_id: str, value: float) -> None:
        self.rest("POST", "/api/services/input_number/set_value", {"entity_id": entity_id, "value": value})

    def add_number(self, name: str, unit: str | None, minimum: float = -100000, maximum: float = 100000,
                   initial: float | None = None) -> str:
        """An input_number through HA's storage collection (so it can be renamed later); returns its entity id."""
        item = self.ws("input_number/create", name=name, min=minimum, max=maximum, step=0.001, mode="box",
                       **({"unit_of_measurement": unit} if unit else {}))
        entity_id = f"input_number.{item['id']}"
        deadline = time.monotonic() + 10
        while self.state(entity_id) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if initial is not None:
            self.set_number(entity_id, initial)
        return entity_id

    def log_text(self) -> str:
        path = self.dir / "home-assistant.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="session")
def ha_core() -> Iterator[HACore]:
    venv = find_ha_venv()
    if venv is None:
        pytest.skip("no Home Assistant venv: run .ci/steps/40-homeassistant.sh (sets DARKSTAR_HA_VENV)")
    core = HACore(venv)
    try:
        core.start()
        core.onboard()
        core.version = core.ws("get_config")["version"]
        core.setup_mqtt()
        yield core
    finally:
        core.stop()
        shutil.rmtree(core.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def home(ha_core: HACore) -> dict[str, str]:
    """Stand-in entities, created once through HA's storage collection API."""
    tag = uuid.uuid4().hex[:4]
    ids = {
        "battery_soc": ha_core.add_number(f"soc {tag}", "%", 0, 100, initial=55),
        "pv_power": ha_core.add_number(f"pv {tag}", "W", initial=3200),
        "grid_power": ha_core.add_number(f"grid {tag}", "kW", initial=0.8),  # meter: positive = export
        "battery_power": ha_core.add_number(f"battery {tag}", "W", initial=1500),
        "import_energy": ha_core.add_number(f"import {tag}", "kWh", 0, 10**7, initial=1234.5),
        "water_heater_temperature": ha_core.add_number(f"boiler temp {tag}", "°F", 0, 250, initial=140),
    }
    ha_core.ws("input_boolean/create", name=f"car plugged {tag}", initial=True)
    ids["ev_plugged"] = f"input_boolean.car_plugged_{tag}"
    ha_core.ws("input_select/create", name=f"mode {tag}", options=["Self consumption", "Hold", "Charge", "Discharge"])
    ids["mode"] = f"input_select.mode_{tag}"
    ids["charge_power"] = ha_core.add_number(f"charge w {tag}", "W", 0, 20000, initial=0)
    ids["discharge_power"] = ha_core.add_number(f"discharge w {tag}", "W", 0, 20000, initial=0)
    ha_core.ws("input_boolean/create", name=f"water {tag}")
    ids["water_heater"] = f"input_boolean.water_{tag}"
    _wait(lambda: ha_core.state(ids["water_heater"]) and ha_core.state(ids["mode"]) and ha_core.state(ids["ev_plugged"]))
    return ids


def ha_site(tmp_path: Path, ha_core: HACore, home: dict[str, str], token: str, **extra: Any) -> Any:
    from conftest import make_site  # here, not at the top: conftest imports this module
    entities: dict[str, Any] = {role: home[role] for role in ("battery_soc", "pv_power", "battery_power",
                                                              "import_energy", "water_heater_temperature",
                                                              "ev_plugged")}
    entities["grid_power"] = {"entity_id": home["grid_power"], "sign": -1}
    controls = {name: home[name] for name in ("mode", "charge_power", "discharge_power", "water_heater")}
    return make_site(
        tmp_path, {"embedded": False, "host": "127.0.0.1", "port": 1883,
                   "discovery_prefix": ha_core.discovery_prefix},
        homeassistant={"url": ha_core.url, "token": token, "entities": entities, "controls": controls,
                       "min_write_interval_s": 0, "profile": "generic",
                       **{k: v for k, v in extra.items() if k != "executor"}},
        executor={"backend": "homeassistant", "tick_s": 1, **extra.get("executor", {})},
        water_heaters=[{"power_kw": 3, "daily_min_kwh": 0}],
    )


def _wait(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.1)


@contextmanager
def discovering_executor(site: Any, ha_core: HACore) -> Iterator[tuple[Any, str]]:
    """An executor service of ``site`` connected to the test Mosquitto (its HA discovery published),
    and the discovery node id its entities carry; afterwards every retained message of the site and
    of this core's discovery prefix is cleared (a real HA on the broker would show them forever)."""
    from services.executor.service import ExecutorService

    executor = ExecutorService(site)
    try:
        executor.start()
        assert executor.mqtt.wait_connected(10)
        yield executor, f"darkstar_{site.site_id.replace('-', '_')}"
    finally:
        executor.stop()
        retained_cleanup([f"{ha_core.discovery_prefix}/#", f"{site.mqtt.base_topic}/{site.site_id}/#"])


def retained_cleanup(prefix_filters: list[str]) -> None:
    """Clear every retained message under the given topic filters on the test Mosquitto."""
    import paho.mqtt.client as mqtt

    found: list[str] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cleanup-{uuid.uuid4().hex[:6]}")
    client.on_message = lambda _c, _u, msg: found.append(msg.topic) if msg.retain and msg.payload else None
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    for f in prefix_filters:
        client.subscribe(f, qos=1)
    time.sleep(1.0)  # retained messages arrive right after the subscription
    for t in set(found):
        client.publish(t, b"", qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
