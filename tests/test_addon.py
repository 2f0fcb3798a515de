"""The Home Assistant add-on repository, checked against the Supervisor's add-on config schema.

The rules are those of home-assistant/supervisor ``supervisor/addons/validate.py``
(``_SCHEMA_ADDON_CONFIG``, ``SCHEMA_BUILD_CONFIG``, ``RE_SERVICE``, ``RE_VOLUME``), with the option
type grammar of ``supervisor/addons/options.py`` (``RE_SCHEMA_ELEMENT``) and the slug of
``supervisor/addons/const.py``, read at commit 00788af8 and written down here as tests: the
Supervisor drops an add-on whose config fails them from the store without an error in the UI.
It ignores unknown keys silently, so this test refuses them (a typo would be lost).
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.executor.modbus.profile import available_profiles
from shared.config import site_config_from_dict
from tests.conftest import ROOT

ADDON = ROOT / "darkstar"
ARCHES = {"aarch64", "amd64", "armhf", "armv7", "i386"}
STARTUP = {"initialize", "system", "services", "application", "once"}
BOOT = {"auto", "manual", "manual_only"}
SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")
SERVICE = re.compile(r"^(mqtt|mysql):(provide|want|need)$")
VOLUME = re.compile(r"^(data|config|ssl|addons|backup|share|media|homeassistant_config|all_addon_configs"
                    r"|addon_config)(:(rw|ro))?$")
BUILD_IMAGE = re.compile(r"^([a-zA-Z\-.:\d{}]+/)*?([\-\w{}]+)/([\-\w{}]+)(:[.\-\w{}]+)?$")
# option types: bool, email, url, port, device[(subsystem=x)], str/password[(min,max)],
# int/float[(min,max)], match(regex), list(a|b|c); a trailing "?" makes the option optional
NUM = r"-?\d*\.?\d+"
OPTION_TYPE = re.compile(
    r"^(bool|email|url|port|device(\(subsystem=[a-z]+\))?|(str|password)(\((\d+)?,(\d+)?\))?"
    rf"|int(\((-?\d+)?,(-?\d+)?\))?|float(\(({NUM})?,({NUM})?\))?|match\(.*\)|list\(.+\))\??$")
BOOLEAN_KEYS = {"init", "advanced", "ingress", "ingress_stream", "panel_admin", "host_network", "host_pid",
                "host_ipc", "host_uts", "host_dbus", "udev", "tmpfs", "apparmor", "full_access", "audio", "video",
                "gpio", "usb", "uart", "devicetree", "kernel_modules", "realtime", "hassio_api",
                "homeassistant_api", "stdin", "legacy", "docker_api", "auth_api", "journald"}
STRING_KEYS = {"name", "description", "url", "ingress_entry", "panel_icon", "panel_title", "webui", "watchdog",
               "backup_pre", "backup_post", "restore_pre", "restore_post", "image", "homeassistant"}
KNOWN_KEYS = BOOLEAN_KEYS | STRING_KEYS | {
    "version", "slug", "arch", "machine", "startup", "boot", "stage", "ports", "ports_description",
    "ingress_port", "devices", "map", "environment", "privileged", "hassio_role", "services", "discovery",
    "backup_exclude", "backup", "options", "schema", "ulimits", "timeout", "breaking_versions"}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load((ADDON / "config.yaml").read_text())


def test_addon_config_passes_the_supervisor_schema(config: dict[str, Any]):
    assert not set(config) - KNOWN_KEYS, f"keys the Supervisor does not know: {set(config) - KNOWN_KEYS}"
    for key in ("name", "version", "slug", "description", "arch"):
        assert config.get(key), f"required key {key} missing"
    assert SLUG.match(config["slug"]) and set(config["arch"]) <= ARCHES
    assert config.get("startup", "application") in STARTUP and config.get("boot", "auto") in BOOT
    for key in BOOLEAN_KEYS & set(config):
        assert isinstance(config[key], bool), f"{key} must be a boolean"
    for key in STRING_KEYS & set(config):
        assert isinstance(config[key], str), f"{key} must be a string"
    assert 1 <= int(config.get("ingress_port", 8099)) <= 65535
    assert 10 <= int(config.get("timeout", 10)) <= 300
    assert all(SERVICE.match(s) for s in config.get("services", []))
    assert all(isinstance(m, dict) or VOLUME.match(m) for m in config.get("map", []))
    assert config.get("backup", "hot") in {"hot", "cold"}
    for name, kind in config["schema"].items():
        assert isinstance(kind, str) and OPTION_TYPE.match(kind), f"schema.{name}: {kind!r} is no option type"


def test_addon_uses_home_assistants_mqtt_ingress_to_the_web_app_and_both_arches(config: dict[str, Any]):
    assert "mqtt:need" in config["services"] and config["hassio_api"] is True  # GET /services/mqtt
    assert config["ingress"] is True and config["ingress_port"] == 8080  # http.ports.dashboard: the web app
    assert {"amd64", "aarch64"} <= set(config["arch"])
    build = yaml.safe_load((ADDON / "build.yaml").read_text())
    assert set(build["build_from"]) == set(config["arch"])
    assert all(BUILD_IMAGE.match(image) for image in build["build_from"].values())
    assert all(isinstance(v, str) for v in build.get("args", {}).values())
    assert (ADDON / "DOCS.md").exists() and (ROOT / "repository.yaml").exists()
    repo = yaml.safe_load((ROOT / "repository.yaml").read_text())
    assert repo["name"] and repo["url"]


def test_addon_version_is_the_project_version(config: dict[str, Any]):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert config["version"] == project
    assert f"DARKSTAR_REF=v{project}" in (ADDON / "Dockerfile").read_text()


def test_default_options_fit_their_schema_and_make_a_valid_site(config: dict[str, Any]):
    options, schema = config["options"], config["schema"]
    required = {k for k, v in schema.items() if not v.endswith("?")}
    assert required <= set(options), f"options without a default: {required - set(options)}"
    choices = re.match(r"list\((.+)\)", schema["inverter_profile"]).group(1).split("|")
    assert sorted(choices) == available_profiles()  # every shipped profile, nothing else
    spec = importlib.util.spec_from_file_location("addon_run", ADDON / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    site = site_config_from_dict(run.site_from_options(options), source="add-on options", environ={})
    assert site.executor.shadow_mode is True  # nothing is written to an inverter until the user says so
    assert site.battery.capacity_kwh == options["battery_capacity_kwh"]


def test_settings_saved_in_the_addon_survive_a_restart_and_new_options_rewrite_the_file(config, tmp_path: Path):
    spec = importlib.util.spec_from_file_location("addon_run", ADDON / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    site, marker = tmp_path / "config" / "site.yaml", tmp_path / "data" / "site-from-options.json"
    marker.parent.mkdir()
    options = dict(config["options"])
    path, action = run.choose_site(options, site, marker)
    assert path == site and action == "written from the options"
    assert yaml.safe_load(site.read_text())["battery"]["capacity_kwh"] == options["battery_capacity_kwh"]

    site.write_text(site.read_text() + "planner:\n  risk: cautious\n")  # a Settings save
    run.choose_site(options, site, marker)  # restart with the same options
    assert yaml.safe_load(site.read_text())["planner"]["risk"] == "cautious"

    options["battery_capacity_kwh"] = 13.5  # the user changes an option: the file follows, the edit is kept aside
    _, action = run.choose_site(options, site, marker)
    assert "rewritten" in action and yaml.safe_load(site.read_text())["battery"]["capacity_kwh"] == 13.5
    (backup,) = site.parent.glob("site.yaml.*.bak")
    assert yaml.safe_load(backup.read_text())["planner"]["risk"] == "cautious"

    marker.unlink()  # a file the user put there by hand is theirs
    site.write_text("site_id: mine\n")
    path, action = run.choose_site(options, site, marker)
    assert site.read_text() == "site_id: mine\n" and "your own" in action
