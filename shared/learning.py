"""Forgetting what was learned: "reset learning for today" and "clear learning cache".

Both first write a backup (database and models directory, :func:`shared.storage.backup.backup`)
and refuse to delete anything when the backup fails. Then, for this site:

- ``today``: the training runs and registry models made since local midnight, and their files
  (a bad retrain today is undone; the model approved before it is current again).
- ``all``: every training run and registry model (stored metrics), every model file in the
  models directory and the Antares episode cache (``<model_dir>/episodes``). Forecasts fall
  back to the baseline until the next training.

Measured data (observations, prices, plans) is never touched: it is what the next training learns from.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import delete, select

from shared.registry import resolve_artifact
from shared.storage import models as m
from shared.storage.backup import backup

Scope = Literal["today", "all"]
MODEL_GLOBS = ("aurora_*", "antares_*")


def reset_learning(store: Any, url: str, site_id: str, model_dir: str | Path, scope: Scope,
                   since: datetime | None, backup_dir: str | Path) -> dict[str, Any]:
    """Back up, then forget the learning of ``scope`` (``since``: the local midnight for ``today``)."""
    if scope not in ("today", "all"):
        raise ValueError(f"scope must be 'today' or 'all', got {scope!r}")
    if scope == "today" and since is None:
        raise ValueError("scope 'today' needs the start of the day")
    model_dir = Path(model_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = backup(url, Path(backup_dir) / f"before-learning-reset-{scope}-{stamp}.tar.gz", model_dir=model_dir)
    runs, models = m.TrainingRun.__table__, m.ModelRegistryEntry.__table__
    run_where = [runs.c.site_id == site_id]
    model_where = [models.c.site_id == site_id]
    if scope == "today":
        run_where.append(runs.c.updated_at >= since)
        model_where.append(models.c.created_at >= since)
    with store.engine.begin() as conn:
        artifacts = [str(p) for p in conn.execute(select(models.c.artifact_path).where(*model_where)).scalars()]
        n_models = conn.execute(delete(models).where(*model_where)).rowcount
        n_runs = conn.execute(delete(runs).where(*run_where)).rowcount
    files = _remove_artifacts(model_dir, artifacts)
    if scope == "all":
        for pattern in MODEL_GLOBS:
            for path in model_dir.glob(pattern):
                if path.is_file():
                    path.unlink()
                    files += 1
        episodes = model_dir / "episodes"
        if episodes.is_dir():
            files += sum(1 for p in episodes.rglob("*") if p.is_file())
            shutil.rmtree(episodes)
    return {"scope": scope, "backup": str(report.path), "training_runs": n_runs, "models": n_models,
            "files": files}


def _remove_artifacts(model_dir: Path, artifacts: list[str]) -> int:
    """The files of the deleted registry entries (the model and its card/metadata beside it)."""
    removed = 0
    for stored in artifacts:
        path = resolve_artifact(model_dir, stored)
        stem = path.name.split(".")[0]
        for sibling in path.parent.glob(stem + ".*") if path.parent.is_dir() else []:
            if sibling.is_file() and sibling.resolve().is_relative_to(model_dir.resolve()):
                sibling.unlink()
                removed += 1
    return removed
