"""Column types that behave the same on SQLite, MariaDB and PostgreSQL.

- :class:`UTCDateTime`: a real timestamp column. PostgreSQL stores ``timestamptz``; SQLite and
  MariaDB have no zone-aware type, so we store naive UTC there (``DATETIME(6)`` on MariaDB for
  microseconds) and attach UTC again on read. The application only ever sees aware UTC
  datetimes, and a naive datetime handed in is refused: its meaning would be a guess.
- :data:`Float64`: an 8-byte float everywhere (SQLAlchemy's plain ``Float`` is 4 bytes on MariaDB).
- :data:`JSONType`: JSON, JSONB on PostgreSQL; Python None is SQL NULL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Double
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamp in UTC; aware in, aware UTC out, on every dialect."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if hasattr(value, "to_pydatetime"):  # pandas.Timestamp -> datetime (drivers know only the latter)
            value = value.to_pydatetime()
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime for a timestamp column, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give a timezone-aware (UTC) time")
        value = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite in raw/text mode; SQLAlchemy normally parses already
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


Float64 = Double()
# None is stored as SQL NULL (not JSON 'null'), so "not given" stays distinguishable and COALESCE works.
JSONType = JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
