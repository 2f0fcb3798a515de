"""Plot of a walk-forward evaluation: forecast vs actual with the p10-p90 band, and error summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def plot_walk_forward(result, metrics: dict, path: str | Path, title: str = "", sample_issues: int = 3) -> Path:
    """PNG with load and PV for a few sample issue times and MAE by horizon vs the best baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = result.records
    issues = sorted(r["issue"].unique())
    pick = [issues[i] for i in np.linspace(0, len(issues) - 1, min(sample_issues, len(issues))).astype(int)]
    fig, axes = plt.subplots(len(pick) + 1, 2, figsize=(14, 3.0 * (len(pick) + 1)), squeeze=False)
    for row, issue in enumerate(pick):
        sel = r[r["issue"] == issue]
        for col, t in enumerate(("load", "pv")):
            ax = axes[row][col]
            x = sel.index.tz_convert("UTC")
            ax.fill_between(x, sel[f"{t}_p10_kw"], sel[f"{t}_p90_kw"], alpha=0.3, color="tab:blue", label="p10-p90")
            ax.plot(x, sel[f"{t}_p50_kw"], color="tab:blue", label="p50")
            ax.plot(x, sel[f"{t}_actual_kw"], color="black", lw=1, label="actual")
            best = metrics.get(f"{t}_baseline_best")
            if best:
                ax.plot(x, sel[f"{t}_{best}_kw"], color="tab:orange", lw=0.8, ls="--", label=f"baseline {best}")
            ax.set_title(f"{t} issued {pd.Timestamp(issue).isoformat()}", fontsize=9)
            ax.set_ylabel("kW")
            ax.tick_params(labelsize=7)
            if row == 0:
                ax.legend(fontsize=7, loc="upper right")
    for col, t in enumerate(("load", "pv")):
        ax = axes[-1][col]
        sel = r[np.isfinite(r[f"{t}_actual_kw"])]
        if t == "pv":
            sel = sel[sel["daylight"] > 0]
        if sel.empty:
            continue
        err = (sel[f"{t}_p50_kw"] - sel[f"{t}_actual_kw"]).abs().groupby(sel["horizon_h"].astype(int)).mean()
        ax.plot(err.index, err.to_numpy(), label=f"model MAE {metrics.get(f'{t}_mae_kw', float('nan')):.3f} kW")
        best = metrics.get(f"{t}_baseline_best")
        if best:
            b = sel[np.isfinite(sel[f"{t}_{best}_kw"])]
            berr = (b[f"{t}_{best}_kw"] - b[f"{t}_actual_kw"]).abs().groupby(b["horizon_h"].astype(int)).mean()
            ax.plot(berr.index, berr.to_numpy(), ls="--", label=f"baseline {best} MAE {metrics.get(f'{t}_baseline_mae_kw', float('nan')):.3f} kW")
        cov = metrics.get(f"{t}_coverage_p10_p90")
        ax.set_title(f"{t}: MAE by horizon hour (p10-p90 coverage {cov:.0%})", fontsize=9)
        ax.set_xlabel("horizon (h)")
        ax.set_ylabel("MAE kW")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
