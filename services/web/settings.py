"""The settings editor's routes: the site file as a form, validated and saved by shared.siteedit."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from services.web.auth import Sessions, require_action
from shared.config import yaml_load
from shared.siteedit import (apply_changes, diff, edited_text, get_value, read_only_reason, save, schema_fields,
                             validate)

if TYPE_CHECKING:
    from services.web.service import WebService


class Changes(BaseModel):
    changes: dict[str, Any] = Field(description='key path -> new value as text, e.g. {"battery.capacity_kwh": "12"};'
                                                " an empty text removes the key (its default applies)")


def add_settings_routes(app: FastAPI, web: WebService, sessions: Sessions,
                        page: Callable[..., HTMLResponse]) -> None:
    lock = threading.Lock()  # one save at a time

    def site_file() -> Any:
        if web.site_path is None or not web.site_path.exists():
            raise HTTPException(404, "this web app was started without a site file to edit")
        return web.site_path

    def read_only_why() -> str | None:
        return read_only_reason(site_file())

    def current() -> tuple[str, dict[str, Any]]:
        text = site_file().read_text(encoding="utf-8")
        return text, (yaml_load(text) or {})

    def check(changes: dict[str, Any]) -> dict[str, Any]:
        text, data = current()
        fields = schema_fields(data)
        try:
            edited = apply_changes(data, changes, fields)
        except (KeyError, ValueError) as err:
            path = str(err).strip("'\"").split(":")[0]
            return {"valid": False, "errors": {path: str(err).strip("'\"")}, "diff": ""}
        site, errors = validate(edited, str(site_file()))
        new_text = edited_text(site_file(), changes, fields) if not errors else text
        return {"valid": not errors, "errors": errors, "diff": diff(text, new_text, site_file().name),
                "site": site, "text": new_text}

    @app.get("/settings", response_class=HTMLResponse, include_in_schema=False)
    def settings_page(request: Request) -> HTMLResponse:
        groups: dict[str, list[dict[str, Any]]] = {}
        path = web.site_path if web.site_path is not None and web.site_path.exists() else None
        if path is not None:
            _, data = current()
            for f in schema_fields(data):
                value = get_value(data, f.path)
                groups.setdefault(f.group, []).append({**asdict(f), "value": "" if value is None else _text(value)})
        return page("settings", request, groups=groups, site_file=str(path) if path else None,
                    read_only=read_only_why() if path else None)

    @app.get("/api/settings", tags=["settings"])
    def api_settings() -> dict[str, Any]:
        """Every key of the site file with its description, unit, default, bounds and current value (secrets hidden)."""
        _, data = current()
        return {"file": str(site_file()), "fields": [
            {**asdict(f), "value": None if f.kind == "secret" else get_value(data, f.path)} for f in schema_fields(data)]}

    @app.post("/api/settings/check", tags=["settings"])
    def api_settings_check(body: Changes) -> dict[str, Any]:
        """Validate a change set with the site models and preview the file diff; writes nothing."""
        result = check(body.changes)
        return {k: result[k] for k in ("valid", "errors", "diff")}

    @app.post("/api/settings", tags=["settings"])
    def api_settings_save(request: Request, body: Changes) -> dict[str, Any]:
        """Save a valid change set (needs ``settings:write``): backup, atomic replace, then the running
        services that can take the change do so and the planner replans."""
        who = require_action(web.site, sessions, request, "settings:write")
        if (why := read_only_why()) is not None:
            raise HTTPException(409, why)
        with lock:
            result = check(body.changes)
            if not result["valid"]:
                raise HTTPException(422, {"errors": result["errors"]})
            if not body.changes:
                return {"saved": False, "detail": "nothing to save"}
            backup = save(site_file(), result["text"])
        applied, restart = web.apply_site(result["site"], sorted(body.changes))
        replan = web.send_command("planner", "replan", {}, issued_by=who.name, timeout_s=30.0) if applied else None
        return {"saved": True, "backup": backup.name, "diff": result["diff"], "applied_to": applied,
                "restart_needed_for": restart,
                "replan": None if replan is None else {"status": replan.status, **replan.data,
                                                       "error": replan.error}}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value)
    return str(value)
