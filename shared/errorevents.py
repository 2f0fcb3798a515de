"""Error events that cannot flood: de-duplicated per (topic, reason) with counts, and rate-limited.

5000 garbage messages used to become 15 000 ``events/error`` messages (one per consumer and
message), 9000+ stored rows and an 8.5 s command round trip. Now each service publishes the first
occurrence of a (what, reason) at once and then at most one summary per ``window_s`` carrying the
number of repeats (``count``); on top, a token bucket caps all of a service's error events at
``rate_per_s`` (burst ``burst``), and what it holds back is counted into the next summary. Memory
is bounded: at most ``max_keys`` distinct reasons are tracked (the oldest are flushed first).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?")
Emit = Callable[[str, str, "bytes | str | None", int], None]  # (what, why, payload, count)


@dataclass
class _Pending:
    what: str
    why: str
    payload: bytes | str | None
    count: int = 0  # occurrences not yet published
    last_emit: float = 0.0


class ErrorThrottle:
    def __init__(self, emit: Emit, *, window_s: float = 60.0, rate_per_s: float = 2.0, burst: int = 20,
                 max_keys: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.emit = emit
        self.window_s = window_s
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self.suppressed_total = 0
        self._tokens = float(burst)
        self._refilled = clock()
        self._keys: OrderedDict[tuple[str, str], _Pending] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def reason_key(why: str) -> str:
        """Reasons differing only in numbers are one reason ("slot 3: ..." and "slot 4: ...")."""
        return _NUMBER.sub("#", why[:120])

    def _take_token(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate_per_s)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def report(self, what: str, why: str, payload: bytes | str | None) -> bool:
        """Count one occurrence; publish now if it is new (or its window passed) and the rate allows."""
        now = self.clock()
        out: list[tuple[str, str, bytes | str | None, int]] = []
        with self._lock:
            key = (what[:200], self.reason_key(why))
            entry = self._keys.get(key)
            if entry is None:
                entry = self._keys[key] = _Pending(what, why, payload, last_emit=-1e18)
                while len(self._keys) > self.max_keys:  # bounded: flush and forget the oldest reason
                    _, old = self._keys.popitem(last=False)
                    if old.count:
                        out.append((old.what, old.why, old.payload, old.count))
            self._keys.move_to_end(key)
            entry.count += 1
            entry.why, entry.payload = why, payload
            if now - entry.last_emit >= self.window_s and self._take_token(now):
                out.append((entry.what, entry.why, entry.payload, entry.count))
                entry.count, entry.last_emit = 0, now
            else:
                self.suppressed_total += 1
        for item in out:
            self.emit(*item)
        return bool(out)

    def flush(self, force: bool = False) -> None:
        """Publish the counts held back whose window has passed (all of them with ``force``)."""
        now = self.clock()
        out = []
        with self._lock:
            for entry in self._keys.values():
                if entry.count and (force or now - entry.last_emit >= self.window_s) and (force or self._take_token(now)):
                    out.append((entry.what, entry.why, entry.payload, entry.count))
                    entry.count, entry.last_emit = 0, now
        for item in out:
            self.emit(*item)
