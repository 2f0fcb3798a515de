"""Admin tools in shared/: bytes per table on each backend, and resetting what was learned."""

from __future__ import annotations

import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.contracts import ObservationMsg, TrainerRunMsg
from shared.learning import reset_learning
from shared.storage import models as m
from shared.storage.repository import Store
from shared.storage.sizes import table_sizes

pytest_plugins = ["storage_fixtures"]


def test_every_table_has_a_size_in_bytes_on_each_backend(store):
    sizes = table_sizes(store.engine)
    assert set(sizes["bytes"]) == set(m.TABLES)
    assert all(isinstance(v, int) and v > 0 for v in sizes["bytes"].values()), sizes
    assert sizes["total_bytes"] == sum(sizes["bytes"].values())
    assert sizes["method"] in ("sqlite dbstat", "pg_total_relation_size", "information_schema")


def test_sqlite_sizes_grow_with_the_rows_of_that_table(tmp_path: Path):
    store = Store.open(f"sqlite:///{tmp_path / 'd.db'}")
    before = table_sizes(store.engine)["bytes"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    store.store_observations([ObservationMsg(site_id="s", slot_start=start + timedelta(minutes=15 * i),
                                             load_kwh=0.3, pv_kwh=0.1) for i in range(2000)])
    after = table_sizes(store.engine)["bytes"]
    assert after["slot_observations"] > before["slot_observations"] + 50_000
    assert after["prices"] == before["prices"]
    store.close()


def _learned(store: Store, model_dir: Path, site_id: str, at: datetime, tag: str) -> None:
    model_dir.mkdir(exist_ok=True)
    for ext in (".pkl", ".card.json"):
        (model_dir / f"aurora_v1_{at:%Y%m%d}_{tag}{ext}").write_text("x")
    store.store_training_run(TrainerRunMsg(site_id=site_id, run_id=f"run-{tag}", target="aurora", status="finished",
                                           metrics={"pinball_loss": 0.1}), at=at)
    store.register_model(site_id, "aurora", f"aurora-{tag}", f"aurora_v1_{at:%Y%m%d}_{tag}.pkl",
                         {"pinball_loss": 0.1}, approved=True, run_id=f"run-{tag}", created_at=at)


def test_reset_today_backs_up_then_forgets_only_todays_learning(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    store, models = Store.open(url), tmp_path / "models"
    midnight = datetime(2026, 3, 2, tzinfo=UTC)
    _learned(store, models, "s", midnight - timedelta(days=1), "old")
    _learned(store, models, "s", midnight + timedelta(hours=9), "new")
    _learned(store, models, "other", midnight + timedelta(hours=9), "othersite")
    (models / "episodes").mkdir()
    (models / "episodes" / "2026-03-01.npz").write_text("x")

    out = reset_learning(store, url, "s", models, "today", midnight, tmp_path / "backups")
    assert (out["models"], out["training_runs"], out["files"]) == (1, 1, 2)
    assert store.latest_approved_model("aurora", "s").model_id == "aurora-old"  # yesterday's is current again
    assert not list(models.glob("*_new*")) and list(models.glob("*_old*"))
    assert (models / "episodes" / "2026-03-01.npz").exists()
    with tarfile.open(out["backup"]) as tar:  # the backup holds what was deleted
        assert "models/aurora_v1_20260302_new.pkl" in tar.getnames()

    out = reset_learning(store, url, "s", models, "all", None, tmp_path / "backups")
    assert (out["models"], out["training_runs"]) == (1, 1)
    assert store.latest_approved_model("aurora", "s") is None
    assert store.count("training_runs", "s") == 0 and store.count("model_registry", "other") == 1
    assert not (models / "episodes").exists() and not list(models.glob("aurora_*"))
    assert len(list((tmp_path / "backups").glob("*.tar.gz"))) == 2
    store.close()
