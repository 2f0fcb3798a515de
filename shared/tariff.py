"""Tariff: from a spot price series and the site's tariff to per-slot import and export prices.

One function for every part that needs prices (forecaster, planner, simulator, oracle):
:func:`price_curve`. Prices are per kWh in the site currency (``tariff.currency``).

    import_price_per_kwh = (spot + grid fee + energy tax) * (1 + VAT)
    export_price_per_kwh = spot + export bonus - export fee

The grid fee follows the time-of-use schedule in the site's local time (first matching entry
wins, otherwise ``grid_fee_per_kwh``). Fixed prices override the formula; a disabled export
pays 0; ``price_source: data`` takes the recorded ``import_price``/``export_price`` as they are.
Both prices may be negative.
"""

from __future__ import annotations

from datetime import time

import numpy as np
import pandas as pd

from shared.config import SiteConfig, TariffConfig, TimeOfUseFee

PRICE_COLUMNS = ("spot_per_kwh", "import_price_per_kwh", "export_price_per_kwh")


class PriceError(ValueError):
    """Prices cannot be computed for some slots; the message names which and why."""


def _as_array(values: pd.Series | np.ndarray | float | None, index: pd.DatetimeIndex, what: str) -> np.ndarray | None:
    if values is None:
        return None
    if isinstance(values, pd.Series):
        if not values.index.equals(index):
            values = values.reindex(index)
        return values.to_numpy(dtype=float)
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0:
        return np.full(len(index), float(arr))
    if len(arr) != len(index):
        raise PriceError(f"{what}: {len(arr)} values for {len(index)} slots")
    return arr


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _fee_applies(entry: TimeOfUseFee, minute_of_day: np.ndarray, month: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    start, end = _minutes(entry.start), _minutes(entry.end)
    if end == 0:
        end = 24 * 60  # "until midnight"
    if start < end:
        in_window = (minute_of_day >= start) & (minute_of_day < end)
    else:  # window wraps past midnight, e.g. 22:00-06:00
        in_window = (minute_of_day >= start) | (minute_of_day < end)
    if entry.months is not None:
        in_window &= np.isin(month, entry.months)
    if entry.weekdays_only:
        in_window &= weekday < 5
    return in_window


def grid_fee_per_kwh(index: pd.DatetimeIndex, tariff: TariffConfig, tz) -> np.ndarray:
    """Grid (network) fee per slot, from the time-of-use schedule in local time."""
    local = index.tz_convert(tz)
    minute_of_day = np.asarray(local.hour * 60 + local.minute)
    month = np.asarray(local.month)
    weekday = np.asarray(local.day_of_week)
    fee = np.full(len(index), tariff.grid_fee_per_kwh, dtype=float)
    assigned = np.zeros(len(index), dtype=bool)
    for entry in tariff.grid_fee_schedule:
        hit = _fee_applies(entry, minute_of_day, month, weekday) & ~assigned
        fee[hit] = entry.fee_per_kwh
        assigned |= hit
    return fee


def _raise_missing(arr: np.ndarray, index: pd.DatetimeIndex, what: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = index[int(np.argmax(bad))]
        raise PriceError(f"{what}: missing for {int(bad.sum())} slot(s), first at {first.isoformat()}")


def price_curve(
    index: pd.DatetimeIndex,
    site: SiteConfig,
    spot: pd.Series | np.ndarray | None = None,
    import_price: pd.Series | np.ndarray | None = None,
    export_price: pd.Series | np.ndarray | None = None,
    allow_missing: bool = False,
) -> pd.DataFrame:
    """Per-slot ``spot_per_kwh``, ``import_price_per_kwh``, ``export_price_per_kwh`` on ``index``.

    ``spot`` (per kWh, excl. VAT and fees) is needed unless fixed prices or recorded prices
    (``price_source: data``) cover both sides. A slot whose price cannot be computed raises
    :class:`PriceError` naming the slot (or stays NaN with ``allow_missing``); nothing is filled in.
    """
    def _missing(arr: np.ndarray, index: pd.DatetimeIndex, what: str) -> None:
        if not allow_missing:
            _raise_missing(arr, index, what)

    tariff = site.tariff
    index = pd.DatetimeIndex(index)
    spot_arr = _as_array(spot, index, "spot price")
    imp_arr = _as_array(import_price, index, "import price")
    exp_arr = _as_array(export_price, index, "export price")

    if tariff.fixed_import_price_per_kwh is not None:
        import_per_kwh = np.full(len(index), tariff.fixed_import_price_per_kwh)
    elif tariff.price_source == "data":
        if imp_arr is None:
            raise PriceError("tariff.price_source is 'data' but the data has no import_price column")
        import_per_kwh = imp_arr
        _missing(import_per_kwh, index, "import_price (recorded)")
    else:
        if spot_arr is None:
            raise PriceError("no spot price given and tariff.fixed_import_price_per_kwh is not set")
        _missing(spot_arr, index, "spot price")
        fee = grid_fee_per_kwh(index, tariff, site.tz)
        import_per_kwh = (spot_arr + fee + tariff.energy_tax_per_kwh) * (1.0 + tariff.vat_frac)

    if not tariff.export_enabled:
        export_per_kwh = np.zeros(len(index))
    elif tariff.fixed_export_price_per_kwh is not None:
        export_per_kwh = np.full(len(index), tariff.fixed_export_price_per_kwh)
    elif tariff.price_source == "data" and exp_arr is not None:
        export_per_kwh = exp_arr
        _missing(export_per_kwh, index, "export_price (recorded)")
    else:
        if spot_arr is None:
            raise PriceError("no spot price to derive the export price; set tariff.fixed_export_price_per_kwh")
        _missing(spot_arr, index, "spot price")
        export_per_kwh = spot_arr + tariff.export_bonus_per_kwh - tariff.export_fee_per_kwh

    spot_out = spot_arr if spot_arr is not None else np.full(len(index), np.nan)
    frame = pd.DataFrame(
        {
            "spot_per_kwh": spot_out,
            "import_price_per_kwh": np.asarray(import_per_kwh, dtype=float),
            "export_price_per_kwh": np.asarray(export_per_kwh, dtype=float),
        },
        index=index,
    )
    frame.index.name = "slot_start"
    return frame


def price_curve_from_data(frame: pd.DataFrame, site: SiteConfig, allow_missing: bool = False) -> pd.DataFrame:
    """:func:`price_curve` over a recorded-data frame (columns spot_price/import_price/export_price)."""
    def col(name: str) -> pd.Series | None:
        return frame[name] if name in frame.columns else None

    return price_curve(frame.index, site, spot=col("spot_price"), import_price=col("import_price"),
                       export_price=col("export_price"), allow_missing=allow_missing)


def priced_slots(prices: pd.DataFrame) -> int:
    """How many leading slots have both prices: a plan's horizon ends at the last published price."""
    ok = np.isfinite(prices["import_price_per_kwh"].to_numpy()) & np.isfinite(prices["export_price_per_kwh"].to_numpy())
    return len(ok) if ok.all() else int(np.argmin(ok))
