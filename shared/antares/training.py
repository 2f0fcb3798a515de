"""Antares training (episodes -> LightGBM -> money); Aurora's is :func:`shared.training.train_aurora`.

The job returns a :class:`shared.training.TrainingReport`: what the ``training_runs`` row stores (run id,
times, dataset version, date range and split, targets, model type, hyper-parameters, metrics
per target and in money, artifact paths) and what ``darkstar train --json`` prints. With a
:class:`shared.registry.ModelRegistry` the candidate is registered and approved only if it
beats the approved model on the same held-back days and an Antares policy's money is within
``max_excess_vs_mpc_frac`` (``trainer.antares_max_excess_vs_mpc_frac``, 2 %) of the MPC's on those
days (both adjusted for stored energy): one was approved 155 % worse than the MPC when the only
rule was "better than the approved policy (or the first)".
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from shared.antares.episodes import (
    SIM_SYSTEM_ID,
    TARGETS,
    EpisodeSet,
    check_one_system,
    record_episodes,
    time_split,
)
from shared.antares.evaluate import evaluate_money, replay_policy
from shared.antares.policy import DEFAULT_ROUNDS, MODEL_TYPE, AntaresPolicy
from shared.config import SiteConfig
from shared.cost import adjusted_money
from shared.progress import Progress
from shared.registry import ModelRegistry, artifact_prefix, resolve_artifact
from shared.training import TrainingReport, new_run_id

# --------------------------------------------------------------------------- Antares


def train_antares(
    frame: pd.DataFrame,
    site: SiteConfig,
    date_from: date,
    date_to: date,
    *,
    model_dir: str | Path = "var/models",
    seed: int = 0,
    validation_frac: float = 0.2,
    forecast: Literal["naive", "perfect"] = "naive",
    params: dict[str, Any] | None = None,
    num_rounds: int = DEFAULT_ROUNDS,
    registry: ModelRegistry | None = None,
    episodes: EpisodeSet | None = None,
    with_oracle: bool = True,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
    run_id: str | None = None,
    max_excess_vs_mpc_frac: float | None = None,
) -> TrainingReport:
    """Episodes on ``date_from``..``date_to``, time-based split, fit, money on the validation days.
    ``max_excess_vs_mpc_frac``: default ``site.trainer.antares_max_excess_vs_mpc_frac``."""
    if max_excess_vs_mpc_frac is None:
        max_excess_vs_mpc_frac = site.trainer.antares_max_excess_vs_mpc_frac
    started = datetime.now(UTC)
    run_id = run_id or new_run_id("antares", started)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if episodes is None:
        episodes = record_episodes(frame, site, date_from, date_to, forecast=forecast, cache_dir=cache_dir,
                                   progress=(lambda d, n, w: progress(d, n, f"episodes {w}")) if progress else None)
    timings["episodes"] = time.perf_counter() - t0
    system_id = check_one_system(episodes.rows)
    train_days, val_days = time_split(episodes.used_days, validation_frac)
    t0 = time.perf_counter()
    policy = AntaresPolicy.train(episodes.rows, train_days, seed=seed, params=params, num_rounds=num_rounds)
    timings["fit"] = time.perf_counter() - t0
    val_rows = episodes.rows[episodes.rows["day"].isin(set(val_days))]
    metrics: dict[str, Any] = policy.target_metrics(val_rows)
    t0 = time.perf_counter()
    judged = episodes
    if system_id != SIM_SYSTEM_ID:
        # live rows: the money comparison still happens in the simulator, against MPC replays of the
        # validation days from the SoC the site really had (live and simulated rows never mix)
        soc_live = float(episodes.days.loc[val_days[0], "soc_start_kwh"])
        judged = record_episodes(frame, site, val_days[0], val_days[-1], forecast=forecast,
                                 soc_kwh=soc_live if np.isfinite(soc_live) else None)
        val_days = [d for d in val_days if d in set(judged.used_days)]
        if not val_days:
            raise ValueError("no validation day of the live episodes can be replayed from the recorded data")
    money = evaluate_money(policy, judged, frame, site, val_days, with_oracle=with_oracle,
                           progress=(lambda d, n, w: progress(d, n, f"validation {w}")) if progress else None)
    timings["evaluation"] = time.perf_counter() - t0
    money_doc = money.to_dict()
    per_day = money_doc.pop("per_day")
    metrics.update({k: v for k, v in money_doc.items() if k in (
        "policy_cost", "mpc_cost", "oracle_cost", "policy_vs_mpc_frac", "decision_ms_mean", "decision_ms_p99",
        "end_soc_value_per_kwh")})
    split = {"train_from": str(train_days[0]), "train_to": str(train_days[-1]), "train_days": len(train_days),
             "validation_from": str(val_days[0]), "validation_to": str(val_days[-1]), "validation_days": len(val_days),
             "validation_frac": validation_frac, "seed": seed, "forecast": forecast, "system_id": system_id,
             "episodes": "simulated" if system_id == SIM_SYSTEM_ID else "live"}
    policy.card.update({"dataset_version": episodes.version, "site_id": site.site_id, "run_id": run_id,
                        "split": split, "metrics": metrics, "currency": site.tariff.currency})
    prefix = artifact_prefix(model_dir, "antares", date_to, policy.content_hash())
    model_path, card_path = policy.save(prefix)
    model_id = prefix.name
    decision = None
    if registry is not None:
        current_score = None
        current = registry.current("antares")
        if current is not None and current.model_id != model_id:
            try:  # the approved policy on the same validation days: a like-for-like comparison
                cur_policy = AntaresPolicy.load(resolve_artifact(registry.model_dir, current.artifact_path))
                soc0 = float(judged.days.loc[val_days[0], "soc_start_kwh"])
                costs, _, soc_end = replay_policy(cur_policy, frame, site, val_days, soc0, forecast=forecast)
                current_score = adjusted_money(float(sum(costs.values())), soc0, soc_end,
                                               money.end_soc_value_per_kwh)
                metrics["current_policy_cost"] = current_score
            except (OSError, ValueError) as err:
                episodes.notes.append(f"approved model {current.model_id} could not be replayed: {err}")
        ceiling = money.mpc_cost + max_excess_vs_mpc_frac * abs(money.mpc_cost)
        decision = registry.submit("antares", model_id, model_path, metrics, score=money.policy_cost,
                                   current_score=current_score, run_id=run_id, max_score=ceiling,
                                   max_score_reason=f"the MPC's money on the validation days "
                                                    f"+ {100 * max_excess_vs_mpc_frac:g} %").to_dict()
    return TrainingReport(
        kind="antares", run_id=run_id, site_id=site.site_id, started_at=started, finished_at=datetime.now(UTC),
        dataset_version=episodes.version, date_from=date_from, date_to=date_to, model_type=MODEL_TYPE,
        targets=list(TARGETS), params={**policy.card["params"], "num_rounds": num_rounds}, metrics=metrics,
        artifacts=[str(model_path), str(card_path)], model_id=model_id, split=split, currency=site.tariff.currency,
        registry=decision, timings_s=timings, notes=list(episodes.notes), per_day=per_day, model=policy, episodes=episodes)
