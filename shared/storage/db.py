"""Engines and migrations for SQLite, MariaDB (mysql+pymysql) and PostgreSQL (postgresql+psycopg).

- :func:`make_engine` creates the folder of a SQLite file (``sqlite:///var/darkstar.db`` ->
  ``./var/``), turns on WAL and a busy timeout there, and pings pooled connections on servers.
- :func:`migrate` upgrades to the newest Alembic revision. The migrations ship inside this
  package and the Alembic config is built in code, so no ``alembic.ini`` is needed. Running it
  twice, or from several services starting at once, is safe (a database lock serialises them).
- :func:`ping` says whether the database answers.

Database passwords never reach logs or exception texts: URLs are rendered with the password
hidden, and driver errors are reduced to their class and first line (:func:`describe_error`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

log = logging.getLogger("darkstar.storage")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000
_LOCK_NAME = "darkstar_migrate"
_PG_LOCK_KEY = 0x6461726B  # "dark": any constant shared by every Darkstar process


class StorageError(RuntimeError):
    """A database problem, described without secrets."""


def safe_url(url: str | URL) -> str:
    """The URL as text with the password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL must still not leak
        return "<unparsable database url>"


def describe_error(err: BaseException, url: str | URL | None = None) -> str:
    """A one-line description of a database error that never contains the password."""
    orig = getattr(err, "orig", None) or err
    first = (str(orig).strip().splitlines() or [""])[0][:300]
    if url is not None:
        password = make_url(url).password if not isinstance(url, URL) else url.password
        if password:
            first = first.replace(str(password), "***")
    return f"{type(orig).__name__}: {first}"


def _normalise(url: str | URL) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("mysql", "mariadb") and "charset" not in parsed.query:
        # utf8mb4: full Unicode in texts (event reasons, context values)
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def _is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def make_engine(url: str | URL, echo: bool = False, **kwargs: Any) -> Engine:
    """An engine for ``url``; see the module doc for what it sets up per dialect."""
    parsed = _normalise(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        if _is_memory_sqlite(parsed):
            # One shared connection, or every thread would see its own empty database.
            kwargs.setdefault("poolclass", StaticPool)
        else:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
        engine = create_engine(parsed, echo=echo, connect_args=connect_args, **kwargs)
        memory = _is_memory_sqlite(parsed)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
                cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL, much faster commits
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if backend not in ("mysql", "mariadb", "postgresql"):
        raise StorageError(f"unsupported database {safe_url(parsed)}: use sqlite, mysql+pymysql or postgresql+psycopg")
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_recycle", 3600)  # below MariaDB's wait_timeout
    return create_engine(parsed, echo=echo, **kwargs)


def _as_engine(engine_or_url: Engine | str | URL) -> tuple[Engine, bool]:
    if isinstance(engine_or_url, Engine):
        return engine_or_url, False
    return make_engine(engine_or_url), True


def alembic_config(connection: Connection | None = None, url: str | URL | None = None) -> Any:
    """An Alembic Config built in code, pointing at the migrations shipped in this package."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # '%' must be doubled for configparser; the URL is only used when no connection is given.
        cfg.set_main_option("sqlalchemy.url", make_url(url).render_as_string(hide_password=False).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@contextlib.contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    """Serialise concurrent migrations (several services starting at once).

    Held around the whole migration transaction, commit included, so the next process sees
    the finished schema and its version stamp.
    """
    name = conn.dialect.name
    if name in ("postgresql", "mysql", "mariadb"):
        if name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
        else:
            got = conn.execute(text("SELECT GET_LOCK(:n, 120)"), {"n": _LOCK_NAME}).scalar()
            if got != 1:
                raise StorageError("timed out waiting for another process to finish migrating the database")
        conn.commit()  # end the implicit transaction; the session-level lock stays
        try:
            yield
        finally:
            conn.rollback()
            if name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
            else:
                conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": _LOCK_NAME})
            conn.commit()
        return
    db = conn.engine.url.database
    if not db or db == ":memory:":
        yield
        return
    import fcntl  # SQLite file: an OS lock beside the database file

    with open(f"{db}.migrate.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(engine_or_url: Engine | str | URL, fn: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    engine, owned = _as_engine(engine_or_url)
    try:
        # The lock wraps the transaction: it is released only after the commit.
        with engine.connect() as conn, _migration_lock(conn), conn.begin():
            getattr(command, fn)(alembic_config(conn), revision)
    except CommandError as err:  # unknown revision and the like: a user error, say it plainly
        raise StorageError(f"{fn} of {safe_url(engine.url)} to {revision!r}: {err}") from None
    except SQLAlchemyError as err:
        raise StorageError(f"{fn} of {safe_url(engine.url)} failed: {describe_error(err, engine.url)}") from None
    finally:
        if owned:
            engine.dispose()


def migrate(engine_or_url: Engine | str | URL, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (default: the newest). Idempotent."""
    _run(engine_or_url, "upgrade", revision)
    log.info("database %s at revision %s", safe_url(_url_of(engine_or_url)), revision)


def downgrade(engine_or_url: Engine | str | URL, revision: str = "-1") -> None:
    """Downgrade the schema; ``"base"`` drops every Darkstar table."""
    _run(engine_or_url, "downgrade", revision)


def _url_of(engine_or_url: Engine | str | URL) -> URL:
    return engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)


def current_revision(engine_or_url: Engine | str | URL) -> str | None:
    """The revision the database is at, or None for a database without Darkstar tables."""
    from alembic.runtime.migration import MigrationContext

    engine, owned = _as_engine(engine_or_url)
    try:
        with engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
    except SQLAlchemyError as err:
        raise StorageError(f"cannot read the revision of {safe_url(engine.url)}: {describe_error(err, engine.url)}") from None
    finally:
        if owned:
            engine.dispose()
    return heads[0] if heads else None


def head_revision() -> str:
    """The newest revision shipped with this code."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


@contextlib.contextmanager
def scratch_database(url: str | URL, prefix: str = "darkstar_scratch") -> Iterator[str]:
    """A new empty database next to ``url``, dropped on exit: for tests and benchmarks that
    must not touch the data (or the schema) of a shared server.

    MariaDB: ``CREATE DATABASE <prefix>_<hex>``; PostgreSQL: ``CREATE SCHEMA <prefix>_<hex>``
    used through ``search_path``; SQLite: a file in a new temporary folder.
    """
    import shutil
    import tempfile
    import uuid

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    parsed = _normalise(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix=f"{prefix}-")
        try:
            yield f"sqlite:///{folder}/{name}.db"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    admin = make_engine(parsed, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(text(f'CREATE SCHEMA "{name}"'))
                scratch = parsed.update_query_dict({"options": f"-csearch_path={name}"})
            else:
                conn.execute(text(f"CREATE DATABASE `{name}`"))
                scratch = parsed.set(database=name)
        try:
            yield scratch.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                if backend == "postgresql":
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
                else:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    except SQLAlchemyError as err:
        raise StorageError(f"scratch database on {safe_url(parsed)}: {describe_error(err, parsed)}") from None
    finally:
        admin.dispose()


def ping(engine: Engine) -> bool:
    """True when the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError as err:
        log.warning("database %s unreachable: %s", safe_url(engine.url), describe_error(err, engine.url))
        return False
