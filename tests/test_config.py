"""A bad site config fails at start-up with the key path; env overrides work; secrets never leak."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from shared.config import ConfigError, load_site_config, site_config_from_dict

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MINIMAL = {"site_id": "home", "location": {"latitude": 55.4, "longitude": 13.2, "timezone": "Europe/Stockholm"}}


@pytest.mark.parametrize("name", ["se4-home.yaml", "citylearn-home.yaml"])
def test_example_sites_load(name: str):
    site = load_site_config(EXAMPLES / name, environ={})
    assert site.battery is not None and site.battery.capacity_kwh > 0
    assert site.pv.kwp_total > 0


def test_se4_example_matches_the_recorded_home():
    site = load_site_config(EXAMPLES / "se4-home.yaml", environ={})
    assert site.battery.capacity_kwh == pytest.approx(34.2)
    assert site.pv.arrays[0].azimuth_deg == 150 and site.pv.arrays[0].tilt_deg == 45
    assert site.water_heaters[0].power_kw == 3.0
    assert site.tz.key == "Europe/Stockholm"


def test_bad_value_names_its_key_path(tmp_path: Path):
    bad = tmp_path / "site.yaml"
    bad.write_text(
        "site_id: home\nlocation: {latitude: 55, longitude: 13, timezone: Europe/Stockholm}\n"
        "battery: {capacity_kwh: -5, max_charge_kw: 3, max_discharge_kw: 3}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_site_config(bad, environ={})
    assert "battery.capacity_kwh" in str(err.value)
    assert str(bad) in str(err.value)


def test_unknown_key_is_refused_with_its_path():
    with pytest.raises(ConfigError, match=r"battery\.capacity_kw"):
        site_config_from_dict({**MINIMAL, "battery": {"capacity_kw": 5, "max_charge_kw": 3, "max_discharge_kw": 3}},
                              environ={})


def test_unknown_time_zone_is_refused():
    with pytest.raises(ConfigError, match=r"location\.timezone"):
        site_config_from_dict({**MINIMAL, "location": {**MINIMAL["location"], "timezone": "Mars/Olympus"}},
                              environ={})


def test_invalid_yaml_reports_line(tmp_path: Path):
    bad = tmp_path / "site.yaml"
    bad.write_text("site_id: home\nlocation: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        load_site_config(bad, environ={})


def test_environment_overrides_nested_keys():
    site = site_config_from_dict(
        MINIMAL,
        environ={"DARKSTAR__MQTT__HOST": "broker.lan", "DARKSTAR__MQTT__PORT": "1883",
                 "DARKSTAR__MQTT__EMBEDDED": "false", "DARKSTAR__MQTT__PASSWORD": "12345"},
    )
    assert site.mqtt.host == "broker.lan" and site.mqtt.port == 1883 and site.mqtt.embedded is False
    assert site.mqtt.password.get_secret_value() == "12345"  # kept as text even though it looks numeric


def test_times_are_not_read_as_sexagesimal_numbers():
    site = site_config_from_dict({**MINIMAL, "evs": [{"max_charge_kw": 11, "departure": "07:30"}]}, environ={})
    assert site.evs[0].departure == time(7, 30)


def test_secrets_never_appear_in_errors_or_repr():
    secret = "hunter2-very-secret"
    with pytest.raises(ConfigError) as err:
        site_config_from_dict({**MINIMAL, "mqtt": {"password": secret, "port": "not-a-port"}}, environ={})
    assert secret not in str(err.value)
    site = site_config_from_dict({**MINIMAL, "mqtt": {"password": secret}}, environ={})
    assert secret not in repr(site) and secret not in str(site.model_dump())


def test_soc_limits_must_be_ordered():
    with pytest.raises(ConfigError, match="battery"):
        site_config_from_dict(
            {**MINIMAL, "battery": {"capacity_kwh": 10, "max_charge_kw": 3, "max_discharge_kw": 3,
                                    "min_soc_frac": 0.5, "reserve_soc_frac": 0.2}},
            environ={},
        )
