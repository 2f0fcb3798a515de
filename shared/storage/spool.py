"""Writes that survive a database outage: a bounded on-disk spool in front of the Store.

A database outage used to lose the executor's execution-log rows and everything the recorder
received while it lasted, with no error event. ``BufferedWriter.write("store_execution", row)``
writes through to the Store; when the database is unreachable (SQLAlchemy ``OperationalError`` /
``InterfaceError``: refused, dropped, denied) the row goes to a small SQLite file instead
(``database.spool_dir``/<service>.sqlite, at most ``database.spool_max_rows`` rows: when full the
oldest row is dropped and counted in ``dropped_rows`` and the log). ``on_outage`` is called with
the reason (services turn it into a rate-limited error event, readyz and an alarm); every later
write and ``drain()`` replay the spool in order, and the Store's writes are upserts keyed by the
row's natural key, so a row replayed twice is stored once. Other errors (a row the database
refuses) are raised as before: spooling them would retry them forever.

Rows are JSON (contract messages by class name, execution records field by field), never pickle:
the spool file must not be a way to run code.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from shared.contracts import ContextMsg, ErrorEventMsg, ForecastMsg, ObservationMsg, PlanMsg, PricesMsg, WeatherMsg
from shared.storage.db import describe_error
from shared.storage.repository import ExecutionRecord

log = logging.getLogger(__name__)

OUTAGE_ERRORS = (OperationalError, InterfaceError)
_MESSAGES = {cls.__name__: cls for cls in (PricesMsg, WeatherMsg, ForecastMsg, ObservationMsg, PlanMsg,
                                           ContextMsg, ErrorEventMsg)}
_RECORD_TIMES = ("ts", "slot_start", "override_expires_at")


def _encode(row: Any) -> str:
    if isinstance(row, ExecutionRecord):
        return json.dumps({"type": "ExecutionRecord", "data": asdict(row)}, default=datetime.isoformat)
    name = type(row).__name__
    if name not in _MESSAGES:
        raise TypeError(f"cannot spool a {name}")
    return json.dumps({"type": name, "data": json.loads(row.model_dump_json(by_alias=True))})


def _decode(text: str) -> Any:
    item = json.loads(text)
    if item["type"] == "ExecutionRecord":
        data = {f.name: item["data"].get(f.name) for f in fields(ExecutionRecord)}
        for key in _RECORD_TIMES:
            if data[key] is not None:
                data[key] = datetime.fromisoformat(data[key])
        return ExecutionRecord(**data)
    return _MESSAGES[item["type"]].model_validate(item["data"])


class BufferedWriter:
    """Store writes that are spooled on disk while the database is unreachable; see the module doc."""

    def __init__(self, store: Any, path: Path | str, *, max_rows: int = 10_000,
                 on_outage: Callable[[str], None] | None = None,
                 on_recovered: Callable[[int], None] | None = None, retry_s: float = 5.0) -> None:
        if max_rows < 1:
            raise ValueError(f"database.spool_max_rows must be at least 1, got {max_rows}")
        self.store = store
        self.path = Path(path)
        self.max_rows = max_rows
        self.on_outage = on_outage
        self.on_recovered = on_recovered
        self.dropped_rows = 0
        self.outage: str | None = None  # the reason while the database is unreachable
        self.retry_s = retry_s
        self._retry_at = 0.0
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        if self.path.exists():  # rows left by a previous run are written when the database answers
            self._open()

    # ------------------------------------------------------------------ spool file
    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("CREATE TABLE IF NOT EXISTS spool "
                             "(id INTEGER PRIMARY KEY AUTOINCREMENT, method TEXT NOT NULL, row TEXT NOT NULL)")
        return self._db

    @property
    def pending(self) -> int:
        with self._lock:
            return 0 if self._db is None else int(self._db.execute("SELECT count(*) FROM spool").fetchone()[0])

    def _spool(self, method: str, row: Any) -> None:
        db = self._open()
        db.execute("INSERT INTO spool (method, row) VALUES (?, ?)", (method, _encode(row)))
        over = self.pending - self.max_rows
        if over > 0:  # bounded: the oldest rows go, counted
            db.execute("DELETE FROM spool WHERE id IN (SELECT id FROM spool ORDER BY id LIMIT ?)", (over,))
            self.dropped_rows += over
            log.warning("database spool %s is full (%d rows): dropped the %d oldest row(s), %d in all",
                        self.path, self.max_rows, over, self.dropped_rows)

    # ------------------------------------------------------------------ writes
    def _down(self, err: BaseException) -> None:
        self._retry_at = time.monotonic() + self.retry_s
        first = self.outage is None
        self.outage = describe_error(err)
        if first:
            log.error("database unreachable, spooling writes to %s: %s", self.path, self.outage)
        if self.on_outage is not None:
            self.on_outage(self.outage)

    def write(self, method: str, row: Any) -> bool:
        """``store.<method>(row)``; True if written now, False if spooled on disk."""
        with self._lock:
            # While down, try the database at most every retry_s (a hanging connect must not
            # stall the caller on every row); the rows keep their order behind the spool.
            if self.outage is None or time.monotonic() >= self._retry_at:
                if self.pending:
                    self.drain()
            if self.pending == 0:
                try:
                    getattr(self.store, method)(row)
                    return True
                except OUTAGE_ERRORS as err:
                    self._down(err)
            self._spool(method, row)
            return False

    def drain(self, batch: int = 500) -> int:
        """Write spooled rows in order until the spool is empty or the database fails again."""
        written = 0
        with self._lock:
            while self._db is not None:
                items = self._db.execute("SELECT id, method, row FROM spool ORDER BY id LIMIT ?", (batch,)).fetchall()
                if not items:
                    break
                for row_id, method, text in items:
                    try:
                        getattr(self.store, method)(_decode(text))
                    except OUTAGE_ERRORS as err:
                        self._down(err)
                        return written
                    except Exception:  # noqa: BLE001 - a row the database refuses must not block the rest
                        log.exception("spooled %s row %d refused by the database; dropped", method, row_id)
                    self._db.execute("DELETE FROM spool WHERE id = ?", (row_id,))
                    written += 1
            if self.outage is not None:
                log.warning("database back: %d spooled row(s) written", written)
                self.outage = None
                if self.on_recovered is not None:
                    self.on_recovered(written)
        return written

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
