"""Model registry: versioned artifacts, approval only when better, consumers load the newest approved."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from shared.config import load_site_config
from shared.contracts import TrainerRunMsg
from shared.registry import ModelRegistry, artifact_prefix, write_card
from shared.sitedata import load_site_data
from shared.storage import Store
from shared.training import train_aurora

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(f"sqlite:///{tmp_path / 'reg.db'}")
    yield s
    s.close()


def _artifact(tmp_path: Path, name: str) -> Path:
    prefix = artifact_prefix(tmp_path / "models", "antares", date(2017, 7, 30), name)
    path = prefix.with_name(prefix.name + ".model.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    write_card(prefix, {"model": name})
    return path


def test_artifact_names_are_versioned_by_kind_date_and_hash(tmp_path):
    prefix = artifact_prefix(tmp_path, "antares", date(2017, 7, 30), "ab12cd34ef")
    assert prefix.name == "antares_v1_20170730_ab12cd34ef"
    card = write_card(prefix, {"dataset_version": "x"})
    assert card.name == "antares_v1_20170730_ab12cd34ef.card.json"
    assert json.loads(card.read_text()) == {"dataset_version": "x"}
    with pytest.raises(ValueError, match="kind"):
        artifact_prefix(tmp_path, "zeus", date(2017, 7, 30), "ab")
    with pytest.raises(ValueError, match="alphanumeric"):
        artifact_prefix(tmp_path, "aurora", date(2017, 7, 30), "../../etc")


def test_a_worse_model_never_replaces_the_approved_one(tmp_path, store):
    reg = ModelRegistry(store, "home", tmp_path / "models")
    assert reg.current("antares") is None
    first = reg.submit("antares", "antares_v1_20170730_aaa", _artifact(tmp_path, "aaa"), {"mpc_cost": 100.0},
                       score=102.0, run_id="r1")
    assert first.approved and first.reason == "no approved model yet"
    worse = reg.submit("antares", "antares_v1_20170806_bbb", _artifact(tmp_path, "bbb"), {}, score=103.0)
    assert not worse.approved and "not better" in worse.reason
    assert reg.current("antares").model_id == "antares_v1_20170730_aaa"
    # the like-for-like score of the approved model (same held-back days) decides when given
    tie = reg.submit("antares", "antares_v1_20170806_ccc", _artifact(tmp_path, "ccc"), {}, score=101.0,
                     current_score=101.0)
    assert not tie.approved
    better = reg.submit("antares", "antares_v1_20170813_ddd", _artifact(tmp_path, "ddd"), {}, score=99.5,
                        current_score=101.0, run_id="r4")
    assert better.approved and better.previous_model_id == "antares_v1_20170730_aaa"
    current = reg.current("antares")
    assert current.model_id == "antares_v1_20170813_ddd" and current.version == 4 and current.run_id == "r4"
    assert current.metrics["score"] == 99.5
    assert reg.current("aurora") is None  # kinds are separate
    # the web app's list: every candidate with its score and the registry's reason, newest first
    listed = {r["model_id"]: r for r in reg.models()}
    assert len(listed) == 4 and listed["antares_v1_20170806_bbb"]["approved"] is False
    assert listed["antares_v1_20170806_bbb"]["score"] == 103.0 and "not better" in listed["antares_v1_20170806_bbb"]["decision"]
    assert [r["version"] for r in reg.models()] == [4, 3, 2, 1]
    with pytest.raises(FileNotFoundError):
        reg.submit("antares", "antares_v1_x_eee", tmp_path / "missing.model.json", {}, score=1.0)


def test_runs_are_listed_newest_first(store, tmp_path):
    reg = ModelRegistry(store, "home", tmp_path)
    for k, status in enumerate(["started", "finished"]):
        store.store_training_run(TrainerRunMsg(site_id="home", run_id=f"antares-{k}", target="antares",
                                               status=status, metrics={"policy_cost": 1.0 + k}),
                                 params={"seed": k}, extra={"dataset_version": f"v{k}"})
    store.store_training_run(TrainerRunMsg(site_id="other", run_id="x", target="antares", status="finished"))
    runs = reg.runs()
    assert [r["run_id"] for r in runs] == ["antares-1", "antares-0"]
    assert runs[0]["params"] == {"seed": 1} and runs[0]["extra"] == {"dataset_version": "v1"}
    assert reg.runs(target="aurora") == []


def test_trained_aurora_is_registered_and_the_forecaster_picks_it_up_without_restart(tmp_path, store):
    from services.forecaster.service import ForecasterService

    site = load_site_config(ROOT / "examples" / "citylearn-home.yaml")
    # registry paths are relative to the models directory the trainer and forecaster share
    site = site.model_copy(update={"trainer": site.trainer.model_copy(update={"model_dir": str(tmp_path / "models")})})
    frame = load_site_data(ROOT / "examples" / "data" / "citylearn_building_1.csv.gz").frame
    reg = ModelRegistry(store, site.site_id, tmp_path / "models")
    report = train_aurora(frame, site, date(2016, 8, 1), date(2016, 8, 13), model_dir=tmp_path / "models",
                          validation_days=3, registry=reg)
    doc = report.to_dict()
    assert doc["registry"]["approved"] and doc["model_id"].startswith("aurora_v1_20160813_")
    for key in ("load_kw_mae", "load_kw_rmse", "pv_kw_mae", "pv_kw_rmse", "pinball_loss"):
        assert doc[key] > 0
    assert doc["split"]["validation_from"] == "2016-08-11" and doc["split"]["train_to"] == "2016-08-10"
    forecaster = ForecasterService(site, store=store)
    assert forecaster.models is None
    forecaster._load_registry_model()  # what its periodic tick does
    assert forecaster.models is not None and forecaster.registry_model_id == doc["model_id"]
    assert forecaster.models.model_id == report.model.model_id


def test_a_first_policy_far_worse_than_the_mpc_is_not_approved(tmp_path, store):
    reg = ModelRegistry(store, "home", tmp_path / "models")
    # MPC 100 on the validation days, margin 2 %: 155 % worse is refused even with nothing approved
    bad = reg.submit("antares", "antares_v1_20170730_aaa", _artifact(tmp_path, "aaa"), {"mpc_cost": 100.0},
                     score=255.0, max_score=102.0, max_score_reason="MPC + 2 %")
    assert not bad.approved and "ceiling" in bad.reason and reg.current("antares") is None
    ok = reg.submit("antares", "antares_v1_20170730_bbb", _artifact(tmp_path, "bbb"), {"mpc_cost": 100.0},
                    score=101.5, max_score=102.0, max_score_reason="MPC + 2 %")
    assert ok.approved and reg.current("antares").model_id == "antares_v1_20170730_bbb"
