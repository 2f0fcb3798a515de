"""Training runs: the report every training job returns, and the one Aurora training path.

:func:`train_aurora` is how Aurora is trained everywhere: by the forecaster service (its nightly
retraining, against the model it serves) and by the trainer / ``darkstar train aurora`` (against
the registry's approved model). The same steps, the same artifact names
(``<model_dir>/aurora_v1_<last day>_<hash>.pkl`` with its ``.card.json``):

1. fit on the days before the validation days;
2. score on the validation days (forecasts issued at local midnight for 24 h): MAE/RMSE of the
   p50 per target and the pinball loss, for the candidate and for the model in use;
3. decide: the registry's rule when there is one, else "better than the model in use";
4. a kept candidate is refitted on every day (so it sees the latest days too) and saved.

A :class:`TrainingReport` is what the ``training_runs`` row stores and what ``darkstar train
--json`` prints.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.contracts import TrainerRunMsg
from shared.progress import Progress
from shared.registry import ModelRegistry, artifact_prefix, write_card
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
    current: Any = None,
    progress: Progress | None = None,
    run_id: str | None = None,
    train_kwargs: dict[str, Any] | None = None,
) -> TrainingReport:
    """Aurora on the local days ``date_from``..``date_to`` (see the module doc for the steps).

    ``current``: the model in use to beat when there is no ``registry`` (the forecaster's).
    The report's ``model`` is the model to serve (the refitted candidate), or None when the
    candidate was not kept; ``registry`` holds the decision (``approved``, ``reason``).
    """
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
    steps = 4

    def step(done: int, what: str) -> None:
        if progress:
            progress(done, steps, what)

    # 1. fit on the days before the validation days
    step(0, "training")
    t0 = time.perf_counter()
    candidate = ForecastModels.train(history.loc[history.index < split_at], weather, site, **(train_kwargs or {}))
    fit_s = time.perf_counter() - t0
    # 2. score the candidate and the model in use on the validation days
    step(1, "scoring")
    issues = [local_day_bounds(d, site.tz)[0] for d in val_days]
    t0 = time.perf_counter()
    metrics: dict[str, Any] = _forecast_errors(candidate, history, weather, issues)
    score = score_models(candidate, history, weather, issues, horizon_hours=24)
    metrics["pinball_loss"] = score
    if registry is not None:
        rec = registry.current("aurora")
        current = None
        if rec is not None:
            try:  # the approved model on the same days (it may have seen them: that favours keeping it)
                current = registry.load_aurora()[1]  # type: ignore[index]
            except Exception as err:  # noqa: BLE001 - an unreadable old model is compared by its stored score
                metrics["current_model_error"] = str(err)[:200]
    current_score = None
    if current is not None:
        current_score = score_models(current, history, weather, issues, horizon_hours=24)
        metrics["current_pinball_loss"] = current_score
    eval_s = time.perf_counter() - t0
    # 3. decide; 4. refit a kept candidate on every day and save it
    keep = registry.decide("aurora", score, current_score)[0] if registry is not None else (
        current_score is None or score < current_score)
    step(2, "refitting" if keep else "saving")
    t0 = time.perf_counter()
    model = ForecastModels.train(history, weather, site, **(train_kwargs or {})) if keep else candidate
    refit_s = time.perf_counter() - t0
    split = {"train_from": str(date_from), "train_to": str(val_days[0] - timedelta(days=1)),
             "validation_from": str(val_days[0]), "validation_to": str(val_days[-1]),
             "validation_days": validation_days, "issue": "local midnight, 24 h",
             "refit_on_all_days": keep}
    artifacts: list[str] = []
    model_id = model.model_id
    decision = None
    if keep or registry is not None:  # a rejected candidate is kept on disk only for the registry's record
        content = model.model_id.rsplit("-", 1)[-1]
        if not content.isalnum():
            content = hashlib.sha256(model.model_id.encode()).hexdigest()[:10]
        prefix = artifact_prefix(model_dir, "aurora", date_to, content)
        model_path = model.save(prefix.with_name(prefix.name + ".pkl"))
        card = {**model.card, "model_version": "aurora_v1", "run_id": run_id, "split": split, "metrics": metrics}
        artifacts = [str(model_path), str(write_card(prefix, card))]
        model_id = prefix.name
        if registry is not None:
            decision = registry.submit("aurora", model_id, model_path, metrics, score=score,
                                       current_score=current_score, run_id=run_id).to_dict()
    if decision is None:
        decision = {"approved": keep, "reason": "no model in use" if current_score is None else
                    f"pinball {score:.6g} {'<' if keep else '>='} {current_score:.6g} of the model in use"}
    step(steps, "done")
    dataset_version = hashlib.sha256(pd.util.hash_pandas_object(history, index=True).to_numpy().tobytes()).hexdigest()[:12]
    return TrainingReport(
        kind="aurora", run_id=run_id, site_id=site.site_id, started_at=started, finished_at=datetime.now(UTC),
        dataset_version=dataset_version, date_from=date_from, date_to=date_to, model_type="lightgbm-quantile",
        targets=["load_kw", "pv_kw"], params=dict(train_kwargs or {}), metrics=metrics,
        artifacts=artifacts, model_id=model_id, split=split, currency=site.tariff.currency,
        registry=decision, timings_s={"fit": fit_s, "evaluation": eval_s, "refit": refit_s},
        model=model if keep else None)


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
