"""The peak x heater cuts (shared/optimize/cuts.py) never cut off a better plan and stay out of the duals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import shared.optimize.cuts as cuts
import shared.optimize.solve as solve
from shared.config import load_site_config
from shared.optimize.inputs import inputs_from_recorded
from shared.sitedata import load_site_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def example() -> tuple[object, object]:
    site = load_site_config(ROOT / "examples" / "se4-home.yaml", environ={})
    frame = load_site_data(ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz").frame
    return site, frame


@pytest.mark.parametrize("start", ["2025-08-29T00:00+02:00", "2025-07-04T00:00+02:00"])
def test_peak_heater_cuts_keep_the_optimum(example: tuple[object, object], start: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    site, frame = example
    site = site.model_copy(update={"planner": site.planner.model_copy(update={"time_limit_s": 60.0})})
    inputs = inputs_from_recorded(frame, site, start, 24, soc_kwh=10.26)
    monkeypatch.setattr(cuts, "PEAK_HEATER_CUT_ROUNDS", 0)
    plain = solve.solve_plan(inputs, site)
    added: list[int] = []
    original = cuts.peak_heater_cuts

    def counting(*args: object) -> int:
        added.append(original(*args))
        return added[-1]

    monkeypatch.setattr(cuts, "PEAK_HEATER_CUT_ROUNDS", 3)
    monkeypatch.setattr(cuts, "PEAK_HEATER_CUT_ROOT_GAP", 0.0)  # always, not only on a weak root LP
    monkeypatch.setattr(cuts, "peak_heater_cuts", counting)
    cut = solve.solve_plan(inputs, site)
    assert added and added[0] > 0, "no cut was added on a heater + capacity tariff site"
    assert plain.stats.status == cut.stats.status == "Optimal"
    # both are proven within 0.1 % of the same optimum: a cut that removed it would show here
    assert cut.objective == pytest.approx(plain.objective, rel=2.2 * site.planner.mip_gap)
    assert cut.stats.mip_gap <= site.planner.mip_gap
    # the cut rows are gone before the final LP: its duals are the model's own
    assert np.isfinite(cut.slots["bus_value_per_kwh"]).all()
    assert cut.stats.constraints == plain.stats.constraints
