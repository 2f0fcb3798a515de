"""The embedded MQTT broker (amqtt) for the one-process ``darkstar up`` mode.

It listens on loopback only, on a port that does not clash with a real broker on 1883
(11883 by default), and runs in its own thread with its own event loop so the rest of the
stack can be plain threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from shared.asyncthread import LoopThread

log = logging.getLogger("darkstar.broker")


def port_is_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 11883) -> None:
        self.host = host
        self.port = port
        self._broker: Any = None
        self._thread = LoopThread("embedded-broker")

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "timeout_disconnect_delay": 0,
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

    def start(self, timeout_s: float = 10.0) -> None:
        if port_is_open(self.host, self.port):
            raise RuntimeError(
                f"port {self.host}:{self.port} is already in use; stop what runs there or set mqtt.port"
            )

        async def boot() -> None:
            from amqtt.broker import Broker  # imported here: only the embedded mode needs amqtt

            self._broker = Broker(self._config())
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
