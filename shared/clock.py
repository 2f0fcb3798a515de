"""Time source for services: the wall clock, an accelerated simulated clock for the demo and replays,
or a manual clock moved step by step by tests and benchmarks."""

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


class ManualClock(Clock):
    """Simulated time moved only by ``set``/``advance``: benchmarks and tests run as fast as the code allows."""

    accel = float("inf")

    def __init__(self, start: datetime):
        if start.tzinfo is None:
            raise ValueError("ManualClock start needs a UTC offset")
        self.start = start.astimezone(timezone.utc)
        self._now = self.start

    def now(self) -> datetime:
        return self._now

    def set(self, ts: datetime) -> None:
        if ts < self._now:
            raise ValueError("simulated time cannot go backwards")
        self._now = ts

    def advance(self, seconds: float) -> datetime:
        self.set(self._now + timedelta(seconds=seconds))
        return self._now

    def wall_seconds(self, sim_seconds: float) -> float:
        return 0.0


WALL_CLOCK = Clock()
