"""The Antares Gym environment: gymnasium API, money as reward, planner as default policy."""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gymnasium")
from gymnasium.utils.env_checker import check_env

from shared.config import load_site_config
from shared.cost import plan_cost
from shared.environment import OBSERVATION_FIELDS, AntaresMPCEnv
from shared.simulator import no_battery_flows
from shared.sitedata import load_site_data

ROOT = Path(__file__).resolve().parents[1]
DAY = date(2016, 8, 5)


@pytest.fixture(scope="module")
def env_parts():
    site = load_site_config(ROOT / "examples" / "citylearn-home.yaml")
    frame = load_site_data(ROOT / "examples" / "data" / "citylearn_building_1.csv.gz").frame
    return site, frame


def _episode(env, action_fn):
    obs, _ = env.reset(options={"day": DAY})
    rewards, infos, observations = [], [], [obs]
    done = False
    while not done:
        obs, r, done, truncated, info = env.step(action_fn(obs))
        assert not truncated
        rewards.append(r)
        infos.append(info)
        observations.append(obs)
    return np.array(rewards), infos, np.array(observations)


def test_passes_the_gymnasium_environment_checker(env_parts):
    site, frame = env_parts
    env = AntaresMPCEnv(site, frame, day=DAY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded price observations are a warning, not an error
        check_env(env, skip_render_check=True)


def test_following_the_planner_is_deterministic_and_the_reward_is_minus_the_money(env_parts):
    site, frame = env_parts
    env = AntaresMPCEnv(site, frame, day=DAY)
    r1, infos, obs1 = _episode(env, lambda o: None)
    r2, _, obs2 = _episode(env, lambda o: None)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(obs1, obs2)
    assert len(r1) == 96 and obs1.shape[1] == len(OBSERVATION_FIELDS)
    prices = env.prices
    imp = np.array([i["import_kw"] for i in infos])
    exp = np.array([i["export_kw"] for i in infos])
    wear = site.battery.wear_cost_per_kwh * sum(abs(i["battery_kw"]) for i in infos) * 0.25
    money = float(np.dot(imp * 0.25, prices["import_price_per_kwh"]) - np.dot(exp * 0.25, prices["export_price_per_kwh"]))
    assert -r1.sum() == pytest.approx(money + wear, abs=0.005)
    # following the planner beats having no battery on this day
    base = plan_cost(no_battery_flows(env.load_kw, env.pv_kw, env.index, env.site), prices, env.site)
    assert -r1.sum() < base.import_cost - base.export_revenue


def test_an_override_is_clamped_to_the_battery_physics(env_parts):
    site, frame = env_parts
    env = AntaresMPCEnv(site, frame, day=DAY, soc_kwh=0.0)
    env.reset(options={"day": DAY})
    _, _, _, _, info = env.step(np.array([100.0], dtype=np.float32))  # far above the 5 kW limit
    assert info["battery_kw"] == pytest.approx(5.0)
    assert not info["followed_planner"]
    stored = info["soc_kwh"]
    assert stored == pytest.approx(5.0 * 0.25 * site.battery.charge_efficiency)
    _, _, _, _, info = env.step(np.array([-100.0], dtype=np.float32))
    # 1.19 kWh stored gives only 4.5 kW over a quarter hour after losses: the SoC floor clamps it
    assert info["battery_kw"] == pytest.approx(-stored * site.battery.discharge_efficiency / 0.25)
    assert info["soc_kwh"] == pytest.approx(0.0, abs=1e-9)


def test_a_charge_override_costs_more_than_idling_at_the_same_slot(env_parts):
    site, frame = env_parts
    env = AntaresMPCEnv(site, frame, day=DAY, soc_kwh=0.0)
    env.reset(options={"day": DAY})
    _, idle, *_ = env.step(np.array([0.0], dtype=np.float32))
    env.reset(options={"day": DAY})
    _, charge, *_ = env.step(np.array([4.0], dtype=np.float32))
    price = float(env.prices["import_price_per_kwh"].iloc[0])
    # at night with no PV, 4 kW of charging is bought at the slot's import price, plus its wear
    assert idle - charge == pytest.approx(4.0 * 0.25 * (price + site.battery.wear_cost_per_kwh), abs=1e-9)
