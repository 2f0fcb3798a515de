"""Config sense: values that cannot all be true of one home fail with the key path and line;
an unknown key names the nearest valid key; a start checks profile and ports before starting."""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path

import pytest

from services.preflight import port_problems, preflight_or_exit
from shared.config import ConfigError, load_site_config, site_config_from_dict

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HOME = "site_id: home\nlocation: {latitude: 55, longitude: 13, timezone: Europe/Stockholm}\n"


def test_a_10000_kwh_battery_charging_at_5000_kw_on_a_17_kw_fuse_is_refused(tmp_path: Path):
    bad = tmp_path / "site.yaml"
    bad.write_text(HOME + "battery:\n  capacity_kwh: 10000\n  max_charge_kw: 5000\n  max_discharge_kw: 5000\n"
                   "grid: {max_import_kw: 17}\npv: {arrays: [{kwp: 5}]}\n")
    with pytest.raises(ConfigError) as err:
        load_site_config(bad, environ={})
    text = str(err.value)
    assert "battery.max_charge_kw: 5000 kW can never flow in: grid.max_import_kw 17 kW + PV 5 kW" in text
    assert "(line 5)" in text  # max_charge_kw is on line 5 of the file
    assert "battery.capacity_kwh" in text and "battery.max_discharge_kw" in text


@pytest.mark.parametrize(("battery", "fuse_kw", "path"), [
    ({"capacity_kwh": 100, "max_charge_kw": 70, "max_discharge_kw": 5}, 20, "battery.max_charge_kw"),  # > 3 x fuse
    ({"capacity_kwh": 100, "max_charge_kw": 5, "max_discharge_kw": 110}, 17, "battery.max_discharge_kw"),
])
def test_impossible_battery_power_names_its_key(battery: dict, fuse_kw: float, path: str):
    data = {"site_id": "home", "location": {"latitude": 55, "longitude": 13}, "battery": battery,
            "grid": {"max_import_kw": fuse_kw, "max_export_kw": 17}}
    with pytest.raises(ConfigError, match=rf"{path}: "):
        site_config_from_dict(data, environ={})


def test_appliances_above_the_fuse_are_refused_and_a_high_c_rate_or_big_inverter_only_warns(
        caplog: pytest.LogCaptureFixture):
    base = {"site_id": "home", "location": {"latitude": 55, "longitude": 13}}
    with pytest.raises(ConfigError, match=r"evs\.0\.max_charge_kw: 22 kW is above the fuse"):
        site_config_from_dict({**base, "grid": {"max_import_kw": 16}, "evs": [{"max_charge_kw": 22}]}, environ={})
    with caplog.at_level(logging.WARNING, logger="darkstar.config"):
        site = site_config_from_dict(
            {**base, "battery": {"capacity_kwh": 5, "max_charge_kw": 15, "max_discharge_kw": 5},
             "grid": {"max_import_kw": 11}}, environ={})
    assert site.battery.max_charge_kw == 15
    messages = [r.getMessage() for r in caplog.records]
    assert any("battery.max_charge_kw: 3.0C" in m for m in messages)
    assert any("battery.max_charge_kw: 15 kW can never flow in: grid.max_import_kw 11 kW + PV 0 kW" in m
               for m in messages)


def test_unknown_key_names_the_nearest_valid_key_and_its_line(tmp_path: Path):
    bad = tmp_path / "site.yaml"
    bad.write_text(HOME + "battery:\n  capacity_kwh: 10\n  max_charge_kwh: 5\n  max_discharge_kw: 5\n"
                   "pv:\n  arrays:\n    - kwp: 5\n      tilt: 30\n")
    with pytest.raises(ConfigError) as err:
        load_site_config(bad, environ={})
    text = str(err.value)
    assert "battery.max_charge_kwh: unknown key (did you mean 'max_charge_kw'?), line 5" in text
    assert "pv.arrays.0.tilt: unknown key (did you mean 'tilt_deg'?), line 10" in text


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_site_passes_the_cross_field_checks(name: str):
    assert load_site_config(EXAMPLES / name, environ={}).site_id


def test_a_profile_typo_stops_plan_with_one_line_before_anything_starts(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]):
    site = tmp_path / "site.yaml"
    site.write_text((EXAMPLES / "se4-home.yaml").read_text().replace("profile: darkstar_sim", "profile: deye_hybird"))
    with pytest.raises(SystemExit) as stop:
        preflight_or_exit(argparse.Namespace(command="plan", site=str(site)))
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("darkstar plan: executor.profile: ")
    assert "did you mean 'deye_hybrid'?" in lines[0]


def test_a_busy_port_is_named_with_its_key_and_the_fix(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        site = site_config_from_dict({"site_id": "home", "location": {"latitude": 55, "longitude": 13},
                                      "mqtt": {"embedded": False}, "http": {"ports": {"planner": port}}}, environ={})
        problems = port_problems(site)
    assert len(problems) == 1
    assert problems[0].startswith(f"http.ports.planner: port {port} on 127.0.0.1 is not available")
    assert "DARKSTAR__HTTP__PORTS__PLANNER" in problems[0]


def test_a_port_override_from_the_environment_changes_only_that_port():
    site = load_site_config(EXAMPLES / "se4-home.yaml", environ={"DARKSTAR__HTTP__PORTS__DASHBOARD": "18080"})
    assert site.http.ports["dashboard"] == 18080 and site.http.ports["planner"] == 8082
