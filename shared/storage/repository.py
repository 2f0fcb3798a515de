"""The repository: store contract messages, read them back. One engine, short transactions.

Over 500 lines: one ``Store`` is the single database API of every service (each table's upsert
and query next to the dialect handling they share); split by table, that handling would repeat.

Writes are idempotent upserts keyed by site and slot (``INSERT ... ON CONFLICT DO UPDATE`` on
SQLite and PostgreSQL, ``ON DUPLICATE KEY UPDATE`` on MariaDB), sent as one batch per message,
so a retained message delivered twice, or a re-published plan, leaves one row per slot with the
newest values. Every method opens and closes its own transaction, so a :class:`Store` can be
shared by all services and threads of a process. On SQLite, writers are additionally serialised
in-process (SQLite has a single writer anyway, and this avoids lock-upgrade deadlocks).

Real and simulated data never mix: observations, plans, execution log and oracle results take a
``system_id`` ('live' unless said otherwise) that is part of their keys.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel
from sqlalchemy import Connection, Engine, Float, String, Table, and_, delete, func, select, text
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from shared.contracts import (
    ContextMsg,
    CostBreakdown,
    ErrorEventMsg,
    ForecastMsg,
    ForecastSlot,
    Message,
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
from shared.storage import models as m
from shared.storage.db import ping as _ping

MODEL_KINDS = ("aurora", "antares")



def _shared_fields(model: type[BaseModel], table: Table, skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Contract fields that have a column of the same name. A contract field without a column
    is not written (a newer producer must not crash the recorder); tests/test_storage.py
    fails on such a gap so the migration gets written."""
    return tuple(f for f in model.model_fields if f not in skip and f in table.columns)


_OBS_FIELDS = _shared_fields(ObservationMsg, m.SlotObservation.__table__,
                             skip=("schema_", "site_id", "slot_start", "duration_minutes"))
_PLAN_SLOT_FIELDS = _shared_fields(PlanSlot, m.PlanSlotRow.__table__, skip=("start",))
_FORECAST_FIELDS = _shared_fields(ForecastSlot, m.Forecast.__table__, skip=("start",))
_WEATHER_FIELDS = _shared_fields(WeatherSlot, m.Weather.__table__, skip=("start",))
_PRICE_FIELDS = _shared_fields(PriceSlot, m.Price.__table__, skip=("start",))
_COST_FIELDS = _shared_fields(CostBreakdown, m.Plan.__table__)


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(ts: datetime | pd.Timestamp | str) -> datetime:
    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp {stamp.isoformat()} has no UTC offset; give an aware time")
    return stamp.tz_convert(UTC).to_pydatetime()


@dataclass(frozen=True)
class ExecutionRecord:
    """One executor decision: what the plan said, what was commanded, what was measured."""

    site_id: str
    ts: datetime
    mode: str
    success: bool
    system_id: str = m.LIVE
    slot_start: datetime | None = None
    plan_id: str | None = None
    planned_mode: str | None = None
    planned_battery_kw: float | None = None
    commanded_battery_kw: float | None = None
    measured_battery_kw: float | None = None
    measured_grid_kw: float | None = None
    measured_soc_frac: float | None = None
    override_kind: str | None = None
    override_expires_at: datetime | None = None
    error: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class ModelRecord:
    site_id: str
    model_id: str
    kind: str
    version: int
    created_at: datetime
    artifact_path: str
    metrics: dict[str, Any] = field(default_factory=dict)
    approved: bool = False
    approved_at: datetime | None = None
    run_id: str | None = None


class Store:
    """Repository over one SQLAlchemy engine; see the module doc."""

    def __init__(self, engine: Engine, async_commit: bool = False) -> None:
        """``async_commit=True`` (PostgreSQL only) commits without waiting for the WAL flush:
        ~0.4 ms instead of ~8 ms per message on this machine's disk, at the price of losing the
        last fraction of a second of writes if the database server itself crashes (never
        corruption). Off by default: durability first."""
        self.engine = engine
        self.dialect = engine.dialect.name
        self.async_commit = async_commit and self.dialect == "postgresql"
        self._write_lock: Any = threading.RLock() if self.dialect == "sqlite" else contextlib.nullcontext()
        # An in-memory SQLite database is one shared connection: readers must take turns too.
        memory = self.dialect == "sqlite" and engine.url.database in (None, "", ":memory:")
        self._read_lock: Any = self._write_lock if memory else contextlib.nullcontext()

    @classmethod
    def open(cls, url: str, migrate: bool = True, async_commit: bool = False, **engine_kwargs: Any) -> Store:
        """Engine for ``url`` (+ migrations to head) wrapped in a Store."""
        from shared.storage.db import make_engine
        from shared.storage.db import migrate as run_migrations

        engine = make_engine(url, **engine_kwargs)
        if migrate:
            run_migrations(engine)
        return cls(engine, async_commit=async_commit)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        return _ping(self.engine)

    # ------------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._read_lock, self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_lock, self.engine.begin() as conn:
            if self.async_commit:
                conn.execute(text("SET LOCAL synchronous_commit = off"))
            yield conn

    def _insert(self, conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            conn.execute(table.insert(), _checked(table, rows))

    def _upsert(
        self,
        conn: Connection,
        table: Table,
        rows: Sequence[dict[str, Any]],
        keep_if_null: Iterable[str] = (),
        unless_older: str | None = None,
    ) -> None:
        """Insert ``rows`` or update them on a primary-key clash, as one batch (executemany).

        Columns in ``keep_if_null`` keep their stored value when the new row has NULL there.
        With ``unless_older="issued_at"``, a stored row is only replaced by a row at least as new
        (a late, stale message must not roll newer data back).
        """
        if not rows:
            return
        rows = _checked(table, rows)
        keys = [c.name for c in table.primary_key.columns]
        update_cols = [c for c in rows[0] if c not in keys]
        keep = set(keep_if_null)
        mysql = self.dialect in ("mysql", "mariadb")
        if mysql:
            stmt: Any = mysql_dialect.insert(table)
            new = stmt.inserted
        elif self.dialect == "postgresql":
            stmt = pg_dialect.insert(table)
            new = stmt.excluded
        else:
            stmt = sqlite_dialect.insert(table)
            new = stmt.excluded
        values = [(c, func.coalesce(new[c], table.c[c]) if c in keep else new[c]) for c in update_cols]
        if mysql:
            if unless_older:
                # MariaDB assigns left to right and later terms see earlier results: compare
                # against the stored time in every column, and update that column last.
                newer = new[unless_older] >= table.c[unless_older]
                values = [(c, func.if_(newer, v, table.c[c])) for c, v in values if c != unless_older]
                values.append((unless_older, func.greatest(new[unless_older], table.c[unless_older])))
            stmt = stmt.on_duplicate_key_update(values) if values else stmt.prefix_with("IGNORE")
        elif values:
            where = table.c[unless_older] <= new[unless_older] if unless_older else None
            stmt = stmt.on_conflict_do_update(index_elements=keys, set_=dict(values), where=where)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        conn.execute(stmt, rows)

    # ------------------------------------------------------------------ market and weather

    def store_prices(self, msg: PricesMsg) -> int:
        """Upsert one row per price slot; returns the number of slots. Slots already stored from
        a curve issued later keep their values (messages can arrive out of order)."""
        now = _now()
        rows = [
            {
                "site_id": msg.site_id, "slot_start": s.start, "prices_id": msg.prices_id,
                "issued_at": msg.issued_at, "area": msg.area, "currency": msg.currency,
                "resolution_minutes": msg.resolution_minutes, "source": msg.source,
                **{f: getattr(s, f) for f in _PRICE_FIELDS}, "updated_at": now,
            }
            for s in msg.slots
        ]
        with self._write() as conn:
            self._upsert(conn, m.Price.__table__, rows, unless_older="issued_at")
        return len(rows)

    def store_weather(self, msg: WeatherMsg) -> int:
        now = _now()
        rows = [
            {
                "site_id": msg.site_id, "slot_start": s.start, "weather_id": msg.weather_id,
                "issued_at": msg.issued_at, "source": msg.source, "resolution_minutes": msg.resolution_minutes,
                **{f: getattr(s, f) for f in _WEATHER_FIELDS}, "updated_at": now,
            }
            for s in msg.slots
        ]
        with self._write() as conn:
            self._upsert(conn, m.Weather.__table__, rows, unless_older="issued_at")
        return len(rows)

    def store_forecast(self, msg: ForecastMsg) -> int:
        rows = [
            {
                "site_id": msg.site_id, "forecast_id": msg.forecast_id, "slot_start": s.start,
                "issued_at": msg.issued_at, "model_id": msg.model_id, "fallback": msg.fallback,
                **{f: getattr(s, f) for f in _FORECAST_FIELDS},
            }
            for s in msg.slots
        ]
        with self._write() as conn:
            self._upsert(conn, m.Forecast.__table__, rows)
        return len(rows)

    # ------------------------------------------------------------------ measured

    def store_observation(self, msg: ObservationMsg, system_id: str = m.LIVE) -> None:
        self.store_observations([msg], system_id=system_id)

    def store_observations(self, msgs: Sequence[ObservationMsg], system_id: str = m.LIVE) -> int:
        """Batch form (backfills, simulator runs); one transaction."""
        now = _now()
        rows = [
            {
                "site_id": o.site_id, "system_id": system_id, "slot_start": o.slot_start,
                "duration_minutes": o.duration_minutes, **{f: getattr(o, f) for f in _OBS_FIELDS},
                "updated_at": now,
            }
            for o in msgs
        ]
        with self._write() as conn:
            self._upsert(conn, m.SlotObservation.__table__, rows)
        return len(rows)

    # ------------------------------------------------------------------ plans and execution

    def store_plan(self, msg: PlanMsg, system_id: str = m.LIVE) -> int:
        """Upsert the plan header and replace its slots; returns the number of slots."""
        header = {
            "site_id": msg.site_id, "system_id": system_id, "plan_id": msg.plan_id,
            "created_at": msg.created_at, "valid_until": msg.valid_until,
            "first_slot_start": msg.slots[0].start, "last_slot_start": msg.slots[-1].start,
            "n_slots": len(msg.slots), "fallback": msg.fallback, "reason": msg.reason,
            "mode_changes_per_day": msg.mode_changes_per_day,
            **{f: getattr(msg.cost, f) for f in _COST_FIELDS},
            "solver": msg.solver.solver, "solver_status": msg.solver.status, "objective": msg.solver.objective,
            "build_s": msg.solver.build_s, "solve_s": msg.solver.solve_s, "mip_gap": msg.solver.mip_gap,
            "inputs": dict(msg.inputs), "explanation": msg.explanation, "stored_at": _now(),
        }
        slots = [
            {"site_id": msg.site_id, "system_id": system_id, "plan_id": msg.plan_id, "slot_start": s.start,
             **{f: getattr(s, f) for f in _PLAN_SLOT_FIELDS}}
            for s in msg.slots
        ]
        table = m.PlanSlotRow.__table__
        with self._write() as conn:
            self._upsert(conn, m.Plan.__table__, [header])
            # A re-published plan with fewer slots must not keep stale ones.
            conn.execute(delete(table).where(and_(
                table.c.site_id == msg.site_id, table.c.system_id == system_id, table.c.plan_id == msg.plan_id)))
            self._insert(conn, table, slots)
        return len(slots)

    def store_execution(self, records: ExecutionRecord | Sequence[ExecutionRecord]) -> int:
        batch = [records] if isinstance(records, ExecutionRecord) else list(records)
        rows = [asdict(r) for r in batch]
        with self._write() as conn:
            self._upsert(conn, m.ExecutionLog.__table__, rows)
        return len(rows)

    # ------------------------------------------------------------------ context and events

    def store_context(self, msg: ContextMsg) -> bool:
        """Record a context value; the current value changes only if this one is not older.

        Returns True when it became the current value (a retained message re-delivered after a
        newer one was stored does not roll the context back).
        """
        value, value_type = _encode_context_value(msg.value)
        row = {"site_id": msg.site_id, "name": msg.name, "value": value, "value_type": value_type,
               "set_at": msg.set_at, "expires_at": msg.expires_at, "source": msg.source}
        table = m.Context.__table__
        with self._write() as conn:
            self._upsert(conn, m.ContextHistory.__table__, [row])
            current = conn.execute(
                select(table.c.set_at).where(table.c.site_id == msg.site_id, table.c.name == msg.name)
            ).scalar_one_or_none()
            if current is not None and current > msg.set_at:
                return False
            self._upsert(conn, table, [{**row, "updated_at": _now()}])
        return True

    def store_event(self, event: Message | None = None, **fields: Any) -> str:
        """Store an error event (ErrorEventMsg), any other contract message as a notable event
        (kind = its KIND, data = its JSON), or a generic event from keyword fields
        (site_id, kind, who, what, why, data, ts). Returns the event id."""
        if isinstance(event, ErrorEventMsg):
            row = {"site_id": event.site_id, "ts": event.ts, "kind": "error", "who": event.who,
                   "what": event.what[:255], "why": event.why, "payload_excerpt": event.payload_excerpt,
                   "data": {"count": event.count} if event.count > 1 else None}  # stored aggregated
        elif event is not None:
            row = {"site_id": event.site_id, "ts": getattr(event, "ts", None) or _now(), "kind": event.KIND,
                   "who": fields.get("who", "unknown"), "what": fields.get("what", event.KIND),
                   "why": fields.get("why", ""), "payload_excerpt": None,
                   "data": event.model_dump(mode="json", by_alias=True)}
        else:
            missing = [k for k in ("site_id", "kind", "who", "what") if not fields.get(k)]
            if missing:
                raise ValueError(f"store_event needs {', '.join(missing)} for a generic event")
            row = {"site_id": fields["site_id"], "ts": fields.get("ts") or _now(), "kind": fields["kind"],
                   "who": fields["who"], "what": str(fields["what"])[:255], "why": fields.get("why", ""),
                   "payload_excerpt": fields.get("payload_excerpt"), "data": fields.get("data")}
        row["event_id"] = uuid.uuid4().hex
        with self._write() as conn:
            self._insert(conn, m.Event.__table__, [row])
        return row["event_id"]

    # ------------------------------------------------------------------ learning and evaluation

    def store_oracle_result(self, msg: OracleResultMsg, system_id: str = m.LIVE) -> None:
        row = {"site_id": msg.site_id, "system_id": system_id, "day": date.fromisoformat(msg.day),
               "currency": msg.currency, "oracle_cost": msg.oracle_cost, "realized_cost": msg.realized_cost,
               "regret": msg.regret, "breakdown": dict(msg.breakdown), "computed_at": _now()}
        with self._write() as conn:
            self._upsert(conn, m.OracleDailyResult.__table__, [row])

    def store_training_run(
        self,
        msg: TrainerRunMsg,
        *,
        at: datetime | None = None,
        params: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Upsert a run by (site, run_id): 'started' sets started_at, any other status finished_at;
        fields not given in a later message (params, extra, model id) keep their stored value."""
        at = at or _now()
        row = {"site_id": msg.site_id, "run_id": msg.run_id, "target": msg.target, "status": msg.status,
               "started_at": at if msg.status == "started" else None,
               "finished_at": None if msg.status == "started" else at, "updated_at": at,
               "model_id": msg.model_id, "metrics": dict(msg.metrics), "detail": msg.detail,
               "params": params, "extra": extra}
        with self._write() as conn:
            self._upsert(conn, m.TrainingRun.__table__, [row],
                         keep_if_null=("started_at", "finished_at", "model_id", "detail", "params", "extra"))

    def register_model(
        self,
        site_id: str,
        kind: str,
        model_id: str,
        artifact_path: str,
        metrics: dict[str, Any] | None = None,
        *,
        approved: bool = False,
        run_id: str | None = None,
        created_at: datetime | None = None,
    ) -> ModelRecord:
        """Add a model to the registry with the next version number of its kind; registering the
        same model_id again updates its metrics and path and keeps its version."""
        if kind not in MODEL_KINDS:
            raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")
        table = m.ModelRegistryEntry.__table__
        now = _now()
        with self._write() as conn:
            existing = conn.execute(
                select(table.c.version, table.c.created_at).where(table.c.site_id == site_id, table.c.model_id == model_id)
            ).first()
            if existing is not None:
                version, created = existing.version, existing.created_at
            else:
                top = conn.execute(
                    select(func.max(table.c.version)).where(table.c.site_id == site_id, table.c.kind == kind)
                ).scalar()
                version, created = (top or 0) + 1, created_at or now
            row = {"site_id": site_id, "model_id": model_id, "kind": kind, "version": version,
                   "created_at": created, "run_id": run_id, "metrics": dict(metrics or {}),
                   "artifact_path": str(artifact_path), "approved": approved,
                   "approved_at": now if approved else None}
            self._upsert(conn, table, [row])
        return ModelRecord(**row)

    def approve_model(self, site_id: str, model_id: str, approved: bool = True) -> None:
        table = m.ModelRegistryEntry.__table__
        with self._write() as conn:
            done = conn.execute(
                table.update()
                .where(table.c.site_id == site_id, table.c.model_id == model_id)
                .values(approved=approved, approved_at=_now() if approved else None)
            )
            if done.rowcount == 0:
                raise KeyError(f"no model {model_id!r} registered for site {site_id!r}")

    def latest_approved_model(self, kind: str, site_id: str) -> ModelRecord | None:
        """The approved model of ``kind`` with the highest version, or None."""
        table = m.ModelRegistryEntry.__table__
        with self._read() as conn:
            row = conn.execute(
                select(table)
                .where(table.c.site_id == site_id, table.c.kind == kind, table.c.approved.is_(True))
                .order_by(table.c.version.desc())
                .limit(1)
            ).first()
        return None if row is None else ModelRecord(**row._asdict())

    def store_data_quality(
        self,
        site_id: str,
        day: date,
        source: str,
        *,
        expected_slots: int,
        present_slots: int,
        fixed: Sequence[Any] = (),
        refused: Sequence[Any] = (),
        details: dict[str, Any] | None = None,
    ) -> None:
        """Daily completeness of one data source (e.g. 'observations', 'prices')."""
        if expected_slots <= 0 or present_slots < 0 or present_slots > expected_slots:
            raise ValueError(f"data quality {site_id}/{day}/{source}: need 0 <= present_slots <= expected_slots > 0")
        row = {"site_id": site_id, "day": day, "source": source, "expected_slots": expected_slots,
               "present_slots": present_slots, "coverage_frac": present_slots / expected_slots,
               "gap_slots": expected_slots - present_slots, "fixed": list(fixed), "refused": list(refused),
               "details": details, "computed_at": _now()}
        with self._write() as conn:
            self._upsert(conn, m.DataQualityDaily.__table__, [row])

    # ------------------------------------------------------------------ readers

    def _latest_issue(self, t: Table, id_column: str, site_id: str) -> list[Any]:
        """The slot rows of the most recently issued curve (prices, forecast) of a site, in time order."""
        with self._read() as conn:
            latest = conn.execute(
                select(t.c[id_column]).where(t.c.site_id == site_id).order_by(t.c.issued_at.desc()).limit(1)
            ).scalar_one_or_none()
            if latest is None:
                return []
            return list(conn.execute(
                select(t).where(t.c.site_id == site_id, t.c[id_column] == latest).order_by(t.c.slot_start)
            ).all())

    def latest_prices(self, site_id: str) -> PricesMsg | None:
        """The most recently issued price curve (its slots as stored), or None."""
        rows = self._latest_issue(m.Price.__table__, "prices_id", site_id)
        if not rows:
            return None
        first = rows[0]
        return PricesMsg(
            site_id=site_id, prices_id=first.prices_id, issued_at=first.issued_at, area=first.area,
            currency=first.currency, resolution_minutes=first.resolution_minutes, source=first.source,
            slots=[PriceSlot(start=r.slot_start, **{f: getattr(r, f) for f in _PRICE_FIELDS}) for r in rows],
        )

    def prices_between(self, site_id: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Prices per slot start in [start, end): spot/import/export per kWh, currency, resolution."""
        t = m.Price.__table__
        cols = [t.c.slot_start, *(t.c[f] for f in _PRICE_FIELDS), t.c.currency, t.c.resolution_minutes,
                t.c.prices_id, t.c.issued_at]
        return self._frame(select(*cols).where(t.c.site_id == site_id, t.c.slot_start >= _utc(start),
                                               t.c.slot_start < _utc(end)), [c.name for c in cols])

    def weather_between(self, site_id: str, start: datetime, end: datetime) -> pd.DataFrame:
        t = m.Weather.__table__
        cols = [t.c.slot_start, *(t.c[f] for f in _WEATHER_FIELDS), t.c.resolution_minutes, t.c.issued_at]
        return self._frame(select(*cols).where(t.c.site_id == site_id, t.c.slot_start >= _utc(start),
                                               t.c.slot_start < _utc(end)), [c.name for c in cols])

    def observations_between(
        self, site_id: str, start: datetime, end: datetime, system_id: str = m.LIVE
    ) -> pd.DataFrame:
        """Observed energies per slot in [start, end), indexed by aware-UTC ``slot_start``."""
        t = m.SlotObservation.__table__
        cols = [t.c.slot_start, *(t.c[f] for f in _OBS_FIELDS)]
        query = select(*cols).where(t.c.site_id == site_id, t.c.system_id == system_id,
                                    t.c.slot_start >= _utc(start), t.c.slot_start < _utc(end))
        return self._frame(query, [c.name for c in cols])

    def latest_forecast(self, site_id: str) -> ForecastMsg | None:
        rows = self._latest_issue(m.Forecast.__table__, "forecast_id", site_id)
        if not rows:
            return None
        first = rows[0]
        return ForecastMsg(
            site_id=site_id, forecast_id=first.forecast_id, issued_at=first.issued_at, model_id=first.model_id,
            fallback=first.fallback,
            slots=[ForecastSlot(start=r.slot_start, **{f: getattr(r, f) for f in _FORECAST_FIELDS}) for r in rows],
        )

    def latest_plan(self, site_id: str, system_id: str = m.LIVE) -> PlanMsg | None:
        """The most recently created plan, rebuilt as the PlanMsg that was stored, or None."""
        p, s = m.Plan.__table__, m.PlanSlotRow.__table__
        with self._read() as conn:
            head = conn.execute(
                select(p).where(p.c.site_id == site_id, p.c.system_id == system_id)
                .order_by(p.c.created_at.desc()).limit(1)
            ).first()
            if head is None:
                return None
            rows = conn.execute(
                select(s).where(s.c.site_id == site_id, s.c.system_id == system_id, s.c.plan_id == head.plan_id)
                .order_by(s.c.slot_start)
            ).all()
        return PlanMsg(
            site_id=site_id, plan_id=head.plan_id, created_at=head.created_at, valid_until=head.valid_until,
            inputs=head.inputs, fallback=head.fallback, reason=head.reason,
            mode_changes_per_day=head.mode_changes_per_day,
            slots=[PlanSlot(start=r.slot_start, **{f: getattr(r, f) for f in _PLAN_SLOT_FIELDS}) for r in rows],
            cost=CostBreakdown(**{f: getattr(head, f) for f in _COST_FIELDS}),
            solver=SolverStats(solver=head.solver, status=head.solver_status, objective=head.objective,
                               build_s=head.build_s, solve_s=head.solve_s, mip_gap=head.mip_gap),
            explanation=head.explanation,
        )

    def context(self, site_id: str, at: datetime | None = None, include_expired: bool = False) -> dict[str, Any]:
        """Current context of a site: name -> value (bool, float, aware datetime, str or None).
        Items whose ``expires_at`` has passed (at ``at``, default now) are left out unless asked."""
        t = m.Context.__table__
        moment = _utc(at) if at is not None else _now()
        with self._read() as conn:
            rows = conn.execute(select(t).where(t.c.site_id == site_id)).all()
        return {
            r.name: _decode_context_value(r.value, r.value_type)
            for r in rows
            if include_expired or r.expires_at is None or r.expires_at > moment
        }

    def recent_events(self, site_id: str, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        t = m.Event.__table__
        query = select(t).where(t.c.site_id == site_id)
        if kind is not None:
            query = query.where(t.c.kind == kind)
        with self._read() as conn:
            return [r._asdict() for r in conn.execute(query.order_by(t.c.ts.desc()).limit(limit))]

    def forecasts_between(self, site_id: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Every issued forecast's slots with ``slot_start`` in [start, end) (with ``issued_at``), for evaluation."""
        t = m.Forecast.__table__
        cols = [t.c.slot_start, t.c.issued_at, t.c.model_id, *(t.c[f] for f in _FORECAST_FIELDS)]
        frame = self._frame(select(*cols).where(t.c.site_id == site_id, t.c.slot_start >= _utc(start),
                                                t.c.slot_start < _utc(end)), [c.name for c in cols])
        frame["issued_at"] = pd.to_datetime(frame["issued_at"], utc=True)
        return frame

    def execution_log_between(self, site_id: str, start: datetime, end: datetime,
                              system_id: str = m.LIVE, limit: int = 5000) -> list[dict[str, Any]]:
        """Executor decisions (what was written, success, error) with ``ts`` in [start, end), newest first."""
        t = m.ExecutionLog.__table__
        query = select(t).where(t.c.site_id == site_id, t.c.system_id == system_id,
                                t.c.ts >= _utc(start), t.c.ts < _utc(end))
        with self._read() as conn:
            return [r._asdict() for r in conn.execute(query.order_by(t.c.ts.desc()).limit(limit))]

    def oracle_results(self, site_id: str, system_id: str = m.LIVE) -> pd.DataFrame:
        t = m.OracleDailyResult.__table__
        cols = [t.c.day, t.c.currency, t.c.oracle_cost, t.c.realized_cost, t.c.regret, t.c.breakdown]
        return self._frame(select(*cols).where(t.c.site_id == site_id, t.c.system_id == system_id),
                           [c.name for c in cols], index="day")

    def training_run(self, site_id: str, run_id: str) -> dict[str, Any] | None:
        t = m.TrainingRun.__table__
        with self._read() as conn:
            row = conn.execute(select(t).where(t.c.site_id == site_id, t.c.run_id == run_id)).first()
        return None if row is None else row._asdict()

    def count(self, table: str, site_id: str | None = None, system_id: str | None = None) -> int:
        """Rows in ``table`` (optionally of one site / system); for tests and health pages."""
        if table not in m.Base.metadata.tables:
            raise KeyError(f"unknown table {table!r}; known: {', '.join(m.TABLES)}")
        t = m.Base.metadata.tables[table]
        query = select(func.count()).select_from(t)
        if site_id is not None:
            query = query.where(t.c.site_id == site_id)
        if system_id is not None:
            query = query.where(t.c.system_id == system_id)
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def counts(self, site_id: str | None = None) -> dict[str, int]:
        return {name: self.count(name, site_id) for name in m.TABLES}

    def _frame(self, query: Any, columns: list[str], index: str = "slot_start") -> pd.DataFrame:
        with self._read() as conn:
            rows = conn.execute(query.order_by(index)).all()
        frame = pd.DataFrame.from_records([tuple(r) for r in rows], columns=columns)
        if index == "slot_start":
            frame[index] = pd.to_datetime(frame[index], utc=True)
        for col in columns:
            if col.endswith(("_kwh", "_frac", "_per_kwh", "_c", "_wm2", "_pct", "_cost")) or col == "regret":
                frame[col] = frame[col].astype("float64")  # None -> NaN, even for all-empty columns
        return frame.set_index(index)


# --------------------------------------------------------------------------- row checks

# Free text that may be shortened to fit its column; identifiers and codes are never cut.
_TRUNCATABLE = frozenset({"source", "who", "what", "solver_status", "detail", "error", "why"})


def _checked(table: Table, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows that every database accepts alike: a too-long identifier or a non-finite number
    raises ValueError naming table and column (SQLite would silently keep it, MariaDB refuse
    it, PostgreSQL store NaN); free-text fields are shortened to fit."""
    limits = {c.name: c.type.length for c in table.columns
              if isinstance(c.type, String) and getattr(c.type, "length", None)}
    floats = {c.name for c in table.columns if isinstance(c.type, Float)}
    out = []
    for row in rows:
        fixed = None
        for name, limit in limits.items():
            value = row.get(name)
            if isinstance(value, str) and len(value) > limit:
                if name not in _TRUNCATABLE:
                    raise ValueError(f"{table.name}.{name}: {len(value)} characters, at most {limit} fit")
                fixed = fixed or dict(row)
                fixed[name] = value[: limit - 1] + "…"
        for name in floats:
            value = row.get(name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{table.name}.{name}: {value} is not a finite number")
        out.append(fixed or row)
    return out


# --------------------------------------------------------------------------- context values


def _encode_context_value(value: Any) -> tuple[Any, str]:
    """JSON-able value plus its type tag, so bool/float/datetime survive every dialect's JSON."""
    if value is None:
        return None, "null"
    if isinstance(value, bool):
        return value, "bool"
    if isinstance(value, (int, float)):
        return float(value), "float"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(), "datetime"
    return str(value), "str"


def _decode_context_value(value: Any, value_type: str) -> Any:
    if value is None or value_type == "null":
        return None
    if value_type == "bool":
        return bool(value)
    if value_type == "float":
        return float(value)
    if value_type == "datetime":
        return datetime.fromisoformat(value).astimezone(UTC)
    return str(value)


# --------------------------------------------------------------------------- benchmark


def bench_store_observation(store: Store, n: int = 200, site_id: str = "bench", system_id: str = "bench") -> dict[str, float]:
    """Time ``store_observation`` for ``n`` distinct slots; median and p95 in milliseconds.

    Writes under ``system_id='bench'`` so it never mixes with live data; call it from a
    benchmark script, not a test.
    """
    start = pd.Timestamp("2030-01-01", tz=UTC)
    times_ms = []
    for i in range(n):
        msg = ObservationMsg(site_id=site_id, slot_start=start + pd.Timedelta(minutes=15 * i),
                             load_kwh=0.3, pv_kwh=0.1, import_kwh=0.2, export_kwh=0.0, soc_end_frac=0.5)
        t0 = time.perf_counter()
        store.store_observation(msg, system_id=system_id)
        times_ms.append((time.perf_counter() - t0) * 1000)
    times_ms.sort()
    return {"n": float(n), "median_ms": statistics.median(times_ms),
            "p95_ms": times_ms[min(n - 1, round(0.95 * (n - 1)))]}
