"""Tables of DESIGN §5 as SQLAlchemy 2 typed models.

Rules every table follows:
- partitioned by ``site_id``: it leads every primary key and index, so a fleet shares one database;
- real vs simulated data never mix: ``slot_observations``, ``plans``/``plan_slots``,
  ``execution_log`` and ``oracle_daily_results`` carry ``system_id`` ('live' by default,
  e.g. 'sim-demo' or 'backtest-...' otherwise) inside their keys;
- time-series tables have their time column inside the primary key, which is what
  TimescaleDB needs to turn them into hypertables (see :data:`HYPERTABLES`);
- time columns are :class:`UTCDateTime` (aware UTC in and out), numbers :data:`Float64`.

The initial Alembic revision creates exactly this schema; a test compares the two.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.storage.types import Float64, JSONType, UTCDateTime

LIVE = "live"

# Constraint names spelled out so every dialect (and every migration) agrees on them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Time-series tables and their time column: TimescaleDB hypertables when the extension exists.
HYPERTABLES: dict[str, str] = {
    "prices": "slot_start",
    "weather": "slot_start",
    "forecasts": "slot_start",
    "slot_observations": "slot_start",
    "plan_slots": "slot_start",
    "execution_log": "ts",
    "events": "ts",
    "context_history": "set_at",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _site() -> Mapped[str]:
    return mapped_column(String(64), primary_key=True)


def _system() -> Mapped[str]:
    return mapped_column(String(64), primary_key=True, default=LIVE, server_default=LIVE)


def _ts(primary_key: bool = False, nullable: bool = False) -> Any:
    return mapped_column(UTCDateTime(), primary_key=primary_key, nullable=nullable and not primary_key)


def _num(nullable: bool = True) -> Any:
    return mapped_column(Float64, nullable=nullable)


# --------------------------------------------------------------------------- market and weather


class Price(Base):
    """Latest known price per site and slot (a newer curve overwrites overlapping slots)."""

    __tablename__ = "prices"
    site_id: Mapped[str] = _site()
    slot_start: Mapped[datetime] = _ts(primary_key=True)
    prices_id: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = _ts()
    area: Mapped[str | None] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    resolution_minutes: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(64))
    spot_per_kwh: Mapped[float | None] = _num()
    import_price_per_kwh: Mapped[float] = _num(False)
    export_price_per_kwh: Mapped[float] = _num(False)
    updated_at: Mapped[datetime] = _ts()

    __table_args__ = (
        Index(None, "site_id", "issued_at"),
        Index(None, "site_id", "prices_id"),
    )


class Weather(Base):
    """Latest known weather forecast per site and slot."""

    __tablename__ = "weather"
    site_id: Mapped[str] = _site()
    slot_start: Mapped[datetime] = _ts(primary_key=True)
    weather_id: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = _ts()
    source: Mapped[str] = mapped_column(String(64))
    resolution_minutes: Mapped[int] = mapped_column(Integer)
    temp_c: Mapped[float | None] = _num()
    ghi_wm2: Mapped[float | None] = _num()
    dni_wm2: Mapped[float | None] = _num()
    dhi_wm2: Mapped[float | None] = _num()
    cloud_cover_pct: Mapped[float | None] = _num()
    updated_at: Mapped[datetime] = _ts()

    __table_args__ = (Index(None, "site_id", "issued_at"),)


class Forecast(Base):
    """One row per forecast slot; every issued forecast is kept (forecast evaluation needs them)."""

    __tablename__ = "forecasts"
    site_id: Mapped[str] = _site()
    forecast_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot_start: Mapped[datetime] = _ts(primary_key=True)
    issued_at: Mapped[datetime] = _ts()
    model_id: Mapped[str] = mapped_column(String(128))
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    load_p10_kw: Mapped[float] = _num(False)
    load_p50_kw: Mapped[float] = _num(False)
    load_p90_kw: Mapped[float] = _num(False)
    pv_p10_kw: Mapped[float] = _num(False)
    pv_p50_kw: Mapped[float] = _num(False)
    pv_p90_kw: Mapped[float] = _num(False)

    __table_args__ = (
        Index(None, "site_id", "issued_at"),
        Index(None, "site_id", "slot_start"),
    )


# --------------------------------------------------------------------------- measured


class SlotObservation(Base):
    """Energies measured over one finished 15-min slot."""

    __tablename__ = "slot_observations"
    site_id: Mapped[str] = _site()
    system_id: Mapped[str] = _system()
    slot_start: Mapped[datetime] = _ts(primary_key=True)
    duration_minutes: Mapped[int] = mapped_column(Integer, default=15)
    load_kwh: Mapped[float | None] = _num()
    pv_kwh: Mapped[float | None] = _num()
    import_kwh: Mapped[float | None] = _num()
    export_kwh: Mapped[float | None] = _num()
    charge_kwh: Mapped[float | None] = _num()
    discharge_kwh: Mapped[float | None] = _num()
    water_kwh: Mapped[float | None] = _num()
    ev_kwh: Mapped[float | None] = _num()
    soc_end_frac: Mapped[float | None] = _num()
    coverage_frac: Mapped[float] = _num(False)
    updated_at: Mapped[datetime] = _ts()


# --------------------------------------------------------------------------- plans and execution


class Plan(Base):
    __tablename__ = "plans"
    site_id: Mapped[str] = _site()
    system_id: Mapped[str] = _system()
    plan_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = _ts()
    valid_until: Mapped[datetime] = _ts()
    first_slot_start: Mapped[datetime] = _ts()
    last_slot_start: Mapped[datetime] = _ts()
    n_slots: Mapped[int] = mapped_column(Integer)
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text)
    mode_changes_per_day: Mapped[float | None] = _num()
    currency: Mapped[str] = mapped_column(String(3))
    import_cost: Mapped[float] = _num(False)
    export_revenue: Mapped[float] = _num(False)
    wear_cost: Mapped[float] = _num(False)
    capacity_cost: Mapped[float] = _num(False)
    penalty_cost: Mapped[float] = _num(False)
    total_cost: Mapped[float] = _num(False)
    solver: Mapped[str] = mapped_column(String(32))
    solver_status: Mapped[str] = mapped_column(String(64))
    objective: Mapped[float | None] = _num()
    build_s: Mapped[float] = _num(False)
    solve_s: Mapped[float] = _num(False)
    mip_gap: Mapped[float | None] = _num()
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    explanation: Mapped[dict[str, Any]] = mapped_column(JSONType)
    stored_at: Mapped[datetime] = _ts()

    __table_args__ = (Index(None, "site_id", "system_id", "created_at"),)


class PlanSlotRow(Base):
    __tablename__ = "plan_slots"
    site_id: Mapped[str] = _site()
    system_id: Mapped[str] = _system()
    plan_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot_start: Mapped[datetime] = _ts(primary_key=True)
    mode: Mapped[str] = mapped_column(String(32))
    charge_kw: Mapped[float] = _num(False)
    discharge_kw: Mapped[float] = _num(False)
    import_kw: Mapped[float] = _num(False)
    export_kw: Mapped[float] = _num(False)
    soc_kwh: Mapped[float] = _num(False)
    soc_target_frac: Mapped[float | None] = _num()
    pv_curtail_kw: Mapped[float] = _num(False)
    water_kw: Mapped[float] = _num(False)
    ev_kw: Mapped[float] = _num(False)
    load_kw: Mapped[float | None] = _num()
    pv_kw: Mapped[float | None] = _num()
    import_price_per_kwh: Mapped[float | None] = _num()
    export_price_per_kwh: Mapped[float | None] = _num()
    reason_code: Mapped[str | None] = mapped_column(String(64))
    battery_value_per_kwh: Mapped[float | None] = _num()

    __table_args__ = (
        ForeignKeyConstraint(
            ["site_id", "system_id", "plan_id"],
            ["plans.site_id", "plans.system_id", "plans.plan_id"],
            ondelete="CASCADE",
        ),
        Index(None, "site_id", "system_id", "slot_start"),
    )


class ExecutionLog(Base):
    """One row per executor decision: what the plan said, what was written, what was measured."""

    __tablename__ = "execution_log"
    site_id: Mapped[str] = _site()
    system_id: Mapped[str] = _system()
    ts: Mapped[datetime] = _ts(primary_key=True)
    slot_start: Mapped[datetime | None] = _ts(nullable=True)
    plan_id: Mapped[str | None] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(32))
    planned_mode: Mapped[str | None] = mapped_column(String(32))
    planned_battery_kw: Mapped[float | None] = _num()
    commanded_battery_kw: Mapped[float | None] = _num()
    measured_battery_kw: Mapped[float | None] = _num()
    measured_grid_kw: Mapped[float | None] = _num()
    measured_soc_frac: Mapped[float | None] = _num()
    override_kind: Mapped[str | None] = mapped_column(String(32))
    override_expires_at: Mapped[datetime | None] = _ts(nullable=True)
    success: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (Index(None, "site_id", "system_id", "slot_start"),)


# --------------------------------------------------------------------------- learning and evaluation


class OracleDailyResult(Base):
    __tablename__ = "oracle_daily_results"
    site_id: Mapped[str] = _site()
    system_id: Mapped[str] = _system()
    day: Mapped[date] = mapped_column(Date, primary_key=True)  # local calendar day of the site
    currency: Mapped[str] = mapped_column(String(3))
    oracle_cost: Mapped[float] = _num(False)
    realized_cost: Mapped[float | None] = _num()
    regret: Mapped[float | None] = _num()
    breakdown: Mapped[dict[str, Any]] = mapped_column(JSONType)
    computed_at: Mapped[datetime] = _ts()


class TrainingRun(Base):
    """A training job of any kind; Antares-specific figures live in ``params``/``extra``."""

    __tablename__ = "training_runs"
    site_id: Mapped[str] = _site()
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    target: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = _ts(nullable=True)
    finished_at: Mapped[datetime | None] = _ts(nullable=True)
    updated_at: Mapped[datetime] = _ts()
    model_id: Mapped[str | None] = mapped_column(String(128))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType)
    detail: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (Index(None, "site_id", "target", "updated_at"),)


class ModelRegistryEntry(Base):
    __tablename__ = "model_registry"
    site_id: Mapped[str] = _site()
    model_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # aurora | antares
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _ts()
    run_id: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType)
    artifact_path: Mapped[str] = mapped_column(String(512))
    approved: Mapped[bool] = mapped_column(Boolean, default=False)
    approved_at: Mapped[datetime | None] = _ts(nullable=True)

    __table_args__ = (
        UniqueConstraint("site_id", "kind", "version"),
        Index(None, "site_id", "kind", "approved", "version"),
    )


class DataQualityDaily(Base):
    """Per local day and source (observations, prices, ...): how complete the data was."""

    __tablename__ = "data_quality_daily"
    site_id: Mapped[str] = _site()
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    expected_slots: Mapped[int] = mapped_column(Integer)
    present_slots: Mapped[int] = mapped_column(Integer)
    coverage_frac: Mapped[float] = _num(False)
    gap_slots: Mapped[int] = mapped_column(Integer)
    fixed: Mapped[list[Any]] = mapped_column(JSONType)
    refused: Mapped[list[Any]] = mapped_column(JSONType)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    computed_at: Mapped[datetime] = _ts()


# --------------------------------------------------------------------------- events and context


class Event(Base):
    """Error events and other notable events (commands, overrides, model promotions...)."""

    __tablename__ = "events"
    site_id: Mapped[str] = _site()
    ts: Mapped[datetime] = _ts(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    who: Mapped[str] = mapped_column(String(64))
    what: Mapped[str] = mapped_column(String(255))
    why: Mapped[str] = mapped_column(Text)
    payload_excerpt: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (Index(None, "site_id", "kind", "ts"),)


class Context(Base):
    """The current value of each context item (vacation, away, ev_plugged, ...) per site."""

    __tablename__ = "context"
    site_id: Mapped[str] = _site()
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    value_type: Mapped[str] = mapped_column(String(16))
    set_at: Mapped[datetime] = _ts()
    expires_at: Mapped[datetime | None] = _ts(nullable=True)
    source: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = _ts()


class ContextHistory(Base):
    __tablename__ = "context_history"
    site_id: Mapped[str] = _site()
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    set_at: Mapped[datetime] = _ts(primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    value_type: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime | None] = _ts(nullable=True)
    source: Mapped[str] = mapped_column(String(64))


TABLES: tuple[str, ...] = tuple(Base.metadata.tables)
