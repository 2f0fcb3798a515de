"""The oracle: perfect hindsight per local day, SoC carried over, priced like everything else."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest

from services.cli import main as cli_main
from shared.oracle import Actuals, actuals, baseline_cost, oracle_day_from, oracle_range
from shared.simulator import money
from shared.slots import local_day_slots
from shared.tariff import price_curve
from tests.conftest import EXAMPLE_DATA, ROOT
from tests.optimize_helpers import make_site

CL_SITE = ROOT / "examples" / "citylearn-home.yaml"
CL_DATA = EXAMPLE_DATA / "citylearn_building_1.csv.gz"



def test_known_answer_buy_at_night_use_in_the_evening():
    # 1 kW load all day, import 0.10 before 06:00 and 0.50 after; 4 kWh battery, lossless, empty at start:
    # the oracle fills it at night (4 kWh at 0.10) and covers 4 kWh of the expensive load with it.
    site = make_site(battery={"capacity_kwh": 4.0, "max_charge_kw": 4.0, "max_discharge_kw": 4.0})
    day = date(2025, 8, 5)
    index = local_day_slots(day, site.tz)
    price = np.where(index.hour < 6, 0.10, 0.50)
    prices = price_curve(index, site, import_price=price, export_price=np.zeros(len(index)))
    act = Actuals(index=index, load_kw=np.ones(len(index)), pv_kw=np.zeros(len(index)), prices=prices, missing_slots=0)
    od = oracle_day_from(day, act, site, soc_kwh=0.0)
    no_battery = 6 * 0.10 + 18 * 0.50
    assert od.oracle_cost == pytest.approx(no_battery + 4 * 0.10 - 4 * 0.50, abs=1e-6)
    assert od.soc_end_kwh == pytest.approx(0.0, abs=1e-6)  # terminal value 0 on this site: nothing left over


def test_soc_is_carried_from_day_to_day_and_days_add_up(citylearn):
    site, frame = citylearn
    run = oracle_range(frame, site, date(2016, 8, 3), date(2016, 8, 6), soc_kwh=2.0)
    assert len(run.days) == 4
    assert run.days[0].soc_start_kwh == pytest.approx(2.0)
    for before, after in zip(run.days, run.days[1:]):
        assert after.soc_start_kwh == pytest.approx(before.soc_end_kwh)
    assert sum(d.oracle_cost for d in run.days) == pytest.approx(run.oracle_cost, abs=1e-6)
    base = baseline_cost(actuals(frame, site, run.flows.index), site)
    assert run.oracle_cost < money(base)  # the battery is worth something with perfect hindsight


def test_dst_day_and_capacity_tariff_on_the_se4_home(se4):
    site, frame = se4
    run = oracle_range(frame, site, date(2025, 10, 25), date(2025, 10, 26), soc_kwh=10.0)
    assert [len(d.flows) for d in run.days] == [96, 100]  # 26 October 2025 has 25 hours in Stockholm
    assert run.cost.capacity_cost > 0
    # the second day only pays for raising the month's peaks above what the first day set
    assert sum(d.cost.capacity_cost for d in run.days) == pytest.approx(run.cost.capacity_cost, abs=1e-6)
    base = baseline_cost(actuals(frame, site, run.flows.index), site)
    assert run.oracle_cost < money(base)


def test_oracle_cli_prints_one_json_document(capfd):
    code = cli_main(["oracle", "--site", str(CL_SITE), "--data", str(CL_DATA), "--from", "2016-08-03",
                     "--to", "2016-08-04", "--json"])
    out = capfd.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)  # one document and nothing else on stdout
    assert doc["days"] == 2 and len(doc["per_day"]) == 2
    assert doc["oracle_cost"] < doc["baseline_cost"]
    assert doc["currency"] == "USD"


def test_oracle_cli_names_a_bad_date(capfd):
    code = cli_main(["oracle", "--site", str(CL_SITE), "--data", str(CL_DATA), "--from", "2016-08-31",
                     "--to", "2016-08-03"])
    assert code == 2 and "before" in capfd.readouterr().err


def test_hindsight_beats_the_self_consumption_rule(citylearn):
    # with export unpaid, a day that ends full of night-tariff grid energy wastes the next
    # morning's PV; the look-ahead day lets the oracle see that (lookahead_days=0 lost to the rule)
    from shared.cost import plan_cost
    from shared.optimize import PlanInputs
    from shared.optimize.fallback import self_consumption_plan
    from shared.optimize.inputs import apply_strategy

    site, frame = citylearn
    run = oracle_range(frame, site, date(2016, 10, 5), date(2016, 10, 8), soc_kwh=0.0)
    act = actuals(frame, site, run.flows.index)
    inputs = PlanInputs(index=act.index, load_kw=act.load_kw, pv_kw=act.pv_kw, prices=act.prices, soc_kwh=0.0)
    rule = self_consumption_plan(apply_strategy(inputs, site)[0], site)
    assert run.oracle_cost <= money(plan_cost(rule, act.prices, site)) + 1e-6
