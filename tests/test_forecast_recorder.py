"""Recorder: readings become per-slot energies that add up, gaps stay visible, days are graded."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from shared.forecast.recorder import SlotRecorder, grade_days, slot_energies

STHLM = ZoneInfo("Europe/Stockholm")


def _readings(start: str, hours: float, every_s: int = 10, **powers: float) -> pd.DataFrame:
    idx = pd.date_range(start, periods=int(hours * 3600 / every_s), freq=f"{every_s}s")
    base = {"pv_kw": 0.0, "load_kw": 0.0, "grid_import_kw": 0.0, "grid_export_kw": 0.0,
            "battery_charge_kw": 0.0, "battery_discharge_kw": 0.0, "soc_frac": 0.5}
    base.update(powers)
    return pd.DataFrame(base, index=idx)


def test_constant_power_gives_kw_times_hours_in_every_slot():
    r = _readings("2025-06-01T10:00Z", 2, load_kw=2.0, pv_kw=3.0, grid_export_kw=1.0)
    e = slot_energies(r)
    assert len(e) == 8
    assert np.allclose(e["load_kwh"], 0.5) and np.allclose(e["pv_kwh"], 0.75)
    assert e["load_kwh"].sum() == pytest.approx(4.0)
    assert (e["coverage_frac"] == 1.0).all()
    # energy balance carries through: pv + import = load + export + charge - discharge
    bal = e["pv_kwh"] + e["grid_import_kwh"] - e["load_kwh"] - e["grid_export_kwh"] - e["battery_charge_kwh"] \
        + e["battery_discharge_kwh"]
    assert np.allclose(bal, 0.0)


def test_irregular_readings_are_integrated_exactly_across_slot_boundaries():
    idx = pd.DatetimeIndex(["2025-06-01T10:00:00Z", "2025-06-01T10:10:00Z", "2025-06-01T10:20:00Z",
                            "2025-06-01T10:29:59Z"])
    r = pd.DataFrame({"load_kw": [1.0, 4.0, 2.0, 2.0]}, index=idx)
    e = slot_energies(r, end=pd.Timestamp("2025-06-01T10:30Z"), max_hold=timedelta(minutes=15))
    # 10:00-10:10 at 1 kW, 10:10-10:15 at 4 kW | 10:15-10:20 at 4 kW, 10:20-10:30 at 2 kW
    assert e["load_kwh"].iloc[0] == pytest.approx(1 * 10 / 60 + 4 * 5 / 60)
    assert e["load_kwh"].iloc[1] == pytest.approx(4 * 5 / 60 + 2 * 10 / 60)


def test_a_silent_meter_is_a_gap_not_a_constant():
    r = _readings("2025-06-01T10:00Z", 1, load_kw=2.0)
    r = r[(r.index < "2025-06-01T10:20Z") | (r.index >= "2025-06-01T10:40Z")]
    e = slot_energies(r, max_hold=timedelta(minutes=2))
    # readings 10:15:00..10:19:50, the last one held 2 min: covered until 10:21:50
    assert e["coverage_frac"].iloc[1] == pytest.approx((6 * 60 + 50) / 900)
    assert e["load_kwh"].iloc[1] == pytest.approx(2.0 * e["coverage_frac"].iloc[1] * 0.25)  # measured part only
    assert e["coverage_frac"].iloc[2] < 1.0


def test_days_are_graded_clean_gaps_or_battery_missing():
    clean = _readings("2025-06-01T22:00Z", 24, every_s=30, load_kw=1.0)  # local 2025-06-02
    grades = grade_days(slot_energies(clean), STHLM)
    assert grades.loc[pd.Timestamp("2025-06-02").date(), "grade"] == "clean"

    holed = clean[(clean.index < "2025-06-02T08:00Z") | (clean.index >= "2025-06-02T09:00Z")]
    g = grade_days(slot_energies(holed), STHLM).iloc[0]
    assert g["grade"] == "gaps" and g["slots_complete"] == 96 - 4

    no_bat = clean.drop(columns=["battery_charge_kw", "battery_discharge_kw"])
    assert grade_days(slot_energies(no_bat), STHLM).iloc[0]["grade"] == "battery_missing"
    assert grade_days(slot_energies(no_bat), STHLM, has_battery=False).iloc[0]["grade"] == "clean"


def test_dst_day_expects_100_slots():
    r = _readings("2025-10-25T22:00Z", 25, every_s=60, load_kw=1.0)  # local 2025-10-26 is 25 h long
    g = grade_days(slot_energies(r), STHLM).loc[pd.Timestamp("2025-10-26").date()]
    assert g["slots_expected"] == 100 and g["grade"] == "clean"


def test_streaming_recorder_matches_batch_integration():
    r = _readings("2025-06-01T10:00Z", 1, every_s=7, load_kw=1.5, pv_kw=0.7)
    r.loc[r.index >= "2025-06-01T10:31Z", "load_kw"] = 3.0
    rec = SlotRecorder()
    parts = []
    for ts, row in r.iterrows():
        rec.add(ts, row.to_dict())
        parts.append(rec.finished(ts))
    parts.append(rec.finished(pd.Timestamp("2025-06-01T11:00Z")))
    streamed = pd.concat([p for p in parts if not p.empty])
    batch = slot_energies(r, end=pd.Timestamp("2025-06-01T11:00Z"))
    assert list(streamed.index) == list(batch.index)
    assert np.allclose(streamed["load_kwh"], batch["load_kwh"])
    assert streamed["load_kwh"].sum() == pytest.approx(1.5 * 31 / 60 + 3.0 * 29 / 60, rel=1e-3)
