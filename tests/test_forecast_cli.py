"""`darkstar forecast eval`: one JSON document on stdout, progress on stderr, a plot on request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:.*dayofyear.*:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
SE4 = ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz"


def test_eval_json_is_the_only_stdout_and_says_weather_was_missing(capsys, tmp_path):
    plot = tmp_path / "eval.png"
    code = main(["forecast", "eval", "--site", str(ROOT / "examples" / "se4-home.yaml"), "--data", str(SE4),
                 "--from", "2025-08-01", "--to", "2025-08-02", "--json", "--plot", str(plot)])
    out, err = capsys.readouterr()
    assert code == 0
    doc = json.loads(out)  # nothing else on stdout
    for key in ("load_mae_kw", "load_baseline_mae_kw", "pv_mae_kw", "pv_baseline_mae_kw",
                "load_coverage_p10_p90", "pv_coverage_p10_p90", "train_s", "forecast_s"):
        assert isinstance(doc[key], float), key
    assert doc["issues"] == 2 and doc["weather"] == "none"
    assert doc["pv_fallback_frac"] == 1.0 and doc["load_fallback_frac"] == 1.0
    assert any("no weather" in n for n in doc["notes"])
    assert "trained aurora-" in err
    assert plot.exists() and plot.stat().st_size > 10_000


def test_eval_bad_range_is_a_clear_error(capsys):
    code = main(["forecast", "eval", "--site", str(ROOT / "examples" / "se4-home.yaml"), "--data", str(SE4),
                 "--from", "2025-08-03", "--to", "2025-08-01"])
    assert code == 2
    assert "--to 2025-08-01 is before --from 2025-08-03" in capsys.readouterr().err


def test_to_is_the_last_day_inclusive_in_every_batch_command() -> None:
    import argparse

    from services.batch_cli import add_range_arguments, date_range

    parser = argparse.ArgumentParser()
    add_range_arguments(parser)
    first, last = date_range(parser.parse_args(["--from", "2025-08-01", "--to", "2025-08-01"]))
    assert first == last, "a one-day range is --from D --to D"
