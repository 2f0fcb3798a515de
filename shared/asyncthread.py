"""Run an asyncio component (broker, Modbus server) on its own thread with its own event loop.

The stack is made of threads (paho, uvicorn servers, service loops); async components live
in a ``LoopThread`` so they never share or block another loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any


class LoopThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, boot: Callable[[], Awaitable[Any]], timeout_s: float = 15.0) -> None:
        """Start the thread and run ``boot()`` on its loop; raise if it fails or hangs."""
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(boot,), name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"{self.name} did not start within {timeout_s} s")
        if self._error is not None:
            raise RuntimeError(f"{self.name} failed to start: {self._error}") from self._error

    def _run(self, boot: Callable[[], Awaitable[Any]]) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(boot())
        except BaseException as err:  # noqa: BLE001 - handed to the starting thread
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    def stop(self, shutdown: Callable[[], Awaitable[Any]], timeout_s: float = 10.0) -> None:
        """Run ``shutdown()`` on the loop, then end the loop and the thread."""
        loop = self.loop
        if loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(shutdown(), loop)
        try:
            future.result(timeout_s)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout_s)
            self.loop = None
