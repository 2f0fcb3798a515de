"""The distributed deployment holds together: the compose files validate, every service runs from
the one image with the right command and settings, the MQTT ACL lets each service write only its
own topics (checked by parsing it and against a real Mosquitto), and no real secret is committed.

docker-compose (Debian's 1.29) validates without a Docker engine. Without it these tests skip on
a developer machine and fail under CI=true, where .ci/run installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared import auth
from shared.config import HTTPConfig, load_site_config, yaml_load
from shared.contracts import TOPICS, topic

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_MARIADB = ROOT / "docker-compose.mariadb.yml"
MOSQUITTO_DIR = ROOT / "deploy" / "mosquitto"
ACL_FILE = MOSQUITTO_DIR / "acl"
SITE = ROOT / "examples" / "se4-home.yaml"

# A service is a folder that runs as `python -m services.<name>` (services/demo/ is the demo's
# simulated site, run inside `darkstar up --demo`, not a container of its own).
SERVICES = sorted(
    p.name for p in (ROOT / "services").iterdir() if p.is_dir() and (p / "__main__.py").exists()
)
MQTT_USERS = [*SERVICES, "homeassistant"]
UV_VERSION = "0.13.8"
SITE_ID = "se4-home"

# Who may publish what is shared/auth.py's rule (the same one the embedded broker enforces);
# the compose ACL must say exactly that for the service users and the default Home Assistant user.


def _principal(user: str) -> auth.Principal:
    if user in SERVICES:
        return auth.service_principal(user)
    return auth.Principal(user, frozenset(auth.HOME_ASSISTANT_GRANTS))


# --------------------------------------------------------------------------- docker-compose


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(
                "docker-compose is missing under CI (apt-get install -y docker-compose; .ci/run does it)"
            )
        pytest.skip("docker-compose not installed (apt-get install -y docker-compose)")
    return exe


def compose_config(tmp_path: Path, *files: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose model after interpolation and merging, as docker-compose itself resolves it."""
    exe = _docker_compose()
    # An empty env file: a developer's own .env must not change what the tests see.
    env_file = tmp_path / f"empty-{uuid.uuid4().hex[:6]}.env"
    env_file.write_text("")
    args = [exe, "--env-file", str(env_file)]
    for f in files:
        args += ["-f", str(f)]
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})}
    proc = subprocess.run(
        [*args, "config"], cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stderr}"
    return yaml_load(proc.stdout)


@pytest.fixture(scope="module")
def compose_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose")


@pytest.fixture(scope="module")
def compose(compose_tmp: Path) -> dict[str, Any]:
    return compose_config(compose_tmp, COMPOSE)


@pytest.fixture(scope="module")
def compose_mariadb(compose_tmp: Path) -> dict[str, Any]:
    return compose_config(compose_tmp, COMPOSE, COMPOSE_MARIADB)


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, COMPOSE_MARIADB]], ids=["timescaledb", "mariadb"])
def test_compose_files_validate_with_docker_compose(files: list[Path], tmp_path: Path):
    exe = _docker_compose()
    (tmp_path / "empty.env").write_text("")
    args = [exe, "--env-file", str(tmp_path / "empty.env")]
    for f in files:
        args += ["-f", str(f)]
    proc = subprocess.run(
        [*args, "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr  # e.g. an unset variable without a default


def test_every_service_folder_runs_in_its_own_container_from_the_one_image(compose: dict[str, Any]):
    assert {"forecaster", "planner", "executor", "trainer", "oracle"} <= set(SERVICES)
    services = compose["services"]
    image = services["migrate"]["image"]
    ports = HTTPConfig().ports
    port_keys = {"web": "dashboard"}  # the web app serves on the dashboard port
    for name in SERVICES:
        assert name in services, f"docker-compose.yml has no service for services/{name}/"
        svc = services[name]
        assert svc["command"] == ["python", "-m", f"services.{name}"]
        assert (ROOT / "services" / name / "__main__.py").exists(), (
            f"python -m services.{name} needs a __main__"
        )
        assert svc["image"] == image, f"{name} must run the same image as the others"
        env = svc["environment"]
        assert env["DARKSTAR__MQTT__USERNAME"] == name
        # The healthcheck probes the port the service actually listens on, and that port is published.
        port = ports[port_keys.get(name, name)]
        assert int(env["DARKSTAR_HEALTH_PORT"]) == port
        assert any(str(p.get("target")) == str(port) for p in _ports(svc)), (
            f"{name}: port not published"
        )
        assert svc["depends_on"] == {
            "mosquitto": {"condition": "service_healthy"},
            "db": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }
        assert svc["restart"] == "unless-stopped"
        assert svc["user"] == "10001:10001"
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])  # ready, not merely alive
    # The forecaster loads what the trainer approves: one models volume, mounted where both look.
    def models_mount(name: str) -> set[str]:
        return {str(v) for v in services[name]["volumes"] if "/app/var/models" in str(v)}

    assert models_mount("trainer") == models_mount("forecaster") and models_mount("trainer")
    assert services["migrate"]["command"] == ["darkstar", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for infra in ("mosquitto", "db"):
        assert services[infra]["healthcheck"]["test"], f"{infra} needs a healthcheck for depends_on"
    assert services["db"]["image"].startswith("timescale/timescaledb:")


def _ports(svc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in svc.get("ports", []):
        if isinstance(p, dict):
            out.append(p)
        else:  # short syntax "ip:host_port:target/tcp"
            out.append({"target": str(p).rsplit(":", 1)[-1].split("/")[0]})
    return out


@pytest.mark.parametrize("variant", ["timescaledb", "mariadb"])
def test_each_service_environment_yields_a_valid_site_config(variant: str, request: pytest.FixtureRequest):
    """What compose hands a container, applied to a real site file, points at the compose broker and DB."""
    model = request.getfixturevalue("compose" if variant == "timescaledb" else "compose_mariadb")
    services = model["services"]
    broker_env = services["mosquitto"]["environment"]
    for name in [*SERVICES, "migrate"]:
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        site = load_site_config(SITE, environ=env)
        url = site.database.url.get_secret_value()
        if variant == "timescaledb":
            assert url.startswith("postgresql+psycopg://darkstar:") and "@db:5432/darkstar" in url
        else:
            assert url.startswith("mysql+pymysql://darkstar:") and "@db:3306/darkstar" in url
        assert env["DARKSTAR_SITE"] == "/etc/darkstar/site.yaml"
        if name == "migrate":
            continue
        assert site.mqtt.embedded is False and site.mqtt.host == "mosquitto" and site.mqtt.port == 1883
        assert site.mqtt.username == name
        # The broker builds its password file from the same value the service logs in with.
        assert site.mqtt.password.get_secret_value() == broker_env[f"MQTT_PASSWORD_{name.upper()}"]
        assert site.http.host == "0.0.0.0"
        assert site.http.admin_token is not None
    # The services log in to the database with the password the database was initialised with.
    db_env = services["db"]["environment"]
    url = services["planner"]["environment"]["DARKSTAR__DATABASE__URL"]
    if variant == "mariadb":
        assert services["db"]["image"].startswith("mariadb:")
        assert db_env["MARIADB_USER"] == "darkstar" and db_env["MARIADB_DATABASE"] == "darkstar"
        assert f"darkstar:{db_env['MARIADB_PASSWORD']}@" in url
    else:
        assert db_env["POSTGRES_USER"] == "darkstar" and db_env["POSTGRES_DB"] == "darkstar"
        assert f"darkstar:{db_env['POSTGRES_PASSWORD']}@" in url


def test_secrets_set_in_the_environment_reach_broker_and_services(compose_tmp: Path):
    env = {f"MQTT_PASSWORD_{u.upper()}": f"s3cret-{u}-{uuid.uuid4().hex[:6]}" for u in MQTT_USERS}
    env |= {"POSTGRES_PASSWORD": "pg-s3cret", "DARKSTAR_ADMIN_TOKEN": "tok-s3cret"}
    model = compose_config(compose_tmp, COMPOSE, env=env)
    services = model["services"]
    for u in MQTT_USERS:
        assert (
            services["mosquitto"]["environment"][f"MQTT_PASSWORD_{u.upper()}"]
            == env[f"MQTT_PASSWORD_{u.upper()}"]
        )
    for name in SERVICES:
        svc_env = services[name]["environment"]
        assert svc_env["DARKSTAR__MQTT__PASSWORD"] == env[f"MQTT_PASSWORD_{name.upper()}"]
        assert svc_env["DARKSTAR__HTTP__ADMIN_TOKEN"] == "tok-s3cret"
        assert ":pg-s3cret@db:" in svc_env["DARKSTAR__DATABASE__URL"]
        # A service gets its own MQTT password only, never another user's.
        others = {
            v
            for k, v in env.items()
            if k.startswith("MQTT_PASSWORD_") and k != f"MQTT_PASSWORD_{name.upper()}"
        }
        assert not others & {str(v) for v in svc_env.values()}
    assert services["db"]["environment"]["POSTGRES_PASSWORD"] == "pg-s3cret"
    assert "dev-insecure" not in repr(model)


# --------------------------------------------------------------------------- secrets in the files

_SECRET_KEY = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)
_INTERPOLATED = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(?::-(?:dev-insecure-[A-Za-z0-9-]*)?)?\}$")
_URL_PASSWORD = re.compile(r"://[^:/@\s]+:(?P<password>[^@\s]+)@")


def plaintext_secrets(compose_text: str) -> list[str]:
    """Secrets in a compose file other than an ${ENV} interpolation with, at most, a dev-insecure default."""
    problems: list[str] = []

    def check(where: str, key: str, value: Any) -> None:
        text = "" if value is None else str(value)
        if _SECRET_KEY.search(key) and not key.endswith("_FILE") and text and not _INTERPOLATED.match(text):
            problems.append(f"{where}.{key}")
        for m in _URL_PASSWORD.finditer(text):
            if not _INTERPOLATED.match(m.group("password")):
                problems.append(f"{where}.{key} (password in URL)")

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, (dict, list)):
                    walk(v, f"{where}.{k}")
                else:
                    check(where, str(k), v)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, str) and "=" in item:  # environment as a list of KEY=VALUE
                    key, _, value = item.partition("=")
                    check(where, key, value)
                else:
                    walk(item, f"{where}[{i}]")

    walk(yaml_load(compose_text), "")
    return problems


def test_the_secret_check_catches_hard_coded_passwords():
    bad = (
        "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: hunter2\n"
        "  app:\n    environment:\n      - DARKSTAR__DATABASE__URL=postgresql+psycopg://u:hunter2@db/x\n"
        "      - TOKEN=${TOKEN:-realtoken}\n"
    )
    assert len(plaintext_secrets(bad)) == 3
    ok = "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: ${PG_PW:-dev-insecure-pg}\n"
    assert plaintext_secrets(ok) == []


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_MARIADB], ids=lambda p: p.name)
def test_compose_files_hold_no_plaintext_secret(path: Path):
    assert plaintext_secrets(path.read_text(encoding="utf-8")) == []


# --------------------------------------------------------------------------- the ACL, parsed


@dataclass(frozen=True)
class AclRule:
    access: str  # read | write | readwrite | deny
    pattern: str


def parse_acl(text: str) -> dict[str, list[AclRule]]:
    """Mosquitto acl_file: ``user NAME`` starts a block, ``topic [read|write|readwrite|deny] PATTERN``."""
    rules: dict[str, list[AclRule]] = {}
    user: str | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "user":
            user = rest.strip()
            rules.setdefault(user, [])
        elif word == "topic":
            parts = rest.split()
            access, pattern = (parts[0], parts[1]) if len(parts) == 2 else ("readwrite", parts[0])
            assert access in {"read", "write", "readwrite", "deny"}, f"acl line {lineno}: {access!r}"
            assert user is not None, f"acl line {lineno}: anonymous rules are not used here"
            rules[user].append(AclRule(access, pattern))
        else:  # `pattern` lines apply to everyone and would escape this per-user check
            raise AssertionError(f"acl line {lineno}: unexpected {word!r}")
    return rules


def topic_matches(pattern: str, name: str) -> bool:
    """MQTT filter matching: + one level, # the rest (and the parent); $-topics only match explicitly."""
    pat, top = pattern.split("/"), name.split("/")
    if top[0].startswith("$") and pat[0] != top[0]:
        return False
    for i, p in enumerate(pat):
        if p == "#":
            return True
        if i >= len(top) or (p != "+" and p != top[i]):
            return False
    return len(pat) == len(top)


def acl_allows(rules: dict[str, list[AclRule]], user: str, access: str, name: str) -> bool:
    matching = [r for r in rules.get(user, []) if topic_matches(r.pattern, name)]
    if any(r.access == "deny" for r in matching):
        return False
    return any(r.access in (access, "readwrite") for r in matching)


@pytest.fixture(scope="module")
def acl() -> dict[str, list[AclRule]]:
    return parse_acl(ACL_FILE.read_text(encoding="utf-8"))


def _concrete_topics() -> list[tuple[str, str, dict[str, str]]]:
    """(kind, topic, parts) for every contract topic, every service slot filled with each service."""
    out = []
    for kind, spec in TOPICS.items():
        if "{service}" in spec.suffix:
            for svc in SERVICES:
                parts = {"service": svc, "action": "replan", "name": "away"}
                out.append(
                    (
                        kind,
                        topic(
                            "darkstar",
                            SITE_ID,
                            kind,
                            **{k: v for k, v in parts.items() if "{" + k + "}" in spec.suffix},
                        ),
                        parts,
                    )
                )
        else:
            parts = {"name": "away"} if "{name}" in spec.suffix else {}
            out.append((kind, topic("darkstar", SITE_ID, kind, **parts), parts))
    return out


def _may_publish(user: str, name: str) -> bool:
    return auth.may_publish(_principal(user), "darkstar", "homeassistant", name)


def test_every_contract_topic_has_an_owner():
    orphans = {kind for kind, name, _ in _concrete_topics() if not any(_may_publish(u, name) for u in MQTT_USERS)}
    assert not orphans, "a new topic in shared/contracts.py needs an owner in shared/auth.py and deploy/mosquitto/acl"


@pytest.mark.parametrize("user", MQTT_USERS)
def test_acl_lets_each_user_write_exactly_its_own_topics(acl: dict[str, list[AclRule]], user: str):
    wrong = []
    for kind, name, parts in _concrete_topics():
        expected = _may_publish(user, name)
        if acl_allows(acl, user, "write", name) != expected:
            wrong.append(f"{name}: {'should' if expected else 'must not'} be writable")
    assert not wrong, f"user {user}:\n  " + "\n  ".join(wrong)


def test_acl_spot_checks(acl: dict[str, list[AclRule]]):
    # The planner plans; it cannot fake the inverter's telemetry, prices or another site's executor state.
    assert acl_allows(acl, "planner", "write", "darkstar/se4-home/plan")
    assert not acl_allows(acl, "planner", "write", "darkstar/se4-home/telemetry")
    assert not acl_allows(acl, "planner", "write", "darkstar/other-site/executor/state")
    assert not acl_allows(acl, "forecaster", "write", "darkstar/se4-home/plan")
    # Commands come from Home Assistant; services only answer their own.
    assert acl_allows(acl, "homeassistant", "write", "darkstar/se4-home/cmd/executor/force_charge")
    assert not acl_allows(acl, "homeassistant", "write", "darkstar/se4-home/cmd/executor/force_charge/result")
    assert not acl_allows(acl, "planner", "write", "darkstar/se4-home/cmd/executor/force_charge")
    assert acl_allows(acl, "executor", "write", "darkstar/se4-home/cmd/executor/force_charge/result")
    # Nobody but its owner may publish an `offline` on a service's status (the last will).
    assert not acl_allows(acl, "homeassistant", "write", "darkstar/se4-home/executor/status")
    # Every service can announce its Home Assistant entities, and hears HA come back online.
    for svc in SERVICES:
        assert acl_allows(acl, svc, "write", f"homeassistant/sensor/darkstar_{SITE_ID}/{svc}_status/config")
        assert acl_allows(acl, svc, "read", "homeassistant/status")
        assert not acl_allows(acl, svc, "write", "homeassistant/status")
        for _, name, _ in _concrete_topics():
            assert acl_allows(acl, svc, "read", name), f"{svc} cannot read {name}"
    # The healthcheck login can do nothing but its probe.
    assert not any(acl_allows(acl, "healthcheck", "write", name) for _, name, _ in _concrete_topics())


def test_acl_users_are_the_users_the_broker_gets_passwords_for(
    acl: dict[str, list[AclRule]], compose: dict[str, Any]
):
    entrypoint = (MOSQUITTO_DIR / "entrypoint.sh").read_text(encoding="utf-8")
    default_users = re.search(r"DARKSTAR_MQTT_USERS:-([a-z ]+)\}", entrypoint).group(1).split()
    assert sorted(default_users) == sorted(MQTT_USERS)
    assert set(acl) == {*MQTT_USERS, "healthcheck"}
    broker_env = compose["services"]["mosquitto"]["environment"]
    assert {k for k in broker_env if k.startswith("MQTT_PASSWORD_")} == {
        f"MQTT_PASSWORD_{u.upper()}" for u in MQTT_USERS
    }


# --------------------------------------------------------------------------- the ACL, on a real Mosquitto


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Broker:
    port: int
    passwords: dict[str, str]
    health_file: Path


@pytest.fixture(scope="module")
def compose_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """deploy/mosquitto's entrypoint + mosquitto.conf + acl, on a free loopback port."""
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if exe is None or shutil.which("mosquitto_passwd") is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto and mosquitto_passwd are needed (apt-get install mosquitto)")
        pytest.skip("mosquitto not installed")
    tmp = tmp_path_factory.mktemp("mosquitto")
    port = _free_port()
    conf = (MOSQUITTO_DIR / "mosquitto.conf").read_text(encoding="utf-8")
    # Only the machine-specific lines change; the auth settings are the container's own.
    replacements = {
        r"^listener 1883$": f"listener {port} 127.0.0.1",
        r"^password_file .*$": f"password_file {tmp}/passwd",
        r"^acl_file .*$": f"acl_file {ACL_FILE}",
        r"^persistence true$": "persistence false",
        r"^persistence_location .*$": "",
        r"^log_dest stdout$": f"log_dest file {tmp}/mosquitto.log",
    }
    for pattern, new in replacements.items():
        conf, n = re.subn(pattern, new, conf, flags=re.MULTILINE)
        assert n == 1, f"mosquitto.conf: expected one line matching {pattern}"
    if os.geteuid() == 0:
        conf += (
            "\nuser root\n"  # the test's temp dir is private to root; in the container it drops to mosquitto
        )
    (tmp / "mosquitto.conf").write_text(conf)
    passwords = {u: f"pw-{u}-{uuid.uuid4().hex[:8]}" for u in MQTT_USERS}
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin",
        "MOSQUITTO_PASSWD_FILE": str(tmp / "passwd"),
        "MOSQUITTO_HEALTH_FILE": str(tmp / "health.pw"),
        "MOSQUITTO_RUN_USER": "",
        **{f"MQTT_PASSWORD_{u.upper()}": pw for u, pw in passwords.items()},
    }
    proc = subprocess.Popen(
        ["/bin/sh", str(MOSQUITTO_DIR / "entrypoint.sh"), exe, "-c", str(tmp / "mosquitto.conf")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    log = (tmp / "mosquitto.log").read_text() if (tmp / "mosquitto.log").exists() else ""
                    pytest.fail(f"mosquitto via entrypoint.sh did not start:\n{out}\n{log}")
                time.sleep(0.05)
        yield Broker(port, passwords, tmp / "health.pw")
    finally:
        proc.terminate()
        proc.wait(10)


def test_entrypoint_refuses_to_start_without_a_password(tmp_path: Path):
    if shutil.which("mosquitto_passwd") is None and not os.environ.get("CI"):
        pytest.skip("mosquitto_passwd not installed")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MOSQUITTO_PASSWD_FILE": str(tmp_path / "passwd"),
        "MOSQUITTO_HEALTH_FILE": str(tmp_path / "h.pw"),
        "MOSQUITTO_RUN_USER": "",
        **{f"MQTT_PASSWORD_{u.upper()}": "x" for u in MQTT_USERS if u != "planner"},
    }
    proc = subprocess.run(
        ["/bin/sh", str(MOSQUITTO_DIR / "entrypoint.sh"), "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "MQTT_PASSWORD_PLANNER" in proc.stderr
    assert not (tmp_path / "passwd").exists()


def test_password_file_holds_hashes_not_passwords(compose_mosquitto: Broker):
    text = (compose_mosquitto.health_file.parent / "passwd").read_text()
    assert sorted(line.split(":", 1)[0] for line in text.splitlines()) == sorted([*MQTT_USERS, "healthcheck"])
    for pw in compose_mosquitto.passwords.values():
        assert pw not in text
    assert oct((compose_mosquitto.health_file.parent / "passwd").stat().st_mode & 0o777) == "0o600"


def test_container_healthcheck_script_passes_against_the_broker(compose_mosquitto: Broker):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MOSQUITTO_HEALTH_FILE": str(compose_mosquitto.health_file),
        "MOSQUITTO_HEALTH_PORT": str(compose_mosquitto.port),
    }
    proc = subprocess.run(
        ["/bin/sh", str(MOSQUITTO_DIR / "healthcheck.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _client(broker: Broker, user: str | None, password: str | None = None):
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{uuid.uuid4().hex[:6]}", protocol=paho.MQTTv5
    )
    if user is not None:
        client.username_pw_set(user, broker.passwords.get(user) if password is None else password)
    result: dict[str, Any] = {}
    client.on_connect = lambda c, u, f, rc, p: result.setdefault("rc", rc)
    client.connect("127.0.0.1", broker.port, keepalive=10)
    client.loop_start()
    deadline = time.monotonic() + 10
    while "rc" not in result and time.monotonic() < deadline:
        time.sleep(0.02)
    client.connect_result = result.get("rc")  # type: ignore[attr-defined]
    return client


def test_real_broker_enforces_logins_and_the_acl(compose_mosquitto: Broker):
    """Home Assistant (reads all) sees the planner's plan and the executor's telemetry, never the
    planner's forged telemetry; a wrong password or no login is refused."""
    received: list[tuple[str, bytes]] = []
    ha = _client(compose_mosquitto, "homeassistant")
    planner = _client(compose_mosquitto, "planner")
    executor = _client(compose_mosquitto, "executor")
    bad = _client(compose_mosquitto, "planner", password="wrong")
    anonymous = _client(compose_mosquitto, None)
    try:
        assert not ha.connect_result.is_failure and not planner.connect_result.is_failure
        assert bad.connect_result is None or bad.connect_result.is_failure
        assert anonymous.connect_result is None or anonymous.connect_result.is_failure
        subscribed: dict[str, Any] = {}
        ha.on_message = lambda c, u, m: received.append((m.topic, m.payload))
        ha.on_subscribe = lambda c, u, mid, codes, p: subscribed.setdefault("codes", codes)
        ha.subscribe(f"darkstar/{SITE_ID}/#", qos=1)
        deadline = time.monotonic() + 10
        while "codes" not in subscribed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert subscribed and not subscribed["codes"][0].is_failure
        forged = planner.publish(f"darkstar/{SITE_ID}/telemetry", b"forged-by-planner", qos=1)
        plan = planner.publish(f"darkstar/{SITE_ID}/plan", b"plan-by-planner", qos=1)
        real = executor.publish(f"darkstar/{SITE_ID}/telemetry", b"telemetry-by-executor", qos=1)
        for info in (forged, plan, real):
            info.wait_for_publish(10)
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # would a forged message still arrive?
        assert sorted(received) == sorted(
            [
                (f"darkstar/{SITE_ID}/plan", b"plan-by-planner"),
                (f"darkstar/{SITE_ID}/telemetry", b"telemetry-by-executor"),
            ]
        )
    finally:
        for c in (ha, planner, executor, bad, anonymous):
            c.disconnect()  # before loop_stop: a refused client's loop would sit in its reconnect delay
            c.loop_stop()


# --------------------------------------------------------------------------- image, CI and README


def _dockerfile_stages() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    stages = re.split(r"^FROM .* AS (\w+)\s*$", text, flags=re.MULTILINE)
    return dict(zip(stages[1::2], stages[2::2], strict=True))


def test_image_installs_from_the_lock_file_and_runs_as_non_root():
    stages = _dockerfile_stages()
    builder, runtime = stages["builder"], stages["runtime"]
    assert f"ARG UV_VERSION={UV_VERSION}" in builder and '"uv==${UV_VERSION}"' in builder
    assert builder.count("uv sync --frozen") == 2
    users = re.findall(r"^USER (\S+)", runtime, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert "/readyz" in runtime and "HEALTHCHECK" in runtime


def _expand_extras(extras: list[str], defined: dict[str, list[str]]) -> set[str]:
    """``all`` -> every extra it names through ``darkstar[...]`` references, recursively."""
    out: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop()
        if extra in out:
            continue
        out.add(extra)
        for req in defined.get(extra, []):
            if req.startswith("darkstar["):
                todo.extend(req[len("darkstar["):-1].split(","))
    return out


def test_image_default_extras_exist_and_cover_every_service(compose: dict[str, Any]):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    optional = pyproject["project"]["optional-dependencies"]
    defined = set(optional)
    docker_default = (
        re.search(r"^ARG EXTRAS=(\S+)", _dockerfile_stages()["builder"], re.MULTILINE).group(1).split(",")
    )
    compose_default = compose["services"]["planner"]["build"]["args"]["EXTRAS"].split(",")
    for extras in (docker_default, compose_default):
        assert set(extras) <= defined, f"unknown extras {set(extras) - defined}"
        # every runtime dependency: each service's extra, both drivers, the plots, the web app
        assert {*SERVICES, "postgres", "mysql", "plot", "embedded"} <= _expand_extras(extras, optional)
        assert "dev" not in _expand_extras(extras, optional)


def test_dockerignore_keeps_what_the_image_needs():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not ignored & {"shared", "services", "examples", "pyproject.toml", "uv.lock", "README.md"}
    assert {".git", ".venv", ".env"} <= ignored


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = re.search(r"^TEST_COMMAND='([^']+)'$", ci, flags=re.MULTILINE).group(1)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL)
    assert any(line.strip() == command for block in blocks for line in block.splitlines()), (
        f"README has no ```bash block with the line: {command}"
    )
    assert f"uv=={UV_VERSION}" in command and "--frozen" in command
    assert "set -euo pipefail" in ci and "== 5" in ci  # pytest's "no tests collected" fails the run
    proc = subprocess.run(
        ["bash", "-n", str(ROOT / ".ci" / "run")], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr


def test_planner_replicas_share_work_through_an_mqtt5_shared_subscription(compose_mosquitto: Broker):
    """Fleet mode: two planner logins in $share/planners each get some sites' prices, none twice."""
    got: dict[str, list[str]] = {"a": [], "b": []}
    replicas = {}
    for name in got:
        client = _client(compose_mosquitto, "planner")
        assert not client.connect_result.is_failure
        done: dict[str, Any] = {}
        client.on_subscribe = lambda c, u, mid, codes, p, done=done: done.setdefault("codes", codes)
        client.on_message = lambda c, u, m, name=name: got[name].append(m.topic)
        client.subscribe("$share/planners/darkstar/+/prices", qos=1)
        deadline = time.monotonic() + 10
        while "codes" not in done and time.monotonic() < deadline:
            time.sleep(0.02)
        assert done and not done["codes"][0].is_failure, "the ACL must allow the shared subscription"
        replicas[name] = client
    forecaster = _client(compose_mosquitto, "forecaster")
    sites = [f"fleet-{i}-{uuid.uuid4().hex[:4]}" for i in range(6)]
    try:
        for site in sites:  # not retained: each message goes to exactly one replica
            forecaster.publish(f"darkstar/{site}/prices", b"{}", qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 10
        while len(got["a"]) + len(got["b"]) < len(sites) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        delivered = got["a"] + got["b"]
        assert sorted(delivered) == sorted(f"darkstar/{s}/prices" for s in sites)
        assert got["a"] and got["b"], "both replicas should get a share"
    finally:
        for c in (*replicas.values(), forecaster):
            c.disconnect()
            c.loop_stop()


def test_migrate_command_brings_the_database_to_head_with_the_compose_environment(
    compose: dict[str, Any], tmp_path: Path
):
    """The `migrate` one-shot runs `darkstar db upgrade` with only what compose gives it (no --site)."""
    import importlib.util

    if importlib.util.find_spec("shared.storage.cli") is None:
        pytest.skip(
            "`darkstar db` (shared/storage/cli.py) is not available yet; compose's migrate service needs it"
        )
    from shared.storage.db import current_revision, head_revision

    svc = compose["services"]["migrate"]
    env = {k: str(v) for k, v in svc["environment"].items()}
    db_url = f"sqlite:///{tmp_path / 'darkstar.db'}"
    env |= {"DARKSTAR_SITE": str(SITE), "DARKSTAR__DATABASE__URL": db_url, "PATH": os.environ.get("PATH", "")}
    command = svc["command"]
    assert command[0] == "darkstar"
    # `darkstar` is the console script of services.cli; run it with this interpreter.
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", *command[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert current_revision(db_url) == head_revision()


def _mosquitto_hash_matches(line: str, password: str) -> bool:
    """Check one password-file line (`user:$7$iterations$salt$hash`, PBKDF2-SHA512) against a password."""
    import base64
    import hashlib

    _, encoded = line.split(":", 1)
    _, kind, iterations, salt_b64, hash_b64 = encoded.split("$")
    assert kind == "7", "mosquitto_passwd's sha512-pbkdf2 format expected"
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt_b64), int(iterations))
    return digest == base64.b64decode(hash_b64)


def test_entrypoint_reads_docker_secret_files(tmp_path: Path):
    if shutil.which("mosquitto_passwd") is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto_passwd is needed (apt-get install mosquitto)")
        pytest.skip("mosquitto_passwd not installed")
    secret = tmp_path / "planner_password"
    secret.write_text("from-a-secret-file")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MOSQUITTO_PASSWD_FILE": str(tmp_path / "run" / "passwd"),
        "MOSQUITTO_HEALTH_FILE": str(tmp_path / "run" / "h.pw"),
        "MOSQUITTO_RUN_USER": "",
        **{f"MQTT_PASSWORD_{u.upper()}": f"env-{u}" for u in MQTT_USERS if u != "planner"},
        "MQTT_PASSWORD_PLANNER_FILE": str(secret),
    }
    proc = subprocess.run(
        ["/bin/sh", str(MOSQUITTO_DIR / "entrypoint.sh"), "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    lines = {line.split(":", 1)[0]: line for line in (tmp_path / "run" / "passwd").read_text().splitlines()}
    assert _mosquitto_hash_matches(lines["planner"], "from-a-secret-file")
    assert not _mosquitto_hash_matches(lines["planner"], "env-planner")
    assert _mosquitto_hash_matches(lines["executor"], "env-executor")
