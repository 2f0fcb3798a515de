"""Closed-loop backtest: the planner sees only what was knowable, money is counted like the oracle's."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.cli import main as cli_main
from shared import optimize
from shared.backtest import prices_known_until, run_backtest
from shared.config import load_site_config
from shared.forecast.replay import NaiveForecast
from shared.sitedata import load_site_data

ROOT = Path(__file__).resolve().parents[1]
SE4_SITE = ROOT / "examples" / "se4-home.yaml"
SE4_DATA = ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz"
CL_SITE = ROOT / "examples" / "citylearn-home.yaml"
CL_DATA = ROOT / "examples" / "data" / "citylearn_building_1.csv.gz"
KEYS = ("realized_cost", "baseline_cost", "self_consumption_cost", "oracle_cost", "savings_captured_frac", "days",
        "runtime_s", "per_day")


@pytest.fixture(scope="module")
def citylearn():
    return load_site_config(CL_SITE), load_site_data(CL_DATA).frame


@pytest.fixture(scope="module")
def se4():
    return load_site_config(SE4_SITE), load_site_data(SE4_DATA).frame


def test_tomorrows_prices_are_known_only_after_the_auction(se4):
    site, _ = se4
    before = pd.Timestamp("2025-10-20T12:45+02:00")
    after = pd.Timestamp("2025-10-20T13:00+02:00")
    assert prices_known_until(before, site) == pd.Timestamp("2025-10-21T00:00+02:00")
    assert prices_known_until(after, site) == pd.Timestamp("2025-10-22T00:00+02:00")
    # the night of the DST change: tomorrow is 25 hours long
    assert prices_known_until(pd.Timestamp("2025-10-25T14:00+02:00"), site) == pd.Timestamp("2025-10-27T00:00+01:00")


def test_naive_forecast_never_looks_at_or_after_now(citylearn):
    _, frame = citylearn
    now = pd.Timestamp("2016-08-10T09:00-08:00").tz_convert("UTC")
    index = pd.date_range(now, periods=192, freq="15min")
    load, pv = NaiveForecast(frame).forecast(now, index)
    poisoned = frame.copy()
    poisoned.loc[poisoned.index >= now, ["load_kw", "pv_kw"]] = 1e6
    load2, pv2 = NaiveForecast(poisoned).forecast(now, index)
    np.testing.assert_array_equal(load, load2)
    np.testing.assert_array_equal(pv, pv2)
    # the first slot repeats the same slot yesterday; the slot 30 h ahead repeats the one 48 h before it
    assert load[0] == frame.loc[now - pd.Timedelta(days=1), "load_kw"]
    assert load[120] == frame.loc[index[120] - pd.Timedelta(days=2), "load_kw"]


def test_the_planner_never_sees_unpublished_prices(se4, monkeypatch):
    site, frame = se4
    seen = []
    real = optimize.solve_plan

    def spy(inputs, site_, *a, **k):
        seen.append((inputs.index[0], inputs.index[-1]))
        return real(inputs, site_, *a, **k)

    monkeypatch.setattr(optimize, "solve_plan", spy)
    r = run_backtest(frame, site, date(2025, 8, 12), date(2025, 8, 12), forecast="naive", replan_minutes=240)
    assert r.replans == 6 and len(seen) >= 6
    for start, last in seen[:6]:
        assert last < prices_known_until(start, site)
    # before 13:00 the horizon ends at midnight; from 13:00 it reaches the end of tomorrow
    ends = [last.tz_convert(site.tz).strftime("%d %H:%M") for _, last in seen[:6]]
    assert ends[:4] == ["12 23:45"] * 4 and ends[4:] == ["13 23:45"] * 2


def test_perfect_forecast_backtest_is_reproducible_and_beats_the_simple_strategies(citylearn):
    site, frame = citylearn
    a = run_backtest(frame, site, date(2016, 8, 3), date(2016, 8, 3), forecast="perfect").to_dict()
    b = run_backtest(frame, site, date(2016, 8, 3), date(2016, 8, 3), forecast="perfect").to_dict()
    for k in KEYS:
        assert k in a
    a.pop("runtime_s"), b.pop("runtime_s"), a.pop("solve_s_total"), b.pop("solve_s_total")
    assert a == b
    assert a["days"] == 1 and len(a["per_day"]) == 1
    assert a["realized_cost"] < a["self_consumption_cost"] < a["baseline_cost"]
    assert a["savings_captured_frac"] > 0.95
    assert sum(d["realized_cost"] for d in a["per_day"]) == pytest.approx(a["realized_cost"], abs=1e-4)


def test_naive_forecast_still_saves_money_and_keeps_the_energy_balance(citylearn):
    site, frame = citylearn
    r = run_backtest(frame, site, date(2016, 8, 3), date(2016, 8, 4), forecast="naive")
    d = r.to_dict()
    assert d["oracle_cost"] < d["realized_cost"] < d["baseline_cost"]
    # energy balance of what was executed
    f = r.flows
    bus = f["load_kw"] + f["charge_kw"] - f["discharge_kw"] - (f["pv_kw"] - f["pv_curtail_kw"])
    np.testing.assert_allclose(f["import_kw"] - f["export_kw"], bus, atol=1e-9)


def test_backtest_cli_json_is_one_document(tmp_path, capfd):
    plot = tmp_path / "bt.png"
    code = cli_main(["backtest", "--site", str(CL_SITE), "--data", str(CL_DATA), "--from", "2016-08-03",
                     "--to", "2016-08-03", "--forecast", "naive", "--replan-minutes", "120", "--json",
                     "--plot", str(plot)])
    out = capfd.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)  # one document and nothing else on stdout
    for k in KEYS:
        assert k in doc
    assert doc["replans"] == 12
    assert "backtest 100%" in out.err  # progress on stderr (a line every 5 % when not a terminal)
    assert plot.stat().st_size > 1000


def test_aurora_is_trained_and_fed_only_with_data_before_the_issue_time(citylearn, monkeypatch):
    from shared.forecast import models as aurora
    from shared.forecast.replay import AuroraForecast

    site, frame = citylearn
    seen: dict[str, pd.Timestamp] = {}
    real_train, real_forecast = aurora.ForecastModels.train.__func__, aurora.ForecastModels.forecast

    def train(cls, history, weather, site_, **kw):
        seen["train_last"] = history.index.max()
        seen["weather_last"] = weather.index.max()
        return real_train(cls, history, weather, site_, **kw)

    def forecast(self, issue_time, horizon, weather_forecast=None, recent_history=None):
        seen["recent_last"] = recent_history.index.max()
        return real_forecast(self, issue_time, horizon, weather_forecast, recent_history)

    monkeypatch.setattr(aurora.ForecastModels, "train", classmethod(train))
    monkeypatch.setattr(aurora.ForecastModels, "forecast", forecast)
    now = pd.Timestamp("2016-08-20T06:00-08:00").tz_convert("UTC")
    index = pd.date_range(now, periods=96, freq="15min")
    fc = AuroraForecast(frame, site, train_kwargs={"num_rounds": 5})
    load, pv = fc.forecast(now, index)
    assert seen["train_last"] < now and seen["weather_last"] < now and seen["recent_last"] < now
    assert len(load) == 96 and np.isfinite(load).all() and (pv >= 0).all()


def test_day_ahead_prices_appear_after_the_auction_and_a_time_of_use_tariff_is_known_ahead():
    from shared.backtest import prices_known_until
    from shared.config import site_config_from_dict

    base = {"site_id": "x", "location": {"latitude": 55.4, "longitude": 13.2, "timezone": "Europe/Stockholm"}}
    spot = site_config_from_dict(base, environ={})
    tou = site_config_from_dict({**base, "tariff": {"day_ahead": False}}, environ={})
    morning = pd.Timestamp("2025-08-05T10:00+02:00").tz_convert("UTC")
    afternoon = pd.Timestamp("2025-08-05T14:00+02:00").tz_convert("UTC")
    assert prices_known_until(morning, spot) == pd.Timestamp("2025-08-06T00:00+02:00")
    assert prices_known_until(afternoon, spot) == pd.Timestamp("2025-08-07T00:00+02:00")
    assert prices_known_until(morning, tou) >= morning + pd.Timedelta(days=2)
