"""Episodes: the simulator replays days with the MPC and records, per slot, what it saw and did.

Each local day is one episode of :class:`shared.environment.AntaresMPCEnv` following the
planner (``step(None)``); the SoC is carried from one day to the next as on a real site. Per
slot we keep the decision features (:mod:`shared.antares.features`, knowable at the slot start
only) and the planner's decision for that slot (after any replan the drift rule made):

- ``charge_kw`` / ``discharge_kw``: the planned battery setpoint split by sign;
- ``export_kw``: the export the plan expects in the slot (its forecast balance, capped at the
  export limit): the export decision, even though the grid takes whatever is left in reality.

Only days graded ``clean`` are used; ``battery_missing`` days (load/PV/prices complete,
battery readings not) are kept with ``battery_weight = 0`` so they teach the export target
only. Rows made by replays carry ``system_id = SIM_SYSTEM_ID``; rows from the live planner's
own runs carry ``"live"``; a training run never mixes them (:func:`check_one_system`).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from shared.antares.features import FEATURES, DayInputs, decision_features
from shared.config import SiteConfig
from shared.progress import Progress
from shared.slots import local_day_slots

SIM_SYSTEM_ID = "sim-antares"
LIVE_SYSTEM_ID = "live"
TARGETS: tuple[str, ...] = ("charge_kw", "discharge_kw", "export_kw")
BATTERY_TARGETS: tuple[str, ...] = ("charge_kw", "discharge_kw")


@dataclass
class EpisodeSet:
    """Episode rows (index ``slot_start``; columns ``day``, FEATURES, TARGETS, ``battery_weight``,
    ``cost`` (the slot's realized money under the MPC), ``soc_start_kwh``, ``system_id``) and one
    summary row per day (``grade``, ``mpc_cost``, ``soc_start_kwh``, ``soc_end_kwh``, ``used``)."""

    rows: pd.DataFrame
    days: pd.DataFrame
    forecast: str
    notes: list[str] = field(default_factory=list)

    @classmethod
    def assemble(cls, chunks: list[pd.DataFrame], summary: list[dict[str, Any]], forecast: str, notes: list[str],
                 *, skipped_note: str, empty_error: str) -> EpisodeSet:
        """The set from per-day row chunks and summary rows; days not ``used`` are counted in a note."""
        skipped = sum(1 for s in summary if not s["used"])
        if skipped:
            notes.append(f"{skipped} day(s) {skipped_note}")
        if not chunks:
            raise ValueError(empty_error)
        rows = pd.concat(chunks)
        rows.index.name = "slot_start"
        return cls(rows=rows, days=pd.DataFrame(summary).set_index("day"), forecast=forecast, notes=notes)

    @property
    def version(self) -> str:
        """Content hash of the rows: the dataset version recorded with a training run."""
        h = hashlib.sha256(pd.util.hash_pandas_object(self.rows[list(FEATURES) + list(TARGETS)], index=True)
                           .to_numpy().tobytes())
        h.update(self.forecast.encode())
        return h.hexdigest()[:12]

    @property
    def used_days(self) -> list[date]:
        return [d for d, used in self.days["used"].items() if used]


def grade_frame_days(frame: pd.DataFrame, site: SiteConfig, days: list[date]) -> dict[date, str]:
    """``clean`` / ``gaps`` / ``battery_missing`` per local day of a recorded-data frame.

    A day is clean when load, PV and the import price are present in every slot (export prices
    may come from the tariff). Battery readings (``soc_frac`` or ``battery_kw`` columns) are
    only graded when the data has them.
    """
    price_cols = [c for c in ("import_price", "spot_price") if c in frame.columns]
    battery_cols = [c for c in ("soc_frac", "battery_kw") if c in frame.columns]
    out: dict[date, str] = {}
    for d in days:
        window = frame.reindex(local_day_slots(d, site.tz))
        ok = window[["load_kw", "pv_kw"]].notna().all(axis=1)
        if price_cols:
            ok &= window[price_cols].notna().any(axis=1)
        if not bool(ok.all()):
            out[d] = "gaps"
        elif battery_cols and not bool(window[battery_cols].notna().all(axis=1).all()):
            out[d] = "battery_missing"
        else:
            out[d] = "clean"
    return out


def replay_code_version() -> str:
    """Hash of the code that makes an episode (planner, simulator, battery, cost, environment,
    features): a new planner version replays the days again instead of reusing old decisions."""
    from shared import battery, cost, environment, optimize, simulator
    from shared.antares import features

    h = hashlib.sha256()
    files = [Path(m.__file__) for m in (features, battery, cost, environment, simulator)] + [Path(__file__)]
    files += sorted(Path(optimize.__file__).parent.glob("*.py"))
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


class EpisodeCache:
    """Replayed days on disk, so a weekly retraining replays only the new days.

    A day's episode depends on the site, the forecast kind, the SoC at its start, the
    recorded data of the day and the 8 days before (the naive forecast looks back a week)
    and the code that replays it (:func:`replay_code_version`); all of that is in the key, so a changed input means a new replay, never a stale row.
    Files are pickles written by this process's user: a local cache, not an exchange format.
    """

    def __init__(self, directory: str | Path, site: SiteConfig, forecast: str) -> None:
        conf = site.model_dump_json(include={"location", "grid", "tariff", "battery", "pv", "planner"})
        key = f"{conf}|{forecast}|{replay_code_version()}"
        self.directory = Path(directory) / hashlib.sha256(key.encode()).hexdigest()[:12]
        self.site = site

    def key(self, frame: pd.DataFrame, day: date, soc_kwh: float) -> str:
        index = local_day_slots(day, self.site.tz)
        window = frame.loc[(frame.index >= index[0] - timedelta(days=8)) & (frame.index <= index[-1])]
        h = hashlib.sha256(pd.util.hash_pandas_object(window, index=True).to_numpy().tobytes())
        h.update(f"{soc_kwh:.9f}".encode())
        return h.hexdigest()[:16]

    def get(self, day: date, key: str) -> tuple[pd.DataFrame, dict[str, Any]] | None:
        path = self.directory / f"{day.isoformat()}_{key}.pkl"
        if not path.exists():
            return None
        try:
            with path.open("rb") as fh:
                return pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError):
            return None  # a torn write: replay the day again

    def put(self, day: date, key: str, rows: pd.DataFrame, summary: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{day.isoformat()}_{key}.tmp"
        with tmp.open("wb") as fh:
            pickle.dump((rows, summary), fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(self.directory / f"{day.isoformat()}_{key}.pkl")


def record_episodes(
    frame: pd.DataFrame,
    site: SiteConfig,
    date_from: date,
    date_to: date,
    *,
    forecast: Literal["naive", "perfect"] = "naive",
    soc_kwh: float | None = None,
    grades: dict[date, str] | None = None,
    system_id: str = SIM_SYSTEM_ID,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> EpisodeSet:
    """Replay ``date_from``..``date_to`` (inclusive local days) with the MPC; see the module doc."""
    from shared.environment import AntaresMPCEnv

    if date_to < date_from:
        raise ValueError(f"--to {date_to} is before --from {date_from}")
    days = [date_from + timedelta(days=k) for k in range((date_to - date_from).days + 1)]
    grades = grades or grade_frame_days(frame, site, days)
    env = AntaresMPCEnv(site, frame, day=days[0], forecast=forecast, soc_kwh=soc_kwh)
    b = env.site.battery
    export_cap = env.site.grid.max_export_kw if env.site.tariff.export_enabled else 0.0
    soc = env.soc_start_kwh
    cache = EpisodeCache(cache_dir, site, forecast) if cache_dir is not None else None
    cached_days = 0
    chunks: list[pd.DataFrame] = []
    summary = []
    notes: list[str] = []
    for k, d in enumerate(days):
        grade = grades.get(d, "gaps")
        if grade == "gaps":
            summary.append({"day": d, "grade": grade, "mpc_cost": np.nan, "soc_start_kwh": soc,
                            "soc_end_kwh": soc, "used": False})
            if progress:
                progress(k + 1, len(days), d.isoformat())
            continue
        soc_start = soc
        key = cache.key(frame, d, soc) if cache is not None else ""
        hit = cache.get(d, key) if cache is not None else None
        if hit is not None:
            rows, day_summary = hit
            rows = rows.assign(system_id=system_id,
                               battery_weight=0.0 if grade == "battery_missing" else 1.0)
            chunks.append(rows)
            summary.append({**day_summary, "grade": grade})
            soc = day_summary["soc_end_kwh"]
            cached_days += 1
            if progress:
                progress(k + 1, len(days), f"{d.isoformat()} (cached)")
            continue
        env.reset(options={"day": d, "soc_kwh": soc})
        n = len(env.index)
        day_in = DayInputs.build(env.index, env.site.tz, env.prices["import_price_per_kwh"],
                                 env.prices["export_price_per_kwh"], env.load_fc, env.pv_fc)
        feats = np.zeros((n, len(FEATURES)))
        targets = np.zeros((n, len(TARGETS)))
        costs = np.zeros(n)
        socs = np.zeros(n)
        for t in range(n):
            socs[t] = soc
            feats[t] = decision_features(day_in, t, soc, env.load_kw[t - 1] if t else 0.0,
                                         env.pv_kw[t - 1] if t else 0.0, b)
            _, reward, _, _, info = env.step(None)
            sp = env.setpoint_kw[t]  # read after the step: a drift replan may have changed it
            planned_net = env.load_fc[t] + sp - (env.pv_fc[t] - env.curtail_kw[t])
            targets[t] = (max(sp, 0.0), max(-sp, 0.0), min(max(-planned_net, 0.0), export_cap))
            costs[t] = -reward
            soc = info["soc_kwh"]
        rows = pd.DataFrame(feats, index=env.index, columns=list(FEATURES))
        rows[list(TARGETS)] = targets
        rows.insert(0, "day", d)
        rows["battery_weight"] = 0.0 if grade == "battery_missing" else 1.0
        rows["cost"] = costs
        rows["soc_start_kwh"] = socs
        rows["system_id"] = system_id
        chunks.append(rows)
        summary.append({"day": d, "grade": grade, "mpc_cost": float(costs.sum()), "soc_start_kwh": soc_start,
                        "soc_end_kwh": soc, "used": True})
        if cache is not None:
            cache.put(d, key, rows, summary[-1])
        if progress:
            progress(k + 1, len(days), d.isoformat())
    if cached_days:
        notes.append(f"{cached_days} day(s) taken from the episode cache")
    return EpisodeSet.assemble(chunks, summary, forecast, notes, skipped_note="with gaps in load/PV/prices skipped",
                               empty_error=f"no usable (clean) day between {date_from} and {date_to}")


def check_one_system(rows: pd.DataFrame) -> str:
    """The single system id of ``rows``; simulated and live records never train one model together."""
    systems = sorted(set(rows["system_id"]))
    if len(systems) != 1:
        raise ValueError(f"episode rows mix systems {systems}: train on simulated or live records, not both")
    return systems[0]


def time_split(days: list[date], validation_frac: float = 0.2, min_validation_days: int = 1) -> tuple[list[date], list[date]]:
    """Time-based split: the last ``validation_frac`` of the (sorted) days validate, the rest train."""
    days = sorted(days)
    if len(days) < 2:
        raise ValueError(f"need at least 2 usable days to split into training and validation, got {len(days)}")
    n_val = min(len(days) - 1, max(min_validation_days, round(len(days) * validation_frac)))
    return days[:-n_val], days[-n_val:]
