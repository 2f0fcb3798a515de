"""The local dashboard on port 8080: what the stack knows and does now, readable at a glance.

One page: service health, the next action and why, SoC, the executor's mode, and a plot of the
current plan against prices, the forecast against what was measured, and what was executed.
"""

from __future__ import annotations

import html
import io
import threading
from datetime import timedelta
from typing import Any

import pandas as pd
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response

from shared.contracts import ExecutorStateMsg, ForecastMsg, PlanMsg, TelemetryMsg
from shared.slots import as_utc

_plot_lock = threading.Lock()  # matplotlib's pyplot state is global


def _latest(stack: Any, kind: str) -> Any:
    for service in stack.services:
        msg = service.latest.get(kind)
        if msg is not None:
            return msg
    return None


def _plan_frame(plan: PlanMsg) -> pd.DataFrame:
    rows = [s.model_dump() for s in plan.slots]
    frame = pd.DataFrame(rows)
    frame.index = pd.DatetimeIndex([as_utc(s.start) for s in plan.slots])
    return frame


def _forecast_frame(msg: ForecastMsg) -> pd.DataFrame:
    frame = pd.DataFrame([s.model_dump() for s in msg.slots])
    frame.index = pd.DatetimeIndex([as_utc(s.start) for s in msg.slots])
    return frame


def render_overview_png(stack: Any) -> bytes:
    """Plan (power, SoC, price), forecast vs measured, in the site's local time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tz = stack.site.tz
    plan, forecast = _latest(stack, "plan"), _latest(stack, "forecast")
    now = stack.clock.now() if hasattr(stack, "clock") else pd.Timestamp.now(tz="UTC")
    observed = pd.DataFrame()
    if stack.store is not None:
        try:
            observed = stack.store.observations_between(stack.site.site_id, now - timedelta(hours=24), now)
        except Exception:  # noqa: BLE001 - the page must render without history
            observed = pd.DataFrame()
    with _plot_lock:
        fig, axes = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True, constrained_layout=True)
        ax_power, ax_soc, ax_fc = axes
        if isinstance(plan, PlanMsg):
            f = _plan_frame(plan)
            x = f.index.tz_convert(tz)
            ax_power.step(x, f["charge_kw"] - f["discharge_kw"], where="post", label="battery (+charge) kW")
            ax_power.step(x, f["import_kw"] - f["export_kw"], where="post", label="grid (+import) kW", alpha=0.8)
            if f["water_kw"].abs().sum() > 0:
                ax_power.step(x, f["water_kw"], where="post", label="water heater kW", alpha=0.7)
            if f["ev_kw"].abs().sum() > 0:
                ax_power.step(x, f["ev_kw"], where="post", label="EV kW", alpha=0.7)
            ax_power.axhline(0, color="grey", lw=0.5)
            if f["import_price_per_kwh"].notna().any():
                ax_price = ax_power.twinx()
                ax_price.step(x, f["import_price_per_kwh"], where="post", color="black", lw=0.8, label="import price")
                ax_price.set_ylabel(f"{plan.cost.currency}/kWh")
            ax_soc.plot(x, f["soc_kwh"], color="tab:green", label="planned SoC kWh")
            ax_power.set_title(
                f"plan {plan.plan_id[:8]} ({'FALLBACK' if plan.fallback else plan.solver.status}), cost "
                f"{plan.cost.total_cost:.2f} {plan.cost.currency}: {plan.reason[:110]}", fontsize=9)
        else:
            ax_power.set_title("no plan yet")
        if not observed.empty and "soc_end_frac" in observed.columns and stack.site.battery is not None:
            soc = observed["soc_end_frac"].dropna() * stack.site.battery.capacity_kwh
            ax_soc.plot((soc.index + timedelta(minutes=15)).tz_convert(tz), soc, "k.", ms=3, label="measured SoC kWh")
        if isinstance(forecast, ForecastMsg):
            fc = _forecast_frame(forecast)
            x = fc.index.tz_convert(tz)
            for name, color in (("load", "tab:red"), ("pv", "tab:orange")):
                ax_fc.fill_between(x, fc[f"{name}_p10_kw"], fc[f"{name}_p90_kw"], step="post", color=color, alpha=0.2)
                ax_fc.step(x, fc[f"{name}_p50_kw"], where="post", color=color, label=f"{name} forecast p50 (p10-p90)")
            ax_fc.set_title(f"forecast {forecast.model_id}{' (fallback)' if forecast.fallback else ''}", fontsize=9)
        if not observed.empty:
            x = observed.index.tz_convert(tz)
            for name, color in (("load", "darkred"), ("pv", "darkorange")):
                col = f"{name}_kwh"
                if col in observed.columns:
                    ax_fc.step(x, observed[col] * 4.0, where="post", color=color, lw=0.8, ls="--",
                               label=f"{name} measured")
        for ax in axes:
            ax.axvline(pd.Timestamp(now).tz_convert(tz), color="purple", lw=1)
            ax.legend(loc="upper left", fontsize=7)
            ax.grid(alpha=0.3)
        ax_power.set_ylabel("kW")
        ax_soc.set_ylabel("kWh")
        ax_fc.set_ylabel("kW")
        ax_fc.set_xlabel(f"local time ({stack.site.location.timezone})")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
    return buf.getvalue()


def build_dashboard(stack: Any) -> FastAPI:
    app = FastAPI(title="Darkstar dashboard")

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        out = {}
        for service in stack.services:
            ok, checks = service.readiness()
            out[service.name] = {"ready": ok, **checks}
        return {"site_id": stack.site.site_id, "services": out}

    @app.get("/plot/overview.png")
    def overview_png() -> Response:
        return Response(render_overview_png(stack), media_type="image/png")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        rows = []
        for service in stack.services:
            ok, checks = service.readiness()
            port = stack.site.http.ports[service.name]
            inputs = ", ".join(f"{k}: {v}" for k, v in checks.get("inputs", {}).items())
            rows.append(
                f"<tr><td>{html.escape(service.name)}</td><td class='{'ok' if ok else 'no'}'>"
                f"{'ready' if ok else 'not ready'}</td><td>{html.escape(inputs)}</td>"
                f"<td><a href='http://{stack.site.http.host}:{port}/docs'>API</a></td></tr>"
            )
        plan, state, telemetry = _latest(stack, "plan"), _latest(stack, "executor_state"), _latest(stack, "telemetry")
        facts = []
        now = stack.clock.now() if hasattr(stack, "clock") else None
        if now is not None:
            facts.append(f"site time: {pd.Timestamp(now).tz_convert(stack.site.tz):%Y-%m-%d %H:%M %Z}")
        if isinstance(plan, PlanMsg):
            facts.append(f"next action: <b>{html.escape(str(plan.explanation.get('next_action')))}</b>")
            facts.append(f"why: {html.escape(plan.reason)}")
            facts.append(f"plan cost (horizon): {plan.cost.total_cost:.2f} {plan.cost.currency}")
        if isinstance(telemetry, TelemetryMsg) and telemetry.soc_frac is not None:
            facts.append(f"SoC: {100 * telemetry.soc_frac:.0f} %")
        if isinstance(telemetry, TelemetryMsg) and telemetry.ev_kw is not None:
            facts.append(f"EV charging: {telemetry.ev_kw:.1f} kW")
        if isinstance(state, ExecutorStateMsg):
            override = f" (override {state.override.kind})" if state.override else ""
            facts.append(f"executor: {html.escape(state.mode)}{html.escape(override)}"
                         + (f"; alarms: {html.escape(', '.join(state.alarms))}" if state.alarms else ""))
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>Darkstar</title>"
            "<meta http-equiv='refresh' content='10'>"
            "<style>body{font-family:sans-serif;margin:1em}td,th{padding:3px 8px}.ok{color:green}.no{color:#b00}"
            "</style></head><body>"
            f"<h1>Darkstar: {html.escape(stack.site.name or stack.site.site_id)}</h1>"
            "<p>" + "<br>".join(facts) + "</p>"
            "<img src='/plot/overview.png' alt='plan, forecast and measurements' style='max-width:100%'>"
            "<h2>Services</h2><table border='1'><tr><th>service</th><th>state</th><th>inputs</th><th></th></tr>"
            + "".join(rows)
            + "</table></body></html>"
        )

    return app
