"""Bytes on disk per Darkstar table (data plus indexes), as far as the backend can tell.

- SQLite: the ``dbstat`` virtual table (pages of each table and of its indexes); when the
  library was built without it, the file size is shared out by row count (``estimated``).
- PostgreSQL: ``pg_total_relation_size`` (heap, indexes, TOAST) of the tables in the current schema.
- MariaDB/MySQL: ``information_schema.tables`` ``data_length + index_length`` of the current database.

Sizes are of the whole table (all sites): the backends keep no per-site figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from shared.storage import models as m


def table_sizes(engine: Engine) -> dict[str, Any]:
    """``{"method": ..., "bytes": {table: int | None}, "total_bytes": int | None}`` for the Darkstar tables."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        sizes, method = _sqlite(engine)
    elif dialect == "postgresql":
        sizes, method = _query(engine, (
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')")), "pg_total_relation_size"
    elif dialect in ("mysql", "mariadb"):
        sizes, method = _query(engine, (
            "SELECT table_name, COALESCE(data_length, 0) + COALESCE(index_length, 0) "
            "FROM information_schema.tables WHERE table_schema = DATABASE()")), "information_schema"
    else:
        sizes, method = {}, "unknown backend"
    out = {name: sizes.get(name) for name in m.TABLES}
    known = [v for v in out.values() if v is not None]
    return {"method": method, "bytes": out, "total_bytes": sum(known) if known else None}


def _query(engine: Engine, sql: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {str(name): int(size or 0) for name, size in conn.execute(text(sql))}


def _sqlite(engine: Engine) -> tuple[dict[str, int], str]:
    with engine.connect() as conn:
        owner = {str(name): str(table) for name, table in conn.execute(
            text("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))}
        try:
            rows = conn.execute(text("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")).all()
        except SQLAlchemyError:  # SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
            rows = None
        if rows is not None:
            sizes: dict[str, int] = {}
            for name, size in rows:  # an index's pages count for its table
                table = owner.get(str(name), str(name))
                sizes[table] = sizes.get(table, 0) + int(size or 0)
            return sizes, "sqlite dbstat"
        database = engine.url.database
        if not database or database == ":memory:" or not Path(database).is_file():
            return {}, "in-memory sqlite"
        counts = {t: int(conn.execute(text(f'SELECT COUNT(*) FROM "{t}"')).scalar_one())
                  for t in m.TABLES if t in owner}
    total_rows = sum(counts.values()) or 1
    file_bytes = Path(database).stat().st_size
    return {t: round(file_bytes * n / total_rows) for t, n in counts.items()}, "estimated (file size share by rows)"
