"""The local dashboard on port 8080: what the stack knows now, readable at a glance."""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse


def build_dashboard(stack: Any) -> FastAPI:
    app = FastAPI(title="Darkstar dashboard")

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        out = {}
        for service in stack.services:
            ok, checks = service.readiness()
            out[service.name] = {"ready": ok, **checks}
        return {"site_id": stack.site.site_id, "services": out}

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        rows = []
        for service in stack.services:
            ok, checks = service.readiness()
            port = stack.site.http.ports[service.name]
            rows.append(
                f"<tr><td>{html.escape(service.name)}</td><td>{'ready' if ok else 'not ready'}</td>"
                f"<td>{html.escape(str(checks.get('inputs', {})))}</td>"
                f"<td><a href='http://{stack.site.http.host}:{port}/docs'>API</a></td></tr>"
            )
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>Darkstar</title>"
            "<meta http-equiv='refresh' content='10'></head><body>"
            f"<h1>Darkstar: {html.escape(stack.site.name or stack.site.site_id)}</h1>"
            "<table border='1' cellpadding='4'><tr><th>service</th><th>state</th><th>inputs</th><th></th></tr>"
            + "".join(rows)
            + "</table></body></html>"
        )

    return app
