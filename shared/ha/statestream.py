"""Home Assistant entity states from its ``mqtt_statestream`` integration: the token-free way in.

HA publishes, retained, ``<base_topic>/<domain>/<object_id>/state`` on every state change and, with
``publish_attributes: true``, each attribute as JSON on ``.../<attribute>`` (the unit is one);
with ``publish_timestamps: true`` also ``.../last_updated``. :class:`StatestreamEntities`
subscribes to exactly the configured entities on that broker and keeps their states for the one
reading rule of :class:`shared.ha.live.EntityReadings`: the same role values, unit conversion,
signs, staleness and alarms as over the WebSocket API. Read only: nothing can be written this way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from datetime import datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from shared.config import HomeAssistantConfig, MQTTConfig
from shared.ha.live import EntityReadings, EntityState
from shared.mqtt import apply_auth_tls, bus_login

log = logging.getLogger("darkstar.ha.statestream")


class StatestreamEntities(EntityReadings):
    """The configured entities' states as ``mqtt_statestream`` publishes them (see module doc)."""

    def __init__(self, config: HomeAssistantConfig, bus: MQTTConfig, *, site_currency: str | None = None) -> None:
        super().__init__(config, site_currency=site_currency)
        self.stream = config.statestream
        self.base = self.stream.base_topic.rstrip("/")
        self.bus = bus
        self.host = self.stream.host or bus.host
        self.port = self.stream.port or bus.port
        if self.stream.username:  # a broker of HA's own, with its own login
            password = self.stream.password
            self.login: tuple[str | None, str | None] = (
                self.stream.username, password.get_secret_value() if password is not None else None)
        else:  # Darkstar's bus: the executor's login (embedded broker: its generated credentials), its TLS
            self.login = bus_login(bus, "executor")
        self._client: paho.Client | None = None
        self._stopped = asyncio.Event()

    def _missing(self, entity_id: str) -> str:
        return (f"no state on {self.topic_of(entity_id)}/state yet (is it included in mqtt_statestream, and has it "
                "changed since HA started?)")

    def topic_of(self, entity_id: str) -> str:
        return f"{self.base}/{entity_id.replace('.', '/', 1)}"

    # ------------------------------------------------------------------ connection
    async def run(self) -> None:
        """Connect (paho reconnects by itself), keep the states current, until :meth:`stop`."""
        loop = asyncio.get_running_loop()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"darkstar-statestream-{uuid.uuid4().hex[:8]}")
        if self.stream.host is None:
            apply_auth_tls(client, self.bus, self.login)
        elif self.login[0]:
            client.username_pw_set(*self.login)
        client.reconnect_delay_set(1, 30)
        client.on_connect = lambda c, u, f, reason, p: loop.call_soon_threadsafe(self._on_connect, c, reason)
        client.on_disconnect = lambda c, u, f, reason, p: loop.call_soon_threadsafe(self._lost, reason)
        client.on_message = lambda c, u, msg: loop.call_soon_threadsafe(self._on_message, msg.topic, msg.payload)
        self._client = client
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        try:
            await self._stopped.wait()
        finally:
            client.disconnect()
            client.loop_stop()

    def _on_connect(self, client: paho.Client, reason: Any) -> None:
        if reason.is_failure:
            self._lost(f"the statestream broker {self.host}:{self.port} refused the login: {reason}")
            return
        client.subscribe([(f"{self.topic_of(e)}/#", 1) for e in self.entity_ids])
        self.connection_epoch += 1
        self.connection_problem = None
        self.connected.set()
        log.info("Home Assistant statestream on %s:%d under %s/: %d entities", self.host, self.port, self.base,
                 len(self.entity_ids))

    def _lost(self, reason: Any) -> None:
        problem = reason if isinstance(reason, str) else f"statestream broker {self.host}:{self.port} lost: {reason}"
        if self.connection_problem != problem:
            log.warning("%s", problem)
        self.connection_problem = problem
        self.connected.clear()

    async def stop(self) -> None:
        self._stopped.set()

    async def close(self) -> None:
        self._stopped.set()

    # ------------------------------------------------------------------ messages
    def _on_message(self, topic: str, payload: bytes) -> None:
        rest = topic[len(self.base) + 1:] if topic.startswith(self.base + "/") else ""
        parts = rest.split("/")
        if len(parts) != 3:
            return
        entity_id, name = f"{parts[0]}.{parts[1]}", parts[2]
        current = self.states.setdefault(entity_id, EntityState())
        text = payload.decode("utf-8", errors="replace")
        if name == "state":
            current.state = text
            current.updated_at = time.time()  # when it arrived; last_updated (if published) is HA's own
        elif name == "last_updated":
            try:
                current.updated_at = datetime.fromisoformat(text).timestamp()
            except ValueError:
                log.debug("statestream %s: last_updated %r is not an ISO time", entity_id, text[:40])
        elif name != "last_changed":
            try:
                current.attributes[name] = json.loads(text)
            except ValueError:
                current.attributes[name] = text
        self._changed(entity_id)
