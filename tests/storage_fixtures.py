"""Database fixtures for the storage tests: SQLite, MariaDB and PostgreSQL, each isolated.

Use them from a test module with ``pytest_plugins = ["storage_fixtures"]`` (fixtures
``store``, ``fresh_db_url``, ``site_id``; ``BACKENDS`` to parametrize your own).

Every test session gets its own database on MariaDB (``darkstar_test_<hex>``) and its own
schema on PostgreSQL (``darkstar_test_<hex>``, used through ``search_path``), dropped at the
end, so several runs can share the servers. A server that does not answer FAILS the test
with a message saying which server and how it is started: these tests are never skipped.

Servers: ``$DARKSTAR_TEST_MARIADB_URL`` (default ``mysql+pymysql://root@127.0.0.1:3306/test``)
and ``$DARKSTAR_TEST_POSTGRES_URL`` (default: user ``postgres``, then ``root``, at
``127.0.0.1:5432/test``).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from shared.storage import Store, make_engine
from shared.storage.db import describe_error, safe_url, scratch_database

MARIADB_URL = os.environ.get("DARKSTAR_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
POSTGRES_URLS = (
    [os.environ["DARKSTAR_TEST_POSTGRES_URL"]]
    if os.environ.get("DARKSTAR_TEST_POSTGRES_URL")
    else ["postgresql+psycopg://postgres@127.0.0.1:5432/test", "postgresql+psycopg://root@127.0.0.1:5432/test"]
)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

_HOW_TO_START = {
    "mariadb": "start it with 'start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd' "
    "(.ci/run does this)",
    "postgres": "start it with 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start' "
    "(.ci/run does this)",
}


def _admin_url(kind: str) -> URL:
    """The first server URL that accepts a connection, or fail the test saying why."""
    candidates = [MARIADB_URL] if kind == "mariadb" else POSTGRES_URLS
    problems = []
    for candidate in candidates:
        engine = make_engine(candidate)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return make_url(candidate)
        except SQLAlchemyError as err:
            problems.append(f"{safe_url(candidate)}: {describe_error(err, candidate)}")
        finally:
            engine.dispose()
    pytest.fail(
        f"{kind} is required by the storage tests but is not reachable ({'; '.join(problems)}); "
        f"{_HOW_TO_START[kind]}",
        pytrace=False,
    )


@contextlib.contextmanager
def fresh_database(kind: str, tmp_dir: Path) -> Iterator[str]:
    """URL of a new, empty database of ``kind``; dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_dir / 'darkstar_test'}_{uuid.uuid4().hex[:12]}.db"
        return
    with scratch_database(_admin_url(kind), prefix="darkstar_test") as url:
        yield url


@pytest.fixture(scope="session", params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A migrated Store per backend, shared by the session; tests isolate by their own site_id."""
    with fresh_database(request.param, tmp_path_factory.mktemp("db")) as url:
        opened = Store.open(url)
        try:
            yield opened
        finally:
            opened.close()


@pytest.fixture(params=BACKENDS)
def fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database per test (for migration tests)."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def site_id() -> str:
    """A site id of its own: every table is partitioned by site, so tests sharing a DB never meet."""
    return f"t-{uuid.uuid4().hex[:12]}"
