"""Headless Chromium for the web app's browser tests, screenshots and benchmarks (Playwright for Python).

Uses the system's Chromium (Debian package ``chromium``); ``playwright install`` is never needed.
Background networking is off so the browser itself contacts no host; the tests also fail any
request that leaves 127.0.0.1.

It sits in services/, beside the stack it starts (``demo_with_web`` drives a whole demo stack, as a
test would), not inside services/web/, which the stack itself imports.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str | None:
    return os.environ.get("DARKSTAR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def chromium() -> Iterator[Any]:
    """Yields a Playwright browser; ``launch()`` gives it a fresh temporary user-data-dir, removed on close."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError("Chromium not found: apt-get install chromium (or set DARKSTAR_CHROMIUM)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class ServingThread:
    """HTTP servers (uvicorn) on a thread of their own, for a stack started in-process."""

    def __init__(self, servers: list[Any]) -> None:
        self.servers = servers
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="web-test-http", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not all(s.started for s in servers):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("HTTP servers did not start (port taken?)")
            time.sleep(0.05)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(asyncio.gather(*(s.serve() for s in self.servers)))

    def stop(self) -> None:
        for s in self.servers:
            s.should_exit = True
        self.thread.join(15)


@contextmanager
def demo_with_web(workdir: Path, accel: float = 60.0, start: str = "2025-08-15T06:00:00+02:00",
                  measured_slots: int = 0, timeout_s: float = 120.0, ev: bool = False) -> Iterator[Any]:
    """The demo stack (free ports) with its HTTP servers, once the web app has a plan and executor state.

    ``measured_slots``: also wait until that many measured slots are stored (history in the chart).
    ``ev``: with the demo's car on a simulated OCPP wallbox (``darkstar up --demo --ev``).
    Yields the Demo with ``url`` (the web app) and ``web`` (its WebService) attached.
    """
    from services.demo.run import demo_on_free_ports
    from services.stack import Stack
    from shared.config import load_site_config
    from shared.runtime import DEFAULT_SITE

    site = load_site_config(DEFAULT_SITE, environ={})
    demo = demo_on_free_ports(site, Stack, workdir, accel=accel, site_path=DEFAULT_SITE, start=start, ev=ev)
    demo.start()
    serving = None
    try:
        serving = ServingThread(demo.stack.http_servers())
        web = next(s for s in demo.stack.services if s.name == "web")
        deadline = time.monotonic() + timeout_s
        while not (web.latest.get("plan") and web.latest.get("executor_state")
                   and demo.stack.store.count("slot_observations", demo.site.site_id) >= measured_slots):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the demo had no plan / executor state / {measured_slots} measured slots "
                                   f"after {timeout_s:.0f} s")
            time.sleep(0.2)
        demo.url = f"http://127.0.0.1:{demo.site.http.ports['dashboard']}"
        demo.web = web
        yield demo
    finally:
        if serving is not None:
            serving.stop()
        demo.stop()
