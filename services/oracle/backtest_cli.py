"""``darkstar backtest``: closed-loop replay of the planner over recorded history.

    darkstar backtest --site SITE.yaml --data FILE.csv --from DATE --to DATE
        --forecast perfect|naive|aurora|aurora,naive,perfect [--risk cautious] [--rule-guard auto] [--replan-minutes 60]
        [--json] [--plot out.png]

Progress goes to stderr; with ``--json`` one JSON document goes to stdout (money in the
site currency). Several forecasters (comma-separated) are compared in money in one run, on the
same oracle, rule and baseline: the JSON then holds ``forecasts`` (one document each) and
``comparison`` (adjusted cost and captured fraction per forecaster, and the rule's). Logic:
:mod:`shared.backtest`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.batch_cli import (
    add_output_arguments,
    add_range_arguments,
    add_site_data_arguments,
    batch_errors,
    date_range,
    progress_bar,
    report_error,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_site_data_arguments(parser)
    add_range_arguments(parser)
    parser.add_argument("--forecast", default="perfect",
                        help="perfect, naive or aurora; several comma-separated (e.g. aurora,naive,perfect) to compare")
    parser.add_argument("--risk", choices=("cautious", "balanced", "bold"), default=None,
                        help="override planner.risk (cautious plans on Aurora's load p90 / PV p10)")
    parser.add_argument("--rule-guard", choices=("off", "auto", "on"), default=None,
                        help="override planner.rule_guard.mode (auto: the self-consumption rule while the MPC's "
                             "recent regret exceeds the margin)")
    parser.add_argument("--replan-minutes", type=int, default=60, help="minutes between replans (multiple of 15)")
    parser.add_argument("--soc-kwh", type=float, default=None, help="battery energy at the start (default: reserve)")
    parser.add_argument("--retrain-days", type=int, default=7, help="aurora: days between retrainings")
    parser.add_argument("--forecast-every-hours", type=int, default=6, help="aurora: hours between forecast issues")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG: cumulative cost per strategy and SoC")
    add_output_arguments(parser)


def plot_backtest(result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7), sharex=False)
    for name, curve in result.curves.items():
        ax1.plot(list(curve.index), curve.to_numpy(), label=name.replace("_", " "))
    ax1.set_ylabel(f"cumulative cost ({result.currency})")
    ax1.set_title(f"{result.site_id}: backtest {result.date_from}..{result.date_to}, forecast {result.forecast}")
    ax1.legend()
    ax1.grid(alpha=0.3)
    flows = result.flows
    ax2.plot(flows.index, flows["soc_kwh"], lw=0.7, label="SoC (kWh)")
    ax2.set_ylabel("SoC (kWh)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _summary(doc: dict) -> str:
    cur = doc["currency"]

    def pct(frac: float | None) -> str:
        return "n/a (the oracle saves nothing)" if frac is None else f"{frac * 100:.1f} %"

    value = doc["end_soc_value_per_kwh"]
    lines = [
        (f"{doc['site_id']} {doc['from']}..{doc['to']} ({doc['days']} days), forecast {doc['forecast']}, "
         f"replan every {doc['replan_minutes']} min ({doc['replans']} plans, {doc['fallback_plans']} fallbacks, "
         f"{doc['rule_guard_plans']} by the rule guard ({doc['rule_guard']}))"),
        f"  all batteries start at {doc['soc_start_kwh']:.2f} kWh; energy left at the end is worth "
        f"{value:.4f} {cur}/kWh (shared.cost.stored_energy_value_per_kwh)",
        f"  {'':22}{'money':>10} {'end SoC':>9} {'adjusted':>10}",
        f"  baseline (no battery) {doc['baseline_cost']:10.2f} {'':>9} {doc['baseline_cost']:10.2f} {cur}",
        f"  self-consumption rule {doc['self_consumption_cost']:10.2f} {doc['rule_soc_end_kwh']:9.2f} "
        f"{doc['self_consumption_adjusted_cost']:10.2f} {cur}",
        f"  MPC (realized)        {doc['realized_cost']:10.2f} {doc['soc_end_kwh']:9.2f} "
        f"{doc['realized_adjusted_cost']:10.2f} {cur}",
        f"  oracle                {doc['oracle_cost']:10.2f} {doc['oracle_soc_end_kwh']:9.2f} "
        f"{doc['oracle_adjusted_cost']:10.2f} {cur}",
        f"  savings captured (adjusted): MPC {pct(doc['savings_captured_frac'])}, rule {pct(doc['rule_captured_frac'])}",
        f"  runtime {doc['runtime_s']:.1f} s (solver {doc['solve_s_total']:.1f} s)",
    ]
    lines += [f"note: {n}" for n in doc["notes"]]
    return "\n".join(lines)


FORECASTS = ("perfect", "naive", "aurora")


def _comparison(docs: list[dict]) -> dict:
    first = docs[0]
    return {
        "site_id": first["site_id"], "currency": first["currency"], "from": first["from"], "to": first["to"],
        "days": first["days"], "risk": first["risk"], "baseline_cost": first["baseline_cost"],
        "oracle_adjusted_cost": first["oracle_adjusted_cost"],
        "self_consumption_adjusted_cost": first["self_consumption_adjusted_cost"],
        "rule_captured_frac": first["rule_captured_frac"],
        "comparison": {d["forecast"]: {"realized_adjusted_cost": d["realized_adjusted_cost"],
                                       "savings_captured_frac": d["savings_captured_frac"],
                                       "soc_end_kwh": d["soc_end_kwh"], "runtime_s": d["runtime_s"]} for d in docs},
        "forecasts": docs,
    }


def _comparison_summary(doc: dict) -> str:
    cur = doc["currency"]

    def pct(frac: float | None) -> str:
        return "n/a" if frac is None else f"{frac * 100:.1f} %"

    lines = [f"{doc['site_id']} {doc['from']}..{doc['to']} ({doc['days']} days), risk {doc['risk']}: "
             f"no battery {doc['baseline_cost']:.2f} {cur}, oracle {doc['oracle_adjusted_cost']:.2f} {cur} (adjusted)",
             f"  {'strategy':<24}{'adjusted cost':>14} {'captured':>9}",
             f"  {'self-consumption rule':<24}{doc['self_consumption_adjusted_cost']:14.2f} "
             f"{pct(doc['rule_captured_frac']):>9}"]
    for name, row in doc["comparison"].items():
        lines.append(f"  {'MPC + ' + name:<24}{row['realized_adjusted_cost']:14.2f} {pct(row['savings_captured_frac']):>9}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from shared.backtest import run_backtest
    from shared.config import load_site_config
    from shared.sitedata import load_site_data

    kinds = [k.strip() for k in str(args.forecast).split(",") if k.strip()]
    bad = [k for k in kinds if k not in FORECASTS]
    if not kinds or bad:
        print(f"darkstar backtest: --forecast: unknown {', '.join(bad) or '(empty)'} (perfect, naive, aurora)",
              file=sys.stderr)
        return 2
    results = []
    try:
        site = load_site_config(args.site)
        data = load_site_data(args.data)
        date_from, date_to = date_range(args)
        oracle_run = None
        for kind in kinds:
            kwargs = {}
            if kind == "aurora":
                kwargs = {"retrain_days": args.retrain_days, "forecast_every_hours": args.forecast_every_hours}
            result = run_backtest(
                data.frame, site, date_from, date_to, forecast=kind, replan_minutes=args.replan_minutes,
                soc_kwh=args.soc_kwh, progress=progress_bar("backtest" if len(kinds) == 1 else f"backtest {kind}", args.quiet), forecast_kwargs=kwargs,
                risk=args.risk, oracle_run=oracle_run, rule_guard=args.rule_guard,
            )
            oracle_run = result.oracle_run
            results.append(result)
    except batch_errors() as err:
        return report_error("backtest", err)
    docs = [r.to_dict() for r in results]
    if args.plot:
        plot_backtest(results[0], args.plot)
        print(f"plot written to {args.plot}" + (f" ({kinds[0]})" if len(kinds) > 1 else ""), file=sys.stderr)
    if len(docs) == 1:
        print(json.dumps(docs[0]) if args.json else _summary(docs[0]))
    else:
        doc = _comparison(docs)
        print(json.dumps(doc) if args.json else _comparison_summary(doc))
    return 0
