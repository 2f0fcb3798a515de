"""One client object per external source (Home Assistant coordinator pattern).

The client owns the HTTP session, retries with exponential back-off, a freshness cache and an
availability state; callers only ask for data and get pandas objects on the UTC slot grid or a
clear :class:`SourceError`. Error messages never contain the request URL (it may carry a token).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pandas as pd
import tenacity

from shared.slots import SLOT, expand_to_slots

RETRY_STATUS = {429, 500, 502, 503, 504}


class SourceError(RuntimeError):
    """A source could not deliver usable data; the message names the source and the reason."""


class SourceUnavailable(SourceError):
    """Network or server failure that persisted through every retry."""


class NoDataYet(SourceError):
    """The source answered but has no data for the request yet (e.g. tomorrow before the auction)."""


class _Retry(Exception):
    """A failure worth retrying (network error, 429, 5xx); ``retry_after_s`` from the server."""

    def __init__(self, why: str, retry_after_s: float = 0.0) -> None:
        super().__init__(why)
        self.retry_after_s = retry_after_s


class SourceParseError(SourceError):
    """The response did not have the documented format."""


@dataclass
class PriceSeries:
    """Day-ahead spot prices of one bidding zone.

    ``spot_per_kwh``: price per kWh (currency below) at the source's resolution, indexed by the
    UTC start of each market time unit. ``slots()`` gives the 15-min slot grid.
    """

    area: str
    currency: str
    resolution: timedelta
    spot_per_kwh: pd.Series
    source: str
    state: str = "final"

    def slots(self) -> pd.Series:
        """Spot price per 15-min slot (an hourly price holds for its four slots)."""
        s = self.spot_per_kwh.dropna()
        if s.empty:
            return s
        if self.resolution == SLOT:
            out = self.spot_per_kwh.copy()
        else:
            full = pd.date_range(s.index[0], s.index[-1], freq=self.resolution, tz="UTC")
            out = expand_to_slots(self.spot_per_kwh.reindex(full), "power")
        out.name = "spot_per_kwh"
        out.index.name = "slot_start"
        return out


@dataclass
class _Cached:
    fetched_at: datetime
    value: Any


@dataclass
class SourceClient:
    """Base: GET with retries and back-off, a freshness cache and availability bookkeeping."""

    name: str = "source"
    http: httpx.Client | None = None
    retries: int = 3
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    timeout_s: float = 20.0
    max_age: timedelta = timedelta(minutes=30)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    unavailable_after_failures: int = 3
    last_success_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    _cache: dict[Any, _Cached] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.http is None:
            self.http = httpx.Client(timeout=self.timeout_s, headers={"User-Agent": "darkstar/0.1"})

    @property
    def available(self) -> bool:
        """False once several requests in a row failed (HA "unavailable"); back to True on success."""
        return self.consecutive_failures < self.unavailable_after_failures

    def close(self) -> None:
        if self.http is not None:
            self.http.close()

    def cached(self, key: Any, fetch: Callable[[], Any]) -> Any:
        """Return a fresh cached value for ``key`` or fetch it (no cache for failures)."""
        hit = self._cache.get(key)
        now = self.clock()
        if hit is not None and now - hit.fetched_at < self.max_age:
            return hit.value
        value = fetch()
        self._cache[key] = _Cached(now, value)
        return value

    def get(self, url: str, params: dict[str, Any], what: str) -> httpx.Response:
        """GET with retries on network errors, 429 and 5xx (tenacity: exponential back-off capped at
        ``max_backoff_s``, at least the server's ``Retry-After``); other 4xx return at once."""
        def attempt() -> httpx.Response:
            try:
                resp = self.http.get(url, params=params)
            except httpx.HTTPError as err:  # DNS, connect, read timeout...
                raise _Retry(type(err).__name__) from None
            if resp.status_code in RETRY_STATUS:
                retry_after = resp.headers.get("Retry-After")
                raise _Retry(f"HTTP {resp.status_code}", float(retry_after) if retry_after and retry_after.isdigit() else 0.0)
            return resp

        backoff = tenacity.wait_exponential(multiplier=self.backoff_s, max=self.max_backoff_s)

        def wait(state: tenacity.RetryCallState) -> float:
            err = state.outcome.exception() if state.outcome is not None else None
            server_s = err.retry_after_s if isinstance(err, _Retry) else 0.0
            return min(max(backoff(state), server_s), self.max_backoff_s)

        retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(self.retries + 1), wait=wait,
                                     retry=tenacity.retry_if_exception_type(_Retry), sleep=self.sleep, reraise=True)
        try:
            resp = retrying(attempt)
        except _Retry as err:
            self._failed(f"{self.name}: {what}: {err} after {self.retries + 1} attempts")
            raise SourceUnavailable(self.last_error) from None
        self._ok()
        return resp

    def _ok(self) -> None:
        self.consecutive_failures = 0
        self.last_success_at = self.clock()
        self.last_error = None

    def _failed(self, message: str) -> None:
        self.consecutive_failures += 1
        self.last_error = message
