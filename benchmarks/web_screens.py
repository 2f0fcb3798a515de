"""Screenshots of the web app (desktop 1440x900 and phone 390x844) into docs/img/.

    uv run python benchmarks/web_screens.py [--out docs/img] [--url http://127.0.0.1:8080]

Without ``--url`` it starts the demo stack in-process on free ports (simulated SE4 home, 60x),
waits for a plan and some measured history, then drives headless Chromium (services.browser).
With ``--url`` it photographs a running ``darkstar up --demo`` instead (read-only pages).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.browser import DESKTOP, PHONE, chromium, demo_with_web  # noqa: E402
from shared.runtime import setup_logging  # noqa: E402

PAGES = {"overview": "/", "control": "/control", "forecast": "/forecast", "money": "/money", "lab": "/lab",
         "settings": "/settings", "admin": "/admin-tools"}


def shoot(url: str, out: Path, token: str | None) -> list[Path]:
    written = []
    with chromium() as browser:
        for size_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            phone = size_name == "phone"
            context = browser.new_context(viewport=viewport, device_scale_factor=2 if phone else 1,
                                          is_mobile=phone, has_touch=phone)
            page = context.new_page()
            if token:  # signed in, as a homeowner acting would be
                page.goto(url + "/")
                page.evaluate("t => fetch(document.body.dataset.base + '/api/login', {method: 'POST', "
                              "headers: {'Content-Type': 'application/json'}, body: JSON.stringify({token: t})})", token)
            for name, path in PAGES.items():
                page.goto(url + path)
                page.wait_for_function("window.darkstar && (window.darkstar.loaded || window.darkstar.loadError)")
                if name == "lab":  # the what-if run on today, as a user would
                    page.click("#lab-run")
                    page.wait_for_selector("#lab-status.ok, #lab-status.err", timeout=120000)
                page.wait_for_timeout(400)  # the chart sizes itself to the layout
                target = out / f"web-{name}-{size_name}.png"
                page.screenshot(path=str(target), full_page=name in ("overview", "control", "lab"))
                written.append(target)
            context.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"))
    parser.add_argument("--url", default=None, help="photograph a running web app instead of starting the demo")
    args = parser.parse_args(argv)
    setup_logging("INFO")  # as `darkstar up` does: the Admin page's log tail has lines to show
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        running: Any = nullcontext() if args.url else demo_with_web(Path(tmp) / "demo", accel=120.0, measured_slots=8,
                                                                   timeout_s=240)
        with running as demo:
            url = args.url or demo.url
            token = None if args.url else demo.site.http.admin_token.get_secret_value()
            for path in shoot(url, out, token):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
