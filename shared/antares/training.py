"""Training jobs of the trainer: Antares (episodes -> LightGBM -> money) and Aurora (forecasts).

Each job returns a :class:`TrainingReport`: what the ``training_runs`` row stores (run id,
times, dataset version, date range and split, targets, model type, hyper-parameters, metrics
per target and in money, artifact paths) and what ``darkstar train --json`` prints. With a
:class:`shared.registry.ModelRegistry` the candidate is registered and approved only if it
beats the approved model on the same held-back days and an Antares policy's money is within
``max_excess_vs_mpc_frac`` (``trainer.antares_max_excess_vs_mpc_frac``, 2 %) of the MPC's on those
days (both adjusted for stored energy): one was approved 155 % worse than the MPC when the only
rule was "better than the approved policy (or the first)".
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
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
from shared.contracts import TrainerRunMsg
from shared.cost import adjusted_money
from shared.progress import Progress
from shared.registry import ModelRegistry, artifact_prefix, resolve_artifact, write_card
from shared.slots import local_day_bounds


def new_run_id(kind: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{kind}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass
class TrainingReport:
    kind: str
    run_id: str
    site_id: str
    started_at: datetime
    finished_at: datetime
    dataset_version: str
    date_from: date
    date_to: date
    model_type: str
    targets: list[str]
    params: dict[str, Any]
    metrics: dict[str, Any]
    artifacts: list[str]
    model_id: str
    split: dict[str, Any]
    currency: str = ""
    registry: dict[str, Any] | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    per_day: list[dict[str, Any]] = field(default_factory=list)
    model: Any = None  # the trained object (AntaresPolicy / ForecastModels); not serialized
    episodes: Any = None  # the EpisodeSet (Antares); not serialized

    @property
    def status(self) -> str:
        if self.registry is None:
            return "finished"
        return "finished" if self.registry.get("approved") else "rejected"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "run_id": self.run_id, "site_id": self.site_id, "status": self.status,
            "started_at": self.started_at.isoformat(), "finished_at": self.finished_at.isoformat(),
            "dataset_version": self.dataset_version, "from": self.date_from.isoformat(), "to": self.date_to.isoformat(),
            "split": self.split, "model_type": self.model_type, "targets": self.targets, "params": self.params,
            "model_id": self.model_id, "artifacts": self.artifacts, "currency": self.currency,
            **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.metrics.items()},
            "registry": self.registry, "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
            "notes": self.notes, "per_day": self.per_day,
        }

    def message(self, status: str | None = None) -> TrainerRunMsg:
        """The ``trainer/run`` event (finite float metrics only)."""
        metrics = {k: float(v) for k, v in self.metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        reason = (self.registry or {}).get("reason")
        return TrainerRunMsg(site_id=self.site_id, run_id=self.run_id, target=self.kind, status=status or self.status,
                             metrics=metrics, model_id=self.model_id, detail=(reason or "")[:500] or None)

    def store(self, store: Any) -> None:
        """Write the run to ``training_runs`` (params: hyper-parameters; extra: the rest)."""
        store.store_training_run(self.message(), at=self.finished_at, params=self.params, extra={
            "started_at": self.started_at.isoformat(), "dataset_version": self.dataset_version,
            "from": self.date_from.isoformat(), "to": self.date_to.isoformat(), "split": self.split,
            "targets": self.targets, "model_type": self.model_type, "artifacts": self.artifacts,
            "metrics": {k: v for k, v in self.metrics.items() if not (isinstance(v, float) and not math.isfinite(v))},
            "registry": self.registry, "timings_s": self.timings_s, "notes": self.notes})


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


# --------------------------------------------------------------------------- Aurora


def train_aurora(
    frame: pd.DataFrame,
    site: SiteConfig,
    date_from: date,
    date_to: date,
    *,
    model_dir: str | Path = "var/models",
    validation_days: int = 7,
    weather: pd.DataFrame | None = None,
    registry: ModelRegistry | None = None,
    progress: Progress | None = None,
    run_id: str | None = None,
    train_kwargs: dict[str, Any] | None = None,
) -> TrainingReport:
    """Aurora on ``date_from``..``date_to`` minus the last ``validation_days``, scored on those days
    (forecasts issued at local midnight for 24 h): MAE/RMSE of p50 per target, pinball loss."""
    import hashlib

    from shared.forecast.evaluate import weather_from_forecast_columns
    from shared.forecast.models import ForecastModels, score_models

    started = datetime.now(UTC)
    run_id = run_id or new_run_id("aurora", started)
    start, _ = local_day_bounds(date_from, site.tz)
    _, end = local_day_bounds(date_to, site.tz)
    history = frame.loc[(frame.index >= start) & (frame.index < end), ["load_kw", "pv_kw"]]
    if weather is None:
        weather = weather_from_forecast_columns(frame)
    n_days = (date_to - date_from).days + 1
    if n_days < validation_days + 9:
        raise ValueError(f"Aurora needs at least {validation_days + 9} days ({validation_days} held back), "
                         f"got {n_days} from {date_from} to {date_to}")
    val_days = [date_to - timedelta(days=k) for k in range(validation_days - 1, -1, -1)]
    split_at, _ = local_day_bounds(val_days[0], site.tz)
    steps = 3
    if progress:
        progress(0, steps, "training")
    t0 = time.perf_counter()
    candidate = ForecastModels.train(history.loc[history.index < split_at], weather, site, **(train_kwargs or {}))
    fit_s = time.perf_counter() - t0
    if progress:
        progress(1, steps, "scoring")
    issues = [local_day_bounds(d, site.tz)[0] for d in val_days]
    t0 = time.perf_counter()
    metrics: dict[str, Any] = _forecast_errors(candidate, history, weather, issues)
    score = score_models(candidate, history, weather, issues, horizon_hours=24)
    metrics["pinball_loss"] = score
    eval_s = time.perf_counter() - t0
    if progress:
        progress(2, steps, "saving")
    content = candidate.model_id.rsplit("-", 1)[-1]
    if not content.isalnum():
        content = hashlib.sha256(candidate.model_id.encode()).hexdigest()[:10]
    prefix = artifact_prefix(model_dir, "aurora", date_to, content)
    model_path = candidate.save(prefix.with_name(prefix.name + ".pkl"))
    split = {"train_from": str(date_from), "train_to": str(val_days[0] - timedelta(days=1)),
             "validation_from": str(val_days[0]), "validation_to": str(val_days[-1]),
             "validation_days": validation_days, "issue": "local midnight, 24 h"}
    card = {**candidate.card, "model_version": "aurora_v1", "run_id": run_id, "split": split, "metrics": metrics}
    card_path = write_card(prefix, card)
    model_id = prefix.name
    decision = None
    if registry is not None:
        current_score = None
        current = registry.current("aurora")
        if current is not None and current.model_id != model_id:
            try:  # the approved model on the same days (it may have seen them: that favours keeping it)
                current_score = score_models(registry.load_aurora()[1], history, weather, issues,  # type: ignore[index]
                                             horizon_hours=24)
                metrics["current_pinball_loss"] = current_score
            except Exception as err:  # noqa: BLE001 - an unreadable old model is compared by its stored score
                metrics["current_model_error"] = str(err)[:200]
        decision = registry.submit("aurora", model_id, model_path, metrics, score=score,
                                   current_score=current_score, run_id=run_id).to_dict()
    if progress:
        progress(3, steps, "done")
    dataset_version = hashlib.sha256(pd.util.hash_pandas_object(history, index=True).to_numpy().tobytes()).hexdigest()[:12]
    return TrainingReport(
        kind="aurora", run_id=run_id, site_id=site.site_id, started_at=started, finished_at=datetime.now(UTC),
        dataset_version=dataset_version, date_from=date_from, date_to=date_to, model_type="lightgbm-quantile",
        targets=["load_kw", "pv_kw"], params=dict(train_kwargs or {}), metrics=metrics,
        artifacts=[str(model_path), str(card_path)], model_id=model_id, split=split, currency=site.tariff.currency,
        registry=decision, timings_s={"fit": fit_s, "evaluation": eval_s}, model=candidate)


def _forecast_errors(models: Any, history: pd.DataFrame, weather: pd.DataFrame | None,
                     issues: list[pd.Timestamp]) -> dict[str, float]:
    """MAE / RMSE of the p50 per target over 24 h forecasts issued at ``issues`` (PV: daylight slots)."""
    ys: dict[str, list[np.ndarray]] = {"load": [], "pv": []}
    ps: dict[str, list[np.ndarray]] = {"load": [], "pv": []}
    for issue in issues:
        fc = models.forecast(issue, timedelta(hours=24), weather, history)
        actual = history.reindex(fc.index)
        for t in ("load", "pv"):
            y = actual[f"{t}_kw"].to_numpy(dtype=float)
            p = fc[f"{t}_p50_kw"].to_numpy(dtype=float)
            ok = np.isfinite(y) & ((y > 0) | (p > 0) if t == "pv" else True)
            ys[t].append(y[ok])
            ps[t].append(p[ok])
    out: dict[str, float] = {}
    for t in ("load", "pv"):
        y, p = np.concatenate(ys[t]), np.concatenate(ps[t])
        out[f"{t}_kw_mae"] = float(np.mean(np.abs(y - p))) if len(y) else float("nan")
        out[f"{t}_kw_rmse"] = float(np.sqrt(np.mean((y - p) ** 2))) if len(y) else float("nan")
    return out
