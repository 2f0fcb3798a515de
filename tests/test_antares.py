"""Antares: episodes from MPC replays, no future in the features, the policy judged in money."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.antares.episodes import (
    SIM_SYSTEM_ID,
    TARGETS,
    check_one_system,
    grade_frame_days,
    record_episodes,
    time_split,
)
from shared.antares.evaluate import evaluate_money, replay_policy
from shared.antares.features import FEATURES
from shared.antares.policy import AntaresPolicy
from shared.antares.training import train_antares
from shared.config import load_site_config
from shared.sitedata import load_site_data

ROOT = Path(__file__).resolve().parents[1]
DAY0 = date(2016, 8, 3)
DAYS = 5


@pytest.fixture(scope="module")
def home():
    site = load_site_config(ROOT / "examples" / "citylearn-home.yaml")
    frame = load_site_data(ROOT / "examples" / "data" / "citylearn_building_1.csv.gz").frame
    return site, frame


@pytest.fixture(scope="module")
def episodes(home):
    site, frame = home
    return record_episodes(frame, site, DAY0, DAY0 + timedelta(days=DAYS - 1))


def test_episodes_record_what_the_mpc_saw_and_did_and_cost_what_the_env_says(home, episodes):
    site, frame = home
    rows = episodes.rows
    assert list(episodes.days.index) == [DAY0 + timedelta(days=k) for k in range(DAYS)]
    assert len(rows) == 96 * DAYS and set(rows["system_id"]) == {SIM_SYSTEM_ID}
    assert not rows[list(FEATURES) + list(TARGETS)].isna().any().any()
    # one direction at a time, within the battery's power limits
    b = site.battery
    assert ((rows["charge_kw"] == 0) | (rows["discharge_kw"] == 0)).all()
    assert rows["charge_kw"].max() <= b.max_charge_kw + 1e-6 and rows["discharge_kw"].max() <= b.max_discharge_kw + 1e-6
    assert rows["charge_kw"].sum() > 1 and rows["discharge_kw"].sum() > 1  # the MPC does use the battery
    # the day's cost is what following the planner in the Gym env costs (same env, same day, same SoC)
    from shared.environment import AntaresMPCEnv

    d = DAY0 + timedelta(days=2)
    env = AntaresMPCEnv(site, frame, day=d)
    env.reset(options={"day": d, "soc_kwh": float(episodes.days.loc[d, "soc_start_kwh"])})
    total, done = 0.0, False
    while not done:
        _, reward, done, _, _ = env.step(None)
        total -= reward
    assert episodes.days.loc[d, "mpc_cost"] == pytest.approx(total, abs=1e-9)
    # SoC carried from day to day
    assert episodes.days["soc_start_kwh"].iloc[1:].to_numpy() == pytest.approx(episodes.days["soc_end_kwh"].iloc[:-1].to_numpy())


def test_features_never_see_the_slot_being_decided_or_later(home):
    """Change the measured load/PV from 12:00 on: the features of every slot up to 12:00 are unchanged."""
    site, frame = home
    d = DAY0 + timedelta(days=1)
    base = record_episodes(frame, site, d, d).rows
    cut = base.index[48]
    changed = frame.copy()
    later = changed.index >= cut
    changed.loc[later, "load_kw"] = changed.loc[later, "load_kw"] * 3 + 1
    changed.loc[later, "pv_kw"] = 0.0
    other_set = record_episodes(changed, site, d, d)
    other = other_set.rows
    assert other_set.version != record_episodes(frame, site, d, d).version  # the dataset version sees the change
    feats = list(FEATURES)
    pd.testing.assert_frame_equal(base.loc[:cut, feats], other.loc[:cut, feats])
    assert not np.allclose(base.loc[base.index > cut, feats], other.loc[other.index > cut, feats])


def test_days_with_gaps_are_skipped_and_battery_missing_days_weigh_battery_targets_zero(home):
    site, frame = home
    d1, d2 = DAY0, DAY0 + timedelta(days=1)
    f = frame.copy()
    f["soc_frac"] = 0.5
    day1 = (f.index >= pd.Timestamp(f"{d1} 12:00", tz=site.tz)) & (f.index < pd.Timestamp(f"{d1} 13:00", tz=site.tz))
    f.loc[day1, "load_kw"] = np.nan
    day2 = (f.index >= pd.Timestamp(f"{d2} 12:00", tz=site.tz)) & (f.index < pd.Timestamp(f"{d2} 13:00", tz=site.tz))
    f.loc[day2, "soc_frac"] = np.nan
    grades = grade_frame_days(f, site, [d1, d2, d2 + timedelta(days=1)])
    assert grades == {d1: "gaps", d2: "battery_missing", d2 + timedelta(days=1): "clean"}
    ep = record_episodes(f, site, d1, d2 + timedelta(days=1), grades=grades)
    assert ep.used_days == [d2, d2 + timedelta(days=1)]
    weights = ep.rows.groupby("day")["battery_weight"].unique()
    assert list(weights[d2]) == [0.0] and list(weights[d2 + timedelta(days=1)]) == [1.0]
    with pytest.raises(ValueError, match="no training day has battery readings"):
        AntaresPolicy.train(ep.rows, [d2])


def test_simulated_and_live_rows_never_train_together(episodes):
    rows = episodes.rows.copy()
    assert check_one_system(rows) == SIM_SYSTEM_ID
    rows.loc[rows.index[:10], "system_id"] = "live"
    with pytest.raises(ValueError, match="mix systems"):
        check_one_system(rows)


def test_time_split_validates_on_the_last_days():
    days = [date(2016, 8, 1) + timedelta(days=k) for k in range(10)]
    train, val = time_split(list(reversed(days)), 0.2)
    assert train == days[:8] and val == days[8:]
    with pytest.raises(ValueError, match="at least 2"):
        time_split(days[:1])


def test_policy_acting_through_the_env_is_judged_in_money_against_mpc_and_oracle(home, episodes):
    site, frame = home
    train, val = time_split(episodes.used_days, 0.34)
    policy = AntaresPolicy.train(episodes.rows, train, seed=3)
    report = evaluate_money(policy, episodes, frame, site, val)
    assert report.days == val
    assert report.mpc_cost == pytest.approx(episodes.days.loc[val, "mpc_cost"].sum())
    # hindsight is cheapest (a little slack: the daily oracle values end-of-day energy like the planner)
    assert report.oracle_cost <= min(report.mpc_cost, report.policy_cost) + 0.05
    # a doing-nothing policy would pay for all the load in the evening peak: the policy must do better
    idle = AntaresPolicy(boosters={t: _Const(0.0) for t in TARGETS})
    idle_costs, _, _ = replay_policy(idle, frame, site, val, float(episodes.days.loc[val[0], "soc_start_kwh"]),
                                     executor_rule="setpoint")
    assert report.policy_cost < sum(idle_costs.values())
    assert report.policy_vs_mpc_frac < 0.25
    assert report.decision_ms_mean > 0


class _Const:
    """A stand-in booster that always predicts one value (a policy that never moves the battery)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, x, num_threads: int = 1):
        return np.full(np.atleast_2d(x).shape[0], self.value)


def test_training_run_is_reproducible_with_bounds_seed_metrics_and_versioned_artifacts(home, episodes, tmp_path):
    site, frame = home
    a = train_antares(frame, site, DAY0, DAY0 + timedelta(days=DAYS - 1), model_dir=tmp_path / "a", seed=7,
                      validation_frac=0.34, episodes=episodes, with_oracle=False)
    b = train_antares(frame, site, DAY0, DAY0 + timedelta(days=DAYS - 1), model_dir=tmp_path / "b", seed=7,
                      validation_frac=0.34, episodes=episodes, with_oracle=False)
    assert a.model_id == b.model_id and a.model_id.startswith("antares_v1_20160807_")
    assert a.metrics["policy_cost"] == pytest.approx(b.metrics["policy_cost"])
    doc = a.to_dict()
    assert doc["split"]["train_to"] < doc["split"]["validation_from"]
    assert doc["split"]["seed"] == 7 and doc["dataset_version"] == episodes.version
    for t in TARGETS:
        assert doc[f"{t}_mae"] >= 0 and doc[f"{t}_rmse"] >= doc[f"{t}_mae"]
    model_path, card_path = map(Path, doc["artifacts"])
    assert model_path.name == f"{a.model_id}.model.json" and card_path.name == f"{a.model_id}.card.json"
    card = json.loads(card_path.read_text())
    assert card["dataset_version"] == episodes.version and card["features"] == list(FEATURES)
    loaded = AntaresPolicy.load(model_path)
    x = episodes.rows[list(FEATURES)].to_numpy()[:50]
    assert np.allclose(loaded.predict(x)["charge_kw"], a.model.predict(x)["charge_kw"])
    msg = a.message()
    assert msg.target == "antares" and msg.status == "finished" and "policy_cost" in msg.metrics


def test_a_model_file_for_other_features_is_refused(tmp_path, episodes):
    policy = AntaresPolicy.train(episodes.rows, episodes.used_days[:2], num_rounds=5)
    path, _ = policy.save(tmp_path / "m")
    doc = json.loads(path.read_text())
    doc["features"] = doc["features"][:-1]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="trained on features"):
        AntaresPolicy.load(path)


def test_episode_cache_replays_only_new_or_changed_days_and_gives_the_same_rows(home, episodes, tmp_path):
    site, frame = home
    cols = list(FEATURES) + list(TARGETS) + ["cost", "soc_start_kwh"]
    first = record_episodes(frame, site, DAY0, DAY0 + timedelta(days=1), cache_dir=tmp_path)
    assert not any("cache" in n for n in first.notes)
    longer = record_episodes(frame, site, DAY0, DAY0 + timedelta(days=2), cache_dir=tmp_path)
    assert "2 day(s) taken from the episode cache" in longer.notes
    fresh = episodes.rows[episodes.rows["day"] <= DAY0 + timedelta(days=2)]
    pd.testing.assert_frame_equal(longer.rows[cols], fresh[cols])
    changed = frame.copy()
    changed.loc[changed.index >= pd.Timestamp(f"{DAY0} 18:00", tz=site.tz), "load_kw"] += 0.5
    again = record_episodes(changed, site, DAY0, DAY0, cache_dir=tmp_path)
    assert not any("cache" in n for n in again.notes)  # changed data: replayed, not a stale row


def test_cli_prints_one_json_document_records_the_run_and_reports_bad_input(tmp_path, capfd):
    from services.cli import main

    args = ["train", "antares", "--site", str(ROOT / "examples" / "citylearn-home.yaml"),
            "--data", str(ROOT / "examples" / "data" / "citylearn_building_1.csv.gz"),
            "--from", "2016-08-03", "--to", "2016-08-05", "--validation-frac", "0.34", "--rounds", "50",
            "--model-dir", str(tmp_path / "models"), "--db", f"sqlite:///{tmp_path / 'runs.db'}", "--json"]
    assert main(args) == 0
    out, err = capfd.readouterr()
    doc = json.loads(out)
    assert "train antares" in err and "100%" in err  # the progress bar is on stderr
    for key in ("policy_cost", "mpc_cost", "oracle_cost", "charge_kw_mae", "charge_kw_rmse", "discharge_kw_mae",
                "discharge_kw_rmse", "export_kw_mae", "export_kw_rmse", "dataset_version", "run_id"):
        assert key in doc
    assert doc["split"] == {**doc["split"], "train_from": "2016-08-03", "train_to": "2016-08-04",
                            "validation_from": "2016-08-05", "seed": 0}
    assert doc["registry"]["approved"] and doc["status"] == "finished"
    from shared.storage import Store

    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        row = store.training_run("citylearn-home", doc["run_id"])
        assert row["status"] == "finished" and row["extra"]["dataset_version"] == doc["dataset_version"]
        assert row["metrics"]["policy_cost"] == pytest.approx(doc["policy_cost"], abs=1e-5)
    finally:
        store.close()
    assert main([*args[:8], "--from", "2016-08-09", "--to", "2016-08-05"]) == 2
    assert "before" in capfd.readouterr().err


def test_live_episodes_come_from_the_plan_in_force_and_never_mix_with_simulated_rows(home, episodes, tmp_path):
    from shared.antares.live import live_episodes
    from shared.contracts import CostBreakdown, ObservationMsg, PlanMsg, PlanSlot, SolverStats
    from shared.slots import local_day_slots
    from shared.storage import Store

    site, _frame = home
    day = date(2016, 8, 5)
    index = local_day_slots(day, site.tz)
    store = Store.open(f"sqlite:///{tmp_path / 'live.db'}")

    def plan(created: pd.Timestamp, start: int, charge_kw: float, load_kw: float) -> PlanMsg:
        return PlanMsg(
            site_id=site.site_id, created_at=created.to_pydatetime(), valid_until=index[-1].to_pydatetime(),
            slots=[PlanSlot(start=ts.to_pydatetime(), mode="charge", charge_kw=charge_kw, soc_kwh=1.0, load_kw=load_kw,
                            pv_kw=0.0, import_price_per_kwh=0.2, export_price_per_kwh=0.0, export_kw=0.0)
                   for ts in index[start:]],
            cost=CostBreakdown(currency="USD", import_cost=1.0, export_revenue=0.0, total_cost=1.0),
            solver=SolverStats(status="optimal"))

    try:
        store.store_plan(plan(index[0] - pd.Timedelta(minutes=5), 0, 1.0, 0.5))
        store.store_plan(plan(index[48] - pd.Timedelta(minutes=1), 48, 2.0, 1.5))  # a replan before noon
        store.store_observations([
            ObservationMsg(site_id=site.site_id, slot_start=ts.to_pydatetime(), load_kwh=0.25, pv_kwh=0.0,
                           import_kwh=0.25, export_kwh=0.0, charge_kwh=0.0, discharge_kwh=0.0, soc_end_frac=0.25)
            for ts in index.insert(0, index[0] - pd.Timedelta(minutes=15))])
        live = live_episodes(store, site, day, day + timedelta(days=1))
    finally:
        store.close()
    rows = live.rows
    assert live.used_days == [day] and "1 day(s)" in live.notes[0]  # the next day has no plan: skipped
    assert set(rows["system_id"]) == {"live"} and (rows["battery_weight"] == 1.0).all()
    assert (rows["charge_kw"].iloc[:48] == 1.0).all() and (rows["charge_kw"].iloc[48:] == 2.0).all()
    assert rows["load_fc_kw"].iloc[47] == 0.5 and rows["load_fc_kw"].iloc[48] == 1.5  # what the plan in force knew
    assert rows["soc_frac"].eq(0.25).all() and rows["load_last_kw"].iloc[0] == 0.0 and rows["load_last_kw"].iloc[1] == 1.0
    assert rows["cost"].sum() == pytest.approx(96 * 0.25 * 0.2)
    with pytest.raises(ValueError, match="mix systems"):
        check_one_system(pd.concat([rows, episodes.rows]))


def test_a_policy_trained_on_live_runs_is_still_judged_against_mpc_replays(home, tmp_path):
    from shared.antares.live import live_episodes
    from shared.contracts import CostBreakdown, ObservationMsg, PlanMsg, PlanSlot, SolverStats
    from shared.slots import local_day_slots
    from shared.storage import Store

    site, frame = home
    days = [date(2016, 8, 5) + timedelta(days=k) for k in range(3)]
    store = Store.open(f"sqlite:///{tmp_path / 'live.db'}")
    try:
        for d in days:  # one plan per day: charge at noon from PV, discharge in the evening
            index = local_day_slots(d, site.tz)
            hours = index.tz_convert(site.tz).hour
            store.store_plan(PlanMsg(
                site_id=site.site_id, created_at=(index[0] - pd.Timedelta(minutes=5)).to_pydatetime(),
                valid_until=index[-1].to_pydatetime(),
                slots=[PlanSlot(start=ts.to_pydatetime(), mode="auto", charge_kw=2.0 if 10 <= h < 13 else 0.0,
                                discharge_kw=1.5 if 16 <= h < 20 else 0.0, soc_kwh=1.0, load_kw=1.0, pv_kw=1.0,
                                import_price_per_kwh=0.3, export_price_per_kwh=0.0)
                       for ts, h in zip(index, hours)],
                cost=CostBreakdown(currency="USD", import_cost=1.0, export_revenue=0.0, total_cost=1.0),
                solver=SolverStats(status="optimal")))
            store.store_observations([
                ObservationMsg(site_id=site.site_id, slot_start=ts.to_pydatetime(), load_kwh=0.25, pv_kwh=0.25,
                               import_kwh=0.0, export_kwh=0.0, charge_kwh=0.0, discharge_kwh=0.0, soc_end_frac=0.5)
                for ts in index.insert(0, index[0] - pd.Timedelta(minutes=15))])
        live = live_episodes(store, site, days[0], days[-1])
    finally:
        store.close()
    report = train_antares(frame, site, days[0], days[-1], model_dir=tmp_path / "m", validation_frac=0.34,
                           episodes=live, with_oracle=False, num_rounds=30)
    doc = report.to_dict()
    assert doc["split"]["system_id"] == "live" and doc["split"]["validation_from"] == "2016-08-07"
    # the MPC baseline is a simulator replay of the validation day from the SoC the site had (0.5 x 6.4 kWh)
    mpc = record_episodes(frame, site, days[-1], days[-1], soc_kwh=0.5 * site.battery.capacity_kwh)
    # adjusted for the energy left, like every compared cost (shared.cost.adjusted_money)
    row = mpc.days.iloc[0]
    expected = row["mpc_cost"] - doc["end_soc_value_per_kwh"] * (row["soc_end_kwh"] - row["soc_start_kwh"])
    assert doc["mpc_cost"] == pytest.approx(expected, abs=1e-6)
    assert doc["policy_cost"] > 0
