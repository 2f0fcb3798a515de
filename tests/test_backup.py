"""Backup, restore and move: SQLite -> PostgreSQL -> MariaDB through `darkstar backup` / `darkstar restore`
(real servers), rows and checksums equal at every hop, models found again from a new directory."""

from __future__ import annotations

import json
import tarfile
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.cli import main
from shared.contracts import ContextMsg, ErrorEventMsg
from shared.registry import ModelRegistry, resolve_artifact
from shared.storage import Store
from shared.storage.backup import table_digests
from tests.storage_fixtures import fresh_database
from tests.test_storage import _obs, _plan, _prices

T0 = datetime(2026, 1, 15, tzinfo=UTC)


def _fill(store: Store, site: str, models: Path) -> str:
    store.store_prices(_prices(site, n=96))
    store.store_plan(_plan(site, n=192))
    store.store_observations([_obs(site, T0 + timedelta(minutes=15 * i), load_kwh=0.1 * i) for i in range(96)])
    store.store_context(ContextMsg(site_id=site, name="vacation", value=True, set_at=T0))
    store.store_event(ErrorEventMsg(site_id=site, who="executor", what="bad", why="test ä ✓"))
    models.mkdir(parents=True)
    artifact = models / "aurora_v1_20260115_abc123.pkl"
    artifact.write_bytes(b"model bytes")
    # an entry as older versions wrote it: an absolute path
    store.register_model(site, "aurora", "aurora-1", str(artifact.resolve()), {"score": 1.0}, approved=True)
    return artifact.name


def test_round_trip_sqlite_postgres_mariadb_keeps_every_row_and_the_models(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]):
    site = f"t-{uuid.uuid4().hex[:10]}"
    src_url = f"sqlite:///{tmp_path / 'src.db'}"
    source = Store.open(src_url)
    name = _fill(source, site, tmp_path / "models-a")
    original = table_digests(source.engine)
    assert original["plan_slots"]["rows"] == 192 and original["slot_observations"]["rows"] == 96

    # keep writing while the backup reads: the backup is one consistent snapshot (restore verifies
    # the restored rows against the manifest's counts and checksums)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            source.store_observation(_obs(site, T0 + timedelta(days=1, minutes=15 * i)))
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert main(["backup", "--to", str(tmp_path / "a.tar.gz"), "--url", src_url,
                     "--models-dir", str(tmp_path / "models-a")]) == 0
    finally:
        stop.set()
        thread.join()
    source.close()

    with fresh_database("postgres", tmp_path) as pg_url, fresh_database("mariadb", tmp_path) as maria_url:
        assert main(["restore", str(tmp_path / "a.tar.gz"), "--url", pg_url, "--models-dir", str(tmp_path / "models-b")]) == 0
        assert "counts and checksums match" in capsys.readouterr().out
        pg = Store.open(pg_url, migrate=False)
        at_pg = table_digests(pg.engine)
        assert at_pg["plan_slots"] == original["plan_slots"] and at_pg["prices"] == original["prices"]
        assert at_pg["slot_observations"]["rows"] >= 96  # plus what the writer added before the snapshot
        # the registry entry now points into the new models directory, relative to it
        rec = ModelRegistry(pg, site, tmp_path / "models-b").current("aurora")
        assert rec.artifact_path == name
        assert resolve_artifact(tmp_path / "models-b", rec.artifact_path).read_bytes() == b"model bytes"
        pg.close()

        assert main(["backup", "--to", str(tmp_path / "b.tar.gz"), "--url", pg_url,
                     "--models-dir", str(tmp_path / "models-b")]) == 0
        assert main(["restore", str(tmp_path / "b.tar.gz"), "--url", maria_url,
                     "--models-dir", str(tmp_path / "models-c")]) == 0
        maria = Store.open(maria_url, migrate=False)
        at_maria = table_digests(maria.engine)
        maria.close()
    assert at_maria == at_pg  # every table: same row count, same checksum
    assert (tmp_path / "models-c" / name).read_bytes() == b"model bytes"
    # and back to SQLite (a move off a server onto a Raspberry Pi): the same rows again
    back_url = f"sqlite:///{tmp_path / 'back.db'}"
    assert main(["restore", str(tmp_path / "b.tar.gz"), "--url", back_url, "--models-dir", str(tmp_path / "models-d")]) == 0
    back = Store.open(back_url, migrate=False)
    at_back = table_digests(back.engine)
    back.close()
    assert at_back == at_pg
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest["source_dialect"] == "postgresql" and manifest["tables"] == at_pg


def test_restore_refuses_a_database_that_already_holds_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store.open(url)
    store.store_prices(_prices("home", n=4))
    store.close()
    assert main(["backup", "--to", str(tmp_path / "x.tar.gz"), "--url", url, "--models-dir", str(tmp_path / "m")]) == 0
    assert main(["restore", str(tmp_path / "x.tar.gz"), "--url", url, "--models-dir", str(tmp_path / "m")]) == 1
    assert "already holds data (4 rows in prices)" in capsys.readouterr().err


def test_new_registry_entries_are_stored_relative_to_the_models_directory(tmp_path: Path):
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    models = tmp_path / "models"
    models.mkdir()
    (models / "antares_v1_20260101_abc.json").write_text("{}")
    decision = ModelRegistry(store, "home", models).submit("antares", "antares-1", models / "antares_v1_20260101_abc.json",
                                                           {}, score=1.0)
    store.close()
    assert decision.approved and decision.record.artifact_path == "antares_v1_20260101_abc.json"
