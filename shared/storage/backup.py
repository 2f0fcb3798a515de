"""Backup and restore of a Darkstar installation: database, models directory and site file.

A backup is one ``.tar.gz``:

- ``manifest.json``: format, Darkstar version, schema revision, source dialect, and per table the
  row count and a SHA-256 over the rows in primary-key order (dialect independent, so a restore
  into another database can be checked against it);
- ``db/<table>.jsonl``: the rows, one JSON object each (timestamps as ISO 8601 UTC);
- ``models/...``: the models directory (artifacts and model cards);
- ``site.yaml``: the site file, when one was given.

Reading is consistent while the services keep writing: SQLite is copied first with its online
backup API; PostgreSQL and MariaDB are read in one REPEATABLE READ transaction (one snapshot).
Everything goes through SQLAlchemy, so a backup of any of the three restores into any of them.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Date, Engine, Table, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from shared.storage.db import (
    StorageError,
    current_revision,
    describe_error,
    head_revision,
    make_engine,
    migrate,
    safe_url,
)
from shared.storage.models import Base
from shared.storage.types import UTCDateTime
from shared.version import darkstar_version

FORMAT = "darkstar-backup/1"
BATCH_ROWS = 2000


def tables() -> list[Table]:
    """Every Darkstar table, parents before children."""
    return list(Base.metadata.sorted_tables)


# --------------------------------------------------------------------------- row encoding


def _encode(column_type: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column_type, UTCDateTime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _decode(column_type: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column_type, UTCDateTime):
        return datetime.fromisoformat(value)
    if isinstance(column_type, Date):
        return date.fromisoformat(value)
    return value


def _row_text(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, separators=(",", ":"), allow_nan=True)


class TableDigest:
    """Row count and SHA-256 of a table's rows in primary-key order (the same on every dialect)."""

    def __init__(self) -> None:
        self.rows = 0
        self._sha = hashlib.sha256()

    def add(self, text: str) -> None:
        self.rows += 1
        self._sha.update(text.encode())
        self._sha.update(b"\n")

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def _ordered_rows(conn: Connection, table: Table) -> Iterator[dict[str, Any]]:
    """Rows as encoded dicts, ordered by primary key (streamed in batches)."""
    order = list(table.primary_key.columns) or list(table.columns)
    result = conn.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(
        select(table).order_by(*order))
    types = {c.name: c.type for c in table.columns}
    for row in result.mappings():
        yield {k: _encode(types[k], v) for k, v in row.items()}


def table_digests(engine: Engine) -> dict[str, dict[str, Any]]:
    """``{table: {"rows": n, "sha256": ...}}`` of a live database (used to check a restore)."""
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for table in tables():
            digest = TableDigest()
            for row in _ordered_rows(conn, table):
                digest.add(_row_text(row))
            out[table.name] = {"rows": digest.rows, "sha256": digest.sha256}
    return out


# --------------------------------------------------------------------------- backup


@contextmanager
def _snapshot(url: str) -> Iterator[Connection]:
    """A connection that sees one consistent state of the database while others write."""
    engine = make_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            with tempfile.TemporaryDirectory(prefix="darkstar-backup-") as tmp:
                copy = Path(tmp) / "snapshot.db"
                raw = engine.raw_connection()
                try:
                    target = sqlite3.connect(copy)
                    raw.driver_connection.backup(target)  # online backup API: a consistent copy
                    target.close()
                finally:
                    raw.close()
                snap = make_engine(f"sqlite:///{copy}")
                try:
                    with snap.connect() as conn:
                        yield conn
                finally:
                    snap.dispose()
        else:
            with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
                yield conn
    finally:
        engine.dispose()


@dataclass(frozen=True)
class BackupReport:
    path: Path
    manifest: dict[str, Any]

    def summary(self) -> str:
        rows = sum(t["rows"] for t in self.manifest["tables"].values())
        return (f"{self.path}: {rows} rows in {len(self.manifest['tables'])} tables, "
                f"{self.manifest['model_files']} model files, schema {self.manifest['schema_revision']}")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def backup(url: str, to: Path, model_dir: Path | None = None, site_file: Path | None = None) -> BackupReport:
    """Write a backup of the database at ``url``, ``model_dir`` and ``site_file`` to ``to``."""
    to = Path(to)
    to.parent.mkdir(parents=True, exist_ok=True)
    partial = to.with_name(to.name + ".partial")
    manifest: dict[str, Any] = {
        "format": FORMAT, "darkstar_version": darkstar_version(), "created_at": datetime.now(UTC).isoformat(),
        "source_dialect": make_url(url).get_backend_name(), "schema_revision": current_revision(url), "tables": {},
        "model_files": 0, "site_file": None,
    }
    if manifest["schema_revision"] is None:
        raise StorageError(f"{safe_url(url)} holds no Darkstar schema: nothing to back up")
    try:
        with tarfile.open(partial, "w:gz") as tar, _snapshot(url) as conn:
            for table in tables():
                digest = TableDigest()
                with tempfile.TemporaryFile() as buf:
                    for row in _ordered_rows(conn, table):
                        text = _row_text(row)
                        digest.add(text)
                        buf.write(text.encode() + b"\n")
                    info = tarfile.TarInfo(f"db/{table.name}.jsonl")
                    info.size = buf.tell()
                    info.mtime = int(datetime.now(UTC).timestamp())
                    buf.seek(0)
                    tar.addfile(info, buf)
                manifest["tables"][table.name] = {"rows": digest.rows, "sha256": digest.sha256}
            if model_dir is not None and Path(model_dir).is_dir():
                manifest["model_dir"] = str(Path(model_dir).resolve())  # to rewrite old absolute paths
                for path in sorted(Path(model_dir).rglob("*")):
                    if path.is_file():
                        tar.add(path, arcname=f"models/{path.relative_to(model_dir).as_posix()}")
                        manifest["model_files"] += 1
            if site_file is not None:
                tar.add(site_file, arcname="site.yaml")
                manifest["site_file"] = Path(site_file).name
            _add_bytes(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
    except SQLAlchemyError as err:
        partial.unlink(missing_ok=True)
        raise StorageError(f"backup of {safe_url(url)} failed: {describe_error(err, url)}") from None
    partial.replace(to)  # never leave a half-written file under the final name
    return BackupReport(to, manifest)


# --------------------------------------------------------------------------- restore


def read_manifest(tar: tarfile.TarFile, source: Path) -> dict[str, Any]:
    try:
        member = tar.extractfile("manifest.json")
    except KeyError:
        member = None
    if member is None:
        raise StorageError(f"{source}: not a Darkstar backup (no manifest.json)")
    manifest = json.loads(member.read())
    if manifest.get("format") != FORMAT:
        raise StorageError(f"{source}: backup format {manifest.get('format')!r}, this version reads {FORMAT}")
    return manifest


def _refuse_non_empty(engine: Engine) -> None:
    if current_revision(engine) is None:
        return
    with engine.connect() as conn:
        for table in tables():
            count = conn.execute(select(func.count()).select_from(table)).scalar()
            if count:
                raise StorageError(f"{safe_url(engine.url)} already holds data ({count} rows in {table.name}); "
                                   "restore into an empty database")


def restore(source: Path, url: str, model_dir: Path | None = None, site_to: Path | None = None) -> dict[str, Any]:
    """Restore the backup ``source`` into the (empty) database at ``url``; models into ``model_dir``.

    Returns the manifest. Raises :class:`StorageError` when the target is not empty or when the
    restored rows do not match the manifest's counts and checksums.
    """
    source = Path(source)
    with tarfile.open(source, "r:gz") as tar:
        manifest = read_manifest(tar, source)
        known = {t.name: t for t in tables()}
        missing = set(manifest["tables"]) - set(known)
        if missing:
            raise StorageError(f"{source}: tables {sorted(missing)} are unknown to this version "
                               f"(schema {head_revision()}, backup {manifest['schema_revision']}); use a newer Darkstar")
        engine = make_engine(url)
        try:
            _refuse_non_empty(engine)
            migrate(engine, "head")
            with engine.begin() as conn:
                for table in tables():
                    member = tar.extractfile(f"db/{table.name}.jsonl") if table.name in manifest["tables"] else None
                    if member is None:
                        continue
                    types = {c.name: c.type for c in table.columns}
                    batch: list[dict[str, Any]] = []
                    for line in member:
                        row = json.loads(line)
                        batch.append({k: _decode(types[k], v) for k, v in row.items() if k in types})
                        if len(batch) >= BATCH_ROWS:
                            conn.execute(table.insert(), batch)
                            batch = []
                    if batch:
                        conn.execute(table.insert(), batch)
            got = table_digests(engine)
        except SQLAlchemyError as err:
            raise StorageError(f"restore into {safe_url(url)} failed: {describe_error(err, url)}") from None
        finally:
            engine.dispose()
        for name, want in manifest["tables"].items():
            if got[name] != want:
                raise StorageError(f"restore into {safe_url(url)}: table {name} has {got[name]['rows']} rows "
                                   f"(checksum {got[name]['sha256'][:12]}), the backup {want['rows']} "
                                   f"({want['sha256'][:12]})")
        if model_dir is not None:
            _extract(tar, "models/", Path(model_dir))
        if site_to is not None and manifest.get("site_file"):
            member = tar.extractfile("site.yaml")
            if member is not None:
                Path(site_to).parent.mkdir(parents=True, exist_ok=True)
                Path(site_to).write_bytes(member.read())
    return manifest


def _extract(tar: tarfile.TarFile, prefix: str, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for member in tar.getmembers():
        if not member.isfile() or not member.name.startswith(prefix):
            continue
        relative = Path(member.name[len(prefix):])
        if relative.is_absolute() or ".." in relative.parts:  # a crafted archive must not write elsewhere
            raise StorageError(f"refusing archive member {member.name!r} outside {prefix}")
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(member)
        if src is not None:
            with target.open("wb") as out:
                shutil.copyfileobj(src, out)
