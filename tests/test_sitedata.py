"""The recorded-data loader validates, expands to 15 min, and reports what it fixed or refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.sitedata import SiteDataError, load_site_data

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"


def test_se4_home_hourly_file_becomes_15_min_slots_with_gaps_kept():
    data = load_site_data(EXAMPLES / "se4_home_2025-07_2025-10.csv.gz")
    assert data.report.source_resolution_minutes == 60
    assert data.report.rows_read == 2914
    assert (data.frame.index[1] - data.frame.index[0]).total_seconds() == 900
    # 12 missing hours in the file -> 48 missing slots, never filled with invented values
    assert data.report.missing_slots["load_kw"] == 48
    assert str(data.frame.index.tz) == "UTC"


def test_citylearn_file_keeps_forecast_columns():
    data = load_site_data(DATA / "citylearn_building_1.csv.gz")
    assert {"import_price", "temp_c_fc24h", "dni_wm2_fc24h"} <= set(data.frame.columns)
    assert len(data.frame) == 8760 * 4


def test_energy_is_preserved_by_expansion():
    data = load_site_data(DATA / "citylearn_building_1.csv.gz")
    import pandas as pd

    raw = pd.read_csv(DATA / "citylearn_building_1.csv.gz")
    assert data.frame["load_kw"].sum() * 0.25 == pytest.approx(raw["load_kw"].sum(), rel=1e-9)


def test_problems_are_reported_not_hidden(tmp_path: Path):
    f = tmp_path / "d.csv"
    f.write_text(
        "timestamp,load_kw,pv_kw,spot_price\n"
        "2025-01-01T00:00:00+01:00,1.0,-0.01,0.1\n"
        "2025-01-01T00:15:00+01:00,-3.0,0.0,0.1\n"
        "2025-01-01T00:15:00+01:00,1.0,0.0,0.1\n"
        "2025-01-01T00:30:00+01:00,abc,0.0,0.1\n"
        "2025-01-01T01:00:00+01:00,1.0,0.0,0.1\n"
    )
    data = load_site_data(f)
    text = data.report.summary()
    assert "small negative" in text and "duplicate" in text and "non-numeric" in text
    # refused negative load (first of the duplicates), the non-numeric value, the missing 00:45 slot
    assert data.frame["load_kw"].isna().sum() == 3
    assert "outside" in text
    assert data.frame["pv_kw"].min() == 0.0


def test_missing_offset_is_refused_with_row_number(tmp_path: Path):
    f = tmp_path / "d.csv"
    f.write_text("timestamp,load_kw,pv_kw\n2025-01-01T00:00:00+01:00,1,0\n2025-01-01T00:15:00,1,0\n")
    with pytest.raises(SiteDataError, match="row 3"):
        load_site_data(f)


def test_missing_required_column_is_named(tmp_path: Path):
    f = tmp_path / "d.csv"
    f.write_text("timestamp,load_kw\n2025-01-01T00:00:00+01:00,1\n")
    with pytest.raises(SiteDataError, match="pv_kw"):
        load_site_data(f)
