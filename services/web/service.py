"""The web app's service: listens to the bus, remembers what the pages show, pushes changes live.

It is a Darkstar service like the others (same runtime, /healthz, /readyz, /metrics), reading the
bus and the database; ``darkstar up`` runs it on the dashboard port and ``python -m services.web``
runs it alone (its own container). Pages and the read API are in services/web/app.py.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from fastapi import FastAPI

from shared.clock import WALL_CLOCK, Clock
from shared.config import SiteConfig
from shared.contracts import (
    CommandMsg,
    CommandResultMsg,
    ErrorEventMsg,
    ExecutorStateMsg,
    Message,
    TelemetryMsg,
)
from shared.mqtt import MqttClient
from shared.service import Service

log = logging.getLogger("darkstar.web")

# kinds whose whole payload goes to the browser; for the others it gets a "changed" note and refetches
# sections the planner reads afresh at each replan: a saved change applies without a restart
HOT_SECTIONS = frozenset({"name", "tariff", "battery", "grid", "pv", "water_heaters", "evs", "planner"})
PUSH_WHOLE = {"telemetry", "executor_state", "error", "command_result", "trainer_run", "oracle_result"}


class EventHub:
    """Fan-out of bus events to server-sent-event clients (one bounded queue per browser tab)."""

    def __init__(self, max_queue: int = 100) -> None:
        self._clients: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[str]]] = set()
        self._lock = threading.Lock()
        self.max_queue = max_queue

    def subscribe(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue[str]]:
        client = (asyncio.get_running_loop(), asyncio.Queue(self.max_queue))
        with self._lock:
            self._clients.add(client)
        return client

    def unsubscribe(self, client: tuple[asyncio.AbstractEventLoop, asyncio.Queue[str]]) -> None:
        with self._lock:
            self._clients.discard(client)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Thread-safe; a slow client loses events rather than blocking the bus."""
        frame = f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"
        with self._lock:
            clients = list(self._clients)
        for loop, queue in clients:
            try:
                loop.call_soon_threadsafe(_offer, queue, frame)
            except RuntimeError:  # its loop is closed
                self.unsubscribe((loop, queue))

    @property
    def clients(self) -> int:
        return len(self._clients)


def _offer(queue: asyncio.Queue[str], frame: str) -> None:
    if not queue.full():
        queue.put_nowait(frame)


class WebService(Service):
    name: ClassVar[str] = "web"
    port_key: ClassVar[str] = "dashboard"  # serves on http.ports["dashboard"]
    takes_site_path: ClassVar[bool] = True  # the settings editor edits that file
    # shown when present; a missing input is a banner on the page, not an unready web service
    inputs: ClassVar[dict[str, float | None]] = {
        "plan": None, "forecast": None, "prices": None, "executor_state": None, "telemetry": None,
    }

    def __init__(self, site: SiteConfig, *, store: Any = None, mqtt: MqttClient | None = None,
                 clock: Clock = WALL_CLOCK, site_path: Path | str | None = None) -> None:
        super().__init__(site, store=store, mqtt=mqtt, clock=clock)
        self.site_path = Path(site_path) if site_path else None
        self.hub = EventHub()
        self.recent_errors: collections.deque[tuple[datetime, str, str, str]] = collections.deque(maxlen=50)
        self._waiting: dict[str, tuple[threading.Event, list[CommandResultMsg]]] = {}
        # set by the embedded stack: hands a saved site to the running services that can take it
        self.site_hook: Callable[[SiteConfig], list[str]] | None = None
        self.on_close: list[Callable[[], None]] = []  # e.g. detach the log tail's handler

    def subscriptions(self) -> list[str]:
        return [*self.inputs, "error", "command_result", "oracle_result", "trainer_run"]

    def handle(self, kind: str, parts: dict[str, str], msg: Message, retained: bool) -> None:
        if isinstance(msg, ErrorEventMsg):
            self.recent_errors.append((datetime.now(timezone.utc), msg.who, msg.what, msg.why))
        if isinstance(msg, CommandResultMsg) and msg.correlation_id in self._waiting:
            done, box = self._waiting[msg.correlation_id]
            box.append(msg)
            done.set()
        if kind in PUSH_WHOLE:
            data = msg.model_dump(mode="json", by_alias=True)
            if isinstance(msg, CommandResultMsg):
                data.update(parts)
        else:
            data = {"kind": kind, "id": getattr(msg, f"{kind}_id", None), **parts}
        self.hub.publish(kind, data)

    def send_command(self, service: str, action: str, args: dict[str, Any] | None = None, *,
                     issued_by: str = "web", timeout_s: float = 5.0) -> CommandResultMsg | None:
        """Publish ``cmd/{service}/{action}`` for a caller already authorised (shared.auth.require)
        and wait for its result; None when none came in time."""
        msg = CommandMsg(site_id=self.site.site_id, args=args or {}, issued_by=issued_by, reason="web app")
        done = threading.Event()
        box: list[CommandResultMsg] = []
        self._waiting[msg.correlation_id] = (done, box)
        try:
            self.publish("command", msg, service=service, action=action)
            done.wait(timeout_s)
        finally:
            self._waiting.pop(msg.correlation_id, None)
        return box[0] if box else None

    def on_stop(self) -> None:
        for close in self.on_close:
            close()

    def apply_site(self, site: SiteConfig, changed: list[str]) -> tuple[list[str], list[str]]:
        """(services that took the saved site, changed keys that need a restart to take effect)."""
        hot = [k for k in changed if k.split(".")[0].split("[")[0] in HOT_SECTIONS]
        if self.site_hook is None or not hot:
            return [], changed
        return self.site_hook(site), [k for k in changed if k not in hot]

    # ------------------------------------------------------------------ what the pages read
    def state(self) -> ExecutorStateMsg | None:
        msg = self.latest.get("executor_state")
        return msg if isinstance(msg, ExecutorStateMsg) else None

    def telemetry(self) -> TelemetryMsg | None:
        msg = self.latest.get("telemetry")
        return msg if isinstance(msg, TelemetryMsg) else None

    def context_values(self) -> dict[str, Any]:
        return {name: self.context_value(name) for name in self.context}

    def build_app(self) -> FastAPI:
        from services.web.app import add_web_routes

        app = super().build_app()
        add_web_routes(app, self)
        return app
