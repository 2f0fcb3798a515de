"""Benchmark: the web app's first load, time to first chart, chart update on a new plan, memory.

    uv run python benchmarks/web.py [--loads 10] [--plans 10] [--json]

Starts the demo stack in-process (simulated SE4 home, free ports), then:
1. First-load bytes of the overview page in headless Chromium (gzip as sent on the wire: HTML,
   CSS, JS, the chart and overview JSON; the event stream excluded). Target: <= 300 kB.
2. Time to first chart: navigation start -> both chart panels drawn with data (median of
   ``--loads`` fresh page loads, cold browser cache each time).
3. Chart update when a plan arrives: the planner is asked to replan (``cmd/planner/replan``);
   measured from the moment the plan is published on MQTT to the chart redrawn in the page
   (bus -> web service -> SSE -> fetch /api/chart -> uPlot setData), median of ``--plans``.
4. Memory: the web app alone (``python -m services.web``) as its own process against the demo's
   broker and database, resident set size after serving the pages ``--loads`` times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from services.browser import DESKTOP, chromium, demo_with_web  # noqa: E402
from shared.runtime import DEFAULT_SITE  # noqa: E402


def first_load(browser: Any, url: str) -> tuple[int, float, dict[str, int]]:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    responses: list[Any] = []
    page.on("requestfinished", lambda r: responses.append(r))
    page.goto(url + "/")
    page.wait_for_function("window.darkstar && window.darkstar.firstChartMs && window.darkstar.loaded")
    first_chart_ms = page.evaluate("window.darkstar.firstChartMs")
    page.wait_for_timeout(300)
    per: dict[str, int] = {}
    for req in responses:
        if "/api/events" in req.url:
            continue
        sizes = req.sizes()
        per[req.url.replace(url, "")] = sizes["responseBodySize"] + sizes["responseHeadersSize"]
    context.close()
    return sum(per.values()), first_chart_ms, per


def plan_update(browser: Any, demo: Any, plans: int, timeout_s: float = 300.0) -> list[float]:
    """Publish-to-redraw times (ms) of the next ``plans`` plans (the demo replans by itself; a replan
    command is sent too, so plans come at least every few seconds)."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(demo.url + "/")
    page.wait_for_function("window.darkstar && window.darkstar.loaded && window.darkstar.live")
    published: dict[str, float] = {}
    planner = next(s for s in demo.stack.services if s.name == "planner")
    original = planner.publish

    def timed_publish(kind: str, msg: Any, **parts: str) -> None:
        if kind == "plan":
            published[msg.plan_id] = time.time() * 1000
        original(kind, msg, **parts)

    planner.publish = timed_publish
    out: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < plans and time.monotonic() < deadline:
            demo.web.send_command("planner", "replan", {}, timeout_s=60)
            page.wait_for_timeout(1500)
            drawn = page.evaluate("window.darkstar.chartAtByPlan || {}")
            out.update({pid: at - published[pid] for pid, at in drawn.items() if pid in published})
    finally:
        planner.publish = original
        context.close()
    return list(out.values())[:plans]


def web_process_rss(demo: Any, loads: int, browser: Any, workdir: Path) -> tuple[float, float]:
    """(RSS MB after start, RSS MB after serving) of ``python -m services.web`` on the demo's bus and DB."""
    site = yaml.safe_load(Path(DEFAULT_SITE).read_text())
    from services.demo.run import _free_port

    port = _free_port()
    site["mqtt"] = {"embedded": False, "host": "127.0.0.1", "port": demo.site.mqtt.port}
    site["database"] = {"url": demo.site.database.url.get_secret_value()}
    site["http"] = {"ports": {**demo.site.http.ports, "dashboard": port}}
    demo.web.mqtt.stop()  # the standalone web app takes over the same MQTT client id
    site_file = workdir / "web-site.yaml"
    site_file.write_text(yaml.safe_dump(site))
    log_file = (workdir / "web-standalone.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "services.web", "--site", str(site_file)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=log_file)
    try:
        url = f"http://127.0.0.1:{port}"
        import httpx

        deadline = time.monotonic() + 240  # start-up includes the migration check in a child process
        while True:
            try:
                if httpx.get(url + "/api/plan", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                tail = (workdir / "web-standalone.log").read_text()[-2000:]
                raise RuntimeError(f"the standalone web app did not serve a plan within 240 s:\n{tail}")
            time.sleep(0.5)
        start_rss = _rss_mb(proc.pid)
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        for _ in range(loads):
            for path in ("/", "/control", "/settings"):
                page.goto(url + path)
                page.wait_for_function("window.darkstar && window.darkstar.loaded")
        context.close()
        return start_rss, _rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
        log_file.close()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--plans", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, demo_with_web(Path(tmp) / "demo", accel=60.0) as demo, \
            chromium() as browser:
        loads = [first_load(browser, demo.url) for _ in range(args.loads)]
        updates = plan_update(browser, demo, args.plans)
        print(json.dumps({"first_load_bytes": loads[-1][0], "first_chart_ms": [round(x[1]) for x in loads],
                          "plan_to_chart_ms": [round(u) for u in updates]}), file=sys.stderr)
        rss_start, rss_after = web_process_rss(demo, args.loads, browser, Path(tmp))
    bytes_total, _, per_file = loads[-1]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "first_load_bytes": bytes_total,
        "first_load_files": per_file,
        "time_to_first_chart_ms_median": round(statistics.median(x[1] for x in loads), 1),
        "time_to_first_chart_ms_max": round(max(x[1] for x in loads), 1),
        "plan_to_chart_ms_median": round(statistics.median(updates), 1) if updates else None,
        "plan_to_chart_ms_max": round(max(updates), 1) if updates else None,
        "plan_updates_measured": len(updates),
        "web_rss_mb_started": round(rss_start, 1),
        "web_rss_mb_after_pages": round(rss_after, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
