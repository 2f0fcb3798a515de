"""The embedded MQTT broker (amqtt) for the one-process ``darkstar up`` mode.

It listens on loopback by default, on a port that does not clash with a real broker on 1883
(11883 by default), and runs in its own thread with its own event loop so the rest of the
stack can be plain threads.

Nobody anonymous: every client logs in, services with the per-service credentials of
shared/buscreds.py, other home systems as ``auth.users``; what each may publish is decided
by shared/auth.py (the same rule as HTTP /admin and the web app). A bind address other than
loopback is refused unless TLS is on or ``mqtt.allow_insecure_lan`` says so (config check).

amqtt 0.12 delivers, on every (re)connect, the retained messages matching *any* client's
subscription to the connecting client; shared/broker_amqtt.py fixes that (and holds the plugins).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.asyncthread import LoopThread
from shared.auth import SERVICE_GRANTS, Principal, check_password, may_publish, principal_from_mqtt_user
from shared.buscreds import load_credentials
from shared.config import ConfigError, MQTTConfig, UserConfig

log = logging.getLogger("darkstar.broker")


def port_is_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class BusGate:
    """Who may log in to the embedded broker and what each may publish (shared/auth.py decides)."""

    def __init__(self, cfg: MQTTConfig, users: Sequence[UserConfig]) -> None:
        taken = sorted({u.name for u in users} & set(SERVICE_GRANTS))
        if taken:
            raise ConfigError(f"auth.users: {', '.join(taken)} is a Darkstar service's login; choose another name")
        self.cfg = cfg
        self.users = list(users)
        self._creds: dict[str, str] = {}
        self._creds_mtime: float | None = None
        self._buckets: dict[str, tuple[float, float]] = {}  # login -> (tokens, monotonic time of the last refill)
        self._dropped: dict[str, tuple[int, float | None]] = {}  # login -> (drops not yet logged, since)

    def _credentials(self) -> dict[str, str]:
        path = Path(self.cfg.credentials_file)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime != self._creds_mtime:  # a service started for the first time and added itself
            self._creds = load_credentials(path)
            self._creds_mtime = mtime
        # configured users never shadow a service's generated credentials
        return {**{u.name: u.password.get_secret_value() for u in self.users}, **self._creds}

    def authenticate(self, username: str | None, password: str | None) -> bool:
        return check_password(self._credentials(), username, password)

    def principal(self, username: str | None) -> Principal | None:
        self._credentials()  # refresh the generated service logins
        return principal_from_mqtt_user(self.users, username, self._creds.keys())

    def may_publish(self, username: str | None, topic_name: str) -> bool:
        return may_publish(self.principal(username), self.cfg.base_topic, self.cfg.discovery_prefix, topic_name)

    def admit_publish(self, username: str | None, now: float | None = None, topic_name: str = "") -> bool:
        """The publish rate rule: a token bucket per login (``mqtt.max_publish_per_s``, ``publish_burst``)
        for everyone but Darkstar's own services, so one flooding client (a compromised home system)
        cannot bury the commands and plans behind its messages. Drops are counted and logged per minute."""
        principal = self.principal(username)
        if principal is not None and principal.kind == "service":
            return True
        now = time.monotonic() if now is None else now
        # commands and context have a bucket of their own: a login's busy stream (HA statestream)
        # must not starve its own pause or charge-now
        control = f"/{self.cfg.base_topic}/" in f"/{topic_name}" and ("/cmd/" in topic_name or "/context/" in topic_name)
        key = f"{username or ''}{' (commands)' if control else ''}"
        tokens, last = self._buckets.get(key, (float(self.cfg.publish_burst), now))
        tokens = min(float(self.cfg.publish_burst), tokens + (now - last) * self.cfg.max_publish_per_s)
        admitted = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if admitted else tokens, now)
        if not admitted:
            count, since = self._dropped.get(key, (0, None))
            if since is None:  # the first drop is said at once, the rest once a minute with their count
                log.warning("embedded broker drops publishes by %r: above mqtt.max_publish_per_s %g/s (burst %d)",
                            username, self.cfg.max_publish_per_s, self.cfg.publish_burst)
                self._dropped[key] = (0, now)
            elif now - since >= 60.0:
                log.warning("embedded broker dropped %d more publishes by %r in %.0f s (mqtt.max_publish_per_s)",
                            count + 1, username, now - since)
                self._dropped[key] = (0, now)
            else:
                self._dropped[key] = (count + 1, since)
        return admitted


class EmbeddedBroker:
    def __init__(self, cfg: MQTTConfig, users: Sequence[UserConfig] = ()) -> None:
        self.cfg = cfg
        self.host = cfg.host
        self.port = cfg.port
        self.gate = BusGate(cfg, users)
        self._broker: Any = None
        self._thread = LoopThread("embedded-broker")

    def _config(self) -> dict[str, Any]:
        listener: dict[str, Any] = {"type": "tcp", "bind": f"{self.host}:{self.port}"}
        if self.cfg.tls:
            listener.update(ssl=True, certfile=str(self.cfg.certfile), keyfile=str(self.cfg.keyfile))
        return {
            "listeners": {"default": listener},
            "timeout_disconnect_delay": 0,
            "plugins": {
                "shared.broker_amqtt.GateAuthPlugin": {"gate": self.gate},
                "shared.broker_amqtt.GateTopicPlugin": {"gate": self.gate},
            },
        }

    def start(self, timeout_s: float = 10.0) -> None:
        if port_is_open(self.host, self.port):
            raise RuntimeError(
                f"port {self.host}:{self.port} is already in use; stop what runs there or set mqtt.port"
            )

        async def boot() -> None:
            from shared.broker_amqtt import ConformingBroker  # only the embedded mode needs amqtt

            self._broker = ConformingBroker(self._config())
            await self._broker.start()

        self._thread.start(boot, timeout_s)
        log.info("embedded MQTT broker on %s:%d", self.host, self.port)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop listening, drop every client connection (clients see it at once and reconnect), shut down."""
        broker = self._broker
        if broker is None:
            return
        try:
            self._thread.stop(lambda: self._shutdown(broker), timeout_s)
        except Exception:  # noqa: BLE001 - stopped anyway
            log.warning("embedded broker did not shut down cleanly")
        self._broker = None

    @staticmethod
    async def _shutdown(broker: Any) -> None:
        # amqtt's own shutdown can wait long on connected clients; close the listeners and the
        # client sockets first so the port is free and clients reconnect promptly.
        for server in list(broker._servers.values()):  # noqa: SLF001 - amqtt has no public API for this
            server.instance.close()
        for _session, handler in list(broker._sessions.values()):  # noqa: SLF001
            writer = getattr(handler, "writer", None)
            if writer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.close(), 1)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(broker.shutdown(), 3)
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current:
                task.cancel()
