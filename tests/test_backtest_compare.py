"""`darkstar backtest` compares forecasters in money in one run, and hands the planner the
forecast quantiles so a risk setting can be measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.cli import main as cli_main
from shared.config import load_site_config
from shared.forecast.replay import AuroraForecast, NaiveForecast
from shared.sitedata import load_site_data

ROOT = Path(__file__).resolve().parents[1]
CL_SITE = ROOT / "examples" / "citylearn-home.yaml"
CL_DATA = ROOT / "examples" / "data" / "citylearn_building_1.csv.gz"


def test_forecasters_are_compared_on_the_same_oracle_rule_and_baseline(capfd):
    code = cli_main(["backtest", "--site", str(CL_SITE), "--data", str(CL_DATA), "--from", "2016-09-01",
                     "--to", "2016-09-01", "--forecast", "naive,perfect", "--json", "--quiet"])
    out = capfd.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    naive, perfect = doc["forecasts"]
    assert (naive["forecast"], perfect["forecast"]) == ("naive", "perfect")
    for key in ("baseline_cost", "oracle_adjusted_cost", "self_consumption_adjusted_cost", "rule_captured_frac"):
        assert naive[key] == perfect[key] == doc[key]
    for d in (naive, perfect):
        row = doc["comparison"][d["forecast"]]
        assert row["realized_adjusted_cost"] == d["realized_adjusted_cost"]
        assert row["savings_captured_frac"] == d["savings_captured_frac"]
    assert perfect["savings_captured_frac"] > 0.95  # a perfect forecast is close to hindsight


def test_an_unknown_forecaster_is_refused(capfd):
    code = cli_main(["backtest", "--site", str(CL_SITE), "--data", str(CL_DATA), "--from", "2016-09-01",
                     "--to", "2016-09-01", "--forecast", "aurora,oracle"])
    assert code == 2 and "unknown oracle" in capfd.readouterr().err


def test_aurora_gives_the_cautious_quantiles_naive_has_none():
    site = load_site_config(CL_SITE, environ={})
    frame = load_site_data(CL_DATA).frame
    now = pd.Timestamp("2016-09-10 08:00", tz="UTC")
    index = pd.date_range(now, periods=96, freq="15min")
    naive = NaiveForecast(frame)
    naive.forecast(now, index)
    assert naive.quantiles(now, index) is None
    aurora = AuroraForecast(frame, site, train_kwargs={"num_rounds": 30})
    load_p50, pv_p50 = aurora.forecast(now, index)
    load_p90, pv_p10 = aurora.quantiles(now, index)
    assert np.all(load_p90 >= load_p50 - 1e-9) and np.all(pv_p10 <= pv_p50 + 1e-9)
    assert load_p90.sum() > load_p50.sum()  # the upper quantile is really higher
    early = pd.Timestamp("2016-08-03 08:00", tz="UTC")  # before 14 days of history: naive, no quantiles
    aurora.forecast(early, pd.date_range(early, periods=8, freq="15min"))
    assert aurora.quantiles(early, pd.date_range(early, periods=8, freq="15min")) is None


@pytest.mark.parametrize("risk", ["cautious"])
def test_the_risk_setting_is_recorded(risk, capfd):
    code = cli_main(["backtest", "--site", str(CL_SITE), "--data", str(CL_DATA), "--from", "2016-09-01",
                     "--to", "2016-09-01", "--forecast", "naive", "--risk", risk, "--json", "--quiet"])
    out = capfd.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["risk"] == risk
