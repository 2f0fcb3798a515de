"""``darkstar import ha|csv``: history into the observations table, so Aurora can train on day one.

``darkstar import ha --site SITE.yaml --from 2025-10-01 [--to 2025-10-30]`` reads the site's
Home Assistant entities (``homeassistant:`` block) over the WebSocket API: recorder state history
and hourly long-term statistics, see :mod:`shared.ha.history`. ``darkstar import csv --site
SITE.yaml --data FILE.csv`` takes a recorded site CSV (DESIGN §7: load_kw, pv_kw per slot).
Both upsert, so importing a range twice changes nothing; ``--json`` prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from services.batch_cli import add_output_arguments, add_range_arguments, batch_errors, progress_bar, report_error
from shared.config import SiteConfig, load_site_config
from shared.contracts import ObservationMsg
from shared.slots import local_day_bounds

OBS_FIELDS = ("load_kwh", "pv_kwh", "import_kwh", "export_kwh", "charge_kwh", "discharge_kwh", "water_kwh", "ev_kwh")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    ha = sub.add_parser("ha", help="recorder history and long-term statistics from Home Assistant")
    ha.add_argument("--site", type=Path, required=True, help="site YAML file with a homeassistant: block")
    add_range_arguments(ha, required=False, default_to="yesterday")
    add_output_arguments(ha)
    csv = sub.add_parser("csv", help="a recorded site CSV (timestamp, load_kw, pv_kw, ...)")
    csv.add_argument("--site", type=Path, required=True, help="site YAML file")
    csv.add_argument("--data", type=Path, required=True, help="CSV (.gz) with timestamp, load_kw, pv_kw")
    add_range_arguments(csv, required=False)
    add_output_arguments(csv)


def observations_from_frame(frame: pd.DataFrame, site_id: str) -> list[ObservationMsg]:
    """One message per slot that has at least one measured energy (NaN stays None: never guessed)."""
    cols = [c for c in OBS_FIELDS if c in frame.columns]
    out = []
    for ts, row in frame.iterrows():
        values = {c: float(max(row[c], 0.0)) for c in cols if pd.notna(row[c])}
        soc = row.get("soc_end_frac") if "soc_end_frac" in frame.columns else None
        if not values:
            continue
        out.append(ObservationMsg(site_id=site_id, slot_start=ts.to_pydatetime(),
                                  soc_end_frac=float(np.clip(soc, 0, 1)) if soc is not None and pd.notna(soc) else None,
                                  **values))
    return out


def store_observations(site: SiteConfig, msgs: list[ObservationMsg], batch: int = 2000) -> int:
    from shared.runtime import open_store

    store = open_store(site)
    try:
        return sum(store.store_observations(msgs[i:i + batch]) for i in range(0, len(msgs), batch))
    finally:
        store.close()


def _range(args: argparse.Namespace, site: SiteConfig) -> tuple[pd.Timestamp, pd.Timestamp]:
    today = pd.Timestamp.now(tz=site.tz).date()
    first = pd.Timestamp(args.date_from).date() if args.date_from else today - timedelta(days=30)
    last = pd.Timestamp(args.date_to).date() if args.date_to else today - timedelta(days=1)
    if last < first:
        raise ValueError(f"--to {last} is before --from {first} (--to is the last day, inclusive)")
    start, _ = local_day_bounds(first, site.tz)
    _, end = local_day_bounds(last, site.tz)
    return start, min(end, pd.Timestamp.now(tz="UTC").floor("15min"))


def import_ha(site: SiteConfig, start: pd.Timestamp, end: pd.Timestamp, progress: Any = None) -> pd.DataFrame:
    from shared.ha.client import HAWebSocket
    from shared.ha.history import fetch_observations

    ha = site.homeassistant
    if ha is None:
        raise ValueError("the site has no homeassistant: block (url, token, entities)")

    async def run() -> pd.DataFrame:
        client = await HAWebSocket(ha.url, ha.token_value(), timeout_s=30).connect()
        try:
            return await fetch_observations(client, ha, start.to_pydatetime(), end.to_pydatetime(), progress)
        finally:
            await client.close()

    return asyncio.run(run())


def import_csv(site: SiteConfig, path: Path, start: pd.Timestamp | None, end: pd.Timestamp | None) -> pd.DataFrame:
    from shared.sitedata import load_site_data

    frame = load_site_data(path).frame
    if start is not None:
        frame = frame.loc[(frame.index >= start) & (frame.index < end)]
    out = pd.DataFrame(index=frame.index)
    for name in ("load", "pv"):
        if f"{name}_kw" in frame.columns:
            out[f"{name}_kwh"] = frame[f"{name}_kw"] * 0.25  # mean kW over a 15-min slot
    return out


def run(args: argparse.Namespace) -> int:
    try:
        site = load_site_config(args.site)
        started = time.perf_counter()
        progress = progress_bar(f"import {args.source}", getattr(args, "quiet", False) or args.json)
        if args.source == "ha":
            start, end = _range(args, site)
            frame = import_ha(site, start, end, progress)
        else:
            start = end = None
            if args.date_from or args.date_to:
                start, end = _range(args, site)
            frame = import_csv(site, args.data, start, end)
        fetched_s = time.perf_counter() - started
        msgs = observations_from_frame(frame, site.site_id)
        rows = store_observations(site, msgs)
    except batch_errors() as err:
        return report_error("import", err)
    except RuntimeError as err:  # HA unreachable or refused the token (HAError)
        return report_error("import", err)
    elapsed = time.perf_counter() - started
    filled = {c: int(frame[c].notna().sum()) for c in OBS_FIELDS if c in frame.columns}
    result = {"source": args.source, "site_id": site.site_id, "rows": rows,
              "first_slot": msgs[0].slot_start.isoformat() if msgs else None,
              "last_slot": msgs[-1].slot_start.isoformat() if msgs else None,
              "slots_with_value": filled, "fetch_s": round(fetched_s, 2), "elapsed_s": round(elapsed, 2),
              "rows_per_s": round(rows / elapsed, 1) if elapsed > 0 else None}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"imported {rows} slots ({result['first_slot']} .. {result['last_slot']}) in {elapsed:.1f} s "
              f"({result['rows_per_s']} rows/s); values per field: {filled}", file=sys.stderr)
    return 0 if rows else 1
