"""amqtt glue of the embedded broker: login and publish checks through BusGate, and a retained fix.

amqtt 0.12 (``Broker.client_connected``) sends a (re)connecting client the retained messages
matching *every* filter any client holds, so with persistent sessions every client received
the large plan payloads. :class:`ConformingBroker` sends only those matching the session's own
subscriptions (MQTT-3.3.1-6, -3.8.4-3), delivers what a persistent session missed in order and
without the retain flag (a message still in flight at the very moment of the reconnect may
still overtake the queue: amqtt sends live messages as concurrent tasks), and walks its
subscription table safely; tests/test_broker_conformance.py runs the same checks
against this broker and Mosquitto. Patching one method keeps amqtt (pure Python, no binary to
ship) as the zero-setup default; Mosquitto remains the production broker.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

log = logging.getLogger("darkstar.broker")


class GateAuthPlugin(BaseAuthPlugin):
    @dataclass
    class Config:
        gate: Any = None

    async def authenticate(self, *, session: Any) -> bool:
        ok = self.config.gate.authenticate(session.username, session.password)
        if not ok:
            log.warning("embedded broker refused a login as %r (wrong or missing credentials)", session.username)
            return False
        # amqtt sends the last will without the publish check (handle_connection_close): a will on a
        # topic the user may not publish would be a forged plan or command. Refused at login, as
        # Mosquitto 2 does.
        if session.will_flag and not self.config.gate.may_publish(session.username, session.will_topic or ""):
            log.warning("embedded broker refused a login as %r: its will is on %s, which it may not publish",
                        session.username, session.will_topic)
            return False
        return True


class GateTopicPlugin(BaseTopicPlugin):
    @dataclass
    class Config:
        gate: Any = None

    async def topic_filtering(self, *, session: Any = None, topic: str | None = None, action: Action | None = None) -> bool:
        if action != Action.PUBLISH:
            return session is not None and bool(session.username)  # reading: any logged-in client
        username = session.username if session else None
        ok = bool(topic) and self.config.gate.may_publish(username, topic)
        if not ok:
            log.warning("embedded broker dropped a publish by %r on %s: not granted", username, topic)
            return False
        return self.config.gate.admit_publish(username, topic_name=topic)  # the rate rule (shared/broker.py BusGate)


class _SnapshotDict(dict):  # type: ignore[type-arg]
    """Iterates over a copy: amqtt awaits (topic checks, queueing for offline sessions) while it walks
    its subscription table, and a client subscribing meanwhile raised "dictionary changed size
    during iteration", losing that broadcast."""

    def __iter__(self) -> Any:
        return iter(list(super().keys()))

    def items(self) -> Any:
        return list(super().items())


class ConformingBroker(Broker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subscriptions = _SnapshotDict(self._subscriptions)

    async def _publish_session_retained_messages(self, session: Any) -> None:
        # What a persistent session missed while offline: amqtt sent it all at once as concurrent
        # tasks (out of order under load) flagged retain=1. In order, one after the other, and with
        # retain=0: they match an established subscription (MQTT-4.6.0-6, -3.3.1-9).
        handler = self._get_handler(session)
        if handler is None:
            return
        while not session.retained_messages.empty():
            queued = await session.retained_messages.get()
            try:
                await handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False)
            except (asyncio.TimeoutError, ConnectionError) as err:  # a slow or gone client: its session, not the broker
                log.warning("embedded broker: delivering a queued message to %s failed (%s)", session.client_id,
                            type(err).__name__)

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Any) -> None:
        # amqtt walks every client's filters on connect; only this session's own count (MQTT-3.3.1-6)
        held = [qos for s, qos in self._subscriptions.get(subscription[0], []) if s.client_id == session.client_id]
        if held:
            await super()._publish_retained_messages_for_subscription((subscription[0], held[0]), session)
