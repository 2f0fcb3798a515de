"""The web app in a real browser (Debian's Chromium driven by Playwright) against the demo stack.

One demo (every service, embedded broker, simulated inverter, free ports) runs for the module;
the pages are loaded in headless Chromium with background networking off. Any request to a host
other than 127.0.0.1 fails the test, as does any console error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as paho
import pytest

from services.browser import PHONE, chromium, chromium_path, demo_with_web
from shared.mqtt import bus_login
from tests.conftest import wait_for

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(chromium_path() is None, reason="needs Chromium (apt-get install chromium)")]
PAGES = ("/", "/control", "/forecast", "/money", "/lab", "/settings", "/admin-tools", "/docs")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with demo_with_web(tmp_path_factory.mktemp("web") / "demo", accel=120.0) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any, demo: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield from _watched(context)


def _watched(context: Any) -> Iterator[Any]:
    page = context.new_page()
    page.problems = []  # console errors and requests leaving this machine
    page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))

    def check(request: Any) -> None:
        host = urlparse(request.url).hostname
        if request.url.startswith(("data:", "blob:")):
            return
        if host not in ("127.0.0.1", "localhost"):
            page.problems.append(f"request to a non-local host: {request.url}")
    page.on("request", check)
    yield page
    context.close()


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_function("window.darkstar && (window.darkstar.loaded || window.darkstar.loadError)")
    assert page.evaluate("window.darkstar.loadError || null") is None


def _token(demo: Any) -> str:
    return demo.site.http.admin_token.get_secret_value()


def _sign_in(page: Any, demo: Any) -> None:
    page.fill("#login input[name=token]", _token(demo))
    page.click("#login button")
    page.wait_for_selector("#logout")
    page.wait_for_function("window.darkstar && window.darkstar.loaded")


def test_every_page_loads_without_console_errors_or_remote_requests(page, demo):
    for path in PAGES:
        if path == "/docs":
            page.goto(demo.url + path)
            page.wait_for_selector(".swagger-ui .info", timeout=15000)
        else:
            _open(page, demo.url + path)
    assert page.problems == []


def test_chart_shows_plan_and_history_and_zoom_changes_the_range(page, demo):
    _open(page, demo.url + "/")
    data = page.evaluate("window.darkstar.chartData")
    series = data["series"]
    assert any(v is not None for v in series["soc_planned_pct"]), "no planned SoC in the chart"
    assert any(v is not None for v in series["import_price_per_kwh"]), "no prices in the chart"
    wait_for(lambda: page.evaluate(
        "fetch(document.body.dataset.base + '/api/chart').then(r => r.json())"
        ".then(d => d.series.soc_measured_pct.some(v => v !== null))"), timeout_s=60)
    before = page.evaluate("[window.darkstar.charts[0].scales.x.min, window.darkstar.charts[0].scales.x.max]")
    page.click("#zoom-in")
    after = page.evaluate("[window.darkstar.charts[0].scales.x.min, window.darkstar.charts[0].scales.x.max]")
    assert after[1] - after[0] < 0.6 * (before[1] - before[0])
    # the SoC panel follows the power panel
    assert page.evaluate("window.darkstar.charts[1].scales.x.max") == after[1]
    box = page.locator("#chart-power .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 300)  # wheel out
    wider = page.evaluate("[window.darkstar.charts[0].scales.x.min, window.darkstar.charts[0].scales.x.max]")
    assert wider[1] - wider[0] > after[1] - after[0]
    page.click("#zoom-reset")
    reset = page.evaluate("[window.darkstar.charts[0].scales.x.min, window.darkstar.charts[0].scales.x.max]")
    assert reset[0] == data["x"][0] and reset[1] == data["x"][-1]
    assert page.problems == []


def test_lab_plans_the_day_with_forced_export_and_shows_the_money_and_the_plans(page, demo):
    _open(page, demo.url + "/lab")
    page.fill("#lab-steps", "3")
    page.click("#lab-run")
    page.wait_for_selector("#lab-status.ok, #lab-status.err", timeout=90000)
    assert "plans in" in page.inner_text("#lab-status"), page.inner_text("#lab-status")
    result = page.evaluate("window.darkstar.lab")
    assert len(result["steps"]) == 3 and ("measured" in result["source"] or result["source"] == "forecast")
    rows = page.locator("#lab-steps-table tbody tr")
    assert rows.count() == 3
    for step in result["steps"]:  # the optimum is the baseline: forcing export never saves money
        assert step["cost_change"] >= -1e-6
        assert len(step["flows"]["export_kw"]) == len(result["slots"]) == len(result["baseline_flows"]["soc_kwh"])
    rows.nth(0).click()
    assert "1 forced slot" in page.inner_text("#lab-chart-title")
    drawn = page.evaluate("window.darkstar.labChart.data[2]")
    assert drawn == result["steps"][0]["flows"]["export_kw"]
    # a day with no prices yet is refused with the reason, not a traceback
    page.fill("#lab-day", "2000-01-01")
    page.click("#lab-run")
    page.wait_for_selector("#lab-status.err")
    assert "2000-01-01: nothing measured" in page.inner_text("#lab-status")
    assert page.problems == [] or all("422" in p for p in page.problems)


def _bus_states(demo: Any) -> tuple[paho.Client, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: seen.append(json.loads(m.payload))
    client.username_pw_set(*bus_login(demo.site.mqtt, "test-observer"))  # nobody anonymous on the bus
    client.connect("127.0.0.1", demo.site.mqtt.port)
    client.subscribe(f"{demo.site.mqtt.base_topic}/{demo.site.site_id}/executor/state", qos=1)
    client.loop_start()
    return client, seen


def test_quick_action_needs_the_credential_then_reaches_the_executor_on_the_bus(page, demo):
    client, seen = _bus_states(demo)
    try:
        _open(page, demo.url + "/control")
        page.click("button[data-action=force_charge]")
        page.wait_for_selector("#action-result.err")
        assert "sign in" in page.inner_text("#action-result").lower()
        # a forged request without the credential is refused too; nothing reached the executor
        status = page.evaluate("fetch(document.body.dataset.base + '/api/actions/force_charge', {method: 'POST', "
                               "headers: {'Content-Type': 'application/json'}, body: '{}'}).then(r => r.status)")
        assert status == 401
        assert not any((s.get("override") or {}).get("kind") == "force_charge" for s in seen)

        _sign_in(page, demo)
        page.select_option("#quick select[name=ttl_s]", "1800")
        page.click("button[data-action=force_charge]")
        state = wait_for(lambda: next((s for s in seen if (s.get("override") or {}).get("kind") == "force_charge"),
                                      None), timeout_s=2.0)
        assert state["override"]["expires_at"] is not None
        page.wait_for_selector("#action-result.ok")
        assert "until" in page.inner_text("#action-result")  # the page shows the expiry
        page.wait_for_function("document.querySelector('#ex-override').textContent.includes('force charge')")
    finally:
        demo.web.send_command("executor", "cancel")
        client.loop_stop()
        client.disconnect()
    # the two refusals above are the only errors (the browser logs each 401 response)
    assert [p for p in page.problems if "status of 401" not in p] == []
    assert len(page.problems) == 2


def test_a_session_cookie_without_the_csrf_token_is_refused(page, demo):
    _open(page, demo.url + "/control")
    _sign_in(page, demo)
    status = page.evaluate("fetch(document.body.dataset.base + '/api/actions/pause', {method: 'POST', "
                           "credentials: 'same-origin', headers: {'Content-Type': 'application/json'}, body: '{}'})"
                           ".then(r => r.status)")
    assert status == 401
    assert all("status of 401" in p for p in page.problems)
    cookie = next(c for c in page.context.cookies() if c["name"] == "darkstar_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


@pytest.mark.parametrize("path", ["/", "/control", "/forecast", "/money", "/lab", "/settings", "/admin-tools"])
def test_phone_viewport_has_no_horizontal_scroll(browser, demo, path):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    for page in _watched(context):
        _open(page, demo.url + path)
        page.wait_for_timeout(200)  # the chart sizes itself to the layout
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert page.problems == []


def test_pages_work_under_an_ingress_path_prefix(browser, demo):
    context = browser.new_context(extra_http_headers={"X-Ingress-Path": "/api/hassio_ingress/abc"})
    for page in _watched(context):
        page.route("**/api/hassio_ingress/abc/**",
                   lambda route: route.continue_(url=route.request.url.replace("/api/hassio_ingress/abc", "")))
        page.goto(demo.url + "/")
        assert page.evaluate("document.body.dataset.base") == "/api/hassio_ingress/abc"
        page.wait_for_function("window.darkstar && window.darkstar.loaded")
        assert page.locator("link[rel=stylesheet]").first.get_attribute("href").startswith("/api/hassio_ingress/abc/")
        assert page.problems == []


def _settings_text(demo: Any) -> str:
    return Path(demo.stack.site_path).read_text(encoding="utf-8")


def test_settings_bad_value_shows_the_error_and_writes_nothing(page, demo):
    before = _settings_text(demo)
    _open(page, demo.url + "/settings")
    _sign_in(page, demo)
    page.fill("input[name='battery.capacity_kwh']", "-5")
    error = page.wait_for_selector(".field[data-path='battery.capacity_kwh'] .error")
    assert "greater than 0" in error.inner_text()
    assert page.is_disabled("#save")
    # a forged save of the same value is refused by the server too
    status = page.evaluate("fetch(document.body.dataset.base + '/api/settings', {method: 'POST', headers: "
                           "{'Content-Type': 'application/json', 'X-CSRF-Token': document.body.dataset.csrf}, "
                           "body: JSON.stringify({changes: {'battery.capacity_kwh': '-5'}})}).then(r => r.status)")
    assert status == 422
    assert _settings_text(demo) == before
    assert not list(Path(demo.stack.site_path).parent.glob("site.yaml.*.bak"))
    assert [p for p in page.problems if "status of 422" not in p] == []


def test_settings_good_edit_saves_with_backup_and_comments_and_replans(page, demo):
    site_file = Path(demo.stack.site_path)
    before = site_file.read_text(encoding="utf-8")
    planner = next(s for s in demo.stack.services if s.name == "planner")
    replans = planner.replans
    _open(page, demo.url + "/settings")
    _sign_in(page, demo)
    page.fill("input[name='battery.wear_cost_per_kwh']", "0.02")
    page.wait_for_selector("#diff-card:not([hidden])")
    assert "+  wear_cost_per_kwh: 0.02" in page.inner_text("#diff")
    page.click("#save")
    page.wait_for_selector("#settings-status.ok")
    after = site_file.read_text(encoding="utf-8")
    assert "wear_cost_per_kwh: 0.02" in after
    # comments and every other line kept
    assert [line for line in before.splitlines() if "#" in line] == [line for line in after.splitlines() if "#" in line]
    assert len(before.splitlines()) == len(after.splitlines())
    backups = list(site_file.parent.glob("site.yaml.*.bak"))
    assert len(backups) == 1 and backups[0].read_text(encoding="utf-8") == before
    # the planner took the new value and replanned with it
    assert planner.site.battery.wear_cost_per_kwh == 0.02
    assert planner.replans > replans
    assert "replanned" in page.inner_text("#settings-status")
    assert page.problems == []


def test_history_api_serves_measured_slots_as_json_and_csv(demo):
    import httpx

    store, site_id = demo.stack.store, demo.site.site_id
    wait_for(lambda: store.count("slot_observations", site_id) >= 2, timeout_s=60)
    end = demo.sim_time + timedelta(minutes=1)
    start = end - timedelta(hours=12)
    params = {"from": start.isoformat(), "to": end.isoformat()}
    stored = store.observations_between(site_id, start, end)
    body = httpx.get(demo.url + "/api/history", params=params, timeout=30).json()
    measured = [row for row in body["slots"] if row["load_kwh"] is not None]
    assert len(measured) == stored["load_kwh"].notna().sum()
    assert measured[0]["import_price_per_kwh"] is not None  # joined with the slot's price
    csv = httpx.get(demo.url + "/api/history", params={**params, "format": "csv"}, timeout=30)
    assert csv.headers["content-type"].startswith("text/csv")
    header = csv.text.splitlines()[0].split(",")
    assert header[0] == "slot_start" and {"load_kwh", "pv_kwh", "import_price_per_kwh"} <= set(header)
    bad = httpx.get(demo.url + "/api/history", params={"from": "2025-08-15T00:00:00", "to": end.isoformat()})
    assert bad.status_code == 422 and "offset" in bad.text


def test_every_service_serves_swagger_ui_from_its_own_files(demo):
    import httpx

    for name, port in demo.site.http.ports.items():
        html = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=30).text
        assert "cdn." not in html and "https://" not in html, name
        assert httpx.get(f"http://127.0.0.1:{port}/_static/swagger-ui/swagger-ui-bundle.js", timeout=30).status_code == 200


def test_reset_learning_is_refused_without_the_credential_and_backs_up_with_it(page, demo):
    page.on("dialog", lambda d: d.accept())  # the page asks for confirmation first
    _open(page, demo.url + "/admin-tools")
    page.wait_for_function("document.querySelector('#tables').textContent.includes('rows ·')")  # bytes per table
    page.click("button[data-learning=today]")
    page.wait_for_selector("#retrain-result.err")
    assert "sign in" in page.inner_text("#retrain-result").lower()
    status = page.evaluate("fetch(document.body.dataset.base + '/api/admin/learning/all', {method: 'POST'})"
                           ".then(r => r.status)")
    assert status == 401
    backups = Path(demo.site.trainer.model_dir).parent / "backups"
    assert not list(backups.glob("*.tar.gz"))

    _sign_in(page, demo)
    page.click("button[data-learning=today]")
    page.wait_for_selector("#retrain-result.ok", timeout=60_000)
    assert "backup" in page.inner_text("#retrain-result")
    assert len(list(backups.glob("before-learning-reset-today-*.tar.gz"))) == 1
    assert [p for p in page.problems if "status of 401" not in p] == []


def test_the_today_card_and_the_money_page_show_the_oracles_verdict_once_it_is_known(page, demo):
    from shared.contracts import OracleResultMsg

    store = demo.stack.store
    store.store_oracle_result(OracleResultMsg(site_id=demo.site.site_id, day="2025-08-14", currency="EUR",
                                              oracle_cost=-1.25, realized_cost=-0.75, regret=0.5,
                                              breakdown={"rule_cost": 0.1}))
    _open(page, demo.url + "/")
    page.wait_for_function("document.querySelector('#m-oracle').textContent.includes('regret')")
    assert "2025-08-14" in page.inner_text("#m-oracle-label")
    assert "-0.75 EUR vs -1.25 EUR, regret 0.50 EUR" in page.inner_text("#m-oracle")
    assert page.problems == []
