"""What-if export: forcing export in the dearest slots, target vs realized, cost against the baseline."""

from __future__ import annotations

import itertools
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import yaml

from services.cli import main as cli_main
from shared.config import load_site_config
from shared.contracts import ForecastMsg, ForecastSlot, PriceSlot, PricesMsg
from shared.sitedata import load_site_data
from shared.slots import local_day_slots
from shared.storage import Store
from shared.whatif import whatif_export

ROOT = Path(__file__).resolve().parents[1]
SE4_SITE = ROOT / "examples" / "se4-home.yaml"
SE4_DATA = ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz"
DAY = date(2025, 8, 12)


@pytest.fixture(scope="module")
def se4():
    return load_site_config(SE4_SITE), load_site_data(SE4_DATA).frame


def test_forcing_more_export_never_beats_the_optimal_plan_and_costs_more_step_by_step(se4):
    site, frame = se4
    r = whatif_export(frame, site, DAY, soc_kwh=20.0, relaxed=True, steps=4, slots_per_step=3)
    costs = [s.cost for s in r.steps]
    assert all(s.cost_change >= -1e-6 for s in r.steps)
    # nested sets of forced slots: each step only adds constraints (relaxed: objective == money)
    assert all(b >= a - 1e-6 for a, b in itertools.pairwise(costs))
    for s in r.steps:
        assert s.realized_export_forced_kwh <= s.target_export_kwh + 1e-6
        assert s.export_kwh >= s.realized_export_forced_kwh - 1e-6
    assert r.steps[-1].realized_export_forced_kwh > r.steps[0].realized_export_forced_kwh
    assert len(r.steps[0].first_forced) == 3


def test_whatif_cli_json(se4, capfd):
    code = cli_main(["whatif", "export", "--site", str(SE4_SITE), "--data", str(SE4_DATA), "--day", DAY.isoformat(),
                     "--steps", "2", "--soc-kwh", "20", "--json"])
    out = capfd.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert doc["day"] == DAY.isoformat() and len(doc["steps"]) == 2 and doc["source"] == "recorded"
    assert {"target_export_kwh", "realized_export_forced_kwh", "cost_change"} <= set(doc["steps"][0])


def test_whatif_live_reads_prices_and_forecast_from_the_database(tmp_path, se4, capfd):
    site, frame = se4
    db = tmp_path / "darkstar.db"
    raw = yaml.safe_load(SE4_SITE.read_text())
    raw["database"] = {"url": f"sqlite:///{db}"}
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(raw))
    index = local_day_slots(DAY, site.tz)
    window = frame.reindex(index)
    store = Store.open(f"sqlite:///{db}")
    store.store_prices(PricesMsg(site_id=site.site_id, currency="EUR", resolution_minutes=15, slots=[
        PriceSlot(start=ts.to_pydatetime(), import_price_per_kwh=0.1 + 0.3 * (ts.tz_convert(site.tz).hour >= 18),
                  export_price_per_kwh=0.05 + 0.3 * (ts.tz_convert(site.tz).hour >= 18)) for ts in index]))
    store.store_forecast(ForecastMsg(site_id=site.site_id, model_id="test", slots=[
        ForecastSlot(start=ts.to_pydatetime(), load_p10_kw=0.5 * ld, load_p50_kw=ld, load_p90_kw=1.5 * ld,
                     pv_p10_kw=0.5 * pv, pv_p50_kw=pv, pv_p90_kw=1.5 * pv)
        for ts, ld, pv in zip(index, window["load_kw"].to_numpy(), window["pv_kw"].to_numpy())]))
    store.close()
    code = cli_main(["whatif", "export", "--site", str(site_file), "--live", "--day", DAY.isoformat(), "--steps", "2",
                     "--soc-kwh", "20", "--json"])
    out = capfd.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert doc["source"] == "live"
    # the dearest export slots are from 18:00 local
    assert all(t >= "18:00" for t in doc["steps"][1]["forced"])
    code = cli_main(["whatif", "export", "--site", str(site_file), "--live", "--day", "2025-08-13", "--json"])
    assert code == 2 and "2025-08-13" in capfd.readouterr().err
    assert np.isfinite(doc["baseline_cost"])
