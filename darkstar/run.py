"""Add-on entrypoint: add-on options + the Supervisor's MQTT service -> a site file -> ``darkstar up``.

/data/options.json holds the options of config.yaml; the MQTT broker (HA's Mosquitto add-on)
comes from the Supervisor (``GET http://supervisor/services/mqtt`` with $SUPERVISOR_TOKEN).
The site file is /config/site.yaml (the add-on's config folder): written from the options at the
first start and whenever the options change (the file before is kept as a backup), and otherwise
left as it is, so what the web app's Settings page saves survives a restart. A site file the user
put there by hand (not written from the options) is never overwritten.
The database (SQLite) and the models live in /data, which the Supervisor backs up.
Secrets go to the services through the environment, never to the log.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import sys
import urllib.request
from pathlib import Path

import yaml

OPTIONS = Path("/data/options.json")
USER_SITE = Path("/config/site.yaml")
GENERATED = Path("/data/site-from-options.json")  # which options the site file was last written from


def supervisor_mqtt() -> dict:
    token = os.environ.get("SUPERVISOR_TOKEN")
    if not token:
        sys.exit("darkstar add-on: no SUPERVISOR_TOKEN (config.yaml needs hassio_api: true)")
    req = urllib.request.Request("http://supervisor/services/mqtt", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())["data"]
    except OSError as err:
        sys.exit(f"darkstar add-on: the MQTT service is not available ({err}); install and start the Mosquitto add-on")


def site_from_options(o: dict) -> dict:
    return {
        "site_id": o["site_id"], "name": "Home Assistant",
        "location": {"latitude": o["latitude"], "longitude": o["longitude"], "timezone": o["timezone"]},
        "grid": {"max_import_kw": o["grid_fuse_kw"], "max_export_kw": o["grid_fuse_kw"]},
        "tariff": {"price_area": o["price_area"], "currency": o["currency"],
                   "price_source": "entsoe" if o.get("entsoe_token") else "nordpool"},
        "battery": {"capacity_kwh": o["battery_capacity_kwh"], "max_charge_kw": o["battery_max_charge_kw"],
                    "max_discharge_kw": o["battery_max_discharge_kw"]},
        "pv": {"arrays": [{"kwp": o["pv_kwp"]}]},
        "executor": {"profile": o["inverter_profile"], "shadow_mode": o["shadow_mode"],
                     "modbus": {"host": o["modbus_host"], "port": o["modbus_port"]}},
    }


def choose_site(options: dict, site: Path = USER_SITE, marker: Path = GENERATED) -> tuple[Path, str]:
    """The site file to run and what was done to it (the rule in this module's docstring)."""
    options_sha = hashlib.sha256(json.dumps(site_from_options(options), sort_keys=True).encode()).hexdigest()
    try:
        written_from = json.loads(marker.read_text()).get("options_sha256") if marker.exists() else None
    except ValueError:  # an unreadable marker: the file was written from the options, rewrite it
        written_from = ""
    if site.exists() and written_from is None:
        return site, "your own site file (the add-on options are not used)"
    if site.exists() and written_from == options_sha:
        return site, "kept (edits from the Settings page included)"
    action = "written from the options"
    if site.exists():
        backup = site.with_name(f"{site.name}.{time.strftime('%Y%m%dT%H%M%S')}.bak")
        site.replace(backup)
        action = f"the options changed: rewritten from them, the previous file kept as {backup.name}"
    site.parent.mkdir(parents=True, exist_ok=True)
    # marker first, then the file, each atomically: a crash in between leaves a file the next start
    # rewrites, never a half-written one taken for the user's own
    _write_atomic(marker, json.dumps({"options_sha256": options_sha}))
    _write_atomic(site, yaml.safe_dump(site_from_options(options), sort_keys=False))
    return site, action


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> None:
    options = json.loads(OPTIONS.read_text())
    site, action = choose_site(options)
    mqtt = supervisor_mqtt()
    env = {
        **os.environ,
        "DARKSTAR_SITE": str(site),
        "DARKSTAR_LOG_LEVEL": options.get("log_level", "info").upper(),
        "DARKSTAR__HTTP__HOST": "0.0.0.0",  # Ingress reaches the web app from the Supervisor's network
        "DARKSTAR__DATABASE__URL": "sqlite:////data/darkstar.db",
        "DARKSTAR__TRAINER__MODEL_DIR": "/data/models",
        "DARKSTAR__FORECASTER__MODEL_DIR": "/data/models",
        "DARKSTAR__MQTT__EMBEDDED": "false",
        "DARKSTAR__MQTT__HOST": str(mqtt["host"]),
        "DARKSTAR__MQTT__PORT": str(mqtt["port"]),
        "DARKSTAR__MQTT__USERNAME": str(mqtt.get("username") or ""),
        "DARKSTAR__MQTT__PASSWORD": str(mqtt.get("password") or ""),
        "DARKSTAR__MQTT__TLS": "true" if mqtt.get("ssl") else "false",
    }
    for option, key in (("admin_token", "DARKSTAR__HTTP__ADMIN_TOKEN"), ("entsoe_token", "DARKSTAR__TARIFF__ENTSOE_TOKEN")):
        if options.get(option):
            env[key] = options[option]
    print(f"darkstar add-on: site {site} ({action}), MQTT {mqtt['host']}:{mqtt['port']}, data in /data", flush=True)
    os.chdir("/app")
    os.execvpe("darkstar", ["darkstar", "up"], env)  # replaces this process (PID 1: init false) and handles SIGTERM


if __name__ == "__main__":
    main()
