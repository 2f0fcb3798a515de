"""Antares v1: LightGBM models imitating the planner's next-slot decisions.

One gradient-boosted regressor per target (:data:`shared.antares.episodes.TARGETS`): battery
charge power, battery discharge power, planned export. The battery action is
``charge - discharge`` (kW, + = charge), clipped to the battery's power limits; the executor
then clamps it to the SoC limits (``shared.battery.step``). The export prediction is advisory
(the grid takes what is left), reported for monitoring.

Artifact: one JSON file with the model strings, the feature list and the model card
(``<prefix>.model.json``) and the card alone (``<prefix>.card.json``), see docs/antares.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.antares.episodes import BATTERY_TARGETS, TARGETS
from shared.antares.features import FEATURES
from shared.config import BatteryConfig

MODEL_TYPE = "lightgbm-gbdt"
MODEL_VERSION = "antares_v1"
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "regression_l2", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
    "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
    "num_threads": 1,  # single-threaded: reproducible and kind to a shared 2-core machine
    "deterministic": True, "force_row_wise": True, "verbosity": -1,
}
DEFAULT_ROUNDS = 300


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - p) ** 2))) if len(y) else float("nan")


@dataclass
class AntaresPolicy:
    """The trained boosters (one per target), the features they expect and the model card."""

    boosters: dict[str, Any]
    features: tuple[str, ...] = FEATURES
    card: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ acting
    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Per-target predictions for rows of features (2-D), clipped at 0 (powers are >= 0)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        return {t: np.maximum(b.predict(x, num_threads=1), 0.0) for t, b in self.boosters.items()}

    def battery_kw(self, features: np.ndarray, battery: BatteryConfig) -> float:
        """The battery setpoint (kW, + = charge) for one slot's feature vector."""
        x = np.asarray(features, dtype=float).reshape(1, -1)
        charge = self.boosters["charge_kw"].predict(x, num_threads=1)[0]
        discharge = self.boosters["discharge_kw"].predict(x, num_threads=1)[0]
        return float(min(max(charge - discharge, -battery.max_discharge_kw), battery.max_charge_kw))

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, rows: pd.DataFrame, train_days: list, *, seed: int = 0, params: dict[str, Any] | None = None,
              num_rounds: int = DEFAULT_ROUNDS) -> AntaresPolicy:
        """Fit on the episode rows of ``train_days`` (battery targets weighted by ``battery_weight``)."""
        import lightgbm as lgb

        p = {**DEFAULT_PARAMS, **(params or {}), "seed": seed}
        train = rows[rows["day"].isin(set(train_days))]
        if train.empty:
            raise ValueError("no episode rows on the training days")
        x = train[list(FEATURES)].to_numpy(dtype=float)
        boosters = {}
        t0 = time.perf_counter()
        for target in TARGETS:
            weight = train["battery_weight"].to_numpy(dtype=float) if target in BATTERY_TARGETS else None
            if weight is not None and weight.sum() <= 0:
                raise ValueError(f"no training day has battery readings: cannot learn {target}")
            data = lgb.Dataset(x, label=train[target].to_numpy(dtype=float), weight=weight,
                               feature_name=list(FEATURES), free_raw_data=True)
            boosters[target] = lgb.train(p, data, num_boost_round=num_rounds)
        card = {"model_version": MODEL_VERSION, "model_type": MODEL_TYPE, "targets": list(TARGETS),
                "features": list(FEATURES), "params": p, "num_rounds": num_rounds, "seed": seed,
                "train_rows": len(train), "train_from": str(min(train_days)), "train_to": str(max(train_days)),
                "fit_s": round(time.perf_counter() - t0, 3)}
        return cls(boosters=boosters, card=card)

    def target_metrics(self, rows: pd.DataFrame) -> dict[str, float]:
        """MAE and RMSE per target on ``rows`` (battery targets on rows with battery readings only)."""
        pred = self.predict(rows[list(self.features)].to_numpy(dtype=float))
        out: dict[str, float] = {}
        for t in TARGETS:
            sel = rows["battery_weight"].to_numpy() > 0 if t in BATTERY_TARGETS else np.ones(len(rows), bool)
            y, p = rows[t].to_numpy(dtype=float)[sel], pred[t][sel]
            out[f"{t}_mae"] = float(np.mean(np.abs(y - p))) if len(y) else float("nan")
            out[f"{t}_rmse"] = _rmse(y, p)
        return out

    # ------------------------------------------------------------------ files
    def save(self, prefix: str | Path) -> tuple[Path, Path]:
        """Write ``<prefix>.model.json`` (boosters + card) and ``<prefix>.card.json``; return both paths."""
        prefix = Path(prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        model_path = prefix.with_name(prefix.name + ".model.json")
        card_path = prefix.with_name(prefix.name + ".card.json")
        doc = {"format": "darkstar.antares/1", "features": list(self.features), "card": self.card,
               "boosters": {t: b.model_to_string() for t, b in self.boosters.items()}}
        model_path.write_text(json.dumps(doc))
        card_path.write_text(json.dumps(self.card, indent=2, default=str))
        return model_path, card_path

    @classmethod
    def load(cls, path: str | Path) -> AntaresPolicy:
        import lightgbm as lgb

        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read Antares model {path}: {err}") from err
        if doc.get("format") != "darkstar.antares/1":
            raise ValueError(f"{path}: not an Antares model file (format {doc.get('format')!r})")
        if tuple(doc["features"]) != FEATURES:
            raise ValueError(f"{path}: trained on features {doc['features']}, this build computes {list(FEATURES)}")
        boosters = {t: lgb.Booster(model_str=s) for t, s in doc["boosters"].items()}
        missing = set(BATTERY_TARGETS) - set(boosters)
        if missing:
            raise ValueError(f"{path}: missing target models {sorted(missing)}")
        return cls(boosters=boosters, features=tuple(doc["features"]), card=doc.get("card", {}))

    def content_hash(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for t in sorted(self.boosters):
            h.update(self.boosters[t].model_to_string().encode())
        return h.hexdigest()[:10]
