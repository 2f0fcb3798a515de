"""Storage (DESIGN §5): SQLAlchemy models, Alembic migrations and the repository.

Typical use::

    from shared.storage import Store, make_engine, migrate
    engine = make_engine(site.database.url.get_secret_value())
    migrate(engine)                 # idempotent, safe from several processes
    store = Store(engine)
    store.store_prices(prices_msg)  # idempotent upsert per (site, slot)

See docs/storage.md.
"""

from shared.storage.db import (
    StorageError,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    migrate,
    ping,
    safe_url,
)
from shared.storage.models import LIVE, TABLES
from shared.storage.repository import ExecutionRecord, ModelRecord, Store, bench_store_observation

__all__ = [
    "LIVE",
    "TABLES",
    "ExecutionRecord",
    "ModelRecord",
    "StorageError",
    "Store",
    "bench_store_observation",
    "current_revision",
    "downgrade",
    "head_revision",
    "make_engine",
    "migrate",
    "ping",
    "safe_url",
]
