"""Model registry for Aurora (forecasts) and Antares (policy) models.

Rows live in the storage's ``model_registry`` table (``Store.register_model`` /
``approve_model`` / ``latest_approved_model``); artifacts are versioned files in a model
directory, ``<kind>_v1_<yyyymmdd>_<hash>.*``, each with a model card (``.card.json``).

The rule that protects a site: a candidate is approved only when it scores strictly better
(lower) than the approved model of its kind on the same held-back data, or when there is no
approved model yet. A worse (or equal) candidate is registered unapproved, with the reason,
so it can be inspected; consumers always load the newest *approved* model.

Artifact paths are stored relative to the models directory (``aurora_v1_....pkl``), so the
directory can move to another host, volume or container path (backup/restore) and every service
that mounts it resolves the same entry: :func:`resolve_artifact`. Older rows with absolute
paths are rewritten by :func:`relativize_registry_paths` (run by the trainer at start and by
``darkstar restore``).

Scores (lower is better): Antares -> realized money of the policy on the validation days
(``policy_cost``, adjusted for the energy left in the battery); Aurora -> mean pinball loss on
held-back days. A candidate may also have to stay under a ceiling (``max_score``): an Antares
policy is approved only within a stated margin of the MPC's money on the same days, even when
there is no approved policy yet.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from shared.storage.repository import ModelRecord, Store

KINDS = ("aurora", "antares")


def artifact_prefix(model_dir: str | Path, kind: str, day: date, content_hash: str) -> Path:
    """``<model_dir>/<kind>_v1_<yyyymmdd>_<hash>``: add ``.model.json`` / ``.pkl`` / ``.card.json``."""
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
    if not content_hash.isalnum():
        raise ValueError(f"content hash must be alphanumeric, got {content_hash!r}")
    return Path(model_dir) / f"{kind}_v1_{day:%Y%m%d}_{content_hash}"


def stored_artifact_path(model_dir: str | Path, artifact_path: str | Path) -> str:
    """``artifact_path`` relative to ``model_dir`` (POSIX) when inside it; else unchanged."""
    path, root = Path(artifact_path).resolve(), Path(model_dir).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(artifact_path)


def resolve_artifact(model_dir: str | Path, stored: str) -> Path:
    """The file of a registry entry: relative paths live under ``model_dir``; an absolute path from
    another host that no longer exists falls back to the same file name in ``model_dir``."""
    path = Path(stored)
    if not path.is_absolute():
        return Path(model_dir) / path
    moved = Path(model_dir) / path.name
    return moved if not path.exists() and moved.exists() else path


def relativize_registry_paths(store: Store, model_dir: str | Path, old_model_dir: str | Path | None = None) -> int:
    """Rewrite absolute artifact paths to paths relative to ``model_dir`` (idempotent); returns rows changed.

    A path inside ``model_dir`` (or inside ``old_model_dir``, where a restored backup's models
    lived) becomes relative; an absolute path that is gone (the directory moved) becomes its file
    name when that file is in ``model_dir``. Others stay as they are.
    """
    from sqlalchemy import select

    from shared.storage import models as m

    table = m.ModelRegistryEntry.__table__
    changed = 0
    with store.engine.begin() as conn:
        rows = conn.execute(select(table.c.site_id, table.c.model_id, table.c.artifact_path)).all()
        for row in rows:
            if not Path(row.artifact_path).is_absolute():
                continue
            new = stored_artifact_path(model_dir, resolve_artifact(model_dir, row.artifact_path))
            if Path(new).is_absolute() and old_model_dir is not None:
                new = stored_artifact_path(old_model_dir, row.artifact_path)
            if new != row.artifact_path and not Path(new).is_absolute():
                conn.execute(table.update().where(table.c.site_id == row.site_id, table.c.model_id == row.model_id)
                             .values(artifact_path=new))
                changed += 1
    return changed


def write_card(prefix: Path, card: dict[str, Any]) -> Path:
    """The model card next to the artifact (``<prefix>.card.json``)."""
    path = prefix.with_name(prefix.name + ".card.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
    return path


@dataclass(frozen=True)
class Decision:
    """What the registry did with a candidate."""

    record: ModelRecord
    approved: bool
    reason: str
    previous_model_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.record.model_id, "version": self.record.version, "approved": self.approved,
                "reason": self.reason, "previous_model_id": self.previous_model_id,
                "artifact_path": self.record.artifact_path}


class ModelRegistry:
    """Registry of one site's models over a :class:`~shared.storage.repository.Store`."""

    def __init__(self, store: Store, site_id: str, model_dir: str | Path = "var/models") -> None:
        self.store = store
        self.site_id = site_id
        self.model_dir = Path(model_dir)

    def current(self, kind: str) -> ModelRecord | None:
        """The newest approved model of ``kind`` (None when there is none)."""
        return self.store.latest_approved_model(kind, self.site_id)

    def decide(self, kind: str, score: float, current_score: float | None = None, max_score: float | None = None,
               max_score_reason: str = "") -> tuple[bool, str]:
        """The approval rule (lower score is better): (approved, reason). ``submit`` applies it;
        a trainer may ask first (Aurora refits a candidate only when it will be approved)."""
        current = self.current(kind)
        if max_score is not None and score > max_score:
            return False, f"score {score:.6g} above the ceiling {max_score:.6g} ({max_score_reason})"
        if current is None:
            return True, "no approved model yet"
        ref = current_score if current_score is not None else current.metrics.get("score")
        if ref is None:
            return False, f"approved model {current.model_id} has no score to compare with"
        if score < ref:
            return True, f"score {score:.6g} < {ref:.6g} of {current.model_id}"
        return False, f"score {score:.6g} is not better than {ref:.6g} of {current.model_id}"

    def submit(self, kind: str, model_id: str, artifact_path: str | Path, metrics: dict[str, Any], *,
               score: float, current_score: float | None = None, run_id: str | None = None,
               max_score: float | None = None, max_score_reason: str = "") -> Decision:
        """Register a candidate; approve it only if ``score`` beats the approved model's.

        ``current_score``: the approved model's score on the *same* held-back data, measured by
        the caller; when not given, the score recorded with the approved model is used.
        ``max_score``: a ceiling the candidate must not exceed whatever else is approved
        (``max_score_reason`` says where it comes from).
        """
        if not Path(artifact_path).exists():
            raise FileNotFoundError(f"model artifact {artifact_path} does not exist")
        if math.isnan(score):  # nothing to judge the candidate on
            raise ValueError(f"candidate {model_id}: score is NaN")
        current = self.current(kind)
        previous = current.model_id if current else None
        if current is not None and current.model_id == model_id:
            return Decision(current, True, "same model already approved", previous)
        approved, reason = self.decide(kind, score, current_score, max_score, max_score_reason)
        record = self.store.register_model(self.site_id, kind, model_id,
                                           stored_artifact_path(self.model_dir, artifact_path),
                                           {**metrics, "score": score, "decision": reason},
                                           approved=approved, run_id=run_id)
        return Decision(record, approved, reason, previous)

    # ------------------------------------------------------------------ loading
    def load_aurora(self) -> tuple[ModelRecord, Any] | None:
        """(record, :class:`shared.forecast.models.ForecastModels`) of the newest approved forecaster, or None."""
        return load_aurora(self.store, self.site_id, self.model_dir)

    def models(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest registered models of the site (approved ones and refused candidates), newest
        first: id, kind, version, whether approved, its score and the registry's reason."""
        from sqlalchemy import select

        from shared.storage import models as m

        t = m.ModelRegistryEntry.__table__
        query = select(t.c.model_id, t.c.kind, t.c.version, t.c.created_at, t.c.approved, t.c.approved_at,
                       t.c.metrics).where(t.c.site_id == self.site_id)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.c.created_at.desc(), t.c.version.desc()).limit(limit)).all()
        return [{"model_id": r.model_id, "kind": r.kind, "version": r.version, "created_at": r.created_at,
                 "approved": bool(r.approved), "approved_at": r.approved_at,
                 "score": (r.metrics or {}).get("score"), "decision": (r.metrics or {}).get("decision", "")}
                for r in rows]

    # ------------------------------------------------------------------ runs
    def runs(self, limit: int = 50, target: str | None = None) -> list[dict[str, Any]]:
        """The latest training runs of the site (newest first), as stored by ``store_training_run``."""
        from sqlalchemy import select

        from shared.storage import models as m

        t = m.TrainingRun.__table__
        query = select(t).where(t.c.site_id == self.site_id)
        if target is not None:
            query = query.where(t.c.target == target)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.c.updated_at.desc()).limit(limit)).all()
        return [r._asdict() for r in rows]


def load_aurora(store: Store, site_id: str, model_dir: str | Path) -> tuple[ModelRecord, Any] | None:
    """The newest approved Aurora model (record, ForecastModels) of ``site_id``, or None."""
    from shared.forecast.models import ForecastModels

    rec = store.latest_approved_model("aurora", site_id)
    return None if rec is None else (rec, ForecastModels.load(resolve_artifact(model_dir, rec.artifact_path)))
