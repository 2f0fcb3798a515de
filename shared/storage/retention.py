"""Bounded storage: what is kept how long (``database.retention`` in the site file).

Per table, for rows older than its window:

- ``execution_log`` (one row per executor tick): downsampled to one row per slot (the last tick
  of the slot, carrying the slot's mean measured battery and grid power, the tick count and the
  failed writes in ``detail["downsampled"]``); rows without a slot are dropped.
- ``plans`` / ``plan_slots``: a plan keeps its header (reason, cost, solver, explanation) and the
  slots it was in force for (from its creation to the next plan's), i.e. what was executed; the
  rest of its horizon is dropped.
- ``forecasts``: likewise only the slots each forecast was the newest for.
- ``events``: error events are aggregated into one ``error_summary`` event per UTC day, who and
  what (count, first, last, latest reason).

Prices, weather, observations, oracle results, runs, registry and context are small and kept.
Each run records a ``retention`` event whose ``data.cutoffs`` is where the next run starts, so
a nightly run touches one day of rows, not the whole history. On TimescaleDB, compression
policies are added to the hypertables (and the downsampling above still applies).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, null, or_, select, text

from shared.storage import models as m

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RetentionWindows:
    """Days of full detail per table (the same defaults as ``database.retention`` in the config)."""

    execution_log_days: float = 14.0
    plans_days: float = 7.0
    forecasts_days: float = 14.0
    error_events_days: float = 30.0

    @classmethod
    def from_config(cls, cfg: Any) -> RetentionWindows:
        """From ``database.retention`` (shared.config.RetentionConfig)."""
        return cls(cfg.execution_log_days, cfg.plans_days, cfg.forecasts_days, cfg.error_events_days)


@dataclass
class RetentionReport:
    deleted: dict[str, int] = field(default_factory=dict)
    cutoffs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        parts = ", ".join(f"{t} -{n}" for t, n in self.deleted.items() if n) or "nothing to drop"
        return f"retention: {parts} ({self.seconds:.1f} s)"


def _last_cutoffs(conn: Connection, site_id: str) -> dict[str, datetime]:
    ev = m.Event.__table__
    row = conn.execute(select(ev.c.data).where(ev.c.site_id == site_id, ev.c.kind == "retention")
                       .order_by(ev.c.ts.desc()).limit(1)).first()
    if row is None or not row.data:
        return {}
    return {k: datetime.fromisoformat(v) for k, v in (row.data.get("cutoffs") or {}).items()}


def _downsample_execution_log(conn: Connection, site_id: str, since: datetime, cutoff: datetime) -> int:
    t = m.ExecutionLog.__table__
    old = and_(t.c.site_id == site_id, t.c.ts >= since - timedelta(days=1), t.c.ts < cutoff)
    deleted = conn.execute(delete(t).where(old, t.c.slot_start.is_(None))).rowcount or 0
    groups = conn.execute(
        select(t.c.system_id, t.c.slot_start, func.count().label("n"), func.max(t.c.ts).label("last"),
               func.avg(t.c.measured_battery_kw).label("battery"), func.avg(t.c.measured_grid_kw).label("grid"),
               func.sum(case((t.c.success, 0), else_=1)).label("failed"))
        .where(old).group_by(t.c.system_id, t.c.slot_start).having(func.count() > 1)).all()
    for g in groups:
        key = and_(t.c.site_id == site_id, t.c.system_id == g.system_id, t.c.slot_start == g.slot_start)
        conn.execute(t.update().where(key, t.c.ts == g.last).values(
            measured_battery_kw=g.battery, measured_grid_kw=g.grid,
            detail={"downsampled": {"ticks": int(g.n), "failed_writes": int(g.failed or 0),
                                    "mean_of": ["measured_battery_kw", "measured_grid_kw"]}}))
        deleted += conn.execute(delete(t).where(key, t.c.ts < g.last, t.c.ts < cutoff)).rowcount or 0
    return deleted


def _keep_in_force_slots(conn: Connection, slots: Any, parents: list[Any], id_col: str,
                         site_id: str, cutoff: datetime) -> int:
    """Delete the slots of each parent (id, system, issued) except those it was the newest for."""
    deleted = 0
    for i, p in enumerate(parents):
        if p.issued >= cutoff:
            break
        nxt = next((q.issued for q in parents[i + 1:] if q.system == p.system), None)
        if nxt is None:
            continue  # still the newest: in force for its whole horizon
        start = p.issued - timedelta(minutes=p.issued.minute % 15, seconds=p.issued.second,
                                     microseconds=p.issued.microsecond)
        cond = [slots.c.site_id == site_id, slots.c[id_col] == p.id, or_(slots.c.slot_start < start,
                                                                          slots.c.slot_start >= nxt)]
        if p.system is not None:
            cond.append(slots.c.system_id == p.system)
        deleted += conn.execute(delete(slots).where(*cond)).rowcount or 0
    return deleted


def _prune_plans(conn: Connection, site_id: str, since: datetime, cutoff: datetime) -> int:
    p = m.Plan.__table__
    parents = conn.execute(
        select(p.c.plan_id.label("id"), p.c.system_id.label("system"), p.c.created_at.label("issued"))
        .where(p.c.site_id == site_id, p.c.created_at >= since - timedelta(days=2))
        .order_by(p.c.created_at)).all()
    return _keep_in_force_slots(conn, m.PlanSlotRow.__table__, parents, "plan_id", site_id, cutoff)


def _prune_forecasts(conn: Connection, site_id: str, since: datetime, cutoff: datetime) -> int:
    f = m.Forecast.__table__
    parents = conn.execute(
        select(f.c.forecast_id.label("id"), func.min(f.c.issued_at).label("issued"), null().label("system"))
        .where(f.c.site_id == site_id, f.c.issued_at >= since - timedelta(days=2))
        .group_by(f.c.forecast_id).order_by(func.min(f.c.issued_at))).all()
    return _keep_in_force_slots(conn, f, parents, "forecast_id", site_id, cutoff)


def _aggregate_errors(conn: Connection, site_id: str, since: datetime, cutoff: datetime) -> int:
    e = m.Event.__table__
    old = and_(e.c.site_id == site_id, e.c.kind == "error", e.c.ts >= since - timedelta(days=1), e.c.ts < cutoff)
    rows = conn.execute(select(e.c.ts, e.c.who, e.c.what, e.c.why).where(old).order_by(e.c.ts)).all()
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for r in rows:
        groups.setdefault((r.ts.date().isoformat(), r.who, r.what), []).append(r)
    summaries = [{"site_id": site_id, "ts": g[0].ts, "event_id": uuid.uuid4().hex, "kind": "error_summary",
                  "who": who, "what": what, "why": f"{len(g)} errors on {day}, last: {g[-1].why}"[:2000],
                  "payload_excerpt": None,
                  "data": {"count": len(g), "first": g[0].ts.isoformat(), "last": g[-1].ts.isoformat()}}
                 for (day, who, what), g in groups.items()]
    deleted = conn.execute(delete(e).where(old)).rowcount or 0
    if summaries:
        conn.execute(e.insert(), summaries)
    return deleted - len(summaries)


def _slot_floor(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return ts.replace(minute=ts.minute - ts.minute % 15, second=0, microsecond=0)


def apply_retention(engine: Any, site_id: str, now: datetime, windows: RetentionWindows) -> RetentionReport:
    """Apply the retention windows to one site's rows, as of ``now``; idempotent and incremental."""
    t0 = time.perf_counter()
    report = RetentionReport()
    jobs = {
        "execution_log": (windows.execution_log_days, _downsample_execution_log),
        "plan_slots": (windows.plans_days, _prune_plans),
        "forecasts": (windows.forecasts_days, _prune_forecasts),
        "events": (windows.error_events_days, _aggregate_errors),
    }
    with engine.begin() as conn:
        last = _last_cutoffs(conn, site_id)
        for table, (days, job) in jobs.items():
            cutoff = _slot_floor(now - timedelta(days=days))  # whole slots: no slot is half downsampled
            report.deleted[table] = job(conn, site_id, last.get(table, EPOCH), cutoff)
            report.cutoffs[table] = cutoff.isoformat()
        report.seconds = time.perf_counter() - t0
        conn.execute(m.Event.__table__.insert(), [{
            "site_id": site_id, "ts": now, "event_id": uuid.uuid4().hex, "kind": "retention", "who": "trainer",
            "what": "retention", "why": report.summary(), "payload_excerpt": None,
            "data": {"cutoffs": report.cutoffs, "deleted": report.deleted}}])
    return report


def compress_after_days(windows: RetentionWindows) -> float:
    """Chunks are compressed only once the nightly run is done with them (it deletes and rewrites rows
    up to the longest window): DML on compressed chunks is slow, and on older TimescaleDB refused."""
    return max(windows.execution_log_days, windows.plans_days, windows.forecasts_days,
               windows.error_events_days) + 2.0


def timescale_policies(engine: Any, windows: RetentionWindows | None = None) -> list[str]:
    """Compression policies on the hypertables when TimescaleDB is there; returns the tables touched."""
    after_days = compress_after_days(windows or RetentionWindows())
    if engine.dialect.name != "postgresql":
        return []
    done = []
    with engine.begin() as conn:
        if conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).first() is None:
            return []
        hyper = {r[0] for r in conn.execute(text("SELECT hypertable_name FROM timescaledb_information.hypertables"))}
        for table in sorted(hyper & set(m.HYPERTABLES)):
            conn.execute(text(f'ALTER TABLE "{table}" SET (timescaledb.compress, '
                              "timescaledb.compress_segmentby = 'site_id')"))
            conn.execute(text("SELECT add_compression_policy(CAST(:t AS regclass), "
                              "CAST(:after AS interval), if_not_exists => true)"),
                         {"t": table, "after": f"{after_days} days"})
            done.append(table)
    return done
