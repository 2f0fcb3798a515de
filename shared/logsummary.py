"""Device-library logs a person can read: errors summarised, raw frames at debug only.

A gateway answering garbage on the Modbus port makes pymodbus log a hex dump per frame, many a
minute. :class:`SummarisingFilter` sits on such a library's logger: the first error of each
kind is shown at once (hex dumps cut out), further ones are counted and summarised at most once
per ``interval_s`` ("what, how often, since when") on the ``darkstar.devices`` logger. With
``DARKSTAR_LOG_LEVEL=DEBUG`` the library logs everything itself, raw frames included.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass

_HEX = re.compile(r"(0x[0-9a-fA-F]+[\s,]*)+|\b([0-9a-fA-F]{2}[ :]){3,}[0-9a-fA-F]{2}\b|b'(\\x[0-9a-f]{2}|[^'])*'")
_NUMBER = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")
SUMMARY_LOGGER = "darkstar.devices"


def readable(message: str, limit: int = 160) -> str:
    """The message without raw frames (hex runs and byte strings), cut to ``limit`` characters."""
    text = _HEX.sub("<frame> ", message)
    text = _SPACE.sub(" ", text.replace(">>>>>", " ")).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class _Kind:
    text: str
    first_at: float
    count: int = 0  # since the last line about this kind


class SummarisingFilter(logging.Filter):
    """Drops a device library's WARNING/ERROR records and reports them as summaries instead."""

    def __init__(self, source: str, interval_s: float = 60.0, clock: type[time] | None = None) -> None:
        super().__init__()
        self.source = source
        self.interval_s = interval_s
        self._now = (clock or time).time
        self._kinds: dict[str, _Kind] = {}
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.out = logging.getLogger(SUMMARY_LOGGER)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True  # debug/info: the logger's level decides (raw frames only at DEBUG)
        text = readable(record.getMessage())
        key = _NUMBER.sub("#", text)
        with self._lock:
            kind = self._kinds.get(key)
            if kind is None:  # a new kind of trouble: say it now, once
                self._kinds[key] = _Kind(text, self._now())
                first = True
            else:
                kind.count += 1
                first = False
                if self._timer is None:
                    self._timer = threading.Timer(self.interval_s, self.flush)
                    self._timer.daemon = True
                    self._timer.start()
        if first:
            self.out.log(record.levelno, "%s: %s (further ones are summarised every %.0f s; raw frames with "
                         "DARKSTAR_LOG_LEVEL=DEBUG)", self.source, text, self.interval_s)
        return False

    def flush(self) -> None:
        """One line per kind seen since the last summary: what, how often, since when."""
        with self._lock:
            self._timer = None
            pending = [k for k in self._kinds.values() if k.count]
            for k in pending:
                since = time.strftime("%H:%M:%S", time.localtime(k.first_at))
                self.out.warning("%s: %d more x %r since %s", self.source, k.count, k.text, since)
                k.count = 0


def summarise_library_logs(logger_name: str, source: str, interval_s: float = 60.0) -> SummarisingFilter | None:
    """Install a :class:`SummarisingFilter` on ``logger_name`` unless debug logging is on (then: raw)."""
    logger = logging.getLogger(logger_name)
    if logger.getEffectiveLevel() <= logging.DEBUG:
        return None
    for existing in logger.filters:
        if isinstance(existing, SummarisingFilter):
            return existing
    summary = SummarisingFilter(source, interval_s)
    logger.addFilter(summary)
    return summary
