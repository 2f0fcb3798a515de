"""Shared test fixtures: real brokers (embedded amqtt, the machine's Mosquitto, a private Mosquitto)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shared.broker import EmbeddedBroker, port_is_open
from shared.config import SiteConfig, site_config_from_dict

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DATA = ROOT / "examples" / "data"
MOSQUITTO = ("127.0.0.1", 1883)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail with a clear message."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


@contextmanager
def running(service: Any, *closables: Any) -> Iterator[Any]:
    """Start ``service``, wait for its MQTT session; on exit stop it, then close ``closables`` in order."""
    service.start()
    try:
        assert service.mqtt.wait_connected(10)
        yield service
    finally:
        service.stop()
        for c in closables:
            c.close()


def make_site(tmp_path: Path, mqtt: dict[str, Any], **overrides: Any) -> SiteConfig:
    """A small site with its own site_id (isolates tests on a shared broker) and its own SQLite file."""
    data: dict[str, Any] = {
        "site_id": f"t-{uuid.uuid4().hex[:10]}",
        "name": "test home",
        "location": {"latitude": 55.4, "longitude": 13.2, "timezone": "Europe/Stockholm"},
        "battery": {"capacity_kwh": 10, "max_charge_kw": 5, "max_discharge_kw": 5},
        "pv": {"arrays": [{"kwp": 5}]},
        "mqtt": {"credentials_file": str(tmp_path / "mqtt-credentials.json"), **mqtt},
        "database": {"url": f"sqlite:///{tmp_path / 'darkstar.db'}"},
        "http": {"admin_token": "test-admin-token"},
    }
    data.update(overrides)
    return site_config_from_dict(data, environ={})


@pytest.fixture(scope="session")
def se4() -> tuple[SiteConfig, Any]:
    """The SE4 example site and its recorded data on the 15-min grid."""
    from shared.config import load_site_config
    from shared.sitedata import load_site_data

    return (load_site_config(ROOT / "examples" / "se4-home.yaml", environ={}),
            load_site_data(EXAMPLE_DATA / "se4_home_2025-07_2025-10.csv.gz").frame)


@pytest.fixture(scope="session")
def citylearn() -> tuple[SiteConfig, Any]:
    """The CityLearn example site (home 1) and its recorded data."""
    from shared.config import load_site_config
    from shared.sitedata import load_site_data

    return (load_site_config(ROOT / "examples" / "citylearn-home.yaml", environ={}),
            load_site_data(EXAMPLE_DATA / "citylearn_building_1.csv.gz").frame)


# The test harness logs in to the embedded broker as a user granted everything (it plays Home
# Assistant, the planner, a forger...); services log in with their generated credentials.
TESTER = ("tester", "tester-password-not-secret")


def embedded_mqtt(workdir: Path, port: int | None = None) -> dict[str, Any]:
    """MQTT settings of an embedded broker on a free port with its credentials file under ``workdir``."""
    return {"embedded": True, "host": "127.0.0.1", "port": port or free_port(),
            "credentials_file": str(workdir / "mqtt-credentials.json")}


def start_embedded_broker(mqtt: dict[str, Any], users: list[dict[str, Any]] | None = None) -> EmbeddedBroker:
    from shared.config import MQTTConfig, UserConfig

    tester = {"name": TESTER[0], "password": TESTER[1], "grants": ["*"]}
    broker = EmbeddedBroker(MQTTConfig(**mqtt), [UserConfig(**u) for u in [tester, *(users or [])]])
    broker.mqtt = mqtt  # type: ignore[attr-defined]
    broker.start()
    return broker


@pytest.fixture
def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    broker = start_embedded_broker(embedded_mqtt(tmp_path_factory.mktemp("bus")))
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto() -> dict[str, Any]:
    """The machine's Mosquitto on 1883 (CI starts it); a missing broker is a failure, not a skip."""
    if not port_is_open(*MOSQUITTO):
        pytest.fail("Mosquitto is not running on 127.0.0.1:1883 (start it: mosquitto -d -c /etc/mosquitto/mosquitto.conf)")
    return {"embedded": False, "host": MOSQUITTO[0], "port": MOSQUITTO[1]}


@pytest.fixture(params=["embedded", "mosquitto"])
def broker_mqtt(request: pytest.FixtureRequest) -> dict[str, Any]:
    """MQTT settings for a real broker: the embedded amqtt one, then the machine's Mosquitto."""
    if request.param == "embedded":
        return dict(request.getfixturevalue("embedded_broker").mqtt)
    return request.getfixturevalue("mosquitto")


class PrivateMosquitto:
    """A Mosquitto process of our own (with persistence) that a test may stop and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        # mosquitto started as root drops to user 'mosquitto', which must reach and write this folder
        workdir = Path(tempfile.mkdtemp(prefix="darkstar-mosquitto-"))
        workdir.chmod(0o777)
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nautosave_interval 1\nlog_dest file {workdir}/mosquitto.log\nlog_type error\nlog_type warning\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_is_open("127.0.0.1", self.port), 10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_mosquitto() -> Iterator[PrivateMosquitto]:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("the mosquitto binary is needed for the broker-restart test (apt-get install mosquitto)")
    broker = PrivateMosquitto()
    broker.start()
    yield broker
    broker.stop()
    shutil.rmtree(broker.workdir, ignore_errors=True)


# One real Home Assistant core per test session, shared by the HA test modules (tests/ha_core.py).
from ha_core import ha_core, home  # noqa: E402, F401 - session fixtures
