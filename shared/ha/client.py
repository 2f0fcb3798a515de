"""A small client of Home Assistant's WebSocket API (https://developers.home-assistant.io/docs/api/websocket).

One connection: authenticate with a long-lived token, send commands (each with an id, answered by
a ``result``), keep subscriptions whose ``event`` messages go to a callback. The connection is a
plain ``websockets`` client; reconnecting is the owner's job (see :mod:`shared.ha.live`), because
only the owner knows what to re-subscribe. The token is never logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

log = logging.getLogger("darkstar.ha")

EventCallback = Callable[[dict[str, Any]], None]


class HAError(RuntimeError):
    """Home Assistant answered a command with an error, or could not be reached."""


class HAAuthError(HAError):
    """Home Assistant refused the token (wrong, expired or revoked)."""


def websocket_url(url: str) -> str:
    """``http://host:8123`` -> ``ws://host:8123/api/websocket`` (https -> wss)."""
    base = url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://"):] + "/api/websocket"
    if base.startswith("http://"):
        return "ws://" + base[len("http://"):] + "/api/websocket"
    raise HAError(f"homeassistant.url must start with http:// or https://, got {url[:60]!r}")


class HAWebSocket:
    """An authenticated WebSocket connection to Home Assistant."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 20.0) -> None:
        self.url = websocket_url(url)
        self._token = token
        self.timeout_s = timeout_s
        self.ha_version: str | None = None
        self._ws: ClientConnection | None = None
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._subscriptions: dict[int, EventCallback] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed: asyncio.Future[str] | None = None  # resolves with the reason the connection ended

    async def connect(self) -> HAWebSocket:
        try:
            self._ws = await asyncio.wait_for(connect(self.url, max_size=64 * 2**20, open_timeout=self.timeout_s),
                                              self.timeout_s)
            hello = json.loads(await asyncio.wait_for(self._ws.recv(), self.timeout_s))
            if hello.get("type") != "auth_required":
                raise HAError(f"{self.url}: expected auth_required, got {hello.get('type')!r}")
            await self._ws.send(json.dumps({"type": "auth", "access_token": self._token}))
            answer = json.loads(await asyncio.wait_for(self._ws.recv(), self.timeout_s))
        except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed, asyncio.TimeoutError) as err:
            await self._abort()
            raise HAError(f"cannot connect to Home Assistant at {self.url}: {type(err).__name__}: {err}") from None
        if answer.get("type") == "auth_invalid":
            await self._abort()
            # HA's message says why (e.g. "Invalid access token or password"); it never echoes the token.
            raise HAAuthError(f"Home Assistant at {self.url} refused the token: {answer.get('message', 'auth_invalid')}")
        if answer.get("type") != "auth_ok":
            await self._abort()
            raise HAError(f"{self.url}: unexpected answer to auth: {answer.get('type')!r}")
        self.ha_version = answer.get("ha_version")
        self.closed = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_loop(), name="ha-websocket-reader")
        return self

    async def _abort(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def _read_loop(self) -> None:
        assert self._ws is not None and self.closed is not None
        reason = "closed"
        try:
            async for raw in self._ws:
                data = json.loads(raw)
                for msg in data if isinstance(data, list) else [data]:  # HA may coalesce messages
                    self._dispatch(msg)
        except ConnectionClosed as err:
            reason = f"connection closed ({err.rcvd.code if err.rcvd else 'no close frame'})"
        except Exception as err:  # noqa: BLE001 - any reader failure ends the connection, with its reason
            reason = f"reader failed: {type(err).__name__}: {err}"
        for future in self._pending.values():
            if not future.done():
                future.set_exception(HAError(f"Home Assistant connection lost: {reason}"))
        self._pending.clear()
        if not self.closed.done():
            self.closed.set_result(reason)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind, msg_id = msg.get("type"), msg.get("id")
        if kind == "result" and msg_id in self._pending:
            future = self._pending.pop(msg_id)
            if future.done():
                return
            if msg.get("success"):
                future.set_result(msg.get("result"))
            else:
                error = msg.get("error") or {}
                future.set_exception(HAError(f"{error.get('code', 'error')}: {error.get('message', '')}"))
        elif kind == "event" and msg_id in self._subscriptions:
            try:
                self._subscriptions[msg_id](msg.get("event") or {})
            except Exception:  # noqa: BLE001 - a consumer bug must not end the connection
                log.exception("Home Assistant event handler failed")

    async def call(self, command: str, timeout_s: float | None = None, **payload: Any) -> Any:
        """Send one command and return its result; raise HAError with HA's error code and message."""
        msg_id, future = self._send_prepare()
        await self._send({"id": msg_id, "type": command, **payload}, msg_id)
        try:
            return await asyncio.wait_for(future, timeout_s or self.timeout_s)
        except asyncio.TimeoutError:
            self._pending.pop(msg_id, None)
            raise HAError(f"Home Assistant did not answer {command!r} within {timeout_s or self.timeout_s:g} s") from None

    async def subscribe(self, command: str, on_event: EventCallback, **payload: Any) -> int:
        """Start a subscription (``subscribe_entities``, ``subscribe_events``, ...); events go to ``on_event``."""
        msg_id, future = self._send_prepare()
        self._subscriptions[msg_id] = on_event
        await self._send({"id": msg_id, "type": command, **payload}, msg_id)
        try:
            await asyncio.wait_for(future, self.timeout_s)
        except Exception:
            self._subscriptions.pop(msg_id, None)
            raise
        return msg_id

    def _send_prepare(self) -> tuple[int, asyncio.Future[Any]]:
        if self._ws is None or self.closed is None or self.closed.done():
            raise HAError("not connected to Home Assistant")
        msg_id, self._next_id = self._next_id, self._next_id + 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        return msg_id, future

    async def _send(self, msg: dict[str, Any], msg_id: int) -> None:
        assert self._ws is not None
        try:
            await self._ws.send(json.dumps(msg))
        except ConnectionClosed as err:
            self._pending.pop(msg_id, None)
            raise HAError(f"Home Assistant connection lost: {err}") from None

    async def call_service(self, domain: str, service: str, entity_id: str, **data: Any) -> Any:
        return await self.call("call_service", domain=domain, service=service, service_data=data,
                               target={"entity_id": entity_id})

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        self._ws = None
