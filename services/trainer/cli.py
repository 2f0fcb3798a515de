"""``darkstar train aurora|antares``: train, evaluate (in money for Antares) and save a model.

    darkstar train antares --site SITE.yaml --data FILE.csv [--from DATE --to DATE] [--json]
    darkstar train aurora  --site SITE.yaml --data FILE.csv [--from DATE --to DATE] [--json]

A progress bar goes to stderr; ``--json`` prints one JSON document on stdout with the run
(dataset version, split, hyper-parameters, artifacts) and its metrics: per-target MAE/RMSE,
and for Antares ``policy_cost``, ``mpc_cost``, ``oracle_cost`` on the validation days.
``--db URL`` also records the run in ``training_runs`` and submits the model to the registry
(approved only if better than the approved one). Logic: :mod:`shared.antares.training`.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
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
    parser.add_argument("kind", choices=("aurora", "antares"), help="which model to train")
    add_site_data_arguments(parser)
    add_range_arguments(parser, required=False, default_from="data start + 2 days", default_to="last whole day")
    parser.add_argument("--model-dir", type=Path, default=Path("models"), help="where artifacts go (default: models)")
    parser.add_argument("--seed", type=int, default=0, help="LightGBM seed (Antares)")
    parser.add_argument("--validation-frac", type=float, default=0.2, help="last fraction of days held back (Antares)")
    parser.add_argument("--validation-days", type=int, default=7, help="days held back (Aurora)")
    parser.add_argument("--forecast", choices=("naive", "perfect"), default="naive",
                        help="the MPC's load/PV forecast in the episodes (Antares)")
    parser.add_argument("--episode-cache", type=Path, default=None,
                        help="directory of replayed days: a later run replays only new or changed days (Antares)")
    parser.add_argument("--rounds", type=int, default=None, help="boosting rounds per target (Antares)")
    parser.add_argument("--db", default=None, help="database URL: record the run and register the model")
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from shared.config import load_site_config
    from shared.sitedata import load_site_data

    try:
        from shared.antares.training import train_antares
        from shared.training import train_aurora
    except ModuleNotFoundError as err:
        print(f"darkstar train: missing dependency {err.name!r}; install the trainer extra", file=sys.stderr)
        return 2
    store = None
    try:
        site = load_site_config(args.site)
        frame = load_site_data(args.data).frame
        local = frame.index.tz_convert(site.tz)
        date_from, date_to = date_range(args, (local[0] + timedelta(days=2)).date(), (local[-1] - timedelta(days=1)).date())
        if not 0.0 < args.validation_frac < 1.0:
            raise ValueError(f"--validation-frac must be between 0 and 1, got {args.validation_frac}")
        registry = None
        if args.db:
            from shared.registry import ModelRegistry
            from shared.storage.repository import Store

            store = Store.open(args.db)
            registry = ModelRegistry(store, site.site_id, args.model_dir)
        progress = progress_bar(f"train {args.kind}", args.quiet)
        if args.kind == "antares":
            kwargs: dict = {"num_rounds": args.rounds} if args.rounds else {}
            kwargs["cache_dir"] = args.episode_cache
            report = train_antares(frame, site, date_from, date_to, model_dir=args.model_dir, seed=args.seed,
                                   validation_frac=args.validation_frac, forecast=args.forecast, registry=registry,
                                   progress=progress, **kwargs)
        else:
            report = train_aurora(frame, site, date_from, date_to, model_dir=args.model_dir,
                                  validation_days=args.validation_days, registry=registry, progress=progress)
        if store is not None:
            report.store(store)
    except batch_errors() as err:
        return report_error(f"train {args.kind}", err)
    finally:
        if store is not None:
            store.close()
    doc = report.to_dict()
    if args.json:
        print(json.dumps(doc, default=str))
        return 0
    cur = doc["currency"]
    print(f"{doc['kind']} model {doc['model_id']} (run {doc['run_id']}, dataset {doc['dataset_version']})")
    print(f"  trained {doc['split']['train_from']} .. {doc['split']['train_to']}, "
          f"validated {doc['split']['validation_from']} .. {doc['split']['validation_to']}")
    for key in sorted(k for k in doc if k.endswith(("_mae", "_rmse"))):
        print(f"  {key:22s} {doc[key]:.4f}")
    if args.kind == "antares":
        print(f"  policy_cost {doc['policy_cost']:.2f} {cur}, mpc_cost {doc['mpc_cost']:.2f} {cur}, "
              f"oracle_cost {doc['oracle_cost']:.2f} {cur} ({100 * doc['policy_vs_mpc_frac']:+.1f} % vs MPC)")
        print(f"  decision {doc['decision_ms_mean']:.3f} ms mean, {doc['decision_ms_p99']:.3f} ms p99")
    else:
        print(f"  pinball_loss {doc['pinball_loss']:.4f}")
    if doc["registry"]:
        print(f"  registry: {'approved' if doc['registry']['approved'] else 'not approved'} ({doc['registry']['reason']})")
    print(f"  artifacts: {', '.join(doc['artifacts'])}")
    return 0
