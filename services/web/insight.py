"""Forecast, Money and Admin pages: model registry and retraining, money per day, database and logs."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from services.web.auth import Sessions, require_action
from shared.slots import as_utc, local_day_bounds
from shared.webview import days_money, forecast_vs_actual

if TYPE_CHECKING:
    from services.web.service import WebService

RETRAIN = {"forecaster": "Aurora forecasts (forecaster)", "trainer": "Aurora + Antares (trainer)"}


class LogTail(logging.Handler):
    """The last log lines of this process (in ``darkstar up``: every service's), for the Admin page."""

    def __init__(self, lines: int = 2000) -> None:
        super().__init__(level=logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def add_insight_routes(app: FastAPI, web: WebService, sessions: Sessions,
                       page: Callable[..., HTMLResponse]) -> None:
    tail = LogTail()
    logging.getLogger("darkstar").addHandler(tail)
    web.on_close.append(lambda: logging.getLogger("darkstar").removeHandler(tail))

    @app.get("/forecast", response_class=HTMLResponse, include_in_schema=False)
    def forecast_page(request: Request) -> HTMLResponse:
        return page("forecast", request, retrain=RETRAIN)

    @app.get("/money", response_class=HTMLResponse, include_in_schema=False)
    def money_page(request: Request) -> HTMLResponse:
        return page("money", request)

    @app.get("/admin-tools", response_class=HTMLResponse, include_in_schema=False)
    def admin_page(request: Request) -> HTMLResponse:
        return page("admin", request, retrain=RETRAIN)

    def store() -> Any:
        if web.store is None:
            raise HTTPException(503, "the web app runs without a database")
        return web.store

    @app.get("/api/models", tags=["read"])
    def api_models() -> dict[str, Any]:
        """The model registry: the approved model per kind, the newest models registered (approved and
        refused candidates, with score and the registry's reason) and the latest training runs."""
        from shared.registry import ModelRegistry

        registry = ModelRegistry(store(), web.site.site_id, web.site.trainer.model_dir)
        current = {}
        for kind in ("aurora", "antares"):
            record = registry.current(kind)
            current[kind] = None if record is None else {
                k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(record).items()}
        def plain(row: dict[str, Any]) -> dict[str, Any]:
            return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
        runs = [plain(r) for r in registry.runs(limit=30)]
        models = [plain(r) for r in registry.models(limit=20)]
        forecast = web.latest.get("forecast")
        return {"current": current, "models": models, "runs": runs,
                "forecast_in_use": None if forecast is None else {
                    "model_id": forecast.model_id, "fallback": forecast.fallback, "notes": forecast.notes}}

    @app.get("/api/forecast/accuracy", tags=["read"])
    def api_forecast_accuracy(days: int = Query(7, ge=1, le=31)) -> dict[str, Any]:
        """Forecast vs measured over the last ``days`` local days: p10/p50/p90 as known before each
        slot, the naive forecast (a day earlier), and per day the MAE of both (load, PV)."""
        now = as_utc(web.clock.now())
        start, _ = local_day_bounds(now.tz_convert(web.site.tz).date() - timedelta(days=days - 1), web.site.tz)
        forecasts = store().forecasts_between(web.site.site_id, start, now)
        obs = store().observations_between(web.site.site_id, start - timedelta(days=1), now)
        if not obs.empty and obs.index.min() > start:  # a young site: from its first measured day
            start, _ = local_day_bounds(obs.index.min().tz_convert(web.site.tz).date(), web.site.tz)
        return forecast_vs_actual(web.site, forecasts, obs, start, now)

    @app.post("/api/retrain/{service}", tags=["control"])
    def api_retrain(request: Request, service: str) -> dict[str, Any]:
        """Force a retrain now (``cmd/{forecaster|trainer}/retrain``). Admin only."""
        if service not in RETRAIN:
            raise HTTPException(404, f"retrain is for {', '.join(RETRAIN)}")
        who = require_action(web.site, sessions, request, f"command:{service}/retrain")
        result = web.send_command(service, "retrain", {}, issued_by=who.name, timeout_s=10.0)
        if result is None:
            raise HTTPException(504, f"no answer from the {service} within 10 s (is it running?)")
        if result.status != "ok":
            raise HTTPException(400, result.error or "refused")
        return result.data

    @app.get("/api/money", tags=["read"])
    def api_money(days: int = Query(31, ge=1, le=366)) -> dict[str, Any]:
        """Per local day: realized cost, the same day without a battery (both measured, import minus
        export at the slot prices), the self-consumption rule and the oracle's optimum once the oracle
        service computed the day; month-to-date sums."""
        now = as_utc(web.clock.now())
        today = now.tz_convert(web.site.tz).date()
        start, _ = local_day_bounds(today - timedelta(days=days - 1), web.site.tz)
        obs = store().observations_between(web.site.site_id, start, now)
        prices = store().prices_between(web.site.site_id, start, now)
        rows = {r["day"]: r for r in days_money(web.site, obs, prices)}
        oracle = store().oracle_results(web.site.site_id)
        for day, row in oracle.iterrows():
            key = day.isoformat() if isinstance(day, date) else str(day)
            if key in rows:
                breakdown = row["breakdown"] if isinstance(row["breakdown"], dict) else {}
                rows[key].update(oracle=row["oracle_cost"], regret=row["regret"], rule=breakdown.get("rule_cost"))
        out = sorted(rows.values(), key=lambda r: r["day"])
        month = [r for r in out if r["day"].startswith(today.strftime("%Y-%m"))]

        def total(key: str) -> float | None:
            values = [r.get(key) for r in month]
            return None if not values or any(v is None for v in values) else round(sum(values), 4)
        return {"currency": web.site.tariff.currency, "days": out,
                "month_to_date": {k: total(k) for k in ("realized", "no_battery", "saving", "regret")}}

    @app.get("/api/admin/tables", tags=["read"])
    def api_tables() -> dict[str, Any]:
        """Rows per database table for this site, and bytes per table (all sites) where the backend tells."""
        from shared.storage.sizes import table_sizes

        return {"site_id": web.site.site_id, "rows": store().counts(web.site.site_id),
                "sizes": table_sizes(store().engine)}

    @app.post("/api/admin/learning/{scope}", tags=["admin"])
    def api_reset_learning(request: Request, scope: str) -> dict[str, Any]:
        """Back up, then forget today's (``today``) or all (``all``) training runs, models and the
        episode cache (``cmd/trainer/reset_learning``). Admin only."""
        if scope not in ("today", "all"):
            raise HTTPException(404, "scope is today or all")
        who = require_action(web.site, sessions, request, "command:trainer/reset_learning")
        result = web.send_command("trainer", "reset_learning", {"scope": scope}, issued_by=who.name, timeout_s=60.0)
        if result is None:
            raise HTTPException(504, "no answer from the trainer within 60 s (is it running?)")
        if result.status != "ok":
            raise HTTPException(400, result.error or "refused")
        return result.data

    @app.get("/api/admin/logs", tags=["admin"], response_class=PlainTextResponse)
    def api_logs(request: Request, lines: int = Query(200, ge=1, le=2000), download: bool = False) -> PlainTextResponse:
        """The last log lines of the web app's process (all services under ``darkstar up``). Admin only."""
        require_action(web.site, sessions, request, "admin:web/logs")
        text = "\n".join(list(tail.lines)[-lines:]) + "\n"
        headers = {"Content-Disposition": 'attachment; filename="darkstar.log"'} if download else {}
        return PlainTextResponse(text, headers=headers)
