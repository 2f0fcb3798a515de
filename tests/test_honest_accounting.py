"""Honest accounting: every compared strategy states its start and end SoC, the difference is
valued by the one rule of shared.cost, the oracle refuses incomplete days, and once adjusted
the oracle is never dearer than the simple rule nor forced export cheaper than the optimum."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.cli import main as cli_main
from shared.backtest import self_consumption_flows
from shared.config import load_site_config
from shared.cost import adjusted_money, plan_cost, stored_energy_value_per_kwh
from shared.oracle import IncompleteDayError, actuals, battery_pv_site, observed_day, oracle_range, range_index
from shared.simulator import money
from shared.sitedata import load_site_data
from shared.slots import SLOT_HOURS, local_day_slots
from shared.whatif import whatif_export

ROOT = Path(__file__).resolve().parents[1]
SE4_SITE = ROOT / "examples" / "se4-home.yaml"
SE4_DATA = ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz"
CL_SITE = ROOT / "examples" / "citylearn-home.yaml"
CL_DATA = ROOT / "examples" / "data" / "citylearn_building_1.csv.gz"


@pytest.fixture(scope="module")
def se4():
    return load_site_config(SE4_SITE, environ={}), load_site_data(SE4_DATA).frame


@pytest.fixture(scope="module")
def citylearn():
    return load_site_config(CL_SITE, environ={}), load_site_data(CL_DATA).frame


def test_the_rule_values_stored_energy_like_the_planners_terminal_value(se4):
    site, _ = se4
    b = site.battery
    prices = np.array([0.10, 0.20, 0.30])
    assert stored_energy_value_per_kwh(prices, b) == pytest.approx(b.discharge_efficiency * 0.20 - b.wear_cost_per_kwh)
    assert stored_energy_value_per_kwh(np.array([0.0, 0.001]), b) == 0.0  # never negative
    assert stored_energy_value_per_kwh(prices, None) == 0.0
    # 2 kWh more left than at the start is worth 2 x the value
    assert adjusted_money(5.0, 3.0, 5.0, 0.25) == pytest.approx(4.5)


@pytest.mark.parametrize("which, first, lengths", [
    ("se4", date(2025, 8, 1), (1, 3)),          # the window that showed 3.75 vs 1.80 EUR before
    ("se4", date(2025, 10, 20), (2, 4)),
    ("citylearn", date(2016, 10, 5), (1, 5)),
])
def test_once_adjusted_the_oracle_is_never_dearer_than_the_rule(which, first, lengths, request):
    site, frame = request.getfixturevalue(which)
    site = battery_pv_site(site)
    soc0 = site.battery.reserve_soc_kwh
    for n in lengths:
        last = first + timedelta(days=n - 1)
        orc = oracle_range(frame, site, first, last, soc_kwh=soc0)
        act = actuals(frame, site, range_index(site, first, last))
        rule = self_consumption_flows(act, site, soc0)
        rule_adjusted = adjusted_money(money(plan_cost(rule, act.prices, site)), soc0,
                                       float(rule["soc_kwh"].iloc[-1]), orc.value_per_kwh)
        assert orc.soc_start_kwh == pytest.approx(soc0)
        assert orc.adjusted_cost <= rule_adjusted + 1e-6, (which, first, n, orc.adjusted_cost, rule_adjusted)


def test_backtest_json_states_every_soc_and_captures_on_adjusted_costs(capfd):
    code = cli_main(["backtest", "--site", str(SE4_SITE), "--data", str(SE4_DATA), "--from", "2025-08-03",
                     "--to", "2025-08-03", "--forecast", "perfect", "--json", "--quiet"])
    out = capfd.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    for key in ("soc_start_kwh", "soc_end_kwh", "oracle_soc_end_kwh", "rule_soc_end_kwh", "end_soc_value",
                "end_soc_value_per_kwh", "rule_captured_frac", "savings_captured_frac"):
        assert doc[key] is not None, key
    v = doc["end_soc_value_per_kwh"]
    for name, soc_key in (("realized", "soc_end_kwh"), ("self_consumption", "rule_soc_end_kwh"),
                          ("oracle", "oracle_soc_end_kwh")):
        value = v * (doc[soc_key] - doc["soc_start_kwh"])
        assert doc["end_soc_value"][name] == pytest.approx(value, abs=1e-5)
        assert doc[f"{name}_adjusted_cost"] == pytest.approx(doc[f"{name}_cost"] - value, abs=1e-5)
    base, orc = doc["baseline_cost"], doc["oracle_adjusted_cost"]
    assert doc["savings_captured_frac"] == pytest.approx((base - doc["realized_adjusted_cost"]) / (base - orc), abs=1e-5)
    assert doc["rule_captured_frac"] == pytest.approx((base - doc["self_consumption_adjusted_cost"]) / (base - orc),
                                                      abs=1e-5)
    assert orc <= doc["self_consumption_adjusted_cost"] + 1e-6


def test_the_oracle_refuses_a_day_with_missing_slots(se4, capfd):
    site, frame = se4
    # the SE4 file has 48 quarter hours without load/PV in early July 2025
    with pytest.raises(IncompleteDayError, match="without measured load/PV"):
        oracle_range(frame, site, date(2025, 7, 3), date(2025, 7, 8))
    code = cli_main(["oracle", "--site", str(SE4_SITE), "--data", str(SE4_DATA), "--from", "2025-07-03",
                     "--to", "2025-07-08", "--quiet"])
    assert code == 2 and "not zero load and PV" in capfd.readouterr().err


def _observations(site, day: date, missing_at: int | None = None) -> pd.DataFrame:
    index = local_day_slots(day, site.tz)
    obs = pd.DataFrame({"load_kwh": 0.25, "pv_kwh": 0.0, "import_kwh": 0.25, "export_kwh": 0.0,
                        "soc_end_frac": 0.5}, index=index)
    if missing_at is not None:
        obs.iloc[missing_at, obs.columns.get_loc("load_kwh")] = np.nan
    return obs


def test_the_live_oracle_refuses_a_day_in_progress_or_with_a_gap(se4):
    site, _ = se4
    day = date(2025, 8, 12)
    index = local_day_slots(day, site.tz)
    prices = pd.DataFrame({"import_price_per_kwh": 0.2, "export_price_per_kwh": 0.05}, index=index)
    with pytest.raises(IncompleteDayError, match="not over yet"):
        observed_day(day, _observations(site, day), prices, site, now=index[-1])  # the last slot is running
    with pytest.raises(IncompleteDayError, match=re.escape(index[40].isoformat())):
        observed_day(day, _observations(site, day, missing_at=40), prices, site, now=index[-1] + pd.Timedelta(hours=1))
    seen = observed_day(day, _observations(site, day), prices, site, now=index[-1] + pd.Timedelta(minutes=15))
    assert seen.soc_after_kwh == pytest.approx(0.5 * site.battery.capacity_kwh)
    assert seen.act.load_kw.sum() * SLOT_HOURS == pytest.approx(0.25 * len(index))


def test_forced_export_never_saves_against_the_optimum(se4):
    site, frame = se4
    # full battery on a summer day: forcing export empties it; unadjusted, that looked like a saving
    r = whatif_export(frame, site, date(2025, 8, 5), soc_kwh=20.0, steps=4, slots_per_step=2)
    base_money = r.baseline_cost + r.end_soc_value_per_kwh * (r.baseline_soc_end_kwh - r.soc_start_kwh)
    assert min(s.money for s in r.steps) < base_money - 0.5  # what the old accounting reported as a saving
    assert r.end_soc_value_per_kwh > 0
    for s in r.steps:
        assert s.cost_change >= -1e-6, s
        assert s.cost == pytest.approx(s.money - r.end_soc_value_per_kwh * (s.soc_end_kwh - r.soc_start_kwh))
