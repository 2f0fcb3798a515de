"""The repository on SQLite, MariaDB and PostgreSQL: what is stored comes back the same, once per slot.

Every test runs on the three databases (real servers; see storage_fixtures) and uses its own
site_id, which is how a fleet shares one database too.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from shared.contracts import (
    CommandMsg,
    ContextMsg,
    CostBreakdown,
    ErrorEventMsg,
    ForecastMsg,
    ForecastSlot,
    ObservationMsg,
    OracleResultMsg,
    PlanMsg,
    PlanSlot,
    PriceSlot,
    PricesMsg,
    SolverStats,
    TrainerRunMsg,
    WeatherMsg,
    WeatherSlot,
)
from shared.sitedata import load_site_data
from shared.slots import SLOT_HOURS, local_day_bounds, local_day_slots
from shared.storage import ExecutionRecord, Store, bench_store_observation

# Fixtures store / fresh_db_url / site_id, on SQLite, MariaDB and PostgreSQL.
pytest_plugins = ["storage_fixtures"]

STOCKHOLM = ZoneInfo("Europe/Stockholm")
CET = timezone(timedelta(hours=1))
T0 = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)
SE4_DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz"


def _slots(n: int, start: datetime = T0) -> list[datetime]:
    return [start + timedelta(minutes=15 * i) for i in range(n)]


def _prices(site: str, n: int = 8, base: float = 1.0, start: datetime = T0, **kw: object) -> PricesMsg:
    kw.setdefault("source", "test")
    return PricesMsg(
        site_id=site, currency="SEK", resolution_minutes=15, area="SE4",
        slots=[PriceSlot(start=s, spot_per_kwh=base + i / 10, import_price_per_kwh=base + i / 10 + 0.5,
                         export_price_per_kwh=base + i / 10 - 0.1) for i, s in enumerate(_slots(n, start))],
        **kw,  # type: ignore[arg-type]
    )


def _plan(site: str, n: int = 192, created_at: datetime = T0, **kw: object) -> PlanMsg:
    return PlanMsg(
        site_id=site, created_at=created_at, valid_until=created_at + timedelta(hours=1),
        inputs={"prices": "p1", "forecast": "f1", "context": None}, reason="scheduled",
        mode_changes_per_day=4.0,
        slots=[
            PlanSlot(start=s, mode="charge" if i % 4 == 0 else "self_use", charge_kw=2.5 if i % 4 == 0 else 0.0,
                     import_kw=3.1 + i / 1000, soc_kwh=5.0 + (i % 10) / 3, soc_target_frac=0.5, load_kw=0.7,
                     pv_kw=None, import_price_per_kwh=1.234567890123, reason_code="cheap" if i % 4 == 0 else None)
            for i, s in enumerate(_slots(n, created_at))
        ],
        cost=CostBreakdown(currency="SEK", import_cost=12.5, export_revenue=1.25, wear_cost=0.3, total_cost=11.55),
        solver=SolverStats(status="Optimal", objective=11.55, build_s=0.05, solve_s=0.2, mip_gap=None),
        explanation={"summary": "charge at night", "cheapest_hours": [1, 2, 3]},
        **kw,  # type: ignore[arg-type]
    )


def _obs(site: str, slot: datetime, load_kwh: float = 0.4, **kw: object) -> ObservationMsg:
    return ObservationMsg(site_id=site, slot_start=slot, load_kwh=load_kwh, pv_kwh=0.1, import_kwh=0.3,
                          export_kwh=0.0, soc_end_frac=0.55, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- prices, weather, forecasts


def test_storing_the_same_prices_twice_keeps_one_row_per_slot_with_the_newest_values(store: Store, site_id: str) -> None:
    first = _prices(site_id, base=1.0)
    assert store.store_prices(first) == 8
    store.store_prices(first)  # a retained message re-delivered after a reconnect
    assert store.count("prices", site_id) == 8

    corrected = _prices(site_id, base=2.0, issued_at=first.issued_at + timedelta(minutes=5))
    store.store_prices(corrected)
    assert store.count("prices", site_id) == 8
    assert store.latest_prices(site_id) == corrected
    frame = store.prices_between(site_id, T0, T0 + timedelta(hours=2))
    assert frame["import_price_per_kwh"].tolist() == pytest.approx([2.5 + i / 10 for i in range(8)], abs=1e-12)


def test_a_stale_price_curve_arriving_late_does_not_roll_newer_prices_back(store: Store, site_id: str) -> None:
    issued = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
    newer = _prices(site_id, n=8, base=2.0, issued_at=issued + timedelta(hours=1))
    older = _prices(site_id, n=12, base=1.0, issued_at=issued)  # overlaps 8 slots, adds 4
    store.store_prices(newer)
    store.store_prices(older)
    frame = store.prices_between(site_id, T0, T0 + timedelta(hours=3))
    assert len(frame) == 12
    assert frame["import_price_per_kwh"].iloc[:8].tolist() == pytest.approx([2.5 + i / 10 for i in range(8)])
    assert frame["import_price_per_kwh"].iloc[8:].tolist() == pytest.approx([1.5 + i / 10 for i in range(8, 12)])
    assert (frame["prices_id"].iloc[:8] == newer.prices_id).all()
    assert (frame["issued_at"].iloc[:8] == newer.issued_at).all()
    assert store.latest_prices(site_id) == newer


def test_timestamps_come_back_as_the_same_instants_in_aware_utc(store: Store, site_id: str) -> None:
    # Producer sends local times with an offset; storage keeps the instant, readers see UTC.
    local_start = datetime(2026, 1, 15, 1, 0, tzinfo=CET)  # == T0
    msg = _prices(site_id, start=local_start, issued_at=datetime(2026, 1, 14, 13, 0, 0, 123456, tzinfo=CET))
    store.store_prices(msg)
    back = store.latest_prices(site_id)
    assert back is not None
    assert back.issued_at == msg.issued_at and back.issued_at.utcoffset() == timedelta(0)
    assert back.issued_at.microsecond == 123456
    assert [s.start for s in back.slots] == _slots(8)
    assert all(s.start.tzinfo is not None and s.start.utcoffset() == timedelta(0) for s in back.slots)
    frame = store.prices_between(site_id, local_start, local_start + timedelta(hours=2))
    assert str(frame.index.tz) == "UTC" and frame.index[0] == pd.Timestamp(T0)


def test_a_naive_time_is_refused_rather_than_guessed(store: Store, site_id: str) -> None:
    with pytest.raises(ValueError, match="offset|naive"):
        store.observations_between(site_id, datetime(2026, 1, 1), datetime(2026, 1, 2))


def test_weather_round_trip(store: Store, site_id: str) -> None:
    msg = WeatherMsg(site_id=site_id, resolution_minutes=60, source="open-meteo",
                     slots=[WeatherSlot(start=T0 + timedelta(hours=h), temp_c=-3.5 + h, ghi_wm2=0.0 if h < 8 else 120.5,
                                        cloud_cover_pct=80.0) for h in range(24)])
    store.store_weather(msg)
    store.store_weather(msg)
    frame = store.weather_between(site_id, T0, T0 + timedelta(days=1))
    assert len(frame) == 24 and store.count("weather", site_id) == 24
    assert frame["temp_c"].iloc[10] == pytest.approx(6.5)
    assert frame["dni_wm2"].isna().all()  # not sent -> missing, never invented


def test_every_issued_forecast_is_kept_and_the_latest_comes_back_whole(store: Store, site_id: str) -> None:
    def forecast(issued: datetime, level: float) -> ForecastMsg:
        return ForecastMsg(site_id=site_id, issued_at=issued, model_id="aurora-lgbm-v3", notes=[],
                           slots=[ForecastSlot(start=s, load_p10_kw=level, load_p50_kw=level + 0.2, load_p90_kw=level + 0.5,
                                               pv_p10_kw=0.0, pv_p50_kw=0.1, pv_p90_kw=0.3) for s in _slots(96)])

    older, newer = forecast(T0 - timedelta(hours=1), 0.3), forecast(T0, 0.4)
    store.store_forecast(newer)
    store.store_forecast(older)  # arrives late: it must not become "latest"
    store.store_forecast(older)
    assert store.count("forecasts", site_id) == 2 * 96
    assert store.latest_forecast(site_id) == newer


# --------------------------------------------------------------------------- observations


def test_observations_upsert_per_slot_and_live_never_mixes_with_simulated(store: Store, site_id: str) -> None:
    slot = T0 + timedelta(minutes=30)
    store.store_observation(_obs(site_id, slot, load_kwh=0.4))
    store.store_observation(_obs(site_id, slot, load_kwh=0.45))  # late meter correction
    store.store_observation(_obs(site_id, slot, load_kwh=9.0), system_id="sim-demo")
    assert store.count("slot_observations", site_id) == 2
    live = store.observations_between(site_id, T0, T0 + timedelta(hours=1))
    sim = store.observations_between(site_id, T0, T0 + timedelta(hours=1), system_id="sim-demo")
    assert live.loc[pd.Timestamp(slot), "load_kwh"] == pytest.approx(0.45)
    assert sim.loc[pd.Timestamp(slot), "load_kwh"] == pytest.approx(9.0)
    assert live.loc[pd.Timestamp(slot), "charge_kwh"] != live.loc[pd.Timestamp(slot), "charge_kwh"]  # NaN: not measured


@pytest.mark.parametrize("day, n_slots", [(date(2025, 10, 26), 100), (date(2025, 8, 15), 96)])
def test_a_recorded_local_day_is_stored_and_read_back_slot_for_slot(store: Store, site_id: str, day: date, n_slots: int) -> None:
    # Real measured load/PV of the SE4 home; 2025-10-26 is the 25-hour DST day in Stockholm.
    start, end = local_day_bounds(day, STOCKHOLM)
    data = load_site_data(SE4_DATA).between(start, end)
    assert len(data) == n_slots
    msgs = [ObservationMsg(site_id=site_id, slot_start=ts.to_pydatetime(), load_kwh=float(row.load_kw) * SLOT_HOURS,
                           pv_kwh=float(row.pv_kw) * SLOT_HOURS)
            for ts, row in data.iterrows()]
    assert store.store_observations(msgs) == n_slots
    back = store.observations_between(site_id, start, end)
    assert back.index.equals(local_day_slots(day, STOCKHOLM))
    assert back["load_kwh"].sum() == pytest.approx(float(data["load_kw"].sum()) * SLOT_HOURS, rel=1e-12)
    assert back["pv_kwh"].sum() == pytest.approx(float(data["pv_kw"].sum()) * SLOT_HOURS, rel=1e-12)


def test_the_92_slot_spring_dst_day_round_trips(store: Store, site_id: str) -> None:
    day = date(2026, 3, 29)
    slots = local_day_slots(day, STOCKHOLM)
    assert len(slots) == 92
    store.store_observations([_obs(site_id, ts.to_pydatetime(), load_kwh=i / 100) for i, ts in enumerate(slots)])
    start, end = local_day_bounds(day, STOCKHOLM)
    back = store.observations_between(site_id, start, end)
    assert back.index.equals(slots)
    assert back["load_kwh"].tolist() == pytest.approx([i / 100 for i in range(92)])


def test_concurrent_writers_from_several_threads_lose_nothing(store: Store, site_id: str) -> None:
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(10):
                store.store_observation(_obs(site_id, T0 + timedelta(minutes=15 * (k * 10 + i))))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert store.count("slot_observations", site_id) == 40


# --------------------------------------------------------------------------- plans and execution


def test_a_48h_plan_round_trips_exactly_and_a_republished_plan_replaces_its_slots(store: Store, site_id: str) -> None:
    plan = _plan(site_id)
    assert store.store_plan(plan) == 192
    assert store.latest_plan(site_id) == plan  # every field, every slot, floats bit-for-bit

    shorter = plan.model_copy(update={"slots": plan.slots[:96], "reason": "replanned"})
    store.store_plan(shorter)
    assert store.count("plans", site_id) == 1
    assert store.count("plan_slots", site_id) == 96
    assert store.latest_plan(site_id) == shorter


def test_the_latest_plan_is_the_newest_of_its_system(store: Store, site_id: str) -> None:
    old, new = _plan(site_id, n=4), _plan(site_id, n=4, created_at=T0 + timedelta(minutes=15))
    sim = _plan(site_id, n=4, created_at=T0 + timedelta(hours=5))
    store.store_plan(new)
    store.store_plan(old)
    store.store_plan(sim, system_id="sim-demo")
    live = store.latest_plan(site_id)
    assert live is not None and live.plan_id == new.plan_id
    assert store.latest_plan(site_id, system_id="sim-demo") == sim
    assert store.latest_plan("nobody-here") is None


def test_execution_log_keeps_planned_commanded_and_measured(store: Store, site_id: str) -> None:
    rec = ExecutionRecord(site_id=site_id, ts=T0 + timedelta(seconds=5), mode="charge", success=False,
                          slot_start=T0, plan_id="p1", planned_mode="charge", planned_battery_kw=2.5,
                          commanded_battery_kw=2.0, measured_battery_kw=1.9, measured_soc_frac=0.41,
                          override_kind="force_charge", override_expires_at=T0 + timedelta(hours=1),
                          error="register 40100 write timed out", detail={"registers": {"40100": 2000}})
    store.store_execution(rec)
    store.store_execution([rec])  # retried write of the same decision
    store.store_execution(ExecutionRecord(site_id=site_id, ts=T0 + timedelta(seconds=5), mode="charge",
                                          success=True, system_id="sim-demo"))
    assert store.count("execution_log", site_id, system_id="live") == 1
    assert store.count("execution_log", site_id, system_id="sim-demo") == 1


# --------------------------------------------------------------------------- context and events


def test_context_gives_typed_values_and_a_late_old_message_does_not_roll_it_back(store: Store, site_id: str) -> None:
    departure = datetime(2026, 1, 16, 7, 30, tzinfo=CET)
    now = datetime.now(UTC)
    store.store_context(ContextMsg(site_id=site_id, name="vacation", value=True, set_at=now, source="ha"))
    store.store_context(ContextMsg(site_id=site_id, name="ev_departure", value=departure, set_at=now))
    store.store_context(ContextMsg(site_id=site_id, name="ev_target_kwh", value=30, set_at=now))
    store.store_context(ContextMsg(site_id=site_id, name="note", value="guests from Friday", set_at=now))
    store.store_context(ContextMsg(site_id=site_id, name="away", value=True, set_at=now - timedelta(hours=2),
                                   expires_at=now - timedelta(hours=1)))
    assert not store.store_context(ContextMsg(site_id=site_id, name="vacation", value=False,
                                              set_at=now - timedelta(minutes=1)))
    ctx = store.context(site_id)
    assert ctx == {"vacation": True, "ev_departure": departure, "ev_target_kwh": 30.0, "note": "guests from Friday"}
    assert ctx["ev_departure"].utcoffset() == timedelta(0)
    assert store.context(site_id, include_expired=True)["away"] is True
    assert store.count("context_history", site_id) == 6


def test_error_and_other_events_are_kept(store: Store, site_id: str) -> None:
    store.store_event(ErrorEventMsg(site_id=site_id, who="planner", what="darkstar/x/prices",
                                    why="slots.0.start: missing", payload_excerpt='{"schema": "darkstar.prices/1"}'))
    store.store_event(CommandMsg(site_id=site_id, args={"ttl_s": 600}), who="dashboard", what="cmd/executor/force_charge")
    store.store_event(site_id=site_id, kind="model_promoted", who="trainer", what="aurora", why="better MAE",
                      data={"mae_kw": 0.21})
    errors = store.recent_events(site_id, kind="error")
    assert [e["why"] for e in errors] == ["slots.0.start: missing"]
    assert errors[0]["ts"].utcoffset() == timedelta(0)
    command = store.recent_events(site_id, kind="command")[0]
    assert command["data"]["args"] == {"ttl_s": 600}
    assert store.count("events", site_id) == 3
    with pytest.raises(ValueError, match="who"):
        store.store_event(site_id=site_id, kind="x", what="y")


# --------------------------------------------------------------------------- learning and evaluation


def test_oracle_results_upsert_per_day_and_system(store: Store, site_id: str) -> None:
    msg = OracleResultMsg(site_id=site_id, day="2025-10-26", currency="SEK", oracle_cost=10.0, realized_cost=12.5,
                          regret=2.5, breakdown={"import_cost": 14.0, "export_revenue": -4.0})
    store.store_oracle_result(msg)
    store.store_oracle_result(msg.model_copy(update={"realized_cost": 12.0, "regret": 2.0}))
    store.store_oracle_result(msg, system_id="backtest-1")
    frame = store.oracle_results(site_id)
    assert len(frame) == 1 and frame.loc[date(2025, 10, 26), "regret"] == pytest.approx(2.0)
    assert store.count("oracle_daily_results", site_id) == 2


def test_a_training_run_goes_from_started_to_finished_in_one_row(store: Store, site_id: str) -> None:
    started = T0
    store.store_training_run(TrainerRunMsg(site_id=site_id, run_id="r1", target="antares", status="started"),
                             at=started, params={"epochs": 20, "lr": 0.001})
    store.store_training_run(TrainerRunMsg(site_id=site_id, run_id="r1", target="antares", status="finished",
                                           metrics={"cost_gap_frac": 0.031}, model_id="antares-7"),
                             at=started + timedelta(minutes=12), extra={"episodes": 400})
    run = store.training_run(site_id, "r1")
    assert run is not None
    assert run["status"] == "finished" and run["model_id"] == "antares-7"
    assert run["started_at"] == started and run["finished_at"] == started + timedelta(minutes=12)
    assert run["params"] == {"epochs": 20, "lr": 0.001} and run["extra"] == {"episodes": 400}
    assert run["metrics"] == {"cost_gap_frac": 0.031}


def test_model_registry_versions_and_the_latest_approved_model(store: Store, site_id: str) -> None:
    a1 = store.register_model(site_id, "aurora", "aurora-1", "var/models/aurora-1.txt", {"mae_kw": 0.3}, approved=True)
    a2 = store.register_model(site_id, "aurora", "aurora-2", "var/models/aurora-2.txt", {"mae_kw": 0.25})
    store.register_model(site_id, "antares", "antares-1", "var/models/antares-1.pt", approved=True)
    assert (a1.version, a2.version) == (1, 2)
    best = store.latest_approved_model("aurora", site_id)
    assert best is not None and best.model_id == "aurora-1" and best.metrics == {"mae_kw": 0.3}

    store.approve_model(site_id, "aurora-2")
    best = store.latest_approved_model("aurora", site_id)
    assert best is not None and best.model_id == "aurora-2" and best.approved_at is not None
    again = store.register_model(site_id, "aurora", "aurora-2", "var/models/aurora-2b.txt", {"mae_kw": 0.24},
                                 approved=True)
    assert again.version == 2  # re-registering updates, never duplicates
    # Keys are case-sensitive on every database (MariaDB's default collation is not).
    assert store.register_model(site_id, "aurora", "AURORA-2", "x").version == 3
    assert store.latest_approved_model("antares", "other-site") is None
    with pytest.raises(ValueError, match="kind"):
        store.register_model(site_id, "sirius", "s-1", "x")
    with pytest.raises(KeyError):
        store.approve_model(site_id, "no-such-model")


def test_data_quality_per_day_and_source(store: Store, site_id: str) -> None:
    day = date(2025, 10, 26)
    store.store_data_quality(site_id, day, "observations", expected_slots=100, present_slots=97,
                             fixed=["2 readings interpolated"], refused=["negative pv"])
    store.store_data_quality(site_id, day, "observations", expected_slots=100, present_slots=100)
    store.store_data_quality(site_id, day, "prices", expected_slots=100, present_slots=100)
    assert store.count("data_quality_daily", site_id) == 2
    with pytest.raises(ValueError, match="present_slots"):
        store.store_data_quality(site_id, day, "prices", expected_slots=96, present_slots=97)


def test_store_answers_ping_and_counts_every_table(store: Store, site_id: str) -> None:
    assert store.ping()
    counts = store.counts(site_id)
    assert set(counts) >= {"prices", "slot_observations", "plans", "plan_slots", "events", "model_registry"}
    assert all(v == 0 for v in counts.values())
    with pytest.raises(KeyError, match="unknown table"):
        store.count("no_such_table")


def test_async_commit_stores_the_same_rows(store: Store, site_id: str) -> None:
    fast = Store(store.engine, async_commit=True)  # only changes how PostgreSQL waits for the disk
    assert fast.async_commit == (store.dialect == "postgresql")
    fast.store_observations([_obs(site_id, s) for s in _slots(4)])
    assert store.count("slot_observations", site_id) == 4


def test_the_benchmark_helper_writes_only_under_its_own_system(store: Store, site_id: str) -> None:
    result = bench_store_observation(store, n=3, site_id=site_id)
    assert set(result) == {"n", "median_ms", "p95_ms"} and result["p95_ms"] >= result["median_ms"] > 0
    assert store.count("slot_observations", site_id, system_id="live") == 0
    assert store.count("slot_observations", site_id, system_id="bench") == 3


def test_every_database_refuses_or_fits_bad_values_the_same_way(store: Store, site_id: str) -> None:
    # Free text is shortened to fit; identifiers are never cut (two ids must not collide); NaN is
    # refused (SQLite would keep it as NULL, MariaDB reject it, PostgreSQL store NaN).
    store.store_prices(_prices(site_id, source="nordpool " * 20))
    back = store.latest_prices(site_id)
    assert back is not None and back.source.startswith("nordpool") and len(back.source) == 64
    with pytest.raises(ValueError, match="prices.prices_id: 80 characters"):
        store.store_prices(_prices(site_id, prices_id="p" * 80))
    with pytest.raises(ValueError, match="oracle_daily_results.oracle_cost"):
        # The contract refuses NaN too; the store must refuse it also for a row built without
        # validation (model_construct), as a second line of defence.
        store.store_oracle_result(OracleResultMsg.model_construct(
            site_id=site_id, day="2026-01-01", currency="SEK", oracle_cost=float("nan")))
    assert store.count("oracle_daily_results", site_id) == 0


def test_every_contract_field_has_a_column() -> None:
    # A field added to a contract needs a column (and a migration), or it would not be stored.
    from shared.storage import models as m

    expected = {
        ObservationMsg: (m.SlotObservation, {"schema_", "site_id"}),
        PricesMsg: (m.Price, {"schema_", "slots"}),
        PriceSlot: (m.Price, {"start"}),
        WeatherMsg: (m.Weather, {"schema_", "slots"}),
        WeatherSlot: (m.Weather, {"start"}),
        ForecastMsg: (m.Forecast, {"schema_", "slots", "notes"}),  # notes: free text, not kept
        ForecastSlot: (m.Forecast, {"start"}),
        PlanMsg: (m.Plan, {"schema_", "slots", "cost", "solver"}),
        PlanSlot: (m.PlanSlotRow, {"start"}),
        CostBreakdown: (m.Plan, set()),
        OracleResultMsg: (m.OracleDailyResult, {"schema_"}),
        ExecutionRecord: (m.ExecutionLog, set()),
    }
    for contract, (model, skip) in expected.items():
        fields = set(getattr(contract, "model_fields", None) or contract.__dataclass_fields__) - skip
        missing = fields - set(model.__table__.columns.keys())
        assert not missing, f"{contract.__name__} fields without a column in {model.__tablename__}: {missing}"
