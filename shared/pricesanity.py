"""Price sanity: a curve far outside the recent distribution is held until a second fetch confirms it.

Rule (docs/forecasting.md "Price sanity"): keep the import prices of the last 7 days of published
curves. A new curve is *suspect* when any slot lies more than ``k`` robust deviations from their
median (``k`` x 1.4826 x MAD, at least ``floor_per_kwh`` away). A suspect curve is not published:
the previous curve stays in use, an alarm is raised (``events/error``), and the curve is
remembered. When the next fetch from the configured market source returns the same curve (same
slot starts and prices), it is confirmed and published: real price spikes happen, and a second
independent fetch is what tells a spike from a corrupted response. With less than a day of
history every curve passes (nothing to compare with; the plausibility band still applies).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    publish: bool
    why: str | None = None  # set when held (or when published only after confirmation)


class PriceSanity:
    def __init__(self, *, k: float = 8.0, floor_per_kwh: float = 0.5, history_slots: int = 7 * 96,
                 min_history_slots: int = 96) -> None:
        self.k = k
        self.floor = floor_per_kwh
        self.min_history = min_history_slots
        self.recent: deque[float] = deque(maxlen=history_slots)
        self.held: tuple[tuple[str, float], ...] | None = None

    def accepted(self, prices: Sequence[float]) -> None:
        """Remember a published curve's import prices as part of the recent distribution."""
        self.recent.extend(prices)

    def outliers(self, prices: Sequence[float]) -> tuple[float, float, list[int]]:
        """(median, allowed deviation, indexes of outlying slots) against the recent distribution."""
        median = statistics.median(self.recent)
        mad = statistics.median(abs(p - median) for p in self.recent)
        allowed = max(self.k * 1.4826 * mad, self.floor)
        return median, allowed, [i for i, p in enumerate(prices) if abs(p - median) > allowed]

    def check(self, starts: Sequence[str], prices: Sequence[float]) -> Verdict:
        if len(self.recent) < self.min_history:
            return Verdict(True)
        median, allowed, bad = self.outliers(prices)
        if not bad:
            self.held = None
            return Verdict(True)
        fingerprint = tuple(zip(starts, prices))
        worst = max(bad, key=lambda i: abs(prices[i] - median))
        what = (f"{len(bad)} slot(s) beyond {median:.3f} +- {allowed:.3f} per kWh (recent median +- {self.k:g} "
                f"robust deviations), e.g. {starts[worst]}: {prices[worst]:.3f}")
        if self.held == fingerprint:
            self.held = None
            return Verdict(True, f"price curve confirmed by a second fetch and published: {what}")
        self.held = fingerprint
        return Verdict(False, f"price curve held, previous curve stays in use until a second fetch confirms it: {what}")
