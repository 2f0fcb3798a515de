"""What the web app computes (shared.webview, shared.siteedit), without a browser."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from shared.config import load_site_config, yaml_load
from shared.contracts import CostBreakdown, PlanMsg, PlanSlot, PriceSlot, PricesMsg, SolverStats
from shared.siteedit import apply_changes, diff, edited_text, save, schema_fields, validate
from shared.webview import banners, chart_data, today_money
from tests.conftest import ROOT

SITE_FILE = ROOT / "examples" / "se4-home.yaml"
NOW = datetime(2025, 8, 15, 8, 5, tzinfo=timezone.utc)  # 10:05 in Stockholm


@pytest.fixture(scope="module")
def site():
    return load_site_config(SITE_FILE, environ={})


def _plan(site, start: datetime, n: int = 8, soc0: float = 10.0) -> PlanMsg:
    slots = [PlanSlot(start=start + timedelta(minutes=15 * i), mode="charge", charge_kw=4.0, import_kw=4.0,
                      soc_kwh=soc0 + i, soc_target_frac=0.5, import_price_per_kwh=0.2, export_price_per_kwh=0.05,
                      reason_code="charge_grid_cheap") for i in range(n)]
    return PlanMsg(site_id=site.site_id, valid_until=start + timedelta(hours=1), slots=slots,
                   cost=CostBreakdown(currency="EUR", import_cost=1, export_revenue=0, total_cost=1),
                   solver=SolverStats(status="optimal"))


def test_today_money_prices_measured_slots_and_the_same_day_without_a_battery(site):
    idx = pd.DatetimeIndex([NOW.replace(minute=0) - timedelta(minutes=30), NOW.replace(minute=0) - timedelta(minutes=15)])
    obs = pd.DataFrame({"import_kwh": [1.0, 0.0], "export_kwh": [0.0, 0.5], "charge_kwh": [1.0, 0.0],
                        "discharge_kwh": [0.0, 0.5]}, index=idx)
    prices = pd.DataFrame({"import_price_per_kwh": [0.30, 0.40], "export_price_per_kwh": [0.10, 0.10]}, index=idx)
    out = today_money(site, NOW, None, prices, obs)
    # measured: 1 kWh bought at 0.30, 0.5 kWh sold at 0.10
    assert out["so_far"] == pytest.approx(0.30 - 0.05)
    # without the battery: slot 1 net 1-1=0 kWh; slot 2 net -0.5+0.5=0 kWh -> nothing bought or sold
    assert out["no_battery_so_far"] == pytest.approx(0.0)
    assert out["saving_so_far"] == pytest.approx(-0.25)  # charging from the grid cost money so far
    assert out["slots_measured"] == 2


def test_today_money_is_unknown_rather_than_guessed_without_a_price(site):
    idx = pd.DatetimeIndex([NOW.replace(minute=0) - timedelta(minutes=15)])
    obs = pd.DataFrame({"import_kwh": [1.0], "export_kwh": [0.0], "charge_kwh": [0.0], "discharge_kwh": [0.0]},
                       index=idx)
    prices = pd.DataFrame({"import_price_per_kwh": [float("nan")], "export_price_per_kwh": [0.1]}, index=idx)
    assert today_money(site, NOW, None, prices, obs)["so_far"] is None


def test_chart_spreads_hourly_prices_over_slots_and_puts_soc_at_slot_ends(site):
    start = NOW.replace(minute=0)
    prices = PricesMsg(site_id=site.site_id, currency="EUR", resolution_minutes=60, slots=[
        PriceSlot(start=start, import_price_per_kwh=0.3, export_price_per_kwh=0.1)])
    plan = _plan(site, start)
    data = chart_data(site, NOW, plan, None, prices)
    x = [datetime.fromtimestamp(t, timezone.utc) for t in data["x"]]
    # the whole local day (from Stockholm midnight) and the past 24 h are on the grid
    assert x[0] <= datetime(2025, 8, 14, 22, 0, tzinfo=timezone.utc) and x[0] <= NOW - timedelta(hours=24)
    i = x.index(start)
    assert data["series"]["import_price_per_kwh"][i:i + 4] == [0.3] * 4
    assert data["series"]["import_price_per_kwh"][i + 4] == 0.2  # the plan's own price fills the gap
    assert data["series"]["soc_planned_pct"][i] is None  # the end of the slot before the plan
    assert data["series"]["soc_planned_pct"][i + 1] == pytest.approx(100 * 10.0 / site.battery.capacity_kwh, abs=1e-3)


def test_banners_say_what_is_degraded(site):
    plan = _plan(site, NOW - timedelta(hours=3)).model_copy(update={"fallback": True, "reason": "solver failed"})
    out = banners(site, NOW, plan=plan, forecast=None, prices=None, state=None, telemetry=None,
                  errors=[(NOW, "planner", "plan", "no fresh measured battery SoC")], context={"vacation": True},
                  wall_now=NOW)
    text = " | ".join(b["text"] for b in out)
    for expected in ("expired", "Fallback plan", "No telemetry", "No prices", "No forecast",
                     "no fresh measured battery SoC", "Vacation"):
        assert expected in text
    assert out[0]["level"] == "error"
    # a plan the time limit stopped says so, with its proven gap
    stopped = _plan(site, NOW).model_copy(update={"solver": SolverStats(status="feasible", mip_gap=0.0123)})
    text = " | ".join(b["text"] for b in banners(site, NOW, plan=stopped, forecast=None, prices=None, state=None,
                                                 telemetry=None, wall_now=NOW))
    assert "feasible, not proven optimal" in text and "within 1.23 % of the optimum" in text
    assert "not proven" not in " ".join(b["text"] for b in banners(site, NOW, plan=_plan(site, NOW), forecast=None,
                                                                    prices=None, state=None, telemetry=None))


def test_settings_edit_keeps_comments_validates_and_backs_up(tmp_path: Path):
    path = tmp_path / "site.yaml"
    path.write_text(SITE_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    before = path.read_text(encoding="utf-8")
    data = yaml_load(before)
    fields = schema_fields(data)
    paths = {f.path for f in fields}
    assert {"battery.capacity_kwh", "water_heaters[0].power_kw", "planner.risk", "tariff.capacity.top_n"} <= paths
    by_path = {f.path: f for f in fields}
    assert by_path["battery.capacity_kwh"].unit == "kWh" and by_path["battery.capacity_kwh"].bounds == {"gt": 0.0}
    assert by_path["planner.risk"].choices == ["cautious", "balanced", "bold"]
    assert by_path["http.admin_token"].kind == "secret"

    _, errors = validate(apply_changes(data, {"battery.capacity_kwh": "-1", "water_heaters[0].power_kw": "x"},
                                       fields), str(path))
    assert set(errors) == {"battery.capacity_kwh", "water_heaters[0].power_kw"}
    with pytest.raises(KeyError, match="secrets"):
        apply_changes(data, {"http.admin_token": "guess"}, fields)
    with pytest.raises(KeyError, match="not a settings key"):
        apply_changes(data, {"battery.capacity": "3"}, fields)

    changes = {"battery.capacity_kwh": "30", "planner.risk": "bold"}
    site, errors = validate(apply_changes(data, changes, fields), str(path))
    assert errors == {} and site.battery.capacity_kwh == 30 and site.planner.risk == "bold"
    backup = save(path, edited_text(path, changes, fields))
    after = path.read_text(encoding="utf-8")
    assert backup.read_text(encoding="utf-8") == before
    assert [ln for ln in before.splitlines() if "#" in ln] == [ln for ln in after.splitlines() if "#" in ln]
    assert load_site_config(path, environ={}).battery.capacity_kwh == 30
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_open_settings_preview_never_shows_a_secret(tmp_path: Path):
    """/api/settings/check is open to readers: the diff around an edited line must not carry a secret."""
    secrets = {"admin_token": "SUPERSECRET-abc123", "url": "postgresql+psycopg://darkstar:pg-pass-9876@db/darkstar",
               "password": "hunter2hunter2"}
    text = SITE_FILE.read_text(encoding="utf-8")
    text += (f"\nhttp:\n  admin_token: {secrets['admin_token']}  # the admin credential\n  host: 127.0.0.1\n"
             f"database:\n  url: {secrets['url']}\n"
             f"auth:\n  users:\n    - name: homeassistant\n      password: {secrets['password']}\n      grants: [read]\n")
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    data = yaml_load(text)
    fields = schema_fields(data)
    changes = {"http.host": "127.0.0.2", "auth.users[0].name": "ha"}
    edited = edited_text(path, changes, fields)
    preview = diff(text, edited, path.name)
    assert "+  host: 127.0.0.2" in preview and "ha" in preview  # the edit is shown ...
    assert "admin_token: '********'  # the admin credential" in preview  # ... its context redacted, comment kept
    for secret in secrets.values():
        assert secret not in preview
    assert secrets["admin_token"] in edited  # redaction is of the preview only: the saved file keeps the secret


def test_a_site_file_the_web_app_cannot_write_is_reported_read_only(tmp_path: Path):
    """As the compose container's user (not root, who may write anything), a file it cannot write is named."""
    import os
    import subprocess
    import sys

    from shared.siteedit import read_only_reason

    path = tmp_path / "site.yaml"
    path.write_text("site_id: x\n", encoding="utf-8")
    assert read_only_reason(path) is None
    if os.geteuid() != 0:
        pytest.skip("needs root to check as another user")
    code = ("import os, sys; from pathlib import Path; from shared.siteedit import read_only_reason; "
            "os.setgid(65534); os.setuid(65534); print(read_only_reason(Path(sys.argv[1])))")  # imports as root
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "read-only here" in out.stdout and str(path) in out.stdout


def test_redaction_hides_secrets_in_every_yaml_shape():
    from shared.siteedit import redact

    text = ("http: {host: 127.0.0.1, admin_token: SECRET1}\n"
            "auth:\n  users:\n    - {name: ha, password: SECRET2}\n    - name: x\n      \"password\": SECRET3\n"
            "      password: \"abc #SECRET4\"\n      password: |\n        SECRET5\n        SECRET6\n      grants: [read]\n"
            "database:\n  url: postgresql://u:SECRET7@h/db  # keep\n  pool: 5\n")
    shown = redact(text)
    assert [n for n in range(1, 8) if f"SECRET{n}" in shown] == []
    assert "  url: '********'  # keep" in shown and "      grants: [read]" in shown and "  pool: 5" in shown
    assert len(shown.splitlines()) == len(text.splitlines())  # line for line: the diff's hunks stay where they are
