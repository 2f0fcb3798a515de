"""Migrations, engines and the `darkstar db` command on SQLite, MariaDB and PostgreSQL (real servers)."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from shared.storage import TABLES, current_revision, downgrade, head_revision, make_engine, migrate
from shared.storage import cli as db_cli
from shared.storage.models import HYPERTABLES, Base

# Fixtures store / fresh_db_url / site_id, on SQLite, MariaDB and PostgreSQL.
pytest_plugins = ["storage_fixtures"]

SECRET = "pw-Xq9-secret"


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_creates_the_model_schema_exactly_and_downgrade_drops_it(fresh_db_url: str) -> None:
    assert current_revision(fresh_db_url) is None
    migrate(fresh_db_url)
    migrate(fresh_db_url)  # a second upgrade (every service start) is a no-op
    assert current_revision(fresh_db_url) == head_revision()
    assert set(TABLES) <= _tables(fresh_db_url)

    # The hand-written migration and the models describe the same schema on this dialect:
    # columns, types, nullability, keys, indexes, foreign keys.
    engine = make_engine(fresh_db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []

    downgrade(fresh_db_url, "base")
    assert current_revision(fresh_db_url) is None
    assert not set(TABLES) & _tables(fresh_db_url)
    migrate(fresh_db_url)  # and back up again
    assert set(TABLES) <= _tables(fresh_db_url)


def test_upgrade_finishes_a_migration_interrupted_half_way(fresh_db_url: str) -> None:
    # MariaDB cannot roll back DDL: a crash mid-migration leaves tables without a version stamp.
    migrate(fresh_db_url)
    engine = make_engine(fresh_db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE events"))
            conn.execute(text("DELETE FROM alembic_version"))
    finally:
        engine.dispose()
    assert current_revision(fresh_db_url) is None
    migrate(fresh_db_url)
    assert current_revision(fresh_db_url) == head_revision()
    assert "events" in _tables(fresh_db_url)


def test_services_starting_together_can_all_migrate(fresh_db_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            migrate(fresh_db_url)
        except BaseException as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert current_revision(fresh_db_url) == head_revision()


def test_time_series_tables_are_hypertables_exactly_when_timescaledb_is_available(fresh_db_url: str) -> None:
    migrate(fresh_db_url)
    engine = make_engine(fresh_db_url)
    try:
        # Timescale needs the time column in every unique key of a hypertable: true for the models.
        for name, time_col in HYPERTABLES.items():
            assert time_col in Base.metadata.tables[name].primary_key.columns, name
        if engine.dialect.name != "postgresql":
            return
        with engine.connect() as conn:
            available = conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name='timescaledb'")).first()
            if available is None:
                installed = conn.execute(text("SELECT 1 FROM pg_extension WHERE extname='timescaledb'")).first()
                assert installed is None  # plain tables, no half-made extension
                return
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
            hyper = set(
                conn.execute(
                    text("SELECT hypertable_name FROM timescaledb_information.hypertables WHERE hypertable_schema=:s"),
                    {"s": schema},
                ).scalars()
            )
        assert hyper == set(HYPERTABLES)
    finally:
        engine.dispose()


def test_sqlite_file_database_gets_its_folder_wal_and_busy_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    engine = make_engine("sqlite:///var/darkstar.db")
    try:
        assert (tmp_path / "var").is_dir()
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    db_cli.add_arguments(parser)
    return db_cli.run(parser.parse_args(list(argv)))


def test_db_command_upgrades_reports_and_downgrades(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    assert _cli("current", "--url", url) == 0
    assert "empty" in capsys.readouterr().out
    assert _cli("upgrade", "--url", url) == 0
    assert _cli("current", "--url", url) == 0
    assert f"{head_revision()} (up to date)" in capsys.readouterr().out
    assert _cli("downgrade", "base", "--url", url) == 0
    assert current_revision(url) is None
    assert _cli("upgrade", "no-such-revision", "--url", url) == 1
    assert "no-such-revision" in capsys.readouterr().err


def test_db_command_reads_the_url_from_the_site_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("DARKSTAR__DATABASE__URL", f"sqlite:///{tmp_path}/site.db")
    assert _cli("upgrade", "--site", str(root / "examples" / "se4-home.yaml")) == 0
    assert current_revision(f"sqlite:///{tmp_path}/site.db") == head_revision()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"mysql+pymysql://root:{SECRET}@127.0.0.1:3306/test", id="mariadb", marks=pytest.mark.mariadb),
        pytest.param(
            f"postgresql+psycopg://nobody_here:{SECRET}@127.0.0.1:5432/test", id="postgres", marks=pytest.mark.postgres
        ),
    ],
)
def test_a_refused_login_never_shows_the_password(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("current", "--url", url) == 1
    out = capsys.readouterr()
    assert "***" in out.err
    assert SECRET not in out.err + out.out
