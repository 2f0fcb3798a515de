"""The EV card of the web app's Control page in a real browser (Debian's Chromium via Playwright)
against the demo stack with its car on a simulated OCPP wallbox (``darkstar up --demo --ev``).

The demo starts at 18:30, so the car is plugged in; the executor publishes its context.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest

from services.browser import chromium_path, demo_with_web
from shared.mqtt import bus_login
from tests.conftest import wait_for
from tests.test_web_browser import _open, _sign_in, browser, page  # noqa: F401 - fixtures shared with the web tests

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(chromium_path() is None, reason="needs Chromium (apt-get install chromium)")]
CARD = "#evs .card.ev[data-ev=demo_car]"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with demo_with_web(tmp_path_factory.mktemp("web-ev") / "demo", accel=60.0,
                       start="2025-08-15T18:30:00+02:00", ev=True) as running:
        yield running


def _executor(demo: Any) -> Any:
    return next(s for s in demo.stack.services if s.name == "executor")


def _quick(demo: Any) -> dict[str, Any] | None:
    return _executor(demo).ev.state()[0]["quick"]


def _open_control(page: Any, demo: Any) -> None:
    _open(page, demo.url + "/control")
    page.wait_for_function("window.darkstar.evLoaded || window.darkstar.evError")
    assert page.evaluate("window.darkstar.evError || null") is None


def _watch_context(demo: Any, name: str) -> tuple[paho.Client, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: seen.append({"retain": m.retain, **json.loads(m.payload)})
    client.username_pw_set(*bus_login(demo.site.mqtt, "test-observer"))
    client.connect("127.0.0.1", demo.site.mqtt.port)
    client.subscribe(f"{demo.site.mqtt.base_topic}/{demo.site.site_id}/context/{name}", qos=1)
    client.loop_start()
    return client, seen


def test_the_card_shows_the_car_from_the_bus(page, demo):
    _open_control(page, demo)
    assert page.locator(CARD).is_visible()
    # the executor's charger reading reaches the card: plugged in at 18:30, SoC from MeterValues
    wait_for(lambda: _executor(demo).context_value("ev_plugged") is True, timeout_s=30)
    page.wait_for_function(f"document.querySelector('{CARD} [data-f=plugged]').textContent === 'yes'")
    assert page.inner_text(f"{CARD} [data-f=target]").startswith("80 %")  # demo's configured target
    assert "07:00" in page.inner_text(f"{CARD} [data-f=departure]")
    assert page.problems == []


def test_setting_target_and_departure_publishes_the_context_on_the_bus(page, demo):
    client, seen = _watch_context(demo, "ev_target_soc_frac")
    try:
        _open_control(page, demo)
        _sign_in(page, demo)
        page.fill(f"{CARD} .ev-settings [name=target_pct]", "65")
        page.fill(f"{CARD} .ev-settings [name=departure]", "06:15")
        page.click(f"{CARD} .ev-settings button")
        page.wait_for_selector(f"{CARD} .ev-result.ok")
        got = wait_for(lambda: next((m for m in seen if m["value"] == 0.65), None), timeout_s=2.0)
        assert got["source"] == "web:admin"
        # the executor (which turns it into ev_target_kwh) and the planner have it: it came over the bus
        wait_for(lambda: _executor(demo).context_value("ev_target_soc_frac") == 0.65, timeout_s=2.0)
        departure = wait_for(lambda: _executor(demo).context_value("ev_departure"), timeout_s=2.0)
        local = departure.astimezone(demo.site.tz)
        assert (local.hour, local.minute) == (6, 15) and departure > demo.clock.now()
        page.wait_for_function(f"document.querySelector('{CARD} [data-f=target]').textContent.startsWith('65 %')")
    finally:
        client.loop_stop()
        client.disconnect()
    assert page.problems == []


def test_charge_now_is_refused_without_the_credential_then_reaches_the_executor(page, demo):
    _open_control(page, demo)
    page.fill(f"{CARD} .ev-charge [name=target_pct]", "90")
    page.click(f"{CARD} button[data-ev-action=charge]")
    page.wait_for_selector(f"{CARD} .ev-result.err")
    assert "sign in" in page.inner_text(f"{CARD} .ev-result").lower()
    page.fill(f"{CARD} .ev-settings [name=target_pct]", "30")
    page.click(f"{CARD} .ev-settings button")
    page.wait_for_selector(f"{CARD} .ev-result.err")
    forged = page.evaluate("fetch(document.body.dataset.base + '/api/ev/demo_car/charge', {method: 'POST', "
                           "headers: {'Content-Type': 'application/json'}, body: '{}'}).then(r => r.status)")
    assert forged == 401
    assert _quick(demo) is None
    assert _executor(demo).context_value("ev_target_soc_frac") != 0.3

    _sign_in(page, demo)
    page.fill(f"{CARD} .ev-charge [name=target_pct]", "90")
    page.select_option(f"{CARD} .ev-charge select[name=ttl_s]", "3600")
    try:
        page.click(f"{CARD} button[data-ev-action=charge]")
        quick = wait_for(lambda: _quick(demo), timeout_s=2.0)
        assert quick["target_soc_frac"] == 0.9
        page.wait_for_selector(f"{CARD} .ev-result.ok")
        assert "until" in page.inner_text(f"{CARD} .ev-result")
        page.wait_for_function(
            f"document.querySelector('{CARD} [data-f=target]').textContent.startsWith('charging now to 90 %')")
        page.click(f"{CARD} button[data-ev-action=cancel]")
        wait_for(lambda: _quick(demo) is None, timeout_s=2.0)
        page.wait_for_function(
            f"!document.querySelector('{CARD} [data-f=target]').textContent.startsWith('charging now')")
    finally:
        demo.web.send_command("executor", "ev_cancel")
    # the three refusals are the only errors (the browser logs each 401 response)
    assert [p for p in page.problems if "status of 401" not in p] == []
