"""Home Assistant MQTT discovery: services declare entities as data, one publisher turns them into configs.

Configs are retained under ``<prefix>/<component>/darkstar_<site>/<object_id>/config``; all of a
site's entities share one HA device, and each entity's availability follows the status topic
(last will) of the service that owns it.

Written to the current MQTT discovery documentation (https://www.home-assistant.io/integrations/mqtt/):
``default_entity_id`` (``<component>.<id>``; ``object_id`` is deprecated since 2025.10 and stops
working in 2026.4; older cores ignore the key and name the entity from device + name), a device
with ``sw_version`` and ``configuration_url``, an origin with version and support URL, and value
templates that render ``None`` (HA: unknown) on an empty payload instead of raising
"value_json is undefined" when a retained topic is cleared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.contracts import STATUS_OFFLINE, STATUS_ONLINE
from shared.version import darkstar_version

Component = Literal["sensor", "binary_sensor", "button", "switch", "number", "select"]


@dataclass(frozen=True)
class Entity:
    """One HA entity. ``state_kind``/``command`` name Darkstar topics relative to ``darkstar/{site}/``."""

    component: Component
    object_id: str
    name: str
    state_topic: str | None = None  # relative, e.g. "plan" or "forecaster/status"
    value_template: str | None = None
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    icon: str | None = None
    command_topic: str | None = None  # relative, e.g. "cmd/planner/replan"
    payload_press: str | None = None
    payload_on: str | None = None
    payload_off: str | None = None
    entity_category: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def command_button(site_id: str, object_id: str, name: str, command: str, icon: str) -> Entity:
    """A button that publishes an empty Darkstar command (``darkstar.command/1``) on ``cmd/{command}``."""
    return Entity(component="button", object_id=object_id, name=name, command_topic=f"cmd/{command}",
                  payload_press=f'{{"schema":"darkstar.command/1","site_id":"{site_id}"}}', icon=icon)


def empty_safe(template: str) -> str:
    """A value template that renders ``None`` (HA's "unknown") when the payload is empty or not JSON."""
    return "{% if value_json is defined %}" + template + "{% else %}None{% endif %}"


def discovery_topic(prefix: str, site_id: str, entity: Entity) -> str:
    return f"{prefix}/{entity.component}/darkstar_{site_id.replace('-', '_')}/{entity.object_id}/config"


def discovery_config(base: str, site_id: str, site_name: str, service: str, entity: Entity,
                     configuration_url: str | None = None) -> dict[str, Any]:
    root = f"{base}/{site_id}/"
    node = f"darkstar_{site_id.replace('-', '_')}"
    version = darkstar_version()
    device: dict[str, Any] = {
        "identifiers": [node],
        "name": f"Darkstar {site_name or site_id}",
        "manufacturer": "Darkstar",
        "model": "local-first energy agent",
        "sw_version": version,
    }
    origin: dict[str, Any] = {"name": "Darkstar", "sw_version": version}
    if configuration_url:
        device["configuration_url"] = configuration_url
        origin["support_url"] = configuration_url  # local-first: the site's own web app is where help is
    config: dict[str, Any] = {
        "name": entity.name,
        "unique_id": f"{node}_{entity.object_id}",
        "default_entity_id": f"{entity.component}.{node}_{entity.object_id}",
        "device": device,
        "availability": [
            {"topic": f"{root}{service}/status", "payload_available": STATUS_ONLINE,
             "payload_not_available": STATUS_OFFLINE}
        ],
        "origin": origin,
    }
    optional = {
        "state_topic": root + entity.state_topic if entity.state_topic else None,
        "value_template": empty_safe(entity.value_template) if entity.value_template else None,
        "unit_of_measurement": entity.unit,
        "device_class": entity.device_class,
        "state_class": entity.state_class,
        "icon": entity.icon,
        "command_topic": root + entity.command_topic if entity.command_topic else None,
        "payload_press": entity.payload_press,
        "payload_on": entity.payload_on,
        "payload_off": entity.payload_off,
        "entity_category": entity.entity_category,
    }
    config.update({k: v for k, v in optional.items() if v is not None})
    config.update({k: root + v if k.endswith("_topic") and isinstance(v, str) else v for k, v in entity.extra.items()})
    if "json_attributes_template" in entity.extra:
        config["json_attributes_template"] = ("{% if value_json is defined %}" + entity.extra["json_attributes_template"]
                                              + "{% else %}{}{% endif %}")
    return config


def status_entity(service: str) -> Entity:
    """Every service shows its own connectivity in HA."""
    return Entity(
        component="binary_sensor",
        object_id=f"{service}_online",
        name=f"{service.capitalize()} online",
        state_topic=f"{service}/status",
        payload_on=STATUS_ONLINE,
        payload_off=STATUS_OFFLINE,
        device_class="connectivity",
        entity_category="diagnostic",
        extra={"availability_mode": "all"},
    )


def discovery_messages(
    base: str, prefix: str, site_id: str, site_name: str, service: str, entities: list[Entity],
    configuration_url: str | None = None,
) -> list[tuple[str, bytes]]:
    """(topic, payload) pairs to publish retained with QoS 1."""
    out = []
    for entity in entities:
        config = discovery_config(base, site_id, site_name, service, entity, configuration_url)
        if entity.object_id == f"{service}_online":
            config.pop("availability")  # the status sensor must show 'offline', not 'unavailable'
        out.append((discovery_topic(prefix, site_id, entity), json.dumps(config).encode()))
    return out


def _context_command(site_id: str, name: str, value_expr: str) -> str:
    """A command_template that turns HA's ``value`` into a retained Darkstar context message."""
    return ('{"schema":"darkstar.context/1","site_id":"%s","name":"%s","value":%s,"source":"homeassistant"}'
            % (site_id, name, value_expr))


def context_controls(site: Any) -> list[Entity]:
    """Number/select entities that set the planner's context: risk, reserve SoC, EV target and departure."""
    sid = site.site_id
    retained = {"retain": True, "qos": 1}
    out = [
        Entity(component="select", object_id="risk", name="Risk appetite", state_topic="context/risk",
               command_topic="context/risk", value_template="{{ value_json.value }}", icon="mdi:scale-balance",
               extra={"options": ["cautious", "balanced", "bold"],
                      "command_template": _context_command(sid, "risk", '"{{ value }}"'), **retained}),
    ]
    if site.battery is not None:
        out.append(Entity(
            component="number", object_id="reserve_soc", name="Battery reserve", state_topic="context/reserve_soc_frac",
            command_topic="context/reserve_soc_frac", value_template="{{ (value_json.value * 100) | round(0) }}",
            unit="%", icon="mdi:battery-lock",
            extra={"min": round(site.battery.min_soc_frac * 100), "max": round(site.battery.max_soc_frac * 100),
                   "step": 1, "mode": "slider",
                   "command_template": _context_command(sid, "reserve_soc_frac", "{{ value / 100 }}"), **retained}))
    if site.evs:
        departures = [f"{h:02d}:{m:02d}" for h in range(24) for m in (0, 30)]  # shift workers leave at any hour
        out += [
            Entity(component="binary_sensor", object_id="ev_plugged", name="EV plugged in",
                   state_topic="context/ev_plugged", value_template="{{ 'ON' if value_json.value else 'OFF' }}",
                   device_class="plug", payload_on="ON", payload_off="OFF"),
            Entity(component="number", object_id="ev_target", name="EV energy by departure",
                   state_topic="context/ev_target_kwh", command_topic="context/ev_target_kwh",
                   value_template="{{ value_json.value }}", unit="kWh", device_class="energy", icon="mdi:car-electric",
                   extra={"min": 0, "max": site.evs[0].battery_kwh, "step": 1, "mode": "box",
                          "command_template": _context_command(sid, "ev_target_kwh", "{{ value }}"), **retained}),
            # The next occurrence of the chosen local time, as an ISO time with offset (the context contract).
            Entity(component="select", object_id="ev_departure", name="EV departure",
                   state_topic="context/ev_departure", command_topic="context/ev_departure",
                   value_template="{{ as_timestamp(value_json.value) | timestamp_custom('%H:%M') }}",
                   icon="mdi:car-clock",
                   extra={"options": departures, "command_template": _context_command(
                       sid, "ev_departure", '"{{ (today_at(value) if today_at(value) > now() '
                                            'else today_at(value) + timedelta(days=1)).isoformat() }}"'),
                          **retained}),
        ]
    return out


def plan_chart_entity() -> Entity:
    """The plan as attributes apexcharts-card plots directly: lists of [epoch ms, value] per series
    (``data_generator: return entity.attributes.soc_kwh;``). Three series keep the attributes under
    the recorder's 16 kB limit for a 48 h plan."""
    series = ("{% set ns = namespace(soc=[], bat=[], price=[]) %}{% for s in value_json.slots %}"
              "{% set t = (as_timestamp(s.start) * 1000) | int %}"
              "{% set ns.soc = ns.soc + [[t, s.soc_kwh | round(2)]] %}"
              "{% set ns.bat = ns.bat + [[t, (s.charge_kw - s.discharge_kw) | round(2)]] %}"
              "{% set ns.price = ns.price + [[t, s.import_price_per_kwh | round(4) if s.import_price_per_kwh "
              "is not none else none]] %}{% endfor %}"
              '{{ {"soc_kwh": ns.soc, "battery_kw": ns.bat, "import_price_per_kwh": ns.price} | tojson }}')
    return Entity(component="sensor", object_id="plan", name="Plan", state_topic="plan",
                  value_template="{{ value_json.created_at }}", device_class="timestamp", icon="mdi:chart-timeline",
                  extra={"json_attributes_topic": "plan", "json_attributes_template": series})


def energy_total_entities(currency: str) -> list[Entity]:
    """``total_increasing`` kWh sensors over ``energy/totals`` that HA's energy dashboard accepts, and the
    battery's money saving (device_class monetary takes state_class ``total`` only: it may fall)."""
    rows = (("grid_import_energy", "Grid import energy", "import_kwh", "mdi:transmission-tower-import"),
            ("grid_export_energy", "Grid export energy", "export_kwh", "mdi:transmission-tower-export"),
            ("pv_energy", "PV energy", "pv_kwh", "mdi:solar-power"),
            ("battery_charge_energy", "Battery charge energy", "charge_kwh", "mdi:battery-arrow-up"),
            ("battery_discharge_energy", "Battery discharge energy", "discharge_kwh", "mdi:battery-arrow-down"))
    return [Entity(component="sensor", object_id=oid, name=name, state_topic="energy/totals",
                   value_template="{{ value_json.%s | round(3) }}" % key, unit="kWh", device_class="energy",
                   state_class="total_increasing", icon=icon)
            for oid, name, key, icon in rows] + [
        Entity(component="sensor", object_id="battery_saving", name="Battery saving", state_topic="energy/totals",
               value_template="{{ value_json.saving | round(4) if value_json.saving is not none else none }}",
               unit=currency, device_class="monetary", state_class="total", icon="mdi:piggy-bank")]
