"""Nord Pool day-ahead prices from the public data portal API (JSON).

GET https://dataportal-api.nordpoolgroup.com/api/DayAheadPrices?date=YYYY-MM-DD&market=DayAhead
&deliveryArea=SE4&currency=EUR answers ``{"deliveryDateCET", "currency", "multiAreaEntries":
[{"deliveryStart", "deliveryEnd", "entryPerArea": {"SE4": price per MWh}}], "areaStates": ...}``
with UTC ``deliveryStart``/``deliveryEnd``, and HTTP 204 before the auction result is out.
Products are 15 minutes from delivery day 2025-10-01 (SDAC 15-min MTU) and hourly before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from shared.sources.base import NoDataYet, PriceSeries, SourceClient, SourceError, SourceParseError

NORDPOOL_URL = "https://dataportal-api.nordpoolgroup.com/api/DayAheadPrices"
NORDPOOL_AREAS = {
    "SE1", "SE2", "SE3", "SE4", "NO1", "NO2", "NO3", "NO4", "NO5", "DK1", "DK2", "FI", "EE", "LV", "LT",
    "AT", "BE", "FR", "GER", "NL", "PL", "SYS", "TEL", "BG",
}
FIFTEEN_MINUTE_FROM = date(2025, 10, 1)


def parse_nordpool(payload: bytes | str | dict, area: str) -> PriceSeries:
    """Parse one DayAheadPrices response into spot prices per kWh for ``area``."""
    try:
        doc = json.loads(payload) if isinstance(payload, (bytes, str)) else payload
    except json.JSONDecodeError as err:
        raise SourceParseError(f"nordpool: response is not JSON: {err}") from None
    entries = doc.get("multiAreaEntries") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise SourceParseError("nordpool: response has no 'multiAreaEntries' list")
    if not entries:
        raise NoDataYet(f"nordpool: no prices for {area} on {doc.get('deliveryDateCET', '?')} yet")
    starts, ends, values = [], [], []
    for n, entry in enumerate(entries):
        try:
            starts.append(pd.Timestamp(entry["deliveryStart"]).tz_convert("UTC"))
            ends.append(pd.Timestamp(entry["deliveryEnd"]).tz_convert("UTC"))
            price = entry["entryPerArea"][area]
        except KeyError as err:
            raise SourceParseError(f"nordpool: multiAreaEntries[{n}] lacks {err} (area {area})") from None
        values.append(float("nan") if price is None else float(price) / 1000.0)  # per MWh -> per kWh
    steps = {e - s for s, e in zip(starts, ends)}
    if len(steps) != 1:
        raise SourceParseError(f"nordpool: mixed product lengths {sorted(str(s) for s in steps)}")
    series = pd.Series(values, index=pd.DatetimeIndex(starts, name="slot_start"), name="spot_per_kwh").sort_index()
    states = {s.get("state", "") for s in doc.get("areaStates", []) if area in s.get("areas", [])}
    currency = str(doc.get("currency", "")).upper()
    if not currency:
        raise SourceParseError("nordpool: response has no currency")
    return PriceSeries(
        area=area, currency=currency, resolution=steps.pop().to_pytimedelta(), spot_per_kwh=series,
        source="nordpool", state=(states.pop().lower() if len(states) == 1 else "final"),
    )


@dataclass
class NordPoolClient(SourceClient):
    """Day-ahead prices for one area and currency; one request per delivery day (CET)."""

    area: str = "SE4"
    currency: str = "EUR"
    url: str = NORDPOOL_URL

    def __post_init__(self) -> None:
        super().__post_init__()
        self.name = "nordpool"
        if self.area not in NORDPOOL_AREAS:
            raise SourceError(f"nordpool: unknown delivery area {self.area!r}; known: {', '.join(sorted(NORDPOOL_AREAS))}")

    def day(self, delivery_date: date) -> PriceSeries:
        """Prices of one delivery day; NoDataYet before publication (HTTP 204 or empty)."""
        def fetch() -> PriceSeries:
            params = {"date": delivery_date.isoformat(), "market": "DayAhead", "deliveryArea": self.area,
                      "currency": self.currency}
            resp = self.get(self.url, params, f"day-ahead {self.area} {delivery_date}")
            if resp.status_code == 204 or not resp.content:
                raise NoDataYet(f"nordpool: prices for {self.area} on {delivery_date} are not published yet")
            if resp.status_code != 200:
                raise SourceError(f"nordpool: HTTP {resp.status_code} for {self.area} on {delivery_date}")
            return parse_nordpool(resp.content, self.area)

        return self.cached(("day", delivery_date), fetch)

    def spot_slots(self, first: date, last: date) -> pd.Series:
        """Spot price per kWh on the 15-min UTC slot grid for delivery days first..last (inclusive).

        Stops at the last published day: a missing tomorrow ends the series (no invented prices).
        """
        parts = []
        d = first
        while d <= last:
            try:
                parts.append(self.day(d).slots())
            except NoDataYet:
                if not parts:
                    raise
                break
            d += timedelta(days=1)
        return pd.concat(parts).sort_index()
