"""Antares benchmark: episodes, training time, money on validation days, decision latency.

    nice uv run python benchmarks/antares.py --homes 1 2 3 4 5 [--from 2016-08-03 --to 2017-07-30] [--out FILE]

For each CityLearn 2022 home (``examples/citylearn-home.yaml`` with
``examples/data/citylearn_building_N.csv.gz``; home 4 has 5 kWp PV) it records the MPC
episodes, trains Antares v1 (time-based split, last 20 % of the days validate), replays the
validation days with the policy, the MPC and the oracle, and times one decision (features +
two LightGBM predictions) over 2000 calls. One JSON line per home on stdout (and ``--out``).
Run it with ``nice``, one at a time: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.batch_cli import progress_bar
from shared.antares.training import train_antares
from shared.config import PVArrayConfig, PVConfig, load_site_config
from shared.sitedata import load_site_data


def decision_latency_ms(policy, rows, battery, n: int = 2000) -> dict[str, float]:
    """Time one decision from precomputed features (the model part) and with feature building."""
    from shared.antares.features import FEATURES

    x = rows[list(FEATURES)].to_numpy(dtype=float)
    idx = np.random.default_rng(0).integers(0, len(x), n)
    times = []
    for i in idx:
        t0 = time.perf_counter()
        policy.battery_kw(x[i], battery)
        times.append((time.perf_counter() - t0) * 1000)
    t = np.asarray(times)
    return {"predict_ms_median": float(np.median(t)), "predict_ms_p99": float(np.percentile(t, 99))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--homes", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--from", dest="date_from", default="2016-08-03")
    ap.add_argument("--to", dest="date_to", default="2017-07-30")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "examples" / "data")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cache-dir", type=Path, default=None, help="keep the replayed days here (episode cache)")
    ap.add_argument("--weekly", action="store_true",
                    help="train up to --to minus 7 days with an episode cache, then time the retraining up to --to")
    args = ap.parse_args()
    base = load_site_config(ROOT / "examples" / "citylearn-home.yaml")
    for home in args.homes:
        site = base
        if home == 4:
            site = base.model_copy(update={"pv": PVConfig(arrays=[PVArrayConfig(name="roof", kwp=5.0, tilt_deg=20,
                                                                                  azimuth_deg=180)])})
        frame = load_site_data(args.data_dir / f"citylearn_building_{home}.csv.gz").frame
        date_from, date_to = date.fromisoformat(args.date_from), date.fromisoformat(args.date_to)
        first: dict = {}
        with tempfile.TemporaryDirectory() as tmp:
            cache = args.cache_dir or (Path(tmp) / "episodes" if args.weekly else None)
            if args.weekly:
                t0 = time.perf_counter()
                before = train_antares(frame, site, date_from, date_to - timedelta(days=7), model_dir=tmp,
                                       cache_dir=cache, progress=progress_bar(f"home {home} (first)"))
                first = {"first_run_s": round(time.perf_counter() - t0, 1), "first_run_timings_s": before.timings_s}
            t0 = time.perf_counter()
            report = train_antares(frame, site, date_from, date_to, model_dir=tmp, cache_dir=cache,
                                   progress=progress_bar(f"home {home}"))
            total_s = time.perf_counter() - t0
        doc = report.to_dict()
        row = {"home": home, "from": args.date_from, "to": args.date_to, "split": doc["split"],
               "episode_days": doc["split"]["train_days"] + doc["split"]["validation_days"],
               "timings_s": doc["timings_s"], "total_s": round(total_s, 1), **first,
               "notes": doc["notes"],
               **{k: doc[k] for k in ("policy_cost", "mpc_cost", "oracle_cost", "policy_vs_mpc_frac",
                                      "decision_ms_mean", "decision_ms_p99")},
               **{k: round(v, 4) for k, v in doc.items() if k.endswith(("_mae", "_rmse"))},
               **{k: round(v, 4) for k, v in decision_latency_ms(report.model, _rows(report), site.battery).items()},
               "machine": f"{platform.machine()} {platform.python_version()} shared 2-core"}
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with args.out.open("a") as fh:
                fh.write(line + "\n")
    return 0


def _rows(report):
    """The validation days' feature rows (what the policy really sees)."""
    ep = report.episodes
    return ep.rows[ep.rows["day"] >= ep.used_days[-report.split["validation_days"]]]


if __name__ == "__main__":
    sys.exit(main())
