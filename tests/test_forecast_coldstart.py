"""Cold start by merit: a trained model replaces the prior only when it beats it on recent measured days,
scored on observations stored in SQLite (the forecaster's own history)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from services.forecaster.service import ForecasterService
from services.forecaster.world import LiveWorld
from shared.clock import SimClock
from shared.contracts import ObservationMsg
from shared.forecast.coldstart import choose_model_or_prior
from shared.forecast.models import ForecastModels
from shared.forecast.prior import prior_forecast
from shared.slots import local_day_bounds
from shared.storage.repository import Store

NOW = pd.Timestamp(datetime(2025, 7, 31, 22, 30, tzinfo=timezone.utc))  # 00:30 on 1 August in Stockholm
RECENT_FROM = date(2025, 7, 25)  # the 7 scored days: 25..31 July


@pytest.fixture(scope="module")
def aurora(se4) -> ForecastModels:
    site, frame = se4
    train_end, _ = local_day_bounds(RECENT_FROM, site.tz)
    hist = frame.loc[frame.index < train_end, ["load_kw", "pv_kw"]]
    return ForecastModels.train(hist, None, site)


def store_history(tmp_path: Path, site, frame: pd.DataFrame) -> Store:
    store = Store.open(f"sqlite:///{tmp_path / 'obs.db'}")
    store.store_observations([
        ObservationMsg(site_id=site.site_id, slot_start=ts.to_pydatetime(),
                       load_kwh=float(r.load_kw) * 0.25, pv_kwh=float(r.pv_kw) * 0.25)
        for ts, r in frame.iterrows() if pd.notna(r.load_kw) and pd.notna(r.pv_kw)])
    return store


def test_a_model_that_beats_the_prior_on_measured_days_replaces_it(tmp_path: Path, se4, aurora):
    site, frame = se4
    store = store_history(tmp_path, site, frame.loc[frame.index < NOW, ["load_kw", "pv_kw"]])
    try:
        history = LiveWorld(site, store).history(NOW.to_pydatetime(), 23)
        choice = choose_model_or_prior(aurora, history, site, NOW, days=7)
        assert choice.days == [f"2025-07-{d}" for d in range(25, 32)]
        assert choice.use_model and choice.model_mae_kw < choice.prior_mae_kw
        assert "using the model" in choice.why
    finally:
        store.close()


def test_the_prior_keeps_serving_while_it_is_better_and_the_forecast_says_why(tmp_path: Path, se4, aurora):
    site, frame = se4
    measured = frame.loc[frame.index < NOW, ["load_kw", "pv_kw"]].copy()
    # the home's last week behaved exactly like the prior (a new tenant on the standard profile)
    start, _ = local_day_bounds(RECENT_FROM, site.tz)
    recent = measured.index >= start
    prior = prior_forecast(site, measured.index[recent])
    measured.loc[recent, "load_kw"] = prior["load_p50_kw"].to_numpy()
    measured.loc[recent, "pv_kw"] = prior["pv_p50_kw"].to_numpy()
    store = store_history(tmp_path, site, measured)
    try:
        history = LiveWorld(site, store).history(NOW.to_pydatetime(), 23)
        choice = choose_model_or_prior(aurora, history, site, NOW, days=7)
        assert not choice.use_model and choice.prior_mae_kw == pytest.approx(0.0, abs=1e-6)
        assert choice.model_mae_kw > 0.05 and "keeping the prior" in choice.why
        # without a measured day there is no evidence to switch on
        empty = choose_model_or_prior(aurora, history.iloc[:0], site, NOW, days=7)
        assert not empty.use_model and "no measured day" in empty.why
        # the forecaster service asks the same rule for the model it holds and labels the prior
        service = ForecasterService(site, store=store, clock=SimClock(NOW.to_pydatetime(), accel=1.0))
        service.models = aurora
        assert service._model_or_prior(NOW.to_pydatetime(), aurora).why == choice.why
    finally:
        store.close()
