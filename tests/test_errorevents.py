"""Error events cannot flood: one per (topic, reason) and window, with the count of what was held back."""

from __future__ import annotations

from shared.errorevents import ErrorThrottle


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_5000_identical_rejections_become_one_event_then_one_counted_summary() -> None:
    clock, sent = FakeClock(), []
    throttle = ErrorThrottle(lambda *e: sent.append(e), window_s=60, clock=clock)
    for i in range(5000):
        throttle.report("darkstar/s/plan", f"slots.{i}.charge_kw: not a number", b"garbage")
    assert len(sent) == 1 and sent[0][3] == 1
    throttle.flush()
    assert len(sent) == 1  # window not over: nothing new
    clock.t += 61
    throttle.flush()
    assert len(sent) == 2 and sent[1][3] == 4999  # every occurrence is accounted for
    assert sum(e[3] for e in sent) == 5000


def test_different_reasons_are_reported_separately_within_the_rate_limit() -> None:
    clock, sent = FakeClock(), []
    throttle = ErrorThrottle(lambda *e: sent.append(e), rate_per_s=1, burst=3, clock=clock)
    for topic in ("a", "b", "c", "d", "e"):
        throttle.report(f"darkstar/s/{topic}", "bad", None)
    assert [e[0] for e in sent] == ["darkstar/s/a", "darkstar/s/b", "darkstar/s/c"]  # burst of 3
    clock.t += 61
    throttle.flush(force=True)
    assert sum(e[3] for e in sent) == 5  # held back by the rate limit, then reported with counts


def test_memory_is_bounded_by_max_keys_and_evicted_counts_are_not_lost() -> None:
    clock, sent = FakeClock(), []
    throttle = ErrorThrottle(lambda *e: sent.append(e), max_keys=10, rate_per_s=0, burst=0, clock=clock)
    for i in range(1000):
        throttle.report(f"darkstar/s/context/x{i}", "bad", None)
    assert len(throttle._keys) == 10  # noqa: SLF001
    throttle.flush(force=True)
    assert sum(e[3] for e in sent) == 1000
