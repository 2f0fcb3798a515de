"""A PNG of a plan: prices, power flows, battery SoC (``darkstar plan --plot``). Needs the ``plot`` extra."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402


def plot_plan(result: Any, inputs: Any, site: Any, path: Path) -> None:
    f = result.slots
    tz = site.tz
    x = f.index.tz_convert(tz)
    cur = site.tariff.currency
    fig, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True, gridspec_kw={"height_ratios": [1, 2, 1]})
    ax = axes[0]
    ax.step(x, inputs.prices["import_price_per_kwh"], where="post", label="import price")
    ax.step(x, inputs.prices["export_price_per_kwh"], where="post", label="export price")
    ax.set_ylabel(f"{cur}/kWh")
    ax.legend(loc="upper right", fontsize=8)
    reason = textwrap.fill(result.reason, 150)
    ax.set_title(f"{site.name or site.site_id}: {result.status}, total {result.cost.total:.2f} {cur}\n{reason}", fontsize=8)
    ax = axes[1]
    ax.step(x, f["load_kw"], where="post", color="black", lw=1, label="load")
    ax.step(x, f["pv_kw"] - f["pv_curtail_kw"], where="post", color="orange", label="PV used")
    ax.step(x, f["import_kw"], where="post", color="tab:red", label="import")
    ax.step(x, -f["export_kw"], where="post", color="tab:green", label="export (neg.)")
    ax.fill_between(x, f["charge_kw"] - f["discharge_kw"], step="post", alpha=0.3, color="tab:blue",
                    label="battery (+charge)")
    if f["water_kw"].any():
        ax.step(x, f["water_kw"], where="post", color="tab:purple", label="water heater")
    if f["ev_kw"].any():
        ax.step(x, f["ev_kw"], where="post", color="tab:cyan", label="EV")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("kW")
    ax.legend(loc="upper right", fontsize=8, ncol=4)
    ax = axes[2]
    ax.plot(x, f["soc_kwh"], color="tab:blue", label="SoC")
    if site.battery is not None:
        ax.axhline(site.battery.min_soc_kwh, color="grey", ls=":", lw=1, label="min")
        ax.axhline(result.strategy.reserve_kwh, color="tab:red", ls="--", lw=1, label="reserve")
        ax.axhline(site.battery.max_soc_kwh, color="grey", ls=":", lw=1)
    ax.set_ylabel("kWh")
    ax.legend(loc="upper right", fontsize=8)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %H:%M", tz=tz))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
