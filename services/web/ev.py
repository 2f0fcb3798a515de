"""The web app's EV controls (docs/ev.md, docs/web.md): one card per configured EV on the Control page.

Reads what the bus knows of the car (context ``ev_plugged``, ``ev_soc_frac``, ``ev_departure``,
``ev_target_soc_frac``, ``ev_target_kwh``; telemetry ``ev_kw``) and sets it through the same
authorised paths as the other quick actions: departure and target SoC are retained context
messages (``context:<name>`` in shared/auth.py), "charge now to X %" and its cancel are the
executor's ``ev_charge`` / ``ev_cancel`` commands (``command:executor/...``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from services.web.auth import Sessions, require_action
from shared.contracts import ContextMsg

if TYPE_CHECKING:
    from services.web.service import WebService

DEFAULT_CHARGE_TTL_S = 6 * 3600.0  # as the executor's default for ev_charge


class EvSettings(BaseModel):
    departure: time | None = Field(None, description="local time the car leaves next (HH:MM, site time zone)")
    target_soc_frac: float | None = Field(None, ge=0.1, le=1.0, description="wanted SoC at departure (0.1-1)")


class ChargeNow(BaseModel):
    target_soc_frac: float = Field(0.8, ge=0.1, le=1.0, description="charge at full power until this SoC")
    ttl_s: float = Field(DEFAULT_CHARGE_TTL_S, gt=0, le=86400, description="and at most this long (s)")


def next_departure(now: datetime, at: time) -> datetime:
    """The next ``at`` (local time of ``now``'s zone) after ``now``: today if still ahead, else tomorrow."""
    when = now.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    return when if when > now else when + timedelta(days=1)


def add_ev_routes(app: FastAPI, web: WebService, sessions: Sessions,
                  command: Callable[[Request, str, str, dict[str, Any]], dict[str, Any]]) -> None:
    """``command``: the web app's authorised ``cmd/<service>/<action>`` sender (services/web/app.py)."""
    names = [ev.name for ev in web.site.evs]
    # "charge now" as the executor last answered this app (ev name -> {target_soc_frac, expires_at});
    # shown while it holds by the site's clock and the car's SoC is below its target
    quick: dict[str, dict[str, Any]] = {}

    def quick_now(ev: str, soc_frac: float | None) -> dict[str, Any] | None:
        q = quick.get(ev)
        if q is None or datetime.fromisoformat(q["expires_at"]) <= web.clock.now() or (
                soc_frac is not None and soc_frac >= q["target_soc_frac"]):
            return None
        return q

    def known(ev: str) -> int:
        if ev not in names:
            raise HTTPException(404, f"no EV named {ev!r}; configured: {', '.join(names) or 'none'}")
        return names.index(ev)

    @app.get("/api/ev", tags=["read"])
    def api_ev() -> dict[str, Any]:
        """Each configured EV: plugged, SoC, charging power, departure and target. The bus's context is
        for the first EV (as the planner's); the others show their configuration only."""
        telemetry = web.telemetry()
        out = []
        for i, ev in enumerate(web.site.evs):
            ctx = (lambda name: web.context_value(name)) if i == 0 else (lambda name: None)
            departure = ctx("ev_departure")
            target = ctx("ev_target_soc_frac")
            out.append({
                "name": ev.name, "battery_kwh": ev.battery_kwh, "plugged": ctx("ev_plugged"),
                "soc_frac": ctx("ev_soc_frac"),
                "ev_kw": telemetry.ev_kw if telemetry is not None and i == 0 else None,
                "departure": departure.isoformat() if isinstance(departure, datetime) else None,
                "departure_default": ev.departure.strftime("%H:%M") if ev.departure else None,
                "target_soc_frac": target if target is not None else ev.target_soc_frac,
                "target_from": "context" if target is not None else "config",
                "target_kwh": ctx("ev_target_kwh"), "charge_now": quick_now(ev.name, ctx("ev_soc_frac")),
            })
        return {"evs": out}

    @app.post("/api/ev/{ev}/settings", tags=["control"])
    def api_ev_settings(request: Request, ev: str, body: EvSettings) -> dict[str, Any]:
        """Set departure and/or target SoC: retained context ``ev_departure`` / ``ev_target_soc_frac``
        (the planner replans; the executor turns the target into ``ev_target_kwh``). Admin only."""
        if known(ev) != 0:
            raise HTTPException(400, "only the first EV has departure and target context (the planner plans for it)")
        values: dict[str, Any] = {}
        if body.departure is not None:
            values["ev_departure"] = next_departure(web.clock.now().astimezone(web.site.tz), body.departure)
        if body.target_soc_frac is not None:
            values["ev_target_soc_frac"] = round(body.target_soc_frac, 3)
        if not values:
            raise HTTPException(422, "give departure and/or target_soc_frac")
        who = [require_action(web.site, sessions, request, f"context:{name}") for name in values][0]
        for name, value in values.items():
            web.publish("context", ContextMsg(site_id=web.site.site_id, name=name, value=value,
                                              source=f"web:{who.name}"), name=name)
        return {name: v.isoformat() if isinstance(v, datetime) else v for name, v in values.items()}

    @app.post("/api/ev/{ev}/charge", tags=["control"])
    def api_ev_charge(request: Request, ev: str, body: ChargeNow) -> dict[str, Any]:
        """Charge now to X % (``cmd/executor/ev_charge``) for at most ``ttl_s``. Admin only."""
        known(ev)
        result = command(request, "executor", "ev_charge",
                         {"ev": ev, "target_soc_frac": body.target_soc_frac, "ttl_s": body.ttl_s})
        if result.get("quick"):
            quick[ev] = result["quick"]
        return result

    @app.post("/api/ev/{ev}/cancel", tags=["control"])
    def api_ev_cancel(request: Request, ev: str) -> dict[str, Any]:
        """Cancel "charge now" (``cmd/executor/ev_cancel``); the plan drives the charger again. Admin only."""
        known(ev)
        result = command(request, "executor", "ev_cancel", {"ev": ev})
        quick.pop(ev, None)
        return result
