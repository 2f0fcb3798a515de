"""ENTSO-E transparency platform: day-ahead prices (document A44) and the platform's CSV exports.

API: GET https://web-api.tp.entsoe.eu/api?securityToken=...&documentType=A44&in_Domain=EIC
&out_Domain=EIC&periodStart=yyyyMMddHHmm&periodEnd=yyyyMMddHHmm (UTC). The answer is a
``Publication_MarketDocument`` (TimeSeries -> Period(timeInterval, resolution PT15M/PT60M) ->
Point(position, price.amount) per MWh); curve type A03 omits points whose price repeats the
previous one. No data -> ``Acknowledgement_MarketDocument`` with Reason code 999.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import SecretStr

from shared.sources.base import NoDataYet, PriceSeries, SourceClient, SourceError, SourceParseError

ENTSOE_URL = "https://web-api.tp.entsoe.eu/api"

# Bidding zone -> EIC code (ENTSO-E area codes for day-ahead prices).
BIDDING_ZONES: dict[str, str] = {
    "SE1": "10Y1001A1001A44P", "SE2": "10Y1001A1001A45N", "SE3": "10Y1001A1001A46L", "SE4": "10Y1001A1001A47J",
    "NO1": "10YNO-1--------2", "NO2": "10YNO-2--------T", "NO3": "10YNO-3--------J", "NO4": "10YNO-4--------9",
    "NO5": "10Y1001A1001A48H", "DK1": "10YDK-1--------W", "DK2": "10YDK-2--------M", "FI": "10YFI-1--------U",
    "EE": "10Y1001A1001A39I", "LV": "10YLV-1001A00074", "LT": "10YLT-1001A0008Q",
    "DE-LU": "10Y1001A1001A82H", "NL": "10YNL----------L", "BE": "10YBE----------2", "FR": "10YFR-RTE------C",
    "AT": "10YAT-APG------L", "PL": "10YPL-AREA-----S", "CZ": "10YCZ-CEPS-----N", "SK": "10YSK-SEPS-----K",
    "HU": "10YHU-MAVIR----U", "SI": "10YSI-ELES-----O", "HR": "10YHR-HEP------M", "RO": "10YRO-TEL------P",
    "BG": "10YCA-BULGARIA-R", "GR": "10YGR-HTSO-----Y", "CH": "10YCH-SWISSGRIDZ", "ES": "10YES-REE------0",
    "PT": "10YPT-REN------W", "IT-NORD": "10Y1001A1001A73I", "IE-SEM": "10Y1001A1001A59C",
}
_RESOLUTION = re.compile(r"^PT(\d+)M$|^P1D$")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(node: ET.Element, name: str) -> ET.Element | None:
    for c in node:
        if _local(c.tag) == name:
            return c
    return None


def _text(node: ET.Element, path: str, where: str) -> str:
    cur = node
    for part in path.split("/"):
        nxt = _child(cur, part)
        if nxt is None:
            raise SourceParseError(f"entsoe: {where}: missing <{part}>")
        cur = nxt
    return (cur.text or "").strip()


def _parse_resolution(text: str, where: str) -> timedelta:
    m = _RESOLUTION.match(text)
    if not m:
        raise SourceParseError(f"entsoe: {where}: unsupported resolution {text!r}")
    return timedelta(days=1) if text == "P1D" else timedelta(minutes=int(m.group(1)))


def parse_entsoe_a44(payload: bytes | str, area: str = "") -> PriceSeries:
    """Parse an A44 Publication_MarketDocument (or raise for an Acknowledgement) into prices per kWh."""
    try:
        root = ET.fromstring(payload)
    except ET.ParseError as err:
        raise SourceParseError(f"entsoe: response is not XML: {err}") from None
    kind = _local(root.tag)
    if kind == "Acknowledgement_MarketDocument":
        reason = root.find(".//{*}Reason")
        code = _text(reason, "code", "Reason") if reason is not None else "?"
        text = _text(reason, "text", "Reason") if reason is not None and _child(reason, "text") is not None else ""
        if code == "999":
            raise NoDataYet(f"entsoe: no data for {area or 'the area'}: {text}")
        raise SourceError(f"entsoe: request refused (reason {code}): {text}")
    if kind != "Publication_MarketDocument":
        raise SourceParseError(f"entsoe: unexpected document <{kind}>")
    values: dict[pd.Timestamp, float] = {}
    currencies, resolutions = set(), set()
    for n, ts in enumerate(root.iterfind(".//{*}TimeSeries")):
        where = f"TimeSeries[{n}]"
        seq = ts.find("{*}classificationSequence_AttributeInstanceComponent.position")
        if seq is not None and (seq.text or "").strip() not in ("", "1"):
            continue  # a second sequence repeats the day with another product; keep the main one
        currencies.add(_text(ts, "currency_Unit.name", where))
        unit = _text(ts, "price_Measure_Unit.name", where)
        if unit.upper() != "MWH":
            raise SourceParseError(f"entsoe: {where}: price unit {unit!r}, expected MWH")
        curve = _child(ts, "curveType")
        curve_type = (curve.text or "A01").strip() if curve is not None else "A01"
        for period in ts.iterfind("{*}Period"):
            pw = f"{where}/Period"
            start = pd.Timestamp(_text(period, "timeInterval/start", pw)).tz_convert("UTC")
            end = pd.Timestamp(_text(period, "timeInterval/end", pw)).tz_convert("UTC")
            step = _parse_resolution(_text(period, "resolution", pw), pw)
            resolutions.add(step)
            n_points = int((end - start) / step)
            prices = np.full(n_points, np.nan)
            for point in period:
                if _local(point.tag) != "Point":
                    continue
                pos = int(_text(point, "position", pw))
                if not 1 <= pos <= n_points:
                    raise SourceParseError(f"entsoe: {pw}: point position {pos} outside 1..{n_points}")
                prices[pos - 1] = float(_text(point, "price.amount", pw)) / 1000.0  # per MWh -> per kWh
            if curve_type == "A03":
                # variable-sized blocks: an omitted position continues the previous price
                prices = pd.Series(prices).ffill().to_numpy()
            for i, p in enumerate(prices):
                values.setdefault(start + i * step, p)
    if not values:
        raise NoDataYet(f"entsoe: document holds no prices for {area or 'the area'}")
    if len(currencies) != 1 or len(resolutions) != 1:
        raise SourceParseError(f"entsoe: mixed currencies {currencies} or resolutions {resolutions}")
    series = pd.Series(values, name="spot_per_kwh").sort_index()
    series.index = pd.DatetimeIndex(series.index, name="slot_start")
    return PriceSeries(area=area, currency=currencies.pop(), resolution=resolutions.pop(), spot_per_kwh=series,
                       source="entsoe")


@dataclass
class EntsoeClient(SourceClient):
    """Day-ahead prices of one bidding zone from the ENTSO-E API (token from the site config)."""

    area: str = "SE4"
    token: SecretStr | str | None = None
    url: str = ENTSOE_URL
    eic: str = field(default="", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.name = "entsoe"
        if self.area not in BIDDING_ZONES:
            raise SourceError(f"entsoe: unknown bidding zone {self.area!r}; known: {', '.join(sorted(BIDDING_ZONES))}")
        self.eic = BIDDING_ZONES[self.area]
        secret = self.token.get_secret_value() if isinstance(self.token, SecretStr) else self.token
        if not secret:
            raise SourceError("entsoe: no security token: set tariff.entsoe_token (or DARKSTAR__TARIFF__ENTSOE_TOKEN)")
        self._secret = secret

    def prices(self, start: datetime, end: datetime) -> PriceSeries:
        """Prices for [start, end) (tz-aware). NoDataYet when the platform has none yet."""
        s = pd.Timestamp(start).tz_convert("UTC")
        e = pd.Timestamp(end).tz_convert("UTC")

        def fetch() -> PriceSeries:
            params = {"securityToken": self._secret, "documentType": "A44", "in_Domain": self.eic,
                      "out_Domain": self.eic, "periodStart": s.strftime("%Y%m%d%H%M"),
                      "periodEnd": e.strftime("%Y%m%d%H%M")}
            resp = self.get(self.url, params, f"A44 {self.area} {s:%Y-%m-%d %H:%M}..{e:%Y-%m-%d %H:%M}")
            if resp.status_code == 401:
                raise SourceError("entsoe: HTTP 401: the security token was refused")
            if resp.status_code not in (200, 400):
                raise SourceError(f"entsoe: HTTP {resp.status_code} for {self.area}")
            series = parse_entsoe_a44(resp.content, self.area)
            series.spot_per_kwh = series.spot_per_kwh[(series.spot_per_kwh.index >= s) & (series.spot_per_kwh.index < e)]
            return series

        return self.cached(("prices", s, e), fetch)

    def spot_slots(self, start: datetime, end: datetime) -> pd.Series:
        """Spot price per kWh on the 15-min UTC slot grid for [start, end)."""
        return self.prices(start, end).slots()


def parse_entsoe_csv(source: str | Path | bytes) -> PriceSeries:
    """Parse a transparency-platform CSV export (``"MTU (CET/CEST)","Day-ahead Price [EUR/MWh]",...``).

    MTU is ``dd.mm.yyyy HH:MM - dd.mm.yyyy HH:MM`` in CET/CEST: the repeated autumn hour is read
    as CEST then CET, the non-existent spring hour (an empty row) is dropped, and ``n/e`` (not
    published) stays missing. Returns hourly (or 15-min) prices per kWh indexed by UTC start.
    """
    if isinstance(source, bytes):
        raw = pd.read_csv(io.BytesIO(source), dtype=str, keep_default_na=False)
        name = "<bytes>"
    else:
        raw = pd.read_csv(source, dtype=str, keep_default_na=False)
        name = str(source)
    mtu_col = next((c for c in raw.columns if c.startswith("MTU")), None)
    price_col = next((c for c in raw.columns if c.startswith("Day-ahead Price")), None)
    if mtu_col is None or price_col is None:
        raise SourceParseError(f"{name}: not an ENTSO-E day-ahead export (columns: {list(raw.columns)})")
    unit = re.search(r"\[(\w+)/MWh\]", price_col)
    area = next((c.split("|", 1)[1] for c in raw.columns if c.startswith("BZN|")), "")
    parts = raw[mtu_col].str.split(" - ", n=1, expand=True)
    if parts.shape[1] != 2:
        raise SourceParseError(f"{name}: MTU column is not 'start - end'")
    naive_start = pd.to_datetime(parts[0], format="%d.%m.%Y %H:%M", errors="coerce")
    naive_end = pd.to_datetime(parts[1], format="%d.%m.%Y %H:%M", errors="coerce")
    if naive_start.isna().any():
        bad = int(naive_start.isna().idxmax())
        raise SourceParseError(f"{name}: row {bad + 2}: MTU {raw[mtu_col].iloc[bad]!r} is not dd.mm.yyyy HH:MM")
    price_text = raw[price_col].str.strip()
    # spring forward: the platform lists the skipped hour with empty fields -> drop that row
    dup = naive_start.duplicated(keep=False)
    first_of_dup = dup & ~naive_start.duplicated(keep="first")
    ambiguous = np.where(dup, first_of_dup, False)  # repeated hour: first is CEST (DST), second CET
    local = pd.DatetimeIndex(naive_start).tz_localize("Europe/Brussels", ambiguous=ambiguous, nonexistent="NaT")
    keep = ~local.isna()
    values = pd.to_numeric(price_text.where(~price_text.isin(["n/e", "", "-"])), errors="coerce") / 1000.0
    bad_num = values.isna() & ~price_text.isin(["n/e", "", "-"])
    if bad_num.any():
        bad = int(bad_num.idxmax())
        raise SourceParseError(f"{name}: row {bad + 2}: price {price_text.iloc[bad]!r} is not a number")
    index = local[keep].tz_convert("UTC")
    series = pd.Series(values[keep].to_numpy(), index=pd.DatetimeIndex(index, name="slot_start"), name="spot_per_kwh")
    steps = (naive_end - naive_start)[keep].dropna()
    step = steps.mode().iloc[0].to_pytimedelta() if len(steps) else timedelta(hours=1)
    return PriceSeries(area=area, currency=unit.group(1) if unit else "EUR", resolution=step,
                       spot_per_kwh=series.sort_index(), source="entsoe-csv")
