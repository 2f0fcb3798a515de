"""One version everywhere a user or Home Assistant sees it: CLI, HA discovery (and /healthz, see
test_service_runtime), all equal to pyproject.toml's and listed in CHANGELOG.md."""

from __future__ import annotations

import tomllib

import pytest

from services.cli import main
from shared.homeassistant import Entity, discovery_config
from tests.conftest import ROOT

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_darkstar_version_prints_the_project_version(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"darkstar {VERSION}"


def test_home_assistant_device_carries_the_version():
    config = discovery_config("darkstar", "home", "Home", "planner", Entity(component="sensor", object_id="x", name="X"))
    assert config["device"]["sw_version"] == VERSION and config["origin"]["sw_version"] == VERSION


def test_changelog_has_an_entry_for_the_current_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{VERSION}]" in changelog
