"""Bounded storage: old per-tick rows become one row per slot, old plans keep the slots they were in
force for (and their reasons), old error events become daily summaries; on all three databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from shared.storage import ExecutionRecord, Store
from shared.storage import models as m
from shared.storage.retention import RetentionWindows, apply_retention
from tests.test_storage import _plan

pytest_plugins = ["storage_fixtures"]

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
WINDOWS = RetentionWindows(execution_log_days=1, plans_days=1, forecasts_days=1, error_events_days=1)


def _count(store: Store, table, *where) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar()


def test_retention_downsamples_prunes_and_aggregates_only_what_is_old(store: Store, site_id: str):
    ticks = [ExecutionRecord(site_id=site_id, ts=DAY0 + timedelta(seconds=60 * i), mode="charge",
                             slot_start=DAY0 + timedelta(minutes=15 * (i // 15)), plan_id="p0",
                             measured_battery_kw=float(i % 15), measured_grid_kw=1.0, success=i % 5 != 0)
             for i in range(2 * 96 * 15)]  # two days of 60-s ticks
    store.store_execution(ticks)
    for k in range(24):  # a 24-h plan every two hours for two days
        store.store_plan(_plan(site_id, n=96, created_at=DAY0 + timedelta(hours=2 * k), plan_id=f"p{k}"))
    for k in range(2 * 48):
        store.store_event(site_id=site_id, kind="error", who="executor", what="modbus timeout",
                          why=f"try {k}", ts=DAY0 + timedelta(minutes=30 * k))
    now = DAY0 + timedelta(days=2)
    report = apply_retention(store.engine, site_id, now, WINDOWS)
    cutoff = now - timedelta(days=1)

    log = m.ExecutionLog.__table__
    assert _count(store, log, log.c.site_id == site_id, log.c.ts >= cutoff) == 96 * 15  # recent: every tick
    assert _count(store, log, log.c.site_id == site_id, log.c.ts < cutoff) == 96  # old: one per slot
    with store.engine.connect() as conn:
        kept = conn.execute(select(log).where(log.c.site_id == site_id, log.c.slot_start == DAY0)).one()
    assert kept.measured_battery_kw == pytest.approx(7.0)  # mean of 0..14 over the slot's 15 ticks
    assert kept.detail["downsampled"] == {"ticks": 15, "failed_writes": 3,
                                          "mean_of": ["measured_battery_kw", "measured_grid_kw"]}

    plans, slots = m.Plan.__table__, m.PlanSlotRow.__table__
    assert _count(store, plans, plans.c.site_id == site_id) == 24  # every plan and its reason stay
    assert _count(store, slots, slots.c.site_id == site_id, slots.c.plan_id == "p0") == 8  # in force 00:00-02:00
    assert _count(store, slots, slots.c.site_id == site_id, slots.c.plan_id == "p23") == 96  # newest: whole

    ev = m.Event.__table__
    assert _count(store, ev, ev.c.site_id == site_id, ev.c.kind == "error", ev.c.ts < cutoff) == 0
    with store.engine.connect() as conn:
        summaries = conn.execute(select(ev).where(ev.c.site_id == site_id, ev.c.kind == "error_summary")
                                 .order_by(ev.c.ts)).all()
    assert [s.data["count"] for s in summaries] == [48]  # the old day's 48 errors in one summary
    assert summaries[0].why.startswith("48 errors on 2026-03-01, last: try 47")
    assert report.deleted["execution_log"] == 96 * 14

    # the next night touches only the new day, and a second run the same night changes nothing
    again = apply_retention(store.engine, site_id, now, WINDOWS)
    assert again.deleted == {"execution_log": 0, "plan_slots": 0, "forecasts": 0, "events": 0}


def test_the_trainer_runs_retention_once_a_night_after_the_configured_time(tmp_path):
    from services.trainer.service import TrainerService
    from tests.conftest import make_site

    site = make_site(tmp_path, {"embedded": False, "host": "127.0.0.1", "port": 1883})  # Europe/Stockholm
    store = Store.open(site.database.url.get_secret_value())
    trainer = TrainerService(site, store=store)
    try:
        assert not trainer.retention_if_due(datetime(2026, 3, 2, 2, 0, tzinfo=UTC))  # 03:00 local: too early
        assert trainer.retention_if_due(datetime(2026, 3, 2, 2, 45, tzinfo=UTC))  # 03:45 local
        assert not trainer.retention_if_due(datetime(2026, 3, 2, 20, 0, tzinfo=UTC))  # same local day
        assert trainer.retention_if_due(datetime(2026, 3, 3, 3, 0, tzinfo=UTC))  # next night
        ev = m.Event.__table__
        assert _count(store, ev, ev.c.site_id == site.site_id, ev.c.kind == "retention") == 2
    finally:
        store.close()


def test_timescale_compresses_only_chunks_the_nightly_run_is_done_with():
    from shared.storage.retention import RetentionWindows, compress_after_days

    windows = RetentionWindows(execution_log_days=14, plans_days=7, forecasts_days=14, error_events_days=30)
    assert compress_after_days(windows) > 30  # never a chunk the run still deletes from or rewrites
