"""Loader for recorded site data (DESIGN §7): one row per slot, validated and put on the 15-min grid.

What the loader changes is reported, never silent: values it fixed (tiny negative PV from
meter noise set to 0, duplicate rows dropped, unsorted rows sorted) and values it refused
(set to missing, never invented). Gaps stay gaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shared.slots import SLOT, SLOT_MINUTES, UTC, expand_to_slots, infer_resolution

REQUIRED_COLUMNS = ("load_kw", "pv_kw")
# column -> (lower bound, upper bound) of plausible values; outside is refused
OPTIONAL_COLUMNS: dict[str, tuple[float, float]] = {
    "spot_price": (-10.0, 50.0),
    "import_price": (-10.0, 50.0),
    "export_price": (-10.0, 50.0),
    "temp_c": (-60.0, 60.0),
    "ghi_wm2": (0.0, 1500.0),
    "dni_wm2": (0.0, 1500.0),
    "dhi_wm2": (0.0, 1500.0),
    "cloud_cover_pct": (0.0, 100.0),
    "dhw_kwh": (0.0, 1000.0),
}
POWER_LIMITS_KW = (0.0, 1000.0)
PV_NOISE_KW = 0.05  # meters report small negative PV at night; below this it is noise, not data
ENERGY_COLUMNS = {"dhw_kwh"}


class SiteDataError(ValueError):
    """The file cannot be used at all (missing file, no timestamp, required column missing...)."""


@dataclass
class DataReport:
    path: str
    rows_read: int = 0
    source_resolution_minutes: int = SLOT_MINUTES
    slots: int = 0
    first_slot: pd.Timestamp | None = None
    last_slot: pd.Timestamp | None = None
    fixed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    missing_slots: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{self.path}: {self.rows_read} rows at {self.source_resolution_minutes} min -> {self.slots} slots"
            f" ({self.first_slot} .. {self.last_slot})"
        ]
        parts += [f"  fixed: {m}" for m in self.fixed]
        parts += [f"  refused: {m}" for m in self.refused]
        gaps = {k: v for k, v in self.missing_slots.items() if v}
        if gaps:
            parts.append("  missing slots: " + ", ".join(f"{k}={v}" for k, v in gaps.items()))
        if self.ignored_columns:
            parts.append("  ignored columns: " + ", ".join(self.ignored_columns))
        return "\n".join(parts)


@dataclass
class SiteData:
    """Recorded data on the 15-min UTC grid; index ``slot_start``; power columns in kW (slot mean)."""

    frame: pd.DataFrame
    report: DataReport

    def between(self, start: pd.Timestamp | str, end: pd.Timestamp | str) -> pd.DataFrame:
        return self.frame.loc[(self.frame.index >= pd.Timestamp(start)) & (self.frame.index < pd.Timestamp(end))]


def _parse_timestamps(raw: pd.Series, path: str) -> pd.DatetimeIndex:
    text = raw.astype(str)
    has_offset = text.str.contains(r"(?:[+-]\d{2}:?\d{2}|Z)$", regex=True)
    if not bool(has_offset.all()):
        bad = int((~has_offset).idxmax())
        raise SiteDataError(
            f"{path}: row {bad + 2}: timestamp {text.iloc[bad]!r} has no UTC offset (DESIGN §7 needs e.g. +01:00)"
        )
    try:
        return pd.DatetimeIndex(pd.to_datetime(text, utc=True, format="ISO8601"))
    except (ValueError, TypeError) as err:
        raise SiteDataError(f"{path}: column 'timestamp' is not ISO 8601: {err}") from None


def load_site_data(path: str | Path) -> SiteData:
    """Read a site CSV (optionally .gz), validate it and expand it to 15-min slots."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise SiteDataError(f"site data file not found: {path}")
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as err:
        raise SiteDataError(f"{name}: not a readable CSV: {err}") from None
    report = DataReport(path=name, rows_read=len(raw))
    if "timestamp" not in raw.columns:
        raise SiteDataError(f"{name}: no 'timestamp' column (columns: {', '.join(map(str, raw.columns))})")
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise SiteDataError(f"{name}: required column(s) missing: {', '.join(missing)}")
    if raw.empty:
        raise SiteDataError(f"{name}: no data rows")

    index = _parse_timestamps(raw["timestamp"], name)
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    keep = [c for c in raw.columns if c in known or c.endswith("_fc24h")]
    report.ignored_columns = [c for c in raw.columns if c not in keep and c != "timestamp"]
    frame = raw[keep].apply(pd.to_numeric, errors="coerce")
    for col in keep:
        bad = frame[col].isna() & raw[col].notna()
        if bad.any():
            report.refused.append(f"{col}: {int(bad.sum())} non-numeric value(s), first at row {int(bad.idxmax()) + 2}")
    frame.index = index
    frame.index.name = "slot_start"

    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index()
        report.fixed.append("rows were not in time order: sorted")
    dup = frame.index.duplicated(keep="first")
    if dup.any():
        report.fixed.append(f"{int(dup.sum())} duplicate timestamp(s): kept the first row of each")
        frame = frame[~dup]
    off_grid = (frame.index.minute % SLOT_MINUTES != 0) | (frame.index.second != 0)
    if off_grid.any():
        report.refused.append(f"{int(off_grid.sum())} row(s) not aligned to the {SLOT_MINUTES}-min grid: dropped")
        frame = frame[~off_grid]

    # plausibility
    pv = frame["pv_kw"]
    noise = (pv < 0) & (pv >= -PV_NOISE_KW)
    if noise.any():
        frame.loc[noise, "pv_kw"] = 0.0
        report.fixed.append(f"pv_kw: {int(noise.sum())} small negative value(s) (meter noise) set to 0")
    for col in REQUIRED_COLUMNS:
        lo, hi = POWER_LIMITS_KW
        bad = (frame[col] < lo) | (frame[col] > hi)
        if bad.any():
            frame.loc[bad, col] = np.nan
            report.refused.append(f"{col}: {int(bad.sum())} value(s) outside {lo}..{hi} kW set to missing")
    for col, (lo, hi) in OPTIONAL_COLUMNS.items():
        if col in frame.columns:
            bad = (frame[col] < lo) | (frame[col] > hi)
            if bad.any():
                frame.loc[bad, col] = np.nan
                report.refused.append(f"{col}: {int(bad.sum())} value(s) outside {lo}..{hi} set to missing")

    step = infer_resolution(frame.index)
    if step % SLOT != pd.Timedelta(0) or step < SLOT:
        raise SiteDataError(f"{name}: resolution {step} is not a whole multiple of {SLOT_MINUTES} minutes")
    report.source_resolution_minutes = int(step / pd.Timedelta(minutes=1))
    # A regular grid first, so a gap in the file becomes missing slots rather than a stretched value.
    full = pd.date_range(frame.index[0], frame.index[-1], freq=step, tz=UTC, name="slot_start")
    extra = frame.index.difference(full)
    if len(extra):
        report.refused.append(f"{len(extra)} row(s) off the file's {step} grid: dropped")
    frame = frame.reindex(full)
    if step > SLOT:
        frame = pd.DataFrame(
            {c: expand_to_slots(frame[c], "energy" if c in ENERGY_COLUMNS else "power") for c in frame.columns}
        )
    frame.index.name = "slot_start"
    report.slots = len(frame)
    report.first_slot = frame.index[0]
    report.last_slot = frame.index[-1]
    report.missing_slots = {c: int(frame[c].isna().sum()) for c in frame.columns}
    return SiteData(frame=frame.astype(float), report=report)
