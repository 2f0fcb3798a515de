"""Pages and the read API of the web app. Routes only: what they compute lives in shared.webview.

Every page is server-rendered (Jinja2) and then reads the same JSON API a script or Grafana
would (``/api/...``, documented at ``/docs``); live changes arrive as server-sent events on
``/api/events``. URLs honour a path prefix: the ASGI ``root_path`` or Home Assistant Ingress's
``X-Ingress-Path`` header.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.middleware.gzip import GZipMiddleware

from services.web.auth import COOKIE, SESSION_S, Sessions, require_action
from services.web.ev import add_ev_routes
from services.web.insight import add_insight_routes
from services.web.lab import add_lab_routes
from services.web.settings import add_settings_routes
from shared.auth import principal_from_token
from shared.contracts import ForecastMsg, PlanMsg, PricesMsg
from shared.slots import as_utc, local_day_bounds
from shared.webview import banners, chart_data, history_frame, now_card, today_money

if TYPE_CHECKING:
    from services.web.service import WebService

log = logging.getLogger("darkstar.web")
HERE = Path(__file__).parent
PREFIX_RE = re.compile(r"^(/[A-Za-z0-9_\-.~]+)*/?$")
KEEPALIVE_S = 15.0
EXECUTOR_ACTIONS = ("force_charge", "force_export", "stop", "heat", "pause", "resume", "cancel")
PAGES = {"overview": ("Overview", "/"), "control": ("Control", "/control"), "forecast": ("Forecast", "/forecast"),
         "money": ("Money", "/money"), "lab": ("Lab", "/lab"), "settings": ("Settings", "/settings"),
         "admin": ("Admin", "/admin-tools")}


def base_path(request: Request) -> str:
    """The URL prefix the browser sees: X-Ingress-Path (HA Ingress) or the ASGI root_path."""
    prefix = request.headers.get("x-ingress-path") or request.scope.get("root_path") or ""
    return prefix.rstrip("/") if PREFIX_RE.match(prefix) else ""


class ActionArgs(BaseModel):
    ttl_s: float | None = Field(None, gt=0, le=7 * 86400, description="how long the action holds (s)")
    power_kw: float | None = Field(None, ge=0, description="battery power for force_charge / force_export")
    target_soc_frac: float | None = Field(None, gt=0, le=1, description="force_charge: hold once the SoC reaches it")


class ManualBlockArgs(BaseModel):
    start: datetime = Field(description="ISO 8601 with offset")
    end: datetime
    action: Literal["charge", "discharge", "export", "hold", "heat"]
    power_kw: float | None = Field(None, ge=0)


class Login(BaseModel):
    token: str = Field(min_length=1, max_length=500)


def add_web_routes(app: FastAPI, web: WebService) -> None:
    sessions = Sessions()
    templates = Jinja2Templates(directory=HERE / "templates")
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="web-static")

    def msg(kind: str) -> Any:
        return web.latest.get(kind)

    def page(name: str, request: Request, **extra: Any) -> HTMLResponse:
        session = sessions.get(request.cookies.get(COOKIE))
        return templates.TemplateResponse(request, f"{name}.html", {
            "base": base_path(request), "page": name, "pages": PAGES, "site": web.site,
            "signed_in": session is not None, "csrf": session.csrf if session else "",
            "actions_enabled": web.site.http.admin_token is not None or bool(web.site.auth.users), **extra,
        })

    def stored(fn: str, *args: Any) -> pd.DataFrame:
        if web.store is None:
            return pd.DataFrame()
        try:
            return getattr(web.store, fn)(web.site.site_id, *args)
        except Exception:  # noqa: BLE001 - a page without history still shows the plan
            log.warning("web: reading %s from the database failed", fn, exc_info=True)
            return pd.DataFrame()

    # ------------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview_page(request: Request) -> HTMLResponse:
        return page("overview", request)

    @app.get("/control", response_class=HTMLResponse, include_in_schema=False)
    def control_page(request: Request) -> HTMLResponse:
        return page("control", request)

    add_settings_routes(app, web, sessions, page)
    add_insight_routes(app, web, sessions, page)
    add_lab_routes(app, web, page)

    # ------------------------------------------------------------------ read API
    def latest_or_404(kind: str) -> dict[str, Any]:
        found = msg(kind)
        if found is None:
            raise HTTPException(404, f"no {kind} received yet")
        return found.model_dump(mode="json", by_alias=True)

    @app.get("/api/plan", tags=["read"])
    def api_plan() -> dict[str, Any]:
        """The current plan (darkstar.plan/1, as on the retained ``plan`` topic)."""
        return latest_or_404("plan")

    @app.get("/api/forecast", tags=["read"])
    def api_forecast() -> dict[str, Any]:
        """The latest load and PV forecast with p10/p50/p90 (darkstar.forecast/1)."""
        return latest_or_404("forecast")

    @app.get("/api/prices", tags=["read"])
    def api_prices() -> dict[str, Any]:
        """The latest import/export prices (darkstar.prices/1)."""
        return latest_or_404("prices")

    @app.get("/api/executor/state", tags=["read"])
    def api_executor_state() -> dict[str, Any]:
        """What the executor does now (darkstar.executor_state/1) and the latest telemetry."""
        state = web.state()
        telemetry = web.telemetry()
        if state is None and telemetry is None:
            raise HTTPException(404, "no executor state received yet")
        return {"state": state.model_dump(mode="json") if state else None,
                "telemetry": telemetry.model_dump(mode="json") if telemetry else None}

    @app.get("/api/history", tags=["read"], response_model=None)
    def api_history(
        from_: datetime = Query(alias="from", description="start, ISO 8601 with offset"),
        to: datetime = Query(description="end (exclusive), ISO 8601 with offset"),
        format: Literal["json", "csv"] = "json",
    ) -> Any:
        """Measured slots (energies per 15 min, SoC) with their prices over [from, to); at most 93 days."""
        if from_.tzinfo is None or to.tzinfo is None:
            raise HTTPException(422, "from and to need a UTC offset, e.g. 2025-08-15T00:00:00+02:00")
        if not timedelta(0) < to - from_ <= timedelta(days=93):
            raise HTTPException(422, "to must be after from, and at most 93 days later")
        frame = history_frame(stored("observations_between", from_, to), stored("prices_between", from_, to))
        if format == "csv":
            buf = io.StringIO()
            frame.to_csv(buf, date_format="%Y-%m-%dT%H:%M:%S%z")
            return Response(buf.getvalue(), media_type="text/csv",
                            headers={"Content-Disposition": 'attachment; filename="darkstar-history.csv"'})
        rows = [{"slot_start": ts.isoformat(), **row} for ts, row in zip(frame.index, frame.to_dict("records"))]
        return {"site_id": web.site.site_id, "from": from_.isoformat(), "to": to.isoformat(), "slots": rows}

    @app.get("/api/chart", tags=["read"])
    def api_chart() -> dict[str, Any]:
        """The overview chart's columns: prices, forecast bands, measured, planned flows and SoC."""
        now = web.clock.now()
        plan = msg("plan") if isinstance(msg("plan"), PlanMsg) else None
        start = as_utc(now) - timedelta(hours=48)
        end = as_utc(now) + timedelta(hours=48)
        return chart_data(web.site, now, plan,
                          msg("forecast") if isinstance(msg("forecast"), ForecastMsg) else None,
                          msg("prices") if isinstance(msg("prices"), PricesMsg) else None,
                          stored("prices_between", start, end), stored("observations_between", start, now))

    def last_oracle_day() -> dict[str, Any] | None:
        """The newest day the oracle service has judged (today's is known only after the nightly run)."""
        results = stored("oracle_results")
        if results.empty:
            return None
        day, row = sorted(results.iterrows(), key=lambda kv: str(kv[0]))[-1]

        def number(value: Any) -> float | None:
            return None if value is None or pd.isna(value) else float(value)
        return {"day": str(day), "realized": number(row["realized_cost"]), "oracle": number(row["oracle_cost"]),
                "regret": number(row["regret"])}

    @app.get("/api/overview", tags=["read"])
    def api_overview() -> dict[str, Any]:
        """Cards (now: mode, reason, power flow; today: cost so far, planned, saving) and banners."""
        now = web.clock.now()
        plan = msg("plan") if isinstance(msg("plan"), PlanMsg) else None
        day_start, day_end = local_day_bounds(as_utc(now).tz_convert(web.site.tz).date(), web.site.tz)
        prices = stored("prices_between", day_start, day_end)
        prices_msg = msg("prices")
        if isinstance(prices_msg, PricesMsg):
            live = chart_data(web.site, now, None, None, prices_msg)  # expanded to 15-minute slots
            idx = pd.to_datetime(live["x"], unit="s", utc=True)
            fresh = pd.DataFrame({k: live["series"][k] for k in ("import_price_per_kwh", "export_price_per_kwh")},
                                 index=idx, dtype=float).dropna()
            prices = fresh.combine_first(prices[fresh.columns]) if not prices.empty else fresh
        obs = stored("observations_between", day_start, now)
        return {
            "site_time": as_utc(now).tz_convert(web.site.tz).isoformat(),
            "now": now_card(web.site, now, plan, web.state(), web.telemetry()),
            "today": {**today_money(web.site, now, plan, prices, obs), "oracle": last_oracle_day()},
            "banners": banners(web.site, now, plan=plan,
                               forecast=msg("forecast") if isinstance(msg("forecast"), ForecastMsg) else None,
                               prices=prices_msg if isinstance(prices_msg, PricesMsg) else None,
                               state=web.state(), telemetry=web.telemetry(), errors=list(web.recent_errors),
                               context=web.context_values(), wall_now=datetime.now(tz=as_utc(now).tzinfo)),
            "plan": None if plan is None else {"plan_id": plan.plan_id, "created_at": plan.created_at.isoformat(),
                                               "status": plan.solver.status, "fallback": plan.fallback,
                                               "total_cost": plan.cost.total_cost, "reason": plan.reason},
        }

    @app.get("/api/events", tags=["read"])
    async def api_events(request: Request) -> StreamingResponse:
        """Server-sent events from the bus: ``plan``, ``forecast``, ``prices`` (changed: refetch),
        ``telemetry``, ``executor_state``, ``error``, ``command_result`` (whole message)."""
        client = web.hub.subscribe()

        async def stream() -> Any:
            try:
                yield "retry: 2000\n\n"
                while not await request.is_disconnected():
                    try:
                        yield await asyncio.wait_for(client[1].get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keepalive\n\n"
            finally:
                web.hub.unsubscribe(client)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # ------------------------------------------------------------------ sign-in
    @app.post("/api/login", tags=["auth"])
    def api_login(request: Request, body: Login) -> JSONResponse:
        """Exchange the admin token for an HttpOnly session cookie (SameSite=Strict) and a CSRF token."""
        if web.site.http.admin_token is None and not web.site.auth.users:
            raise HTTPException(503, "sign-in is disabled: set http.admin_token in the web.site configuration")
        who = principal_from_token(web.site, body.token)
        if who is None:
            raise HTTPException(401, "wrong token")
        sid, session = sessions.create(who)
        response = JSONResponse({"principal": who.name, "csrf": session.csrf})
        response.set_cookie(COOKIE, sid, max_age=SESSION_S, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path=(base_path(request) or "/"))
        return response

    @app.post("/api/logout", tags=["auth"])
    def api_logout(request: Request) -> JSONResponse:
        sessions.drop(request.cookies.get(COOKIE))
        response = JSONResponse({"signed_out": True})
        response.delete_cookie(COOKIE, path=(base_path(request) or "/"))
        return response

    # ------------------------------------------------------------------ control
    def command(request: Request, service: str, action: str, args: dict[str, Any]) -> dict[str, Any]:
        who = require_action(web.site, sessions, request, f"command:{service}/{action}")
        result = web.send_command(service, action, args, issued_by=who.name)
        if result is None:
            raise HTTPException(504, f"no answer from the {service} within 5 s (is it running?)")
        if result.status != "ok":
            raise HTTPException(400, result.error or "refused")
        return result.data

    add_ev_routes(app, web, sessions, command)  # the EV cards of the Control page (services/web/ev.py)

    @app.post("/api/actions/{action}", tags=["control"])
    def api_action(request: Request, action: str, body: ActionArgs | None = None) -> dict[str, Any]:
        """A quick action on the executor (``cmd/executor/{action}``), admin only: force_charge,
        force_export, stop (hold), heat (water boost) with ``ttl_s``; pause, resume, cancel."""
        if action not in EXECUTOR_ACTIONS:
            raise HTTPException(404, f"unknown action {action!r}; known: {', '.join(EXECUTOR_ACTIONS)}")
        args = {k: v for k, v in (body.model_dump() if body else {}).items() if v is not None}
        return command(request, "executor", action, args)

    @app.post("/api/manual-blocks", tags=["control"])
    def api_add_block(request: Request, body: ManualBlockArgs) -> dict[str, Any]:
        """Add a manual plan block (``cmd/planner/manual_block``); the planner replans with it. Admin only."""
        args = {"start": body.start.isoformat(), "end": body.end.isoformat(), "action": body.action}
        if body.power_kw is not None:
            args["power_kw"] = body.power_kw
        return command(request, "planner", "manual_block", args)

    @app.delete("/api/manual-blocks", tags=["control"])
    def api_clear_blocks(request: Request) -> dict[str, Any]:
        """Clear every manual block (``cmd/planner/clear_manual_blocks``). Admin only."""
        return command(request, "planner", "clear_manual_blocks", {})

    @app.get("/api/manual-blocks", tags=["control"])
    def api_list_blocks() -> dict[str, Any]:
        """Manual blocks in the current plan: runs of slots whose reason is a manual block."""
        plan = msg("plan")
        blocks: list[dict[str, Any]] = []
        if isinstance(plan, PlanMsg):
            for slot in plan.slots:
                code = slot.reason_code or ""
                if not code.startswith("manual_"):
                    continue
                end = (as_utc(slot.start) + timedelta(minutes=15)).isoformat()
                if blocks and blocks[-1]["action"] == code[7:] and blocks[-1]["end"] == as_utc(slot.start).isoformat():
                    blocks[-1]["end"] = end
                else:
                    blocks.append({"start": as_utc(slot.start).isoformat(), "end": end, "action": code[7:]})
        return {"blocks": blocks}

    @app.get("/api/executor/log", tags=["read"])
    def api_execution_log(hours: float = Query(24, gt=0, le=168)) -> dict[str, Any]:
        """The executor's decisions and writes of the last ``hours`` (execution_log), newest first."""
        now = web.clock.now()
        rows: list[dict[str, Any]] = []
        if web.store is not None:
            rows = web.store.execution_log_between(web.site.site_id, as_utc(now) - timedelta(hours=hours),
                                                   as_utc(now) + timedelta(minutes=1))
        keep = ("ts", "mode", "planned_mode", "planned_battery_kw", "commanded_battery_kw", "measured_battery_kw",
                "measured_soc_frac", "override_kind", "override_expires_at", "success", "error")
        return {"rows": [{k: (r[k].isoformat() if isinstance(r.get(k), datetime) else r.get(k)) for k in keep}
                         for r in rows]}
