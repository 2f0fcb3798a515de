"""Headless Chromium for the web app's browser tests, screenshots and benchmarks (Playwright for Python).

Uses the system's Chromium (Debian package ``chromium``); ``playwright install`` is never needed.
Background networking is off so the browser itself contacts no host; the tests also fail any
request that leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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
