"""The Lab page: the export what-if on a day of the running site (shared.whatif), in the browser.

Pick a local day (past days from what was measured, today measured so far plus the forecast,
tomorrow from the forecast), optionally relaxed economics; the planner re-plans the day with
export forced into the dearest slots, 1, 2, ... at a time, and each plan is replayed; the page
shows each step's money against the baseline plan and the plans' export and SoC.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from shared.slots import as_utc

if TYPE_CHECKING:
    from services.web.service import WebService


class ExportWhatIf(BaseModel):
    day: date = Field(description="local day of the site, e.g. 2025-08-15 (up to tomorrow)")
    relaxed: bool = Field(False, description="no wear cost, reserve down to the minimum SoC, no terminal value")
    steps: int = Field(6, ge=1, le=16, description="how many progressively larger export targets")
    slots_per_step: int = Field(1, ge=1, le=8, description="forced slots added per step")


def add_lab_routes(app: FastAPI, web: WebService, page: Callable[..., HTMLResponse]) -> None:
    busy = threading.Lock()  # one what-if at a time: each is up to 17 plans, and the planner shares the cores

    @app.get("/lab", response_class=HTMLResponse, include_in_schema=False)
    def lab_page(request: Request) -> HTMLResponse:
        today = as_utc(web.clock.now()).tz_convert(web.site.tz).date()
        return page("lab", request, today=today.isoformat(), tomorrow=(today + timedelta(days=1)).isoformat())

    @app.post("/api/lab/export", tags=["read"])
    def api_lab_export(body: ExportWhatIf) -> dict[str, Any]:
        """The export what-if on one local day: the baseline plan and each forced-export step with its
        cost (adjusted for the energy left in the battery) and change against the baseline, and per
        slot the export, import and SoC of every plan. Writes nothing; moves nothing."""
        from shared.whatif import live_actuals, whatif_export_on

        if web.store is None:
            raise HTTPException(503, "the web app runs without a database")
        today = as_utc(web.clock.now()).tz_convert(web.site.tz).date()
        if body.day > today + timedelta(days=1):
            raise HTTPException(422, f"day: {body.day.isoformat()} is beyond tomorrow: no prices or forecast yet")
        if not busy.acquire(blocking=False):
            raise HTTPException(429, "another what-if is running: try again in a few seconds")
        try:
            act = live_actuals(web.store, web.site, body.day)
            soc0 = _soc_at_start(web, act.index[0])
            result = whatif_export_on(body.day, act, web.site, soc0, body.relaxed, body.steps, body.slots_per_step)
        except ValueError as err:  # what is missing or not possible, named by shared.whatif
            raise HTTPException(422, str(err)) from None
        finally:
            busy.release()
        measured = len(act.index) - act.missing_slots
        result.source = "measured" if act.missing_slots == 0 else (
            "forecast" if measured == 0 else f"{measured} slots measured, {act.missing_slots} forecast")
        return {**result.to_dict(web.site.site_id, flows=True),
                "from_local": act.index[0].tz_convert(web.site.tz).strftime("%H:%M"),
                "soc_start_from": "measured" if soc0 is not None else "reserve (no measured SoC at its start)"}


def _soc_at_start(web: WebService, start: Any) -> float | None:
    """The battery energy at the what-if's start: measured at the end of the slot before it, or the
    live SoC when it starts now; None when neither is known (then: the reserve, and the page says so)."""
    if web.site.battery is None:
        return None
    obs = web.store.observations_between(web.site.site_id, (start - timedelta(minutes=15)).to_pydatetime(),
                                         start.to_pydatetime())
    if not obs.empty and "soc_end_frac" in obs and obs["soc_end_frac"].notna().any():
        return float(obs["soc_end_frac"].dropna().iloc[-1]) * web.site.battery.capacity_kwh
    telemetry = web.latest.get("telemetry")
    now = as_utc(web.clock.now())
    if telemetry is not None and telemetry.soc_kwh is not None and abs(now - start) <= timedelta(minutes=30):
        return float(telemetry.soc_kwh)
    return None
