"""Time source for services: the wall clock, or an accelerated simulated clock for the demo and replays."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone


class Clock:
    """Wall-clock UTC time."""

    accel: float = 1.0

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def wall_seconds(self, sim_seconds: float) -> float:
        """How long to wait in real time for ``sim_seconds`` of this clock's time to pass."""
        return sim_seconds / self.accel


class SimClock(Clock):
    """Simulated time: starts at ``start`` and runs ``accel`` times faster than the wall clock."""

    def __init__(self, start: datetime, accel: float = 60.0) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock start needs a UTC offset")
        if accel <= 0:
            raise ValueError("accel must be positive")
        self.start = start.astimezone(timezone.utc)
        self.accel = accel
        self._wall0 = time.monotonic()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self.start + timedelta(seconds=(time.monotonic() - self._wall0) * self.accel)


WALL_CLOCK = Clock()
