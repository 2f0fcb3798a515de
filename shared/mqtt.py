"""The MQTT runtime every service uses (paho-mqtt 2).

- reconnects with exponential backoff, re-subscribes after every reconnect;
- last will ``offline`` and retained ``online`` on ``darkstar/{site}/{service}/status``;
- QoS and retain per the contract table (shared.contracts.TOPICS);
- QoS-1 messages are acknowledged only after their handler finished (manual ack), so a
  message in flight at shutdown or crash is redelivered rather than lost;
- handlers run on one worker thread per client, in arrival order, never on paho's network thread;
- username/password, TLS, MQTT 5 where the broker speaks it (``protocol: auto`` probes).
"""

from __future__ import annotations

import logging
import queue
import random
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from shared.buscreds import service_password
from shared.config import MQTTConfig
from shared.contracts import STATUS_OFFLINE, STATUS_ONLINE, TOPICS, Message, encode, topic

log = logging.getLogger("darkstar.mqtt")

Handler = Callable[[str, bytes, bool], None]  # (topic, payload, retained)
RECONNECT_MAX_S = 5.0
SESSION_EXPIRY_S = 3600  # MQTT 5: keep the session (and its queued QoS-1 messages) across restarts
_STOP = object()


@dataclass
class _Subscription:
    topic_filter: str
    qos: int
    handler: Handler


def detect_protocol(cfg: MQTTConfig, timeout_s: float = 3.0) -> int:
    """MQTT 5 if the broker accepts it, else 3.1.1 (the embedded amqtt broker speaks 3.1.1 only)."""
    if cfg.protocol == "5":
        return paho.MQTTv5
    if cfg.protocol == "3.1.1" or cfg.embedded:
        return paho.MQTTv311
    result: dict[str, Any] = {}
    done = threading.Event()
    probe = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"darkstar-probe-{uuid.uuid4().hex[:8]}",
                        protocol=paho.MQTTv5)
    apply_auth_tls(probe, cfg, bus_login(cfg, "probe"))  # not embedded here: configured login only

    def on_connect(client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        result["reason"] = reason
        done.set()

    probe.on_connect = on_connect
    try:
        probe.connect(cfg.host, cfg.port, keepalive=10)
        probe.loop_start()
        done.wait(timeout_s)
        probe.disconnect()
        probe.loop_stop()
    except (OSError, ssl.SSLError):
        return paho.MQTTv311
    reason = result.get("reason")
    if reason is not None and not reason.is_failure:
        return paho.MQTTv5
    return paho.MQTTv311


def bus_login(cfg: MQTTConfig, service: str) -> tuple[str | None, str | None]:
    """(username, password) a service logs in with: the configured ones, else (embedded broker)
    the service's own generated credentials, so every service, old or new, is authenticated."""
    if cfg.username:
        return cfg.username, cfg.password.get_secret_value() if cfg.password else None
    if cfg.embedded:
        return service, service_password(Path(cfg.credentials_file), service)
    return None, None


def apply_auth_tls(client: paho.Client, cfg: MQTTConfig, login: tuple[str | None, str | None]) -> None:
    username, password = login
    if username:
        client.username_pw_set(username, password)
    if cfg.tls:
        client.tls_set(
            ca_certs=str(cfg.ca_certs) if cfg.ca_certs else None,
            certfile=str(cfg.certfile) if cfg.certfile else None,
            keyfile=str(cfg.keyfile) if cfg.keyfile else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(cfg.tls_insecure)


class MqttClient:
    """One service's connection to the broker."""

    def __init__(
        self,
        cfg: MQTTConfig,
        site_id: str,
        service: str,
        *,
        client_id: str | None = None,
        persistent_session: bool = True,
    ) -> None:
        self.cfg = cfg
        self.site_id = site_id
        self.service = service
        self.base = cfg.base_topic
        # Replicas behind a shared subscription need distinct ids, or they would keep kicking each other off.
        replica = f"-{uuid.uuid4().hex[:6]}" if cfg.share_group else ""
        self.client_id = client_id or f"darkstar-{site_id}-{service}{replica}"
        self.persistent_session = persistent_session
        self.status_topic = topic(self.base, site_id, "status", service=service)
        self._subs: dict[str, _Subscription] = {}
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._connected = threading.Event()
        self._subscribed = threading.Event()  # every subscription acknowledged by the broker
        self._pending_subs: set[int] = set()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._client: paho.Client | None = None
        self.protocol: int | None = None
        self.connects = 0
        self.last_error: str | None = None
        self.on_connected: Callable[[], None] | None = None
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._stopping = False
        self.protocol = detect_protocol(self.cfg)
        v5 = self.protocol == paho.MQTTv5
        kwargs: dict[str, Any] = {"protocol": self.protocol, "manual_ack": True}
        if not v5:
            kwargs["clean_session"] = not self.persistent_session
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, **kwargs)
        apply_auth_tls(client, self.cfg, bus_login(self.cfg, self.service))
        client.will_set(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
        _jitter_reconnect(client)
        client.max_queued_messages_set(10000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        connect_kwargs: dict[str, Any] = {"keepalive": self.cfg.keepalive_s}
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S if self.persistent_session else 0
            connect_kwargs["clean_start"] = not self.persistent_session
            connect_kwargs["properties"] = props
        self._client = client
        self._worker = threading.Thread(target=self._work, name=f"mqtt-{self.service}", daemon=True)
        self._worker.start()
        client.connect_async(self.cfg.host, self.cfg.port, **connect_kwargs)
        client.loop_start()

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """Wait until connected and every subscription is acknowledged (messages will be delivered)."""
        return self._connected.wait(timeout_s) and self._subscribed.wait(timeout_s)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop: finish (and acknowledge) queued messages, say offline, disconnect."""
        client = self._client
        if client is None:
            return
        self._stopping = True
        self._inbox.put(_STOP)
        if self._worker is not None:
            self._worker.join(timeout_s)
        if self.connected:
            info = client.publish(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=min(timeout_s, 3.0))
            except (RuntimeError, ValueError):
                pass
            self._wait_outgoing(timeout_s)
        client.disconnect()
        client.loop_stop()
        self._client = None
        self._connected.clear()
        self._subscribed.clear()

    def kill(self) -> None:
        """Drop the connection without a clean disconnect (the broker sends the last will). For tests/demos."""
        client = self._client
        if client is None:
            return
        sock = client.socket()
        client.loop_stop()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._inbox.put(_STOP)
        self._client = None
        self._connected.clear()
        self._subscribed.clear()

    def _wait_outgoing(self, timeout_s: float) -> None:
        client = self._client
        deadline = time.monotonic() + timeout_s
        while client is not None and time.monotonic() < deadline:
            with client._out_message_mutex:  # noqa: SLF001 - paho offers no public "pending" count
                pending = len(client._out_messages)  # noqa: SLF001
            if pending == 0:
                return
            time.sleep(0.02)

    # ------------------------------------------------------------------ API
    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        sub = _Subscription(topic_filter, qos, handler)
        self._subs[topic_filter] = sub
        if self.connected and self._client is not None:
            self._client.subscribe(topic_filter, qos)

    def publish(self, topic_name: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> paho.MQTTMessageInfo:
        if self._client is None:
            raise RuntimeError(f"MQTT client of {self.service} is not started")
        info = self._client.publish(topic_name, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish to {topic_name} failed: {paho.error_string(info.rc)}")
        return info

    def publish_msg(self, kind: str, msg: Message, **parts: str) -> paho.MQTTMessageInfo:
        """Publish a contract message on its topic with the contract's QoS and retain flag."""
        spec = TOPICS[kind]
        return self.publish(topic(self.base, self.site_id, kind, **parts), encode(msg), qos=spec.qos, retain=spec.retained)

    def topic(self, kind: str, **parts: str) -> str:
        return topic(self.base, self.site_id, kind, **parts)

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused connection: {reason}"
            log.warning("%s: %s", self.service, self.last_error)
            return
        self.connects += 1
        self.last_error = None
        self._subscribed.clear()
        with self._lock:
            self._pending_subs = set()
            for sub in self._subs.values():
                _rc, mid = client.subscribe(sub.topic_filter, sub.qos)
                if mid is not None:
                    self._pending_subs.add(mid)
            if not self._pending_subs:
                self._subscribed.set()
        client.publish(self.status_topic, STATUS_ONLINE, qos=1, retain=True)
        self._connected.set()
        log.info("%s connected to %s:%s (connect #%d)", self.service, self.cfg.host, self.cfg.port, self.connects)
        if self.on_connected is not None:
            self._inbox.put(self.on_connected)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        with self._lock:
            self._pending_subs.discard(mid)
            if not self._pending_subs:
                self._subscribed.set()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        _jitter_reconnect(client)
        was = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        if was and not self._stopping:
            log.warning("%s disconnected from broker (%s); reconnecting with backoff", self.service, reason)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self.last_error = f"cannot reach broker at {self.cfg.host}:{self.cfg.port}"

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._inbox.put(message)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP:
                return
            if callable(item):
                try:
                    item()
                except Exception:  # noqa: BLE001 - a failing hook must not stop message handling
                    log.exception("%s: on_connected hook failed", self.service)
                continue
            self._dispatch(item)

    def _dispatch(self, message: paho.MQTTMessage) -> None:
        try:
            for sub in list(self._subs.values()):
                if paho.topic_matches_sub(_strip_share(sub.topic_filter), message.topic):
                    sub.handler(message.topic, message.payload, bool(message.retain))
        except Exception:  # noqa: BLE001 - handlers report their own errors; never kill the worker
            log.exception("%s: handler failed for %s", self.service, message.topic)
        finally:
            client = self._client
            if client is not None and message.qos > 0:
                client.ack(message.mid, message.qos)


def _jitter_reconnect(client: paho.Client) -> None:
    """Back-off from a random start up to 5 s, so services do not all reconnect at the same moment."""
    client.reconnect_delay_set(min_delay=random.uniform(0.1, 1.0), max_delay=RECONNECT_MAX_S)  # type: ignore[arg-type]


def _strip_share(topic_filter: str) -> str:
    """``$share/group/a/b`` -> ``a/b`` (shared subscriptions deliver on the plain topic)."""
    if topic_filter.startswith("$share/"):
        return topic_filter.split("/", 2)[2]
    return topic_filter
