"""Home Assistant MQTT discovery: services declare entities as data, one publisher turns them into configs.

Configs are retained under ``<prefix>/<component>/darkstar_<site>/<object_id>/config``; all of a
site's entities share one HA device, and each entity's availability follows the status topic
(last will) of the service that owns it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.contracts import STATUS_OFFLINE, STATUS_ONLINE
from shared.version import darkstar_version

Component = Literal["sensor", "binary_sensor", "button", "switch", "number", "select", "text"]


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


def discovery_topic(prefix: str, site_id: str, entity: Entity) -> str:
    return f"{prefix}/{entity.component}/darkstar_{site_id.replace('-', '_')}/{entity.object_id}/config"


def discovery_config(base: str, site_id: str, site_name: str, service: str, entity: Entity) -> dict[str, Any]:
    root = f"{base}/{site_id}/"
    node = f"darkstar_{site_id.replace('-', '_')}"
    config: dict[str, Any] = {
        "name": entity.name,
        "unique_id": f"{node}_{entity.object_id}",
        "object_id": f"{node}_{entity.object_id}",
        "device": {
            "identifiers": [node],
            "name": f"Darkstar {site_name or site_id}",
            "manufacturer": "Darkstar",
            "model": "local-first energy agent",
            "sw_version": darkstar_version(),
        },
        "availability": [
            {"topic": f"{root}{service}/status", "payload_available": STATUS_ONLINE,
             "payload_not_available": STATUS_OFFLINE}
        ],
        "origin": {"name": "darkstar", "sw_version": darkstar_version()},
    }
    optional = {
        "state_topic": root + entity.state_topic if entity.state_topic else None,
        "value_template": entity.value_template,
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
    config.update(entity.extra)
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
    base: str, prefix: str, site_id: str, site_name: str, service: str, entities: list[Entity]
) -> list[tuple[str, bytes]]:
    """(topic, payload) pairs to publish retained with QoS 1."""
    out = []
    for entity in entities:
        config = discovery_config(base, site_id, site_name, service, entity)
        if entity.object_id == f"{service}_online":
            config.pop("availability")  # the status sensor must show 'offline', not 'unavailable'
        out.append((discovery_topic(prefix, site_id, entity), json.dumps(config).encode()))
    return out
