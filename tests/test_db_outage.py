"""A real database outage: rows are spooled on disk (bounded), an error event is published, readyz
says 503, and the rows are written when the database returns.

The outage is real, on the machine's PostgreSQL server: the test creates its own database
(``darkstar_outage_<hex>``), and "stops" it with ``ALTER DATABASE ... ALLOW_CONNECTIONS false``
plus ``pg_terminate_backend`` of every session on it: pooled connections are killed by the server
and new ones are refused by it ("database ... is not currently accepting connections"), exactly
what a client sees when its database server goes away, without stopping a server that other
tests share. Recovery is ``ALLOW_CONNECTIONS true``. The database is dropped at the end.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.forecaster.service import ForecasterService
from services.oracle.service import OracleService
from shared.contracts import ObservationMsg, decode
from shared.storage import make_engine
from shared.storage.repository import ExecutionRecord, Store
from tests.conftest import make_site, running, wait_for
from tests.storage_fixtures import _admin_url
from tests.test_service_runtime import Watcher

pytestmark = pytest.mark.postgres
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


class PgDatabase:
    def __init__(self) -> None:
        self.name = f"darkstar_outage_{uuid.uuid4().hex[:12]}"
        admin_url = _admin_url("postgres")
        self.url = admin_url.set(database=self.name).render_as_string(hide_password=False)
        self.admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")

    def _run(self, sql: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(sql))

    def down(self) -> None:
        self._run(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self._run(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.name}'")

    def up(self) -> None:
        self._run(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@pytest.fixture
def pg() -> Iterator[PgDatabase]:
    db = PgDatabase()
    db._run(f'CREATE DATABASE "{db.name}"')
    try:
        yield db
    finally:
        with contextlib.suppress(Exception):
            db.up()
        db._run(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
        db.admin.dispose()


def record(site_id: str, i: int) -> ExecutionRecord:
    return ExecutionRecord(site_id=site_id, ts=T0 + timedelta(seconds=10 * i), mode="self_consumption",
                           success=True, measured_soc_frac=0.5, detail={"i": i})


def test_rows_written_during_an_outage_arrive_after_it_and_an_error_event_is_published(
        tmp_path: Path, embedded_broker, pg: PgDatabase):
    mqtt = dict(embedded_broker.mqtt)
    site = make_site(tmp_path, mqtt, database={"url": pg.url, "spool_dir": str(tmp_path / "spool")})
    store = Store.open(pg.url)
    watcher = Watcher(mqtt["host"], mqtt["port"], f"darkstar/{site.site_id}/events/error")
    service = OracleService(site, store=store)
    recorder = ForecasterService(site, store=store)  # not started: its recorder path only
    with running(service, watcher):
        writer = service.writer
        assert writer.write("store_execution", record(site.site_id, 0)) is True  # database up: written at once
        pg.down()
        spooled = [writer.write("store_execution", record(site.site_id, i)) for i in range(1, 31)]
        assert spooled == [False] * 30 and writer.pending == 30 and writer.outage
        observation = ObservationMsg(site_id=site.site_id, slot_start=T0, load_kwh=0.25, pv_kwh=0.1,
                                     import_kwh=0.15, export_kwh=0.0)
        recorder.record(observation)
        assert recorder.writer.pending == 1
        assert (tmp_path / "spool" / "oracle.sqlite").exists()  # on disk, not in memory

        event = decode(wait_for(lambda: watcher.on(f"darkstar/{site.site_id}/events/error"))[0])
        assert event.who == "oracle" and event.what == "database" and "unreachable" in event.why
        ready = TestClient(service.build_app()).get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"] == "unreachable"
        assert ready.json()["database_spool"] == {"pending_rows": 30, "dropped_rows": 0}

        pg.up()
        # the service's 5 s loop drains on its own; the recorder (not started) is drained by hand
        wait_for(lambda: writer.pending == 0, timeout_s=30)
        assert recorder.writer.drain() == 1
        assert writer.outage is None and writer.dropped_rows == 0
        assert store.count("execution_log", site.site_id) == 31
        assert store.count("slot_observations", site.site_id) == 1
        rows = store.execution_log_between(site.site_id, T0, T0 + timedelta(hours=1))
        assert len(rows) == 31
        # replaying a row again is harmless: the Store's writes are upserts
        assert writer.write("store_execution", record(site.site_id, 5)) is True
        assert store.count("execution_log", site.site_id) == 31
    recorder.writer.close()
    writer.close()
    store.close()


def test_the_spool_is_bounded_and_drops_the_oldest_rows_counted(tmp_path: Path, pg: PgDatabase):
    from shared.storage.spool import BufferedWriter

    store = Store.open(pg.url)
    reasons: list[str] = []
    writer = BufferedWriter(store, tmp_path / "spool.sqlite", max_rows=5, on_outage=reasons.append)
    site_id = f"t-{uuid.uuid4().hex[:8]}"
    pg.down()
    for i in range(12):
        assert writer.write("store_execution", record(site_id, i)) is False
    assert writer.pending == 5 and writer.dropped_rows == 7 and reasons
    writer.close()
    # a restarted service finds the spool file and writes it when the database is back
    again = BufferedWriter(store, tmp_path / "spool.sqlite", max_rows=5)
    assert again.pending == 5
    pg.up()
    assert again.drain() == 5 and again.pending == 0
    kept = store.execution_log_between(site_id, T0, T0 + timedelta(hours=1))
    assert sorted(r["detail"]["i"] for r in kept) == [7, 8, 9, 10, 11]  # the newest five
    again.close()
    store.close()
