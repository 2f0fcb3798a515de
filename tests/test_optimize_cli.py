"""`darkstar plan` as a user runs it: one JSON document on stdout, a plot, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from services.cli import main

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "examples" / "se4-home.yaml"
DATA = ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz"
REQUIRED = {"status", "objective", "import_cost", "export_revenue", "wear_cost", "capacity_cost", "import_kwh",
            "export_kwh", "build_s", "solve_s", "mip_gap", "slots"}
SLOT_KEYS = {"start", "charge_kw", "discharge_kw", "import_kw", "export_kw", "soc_kwh", "water_kw", "ev_kw"}


def test_plan_json_is_one_document_with_the_documented_keys(capsys, tmp_path):
    plot = tmp_path / "plan.png"
    code = main(["plan", "--site", str(SITE), "--data", str(DATA), "--start", "2025-08-05T14:00+02:00",
                 "--hours", "12", "--soc-kwh", "12", "--json", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert code == 0
    doc = json.loads(out)  # the whole of stdout is one JSON document
    assert REQUIRED <= set(doc)
    assert doc["status"] == "optimal" and len(doc["slots"]) == 48
    assert SLOT_KEYS <= set(doc["slots"][0])
    assert doc["slots"][0]["start"] == "2025-08-05T12:00:00+00:00"
    assert plot.stat().st_size > 10_000


def test_plan_without_json_prints_a_summary(capsys):
    code = main(["plan", "--site", str(SITE), "--data", str(DATA), "--start", "2025-09-10T00:00+02:00", "--hours", "6"])
    out = capsys.readouterr().out
    assert code == 0 and "reason:" in out and "cost: total" in out


def test_bad_inputs_fail_with_a_message_naming_the_problem(capsys):
    code = main(["plan", "--site", str(SITE), "--data", str(DATA), "--start", "2030-01-01T00:00+01:00"])
    err = capsys.readouterr().err
    assert code == 2 and "no recorded data" in err
    code = main(["plan", "--site", str(SITE), "--data", str(DATA), "--start", "2025-09-10T00:00"])
    assert code == 2 and "offset" in capsys.readouterr().err
