"""Price and weather clients parse the documented response formats and fail clearly.

The real client code runs against httpx.MockTransport serving recorded-format fixture bytes:
no network.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from shared.sources import (
    EntsoeClient,
    NoDataYet,
    NordPoolClient,
    OpenMeteoClient,
    SourceError,
    SourceUnavailable,
    parse_entsoe_a44,
    parse_entsoe_csv,
)

FIX = Path(__file__).parent / "fixtures" / "sources"
# days of the real SE4 2024 export (see fixtures/sources/README.md): DST both ways, negatives, "n/e"
ENTSOE_CSV = Path(__file__).resolve().parent / "fixtures" / "sources" / "entsoe_SE4_2024_excerpt.csv"


def _client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def _serve(files: dict[str, str], seen: list | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        key = request.url.params.get("date") or request.url.params.get("periodStart") or request.url.path
        name = files.get(key)
        if name is None:
            return httpx.Response(204)
        return httpx.Response(200, content=(FIX / name).read_bytes())

    return handler


# ----------------------------------------------------------------------------- Nord Pool


def test_nordpool_15_minute_day_gives_96_slot_prices_per_kwh():
    seen: list[httpx.Request] = []
    client = NordPoolClient(area="SE4", currency="EUR",
                            http=_client(_serve({"2025-10-01": "nordpool_SE4_2025-10-01_15min.json"}, seen)))
    day = client.day(date(2025, 10, 1))
    assert day.resolution == timedelta(minutes=15)
    assert day.currency == "EUR" and day.area == "SE4" and day.state == "final"
    s = day.slots()
    assert len(s) == 96
    assert s.index[0] == pd.Timestamp("2025-09-30T22:00Z")  # local midnight CEST
    assert (s < 0).sum() == 1  # the negative price is kept
    raw = (FIX / "nordpool_SE4_2025-10-01_15min.json").read_text()
    assert f"{s.iloc[0] * 1000:.2f}" in raw  # per MWh -> per kWh
    assert seen[0].url.params["deliveryArea"] == "SE4" and seen[0].url.params["market"] == "DayAhead"


def test_nordpool_hourly_day_is_expanded_to_four_equal_slots():
    client = NordPoolClient(area="SE4", http=_client(_serve({"2025-09-30": "nordpool_SE4_2025-09-30_hourly.json"})))
    day = client.day(date(2025, 9, 30))
    assert day.resolution == timedelta(hours=1)
    s = day.slots()
    assert len(s) == 96
    assert np.allclose(s.iloc[:4], day.spot_per_kwh.iloc[0])


def test_nordpool_dst_day_has_100_slots():
    client = NordPoolClient(area="SE4", http=_client(_serve({"2025-10-26": "nordpool_SE4_2025-10-26_15min_dst.json"})))
    assert len(client.day(date(2025, 10, 26)).slots()) == 100


def test_nordpool_tomorrow_not_published_raises_no_data_yet_and_range_stops_there():
    client = NordPoolClient(area="SE4", http=_client(_serve({"2025-10-01": "nordpool_SE4_2025-10-01_15min.json"})))
    with pytest.raises(NoDataYet):
        client.day(date(2025, 10, 2))
    s = client.spot_slots(date(2025, 10, 1), date(2025, 10, 2))
    assert s.index[-1] == pd.Timestamp("2025-10-01T21:45Z")  # horizon ends at the last published price


def test_nordpool_caches_within_max_age_and_retries_server_errors():
    calls = []
    body = (FIX / "nordpool_SE4_2025-10-01_15min.json").read_bytes()

    def handler(request):
        calls.append(request)
        return httpx.Response(503) if len(calls) == 1 else httpx.Response(200, content=body)

    sleeps: list[float] = []
    client = NordPoolClient(area="SE4", http=_client(handler), sleep=sleeps.append, backoff_s=1.0)
    client.day(date(2025, 10, 1))
    client.day(date(2025, 10, 1))
    assert len(calls) == 2 and sleeps == [1.0]
    assert client.available and client.last_error is None


def test_source_becomes_unavailable_after_repeated_failures():
    client = NordPoolClient(area="SE4", http=_client(lambda r: httpx.Response(500)), sleep=lambda s: None, retries=1)
    for _ in range(3):
        with pytest.raises(SourceUnavailable, match="nordpool"):
            client.day(date(2025, 10, 1))
    assert not client.available


def test_nordpool_unknown_area_is_refused():
    with pytest.raises(SourceError, match="unknown delivery area"):
        NordPoolClient(area="XX9")


# ----------------------------------------------------------------------------- ENTSO-E


def test_entsoe_a44_15min_a03_fills_omitted_positions_with_previous_price():
    seen: list[httpx.Request] = []
    client = EntsoeClient(area="SE4", token="secret-token",
                          http=_client(_serve({"202509302200": "entsoe_a44_SE4_2025-10-01_15min.xml"}, seen)))
    s = client.spot_slots(pd.Timestamp("2025-09-30T22:00Z"), pd.Timestamp("2025-10-01T22:00Z"))
    assert len(s) == 96 and not s.isna().any()
    assert s.iloc[21] == s.iloc[20] and s.iloc[23] == s.iloc[20]
    params = seen[0].url.params
    assert params["documentType"] == "A44" and params["in_Domain"] == "10Y1001A1001A47J"
    assert params["periodEnd"] == "202510012200"


def test_entsoe_xml_and_csv_export_agree_on_the_same_day():
    xml = parse_entsoe_a44((FIX / "entsoe_a44_SE4_2024-01-01_hourly.xml").read_bytes(), "SE4")
    csv = parse_entsoe_csv(ENTSOE_CSV)
    day = csv.spot_per_kwh[xml.spot_per_kwh.index]
    assert np.allclose(day.to_numpy(), xml.spot_per_kwh.to_numpy())
    assert xml.resolution == timedelta(hours=1) and csv.currency == "EUR" and csv.area == "SE4"


def test_entsoe_no_data_acknowledgement_is_no_data_yet():
    body = (FIX / "entsoe_acknowledgement_no_data.xml").read_bytes()
    client = EntsoeClient(area="SE4", token="t", http=_client(lambda r: httpx.Response(200, content=body)))
    with pytest.raises(NoDataYet, match="No matching data"):
        client.prices(pd.Timestamp("2025-10-02T22:00Z"), pd.Timestamp("2025-10-03T22:00Z"))


def test_entsoe_without_token_or_with_refused_token_fails_clearly_and_never_echoes_it():
    with pytest.raises(SourceError, match="entsoe_token"):
        EntsoeClient(area="SE4", token=None)
    client = EntsoeClient(area="SE4", token="very-secret", http=_client(lambda r: httpx.Response(401)))
    with pytest.raises(SourceError) as err:
        client.prices(pd.Timestamp("2025-10-01T22:00Z"), pd.Timestamp("2025-10-02T22:00Z"))
    assert "401" in str(err.value) and "very-secret" not in str(err.value)


def test_entsoe_csv_keeps_dst_hours_negative_prices_and_unpublished_gaps():
    p = parse_entsoe_csv(ENTSOE_CSV)
    s = p.spot_per_kwh
    assert s.index.is_unique and s.index.is_monotonic_increasing
    # 2024-10-27: the repeated 02:00 hour becomes two distinct UTC hours
    assert pd.Timestamp("2024-10-27T00:00Z") in s.index and pd.Timestamp("2024-10-27T01:00Z") in s.index
    # 2024-03-31 has no 02:00 local hour: 23 hours that day
    day = s[(s.index >= "2024-03-30T23:00Z") & (s.index < "2024-03-31T22:00Z")]
    assert len(day) == 23
    assert s.isna().sum() > 0 and s.index[-1] >= pd.Timestamp("2024-12-31T22:00Z")  # "n/e" stays missing
    assert (s.dropna() < 0).any()


def test_entsoe_csv_bad_number_names_the_row():
    text = b'"MTU (CET/CEST)","Day-ahead Price [EUR/MWh]","Currency","BZN|SE4"\n' \
           b'"01.01.2024 00:00 - 01.01.2024 01:00","29.56","EUR"\n"01.01.2024 01:00 - 01.01.2024 02:00","abc","EUR"\n'
    with pytest.raises(SourceError, match="row 3"):
        parse_entsoe_csv(text)


# ----------------------------------------------------------------------------- Open-Meteo


def test_openmeteo_forecast_minutely15_labels_radiation_by_interval_start():
    seen: list[httpx.Request] = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, content=(FIX / "openmeteo_forecast_minutely15.json").read_bytes())

    client = OpenMeteoClient(latitude=55.38, longitude=13.16, http=_client(handler))
    w = client.forecast(days=3)
    assert set(w.columns) == {"temp_c", "ghi_wm2", "dni_wm2", "dhi_wm2", "cloud_cover_pct"}
    assert w.index.freq is not None or (w.index[1] - w.index[0]) == timedelta(minutes=15)
    assert w.index.tz is not None
    # radiation value stamped 00:15 covers 00:00-00:15 -> first row starts at 00:00
    assert w.index[0] == pd.Timestamp("2025-09-15T00:00Z") - timedelta(minutes=15)
    assert np.isnan(w["temp_c"]).sum() >= 1  # null stays missing
    night = w.loc[w.index.hour == 1, "ghi_wm2"]
    assert (night == 0).all()
    assert "minutely_15" in seen[0].url.params and seen[0].url.params["timezone"] == "GMT"


def test_openmeteo_archive_hourly_on_15_min_grid():
    client = OpenMeteoClient(latitude=55.38, longitude=13.16,
                             http=_client(lambda r: httpx.Response(200, content=(FIX / "openmeteo_archive_hourly.json").read_bytes())))
    w = client.archive(date(2025, 7, 1), date(2025, 7, 2))
    raw = __import__("json").loads((FIX / "openmeteo_archive_hourly.json").read_text())["hourly"]
    # the mean over 10:00-11:00 (stamped 11:00) holds for slots 10:00..10:45
    ghi_11 = raw["shortwave_radiation"][11]
    assert np.allclose(w.loc["2025-07-01T10:00Z":"2025-07-01T10:45Z", "ghi_wm2"], ghi_11)
    # temperature (instantaneous) at 10:30 lies between the 10:00 and 11:00 samples
    t10, t11 = raw["temperature_2m"][10], raw["temperature_2m"][11]
    assert min(t10, t11) <= w.loc["2025-07-01T10:30Z", "temp_c"] <= max(t10, t11)


def test_openmeteo_error_reason_is_reported():
    client = OpenMeteoClient(latitude=55.38, longitude=13.16,
                             http=_client(lambda r: httpx.Response(400, content=(FIX / "openmeteo_error.json").read_bytes())))
    with pytest.raises(SourceError, match="out of allowed range"):
        client.archive(date(1900, 1, 1), date(1900, 1, 2))
