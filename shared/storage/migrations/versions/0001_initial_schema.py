"""Initial schema: every table of DESIGN §5, hypertables on TimescaleDB.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Written to be re-runnable: a table or index that already exists is left alone (MariaDB cannot
roll back DDL, so a run interrupted half-way must be able to finish on the next start).
On PostgreSQL with the TimescaleDB extension available, the time-series tables become
hypertables; their primary keys already include the time column, as Timescale requires.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.storage.types import UTCDateTime

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("darkstar.storage")

# Frozen copy of the time-series tables of this revision (models.HYPERTABLES may grow later).
HYPERTABLES = {
    "prices": "slot_start",
    "weather": "slot_start",
    "forecasts": "slot_start",
    "slot_observations": "slot_start",
    "plan_slots": "slot_start",
    "execution_log": "ts",
    "events": "ts",
    "context_history": "set_at",
}


# Case-sensitive keys on MariaDB too (its default collation would make 'M1' == 'm1'), as on
# SQLite and PostgreSQL; full Unicode; transactional engine.
MYSQL_OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _site() -> sa.Column:
    return sa.Column("site_id", sa.String(64), nullable=False)


def _system() -> sa.Column:
    return sa.Column("system_id", sa.String(64), server_default="live", nullable=False)


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, UTCDateTime(), nullable=nullable)


def _num(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.Double(), nullable=nullable)


def _str(name: str, length: int, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=nullable)


def _pk(table: str, *cols: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*cols, name=f"pk_{table}")


# table -> (column/constraint factory, [index columns...]) in creation order (plans before plan_slots)
TABLES: dict[str, tuple[Callable[[], list[sa.SchemaItem]], list[list[str]]]] = {
    "prices": (
        lambda: [
            _site(), _ts("slot_start"), _str("prices_id", 64), _ts("issued_at"), _str("area", 32, True),
            _str("currency", 3), sa.Column("resolution_minutes", sa.Integer(), nullable=False), _str("source", 64),
            _num("spot_per_kwh"), _num("import_price_per_kwh", False), _num("export_price_per_kwh", False),
            _ts("updated_at"), _pk("prices", "site_id", "slot_start"),
        ],
        [["site_id", "issued_at"], ["site_id", "prices_id"]],
    ),
    "weather": (
        lambda: [
            _site(), _ts("slot_start"), _str("weather_id", 64), _ts("issued_at"), _str("source", 64),
            sa.Column("resolution_minutes", sa.Integer(), nullable=False), _num("temp_c"), _num("ghi_wm2"),
            _num("dni_wm2"), _num("dhi_wm2"), _num("cloud_cover_pct"), _ts("updated_at"),
            _pk("weather", "site_id", "slot_start"),
        ],
        [["site_id", "issued_at"]],
    ),
    "forecasts": (
        lambda: [
            _site(), _str("forecast_id", 64), _ts("slot_start"), _ts("issued_at"), _str("model_id", 128),
            sa.Column("fallback", sa.Boolean(), nullable=False),
            *[_num(f"{what}_{q}_kw", False) for what in ("load", "pv") for q in ("p10", "p50", "p90")],
            _pk("forecasts", "site_id", "forecast_id", "slot_start"),
        ],
        [["site_id", "issued_at"], ["site_id", "slot_start"]],
    ),
    "slot_observations": (
        lambda: [
            _site(), _system(), _ts("slot_start"), sa.Column("duration_minutes", sa.Integer(), nullable=False),
            *[_num(f"{what}_kwh") for what in ("load", "pv", "import", "export", "charge", "discharge", "water", "ev")],
            _num("soc_end_frac"), _num("coverage_frac", False), _ts("updated_at"),
            _pk("slot_observations", "site_id", "system_id", "slot_start"),
        ],
        [],
    ),
    "plans": (
        lambda: [
            _site(), _system(), _str("plan_id", 64), _ts("created_at"), _ts("valid_until"),
            _ts("first_slot_start"), _ts("last_slot_start"), sa.Column("n_slots", sa.Integer(), nullable=False),
            sa.Column("fallback", sa.Boolean(), nullable=False), sa.Column("reason", sa.Text(), nullable=False),
            _num("mode_changes_per_day"), _str("currency", 3),
            *[_num(n, False) for n in ("import_cost", "export_revenue", "wear_cost", "capacity_cost", "penalty_cost", "total_cost")],
            _str("solver", 32), _str("solver_status", 64), _num("objective"), _num("build_s", False),
            _num("solve_s", False), _num("mip_gap"), sa.Column("inputs", _json(), nullable=False),
            sa.Column("explanation", _json(), nullable=False), _ts("stored_at"),
            _pk("plans", "site_id", "system_id", "plan_id"),
        ],
        [["site_id", "system_id", "created_at"]],
    ),
    "plan_slots": (
        lambda: [
            _site(), _system(), _str("plan_id", 64), _ts("slot_start"), _str("mode", 32),
            *[_num(n, False) for n in ("charge_kw", "discharge_kw", "import_kw", "export_kw", "soc_kwh")],
            _num("soc_target_frac"),
            *[_num(n, False) for n in ("pv_curtail_kw", "water_kw", "ev_kw")],
            _num("load_kw"), _num("pv_kw"), _num("import_price_per_kwh"), _num("export_price_per_kwh"),
            _str("reason_code", 64, True), _num("battery_value_per_kwh"),
            sa.ForeignKeyConstraint(
                ["site_id", "system_id", "plan_id"],
                ["plans.site_id", "plans.system_id", "plans.plan_id"],
                name="fk_plan_slots_plans",
                ondelete="CASCADE",
            ),
            _pk("plan_slots", "site_id", "system_id", "plan_id", "slot_start"),
        ],
        [["site_id", "system_id", "slot_start"]],
    ),
    "execution_log": (
        lambda: [
            _site(), _system(), _ts("ts"), _ts("slot_start", True), _str("plan_id", 64, True), _str("mode", 32),
            _str("planned_mode", 32, True),
            *[_num(n) for n in ("planned_battery_kw", "commanded_battery_kw", "measured_battery_kw",
                                "measured_grid_kw", "measured_soc_frac")],
            _str("override_kind", 32, True), _ts("override_expires_at", True),
            sa.Column("success", sa.Boolean(), nullable=False), sa.Column("error", sa.Text(), nullable=True),
            sa.Column("detail", _json(), nullable=True),
            _pk("execution_log", "site_id", "system_id", "ts"),
        ],
        [["site_id", "system_id", "slot_start"]],
    ),
    "oracle_daily_results": (
        lambda: [
            _site(), _system(), sa.Column("day", sa.Date(), nullable=False), _str("currency", 3),
            _num("oracle_cost", False), _num("realized_cost"), _num("regret"),
            sa.Column("breakdown", _json(), nullable=False), _ts("computed_at"),
            _pk("oracle_daily_results", "site_id", "system_id", "day"),
        ],
        [],
    ),
    "training_runs": (
        lambda: [
            _site(), _str("run_id", 64), _str("target", 32), _str("status", 16), _ts("started_at", True),
            _ts("finished_at", True), _ts("updated_at"), _str("model_id", 128, True),
            sa.Column("metrics", _json(), nullable=False), sa.Column("detail", sa.Text(), nullable=True),
            sa.Column("params", _json(), nullable=True), sa.Column("extra", _json(), nullable=True),
            _pk("training_runs", "site_id", "run_id"),
        ],
        [["site_id", "target", "updated_at"]],
    ),
    "model_registry": (
        lambda: [
            _site(), _str("model_id", 128), _str("kind", 16), sa.Column("version", sa.Integer(), nullable=False),
            _ts("created_at"), _str("run_id", 64, True), sa.Column("metrics", _json(), nullable=False),
            _str("artifact_path", 512), sa.Column("approved", sa.Boolean(), nullable=False),
            _ts("approved_at", True),
            _pk("model_registry", "site_id", "model_id"),
            sa.UniqueConstraint("site_id", "kind", "version", name="uq_model_registry_site_id_kind_version"),
        ],
        [["site_id", "kind", "approved", "version"]],
    ),
    "data_quality_daily": (
        lambda: [
            _site(), sa.Column("day", sa.Date(), nullable=False), _str("source", 32),
            sa.Column("expected_slots", sa.Integer(), nullable=False),
            sa.Column("present_slots", sa.Integer(), nullable=False), _num("coverage_frac", False),
            sa.Column("gap_slots", sa.Integer(), nullable=False), sa.Column("fixed", _json(), nullable=False),
            sa.Column("refused", _json(), nullable=False), sa.Column("details", _json(), nullable=True),
            _ts("computed_at"),
            _pk("data_quality_daily", "site_id", "day", "source"),
        ],
        [],
    ),
    "events": (
        lambda: [
            _site(), _ts("ts"), _str("event_id", 32), _str("kind", 32), _str("who", 64), _str("what", 255),
            sa.Column("why", sa.Text(), nullable=False), sa.Column("payload_excerpt", sa.Text(), nullable=True),
            sa.Column("data", _json(), nullable=True),
            _pk("events", "site_id", "ts", "event_id"),
        ],
        [["site_id", "kind", "ts"]],
    ),
    "context": (
        lambda: [
            _site(), _str("name", 64), sa.Column("value", _json(), nullable=True), _str("value_type", 16),
            _ts("set_at"), _ts("expires_at", True), _str("source", 64), _ts("updated_at"),
            _pk("context", "site_id", "name"),
        ],
        [],
    ),
    "context_history": (
        lambda: [
            _site(), _str("name", 64), _ts("set_at"), sa.Column("value", _json(), nullable=True),
            _str("value_type", 16), _ts("expires_at", True), _str("source", 64),
            _pk("context_history", "site_id", "name", "set_at"),
        ],
        [],
    ),
}


def _index_name(table: str, cols: list[str]) -> str:
    return f"ix_{table}_{'_'.join(cols)}"


def _timescale_ready(bind: sa.Connection) -> bool:
    """Create the TimescaleDB extension when the server offers it; False means plain tables."""
    if bind.dialect.name != "postgresql":
        return False
    offered = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")).first()
    if offered is None:
        return False
    try:
        with bind.begin_nested():  # a refused CREATE EXTENSION must not abort the migration
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
    except sa.exc.DBAPIError as err:
        log.warning("TimescaleDB is available but could not be enabled (%s); using plain tables",
                    type(getattr(err, "orig", err)).__name__)
        return False
    return True


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for table, (columns, indexes) in TABLES.items():
        if table not in existing:
            op.create_table(table, *columns(), **MYSQL_OPTIONS)
            have: set[str] = set()
        else:
            have = {ix["name"] for ix in inspector.get_indexes(table) if ix.get("name")}
        for cols in indexes:
            name = _index_name(table, cols)
            if name not in have:
                op.create_index(name, table, cols)
    if _timescale_ready(bind):
        # No default (time DESC) indexes: the keys lead with site_id, which is how every query
        # filters, and the schema stays identical to SQLite's and MariaDB's.
        # TimescaleDB >= 2.13 has the by_range() interface; older ones only the positional one.
        new_api = bind.execute(sa.text("SELECT 1 FROM pg_proc WHERE proname = 'by_range'")).first() is not None
        dimension = "by_range(CAST(:c AS name))" if new_api else "CAST(:c AS name)"
        for table, time_col in HYPERTABLES.items():
            bind.execute(
                sa.text(
                    f"SELECT create_hypertable(CAST(:t AS regclass), {dimension},"
                    " if_not_exists => TRUE, migrate_data => TRUE, create_default_indexes => FALSE)"
                ),
                {"t": table, "c": time_col},
            )
        log.info("TimescaleDB hypertables: %s", ", ".join(HYPERTABLES))


def downgrade() -> None:
    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names())
    for table in reversed(list(TABLES)):
        if table in existing:
            op.drop_table(table)  # drops its indexes too; the TimescaleDB extension stays (shared)
