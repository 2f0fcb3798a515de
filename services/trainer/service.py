"""Trainer service: scheduled and on-demand retraining of Aurora and Antares, the model registry.

- Schedule: every ``trainer.retrain_days`` (7 by default) after the last recorded run (or
  after start; ``trainer.train_on_start`` trains at once when nothing was ever recorded).
- ``cmd/trainer/retrain`` (args ``{"kinds": ["antares"], "from": "YYYY-MM-DD", "to": ...}``,
  all optional) and ``POST /admin/retrain`` (same body) start a job; ``GET /admin/runs`` lists
  the recorded runs. One job at a time, in the background; the service keeps answering.
- A job trains each kind (:mod:`shared.antares.training`), records the run in
  ``training_runs``, submits the model to the registry (approved only when better than the
  approved one on the same held-back days: never replaced by a worse one) and publishes
  ``trainer/run`` events (started, then finished / rejected / failed, with metrics).
- Data: ``trainer.data`` or ``forecaster.replay_data`` (a recorded file, offline and demo),
  else the database (live observations and prices). Antares replays are simulations: their
  rows carry the simulation system id and nothing is written to the live site's tables.
"""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from fastapi import HTTPException

from shared.contracts import CommandMsg, TrainerRunMsg
from shared.homeassistant import Entity, command_button
from shared.service import Service
from shared.slots import SLOT_HOURS, local_day_bounds

log = logging.getLogger("darkstar.trainer")


class TrainerService(Service):
    name: ClassVar[str] = "trainer"
    inputs: ClassVar[dict[str, float | None]] = {"observations": None}
    tick_s: ClassVar[float | None] = 300.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_run_at: datetime | None = None
        self.last_reports: list[dict[str, Any]] = []
        self.last_retention_day: date | None = None
        self._job: threading.Thread | None = None
        self._job_lock = threading.Lock()

    @property
    def model_registry(self):
        from shared.registry import ModelRegistry

        return ModelRegistry(self.store, self.site.site_id, self.site.trainer.model_dir)

    # ------------------------------------------------------------------ lifecycle
    def register_commands(self) -> None:
        self.register_command("retrain", self._cmd_retrain)
        self.register_command("reset_learning", self._cmd_reset_learning)

    def on_start(self) -> None:
        self._relativize_registry()
        self._timescale_policies()
        self.last_run_at = self._last_recorded_run()
        if self.last_run_at is None and not self.site.trainer.train_on_start:
            self.last_run_at = self.clock.now()  # first scheduled run one interval after start

    def _timescale_policies(self) -> None:
        """Compression policies on TimescaleDB hypertables (nothing on other databases)."""
        if self.store is None or not self.site.database.retention.enabled:
            return
        from shared.storage.retention import RetentionWindows, timescale_policies

        try:
            tables = timescale_policies(self.store.engine, RetentionWindows.from_config(self.site.database.retention))
        except Exception:  # compression is an optimisation, not a reason to stop
            log.exception("trainer: could not add TimescaleDB compression policies")
            return
        if tables:
            log.info("TimescaleDB compression policies on %s", ", ".join(tables))

    def _relativize_registry(self) -> None:
        """Older registry rows hold absolute paths: make them relative to the models directory."""
        if self.store is None:
            return
        from shared.registry import relativize_registry_paths

        try:
            changed = relativize_registry_paths(self.store, self.site.trainer.model_dir)
        except Exception:  # an old path only matters when that model is loaded
            log.exception("trainer: could not rewrite registry paths")
            return
        if changed:
            log.info("trainer: %d registry paths made relative to %s", changed, self.site.trainer.model_dir)

    def _last_recorded_run(self) -> datetime | None:
        if self.store is None:
            return None
        try:
            runs = self.model_registry.runs(limit=1)
        except Exception:
            log.exception("trainer: could not read recorded runs")
            return None
        if not runs:
            return None
        at = runs[0]["updated_at"]
        return at if at.tzinfo else at.replace(tzinfo=pd.Timestamp(0, tz="UTC").tzinfo)

    def tick(self) -> None:
        now = self.clock.now()
        due = self.last_run_at is None or now - self.last_run_at >= timedelta(days=self.site.trainer.retrain_days)
        if due:
            self.start_job(list(self.site.trainer.kinds))
        self.retention_if_due(now)

    def retention_if_due(self, now: datetime) -> bool:
        """The nightly retention run (database.retention): once per local day, after run_at_local."""
        cfg = self.site.database.retention
        local = now.astimezone(self.site.tz)
        if not cfg.enabled or self.store is None or local.time() < cfg.run_at_local:
            return False
        if self.last_retention_day == local.date():
            return False
        self.last_retention_day = local.date()
        from shared.storage.retention import RetentionWindows, apply_retention

        try:
            report = apply_retention(self.store.engine, self.site.site_id, now, RetentionWindows.from_config(cfg))
        except Exception as err:  # storage trouble must not stop training; retried tomorrow
            self.report_error("retention", f"retention run failed: {err}", None)
            return False
        log.info("%s", report.summary())
        return True

    # ------------------------------------------------------------------ jobs
    @property
    def busy(self) -> bool:
        return self._job is not None and self._job.is_alive()

    def start_job(self, kinds: list[str], date_from: date | None = None, date_to: date | None = None) -> bool:
        """Start a background training job; False when one is already running."""
        bad = [k for k in kinds if k not in ("aurora", "antares")]
        if bad or not kinds:
            raise ValueError(f"kinds must be a non-empty list of 'aurora'/'antares', got {kinds!r}")
        with self._job_lock:
            if self.busy:
                return False
            self.last_run_at = self.clock.now()
            self._job = threading.Thread(target=self.run_job, args=(kinds, date_from, date_to),
                                         name="trainer-job", daemon=True)
            self._job.start()
            return True

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until the running job (if any) is done; for tests and the CLI."""
        if self._job is not None:
            self._job.join(timeout_s)

    def run_job(self, kinds: list[str], date_from: date | None = None, date_to: date | None = None) -> list[dict[str, Any]]:
        """Train each kind now (in the caller's thread); returns the reports."""
        from shared.training import new_run_id

        out = []
        for kind in kinds:
            run_id = new_run_id(kind)
            self._publish_run(TrainerRunMsg(site_id=self.site.site_id, run_id=run_id, target=kind, status="started"))
            if self.store is not None:
                self.store.store_training_run(TrainerRunMsg(site_id=self.site.site_id, run_id=run_id, target=kind,
                                                            status="started"))
            try:
                report = self._train(kind, run_id, date_from, date_to)
            except Exception as err:
                log.exception("trainer: %s training failed", kind)
                why = f"{type(err).__name__}: {err}"
                failed = TrainerRunMsg(site_id=self.site.site_id, run_id=run_id, target=kind, status="failed",
                                       detail=why[:500])
                if self.store is not None:
                    self.store.store_training_run(failed)
                self._publish_run(failed)
                self.report_error(f"training {kind}", why, None)
                out.append({"kind": kind, "run_id": run_id, "status": "failed", "error": why})
                continue
            if self.store is not None:
                report.store(self.store)
            self._publish_run(report.message())
            doc = report.to_dict()
            doc.pop("per_day", None)
            out.append(doc)
            log.info("trainer: %s run %s %s (%s)", kind, run_id, report.status, (report.registry or {}).get("reason"))
        self.last_reports = out
        return out

    def _publish_run(self, msg: TrainerRunMsg) -> None:
        try:
            self.publish("trainer_run", msg)
        except Exception:
            log.exception("trainer: could not publish trainer/run")

    def _train(self, kind: str, run_id: str, date_from: date | None, date_to: date | None):
        from shared.antares.training import train_antares
        from shared.training import train_aurora

        cfg = self.site.trainer
        now = pd.Timestamp(self.clock.now())
        frame, weather = self.training_data(now)
        if frame.empty or frame["load_kw"].notna().sum() == 0:
            raise ValueError("no measured history to train on")
        local = frame.index.tz_convert(self.site.tz)
        today = now.tz_convert(self.site.tz).date()
        last_whole = (local[-1] - timedelta(minutes=15)).date()
        date_to = date_to or min(today - timedelta(days=1), last_whole)
        date_from = date_from or max((local[0] + timedelta(days=2)).date(), date_to - timedelta(days=cfg.history_days - 1))
        registry = self.model_registry if self.store is not None else None
        if kind == "antares":
            episodes = None
            if cfg.antares_episodes == "live":
                from shared.antares.live import live_episodes

                episodes = live_episodes(self.store, self.site, date_from, date_to)
            return train_antares(frame, self.site, date_from, date_to, model_dir=cfg.model_dir, seed=cfg.seed,
                                 validation_frac=cfg.validation_frac, registry=registry, run_id=run_id,
                                 cache_dir=Path(cfg.model_dir) / "episodes", episodes=episodes)
        return train_aurora(frame, self.site, date_from, date_to, model_dir=cfg.model_dir, weather=weather,
                            validation_days=cfg.aurora_validation_days, registry=registry, run_id=run_id)

    def training_data(self, now: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """(site-data frame before today, weather history or None): a recorded file or the database."""
        cfg = self.site.trainer
        path = cfg.data or self.site.forecaster.replay_data
        today_start, _ = local_day_bounds(now.tz_convert(self.site.tz).date(), self.site.tz)
        if path:
            from shared.forecast.evaluate import weather_from_forecast_columns
            from shared.sitedata import load_site_data

            frame = load_site_data(path).frame
            frame = frame.loc[frame.index < today_start]
            return frame, weather_from_forecast_columns(frame)
        if self.store is None:
            raise ValueError("no training data: set trainer.data (a recorded file) or run with a database")
        start = (today_start - timedelta(days=cfg.history_days + 2)).to_pydatetime()
        return frame_from_store(self.store, self.site.site_id, start, today_start.to_pydatetime())

    # ------------------------------------------------------------------ commands, routes, health
    def _cmd_retrain(self, msg: CommandMsg) -> dict[str, Any]:
        return self._retrain_request(dict(msg.args or {}))

    def _cmd_reset_learning(self, msg: CommandMsg) -> dict[str, Any]:
        """``{"scope": "today"|"all"}``: back up, then forget today's / all learning (shared.learning)."""
        from shared.learning import reset_learning

        if self.store is None:
            raise ValueError("reset_learning needs the database")
        scope = (msg.args or {}).get("scope", "today")
        with self._job_lock:  # not while a training job writes the runs and models being deleted
            if self.busy:
                raise ValueError("a training job is running; try again when it has finished")
            since, _ = local_day_bounds(pd.Timestamp(self.clock.now()).tz_convert(self.site.tz).date(), self.site.tz)
            model_dir = Path(self.site.trainer.model_dir)
            return reset_learning(self.store, self.site.database.url.get_secret_value(), self.site.site_id,
                                  model_dir, scope, since.to_pydatetime(), model_dir.parent / "backups")

    def _retrain_request(self, args: dict[str, Any]) -> dict[str, Any]:
        kinds = args.get("kinds") or list(self.site.trainer.kinds)
        if isinstance(kinds, str):
            kinds = [kinds]
        date_from = date.fromisoformat(args["from"]) if args.get("from") else None
        date_to = date.fromisoformat(args["to"]) if args.get("to") else None
        started = self.start_job(list(kinds), date_from, date_to)
        return {"started": started, "kinds": list(kinds),
                "reason": None if started else "a training job is already running"}

    def extra_routes(self, router: Any, admin: Any) -> None:
        @admin.post("/retrain")
        def retrain(body: dict[str, Any] | None = None) -> dict[str, Any]:
            try:
                return self._retrain_request(body or {})
            except ValueError as err:
                raise HTTPException(status_code=400, detail=str(err)) from err

        @admin.get("/runs")
        def runs(limit: int = 50, target: str | None = None) -> dict[str, Any]:
            if self.store is None:
                return {"running": self.busy, "runs": self.last_reports}
            rows = self.model_registry.runs(limit=limit, target=target)
            return {"running": self.busy, "runs": [
                {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()} for r in rows]}

    def ha_entities(self) -> list[Entity]:
        return [
            command_button(self.site.site_id, "retrain_models", "Retrain models", "trainer/retrain", "mdi:school"),
            Entity(component="sensor", object_id="last_training_run", name="Last training run",
                   state_topic="trainer/run", icon="mdi:history",
                   value_template="{{ value_json.target }} {{ value_json.status }}"),
        ]

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        ok, checks = super().readiness()
        checks["training"] = "running" if self.busy else "idle"
        checks["last_run_at"] = self.last_run_at.isoformat() if self.last_run_at else None
        return ok, checks


def frame_from_store(store: Any, site_id: str, start: datetime, end: datetime) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Live observations + the latest-issued price per slot as a site-data frame (load_kw, pv_kw,
    import_price, export_price, spot_price, soc_frac when the battery was read), and weather."""
    obs = store.observations_between(site_id, start, end)
    frame = pd.DataFrame(index=obs.index)
    frame["load_kw"] = obs["load_kwh"] / SLOT_HOURS
    frame["pv_kw"] = obs["pv_kwh"] / SLOT_HOURS
    if "soc_end_frac" in obs.columns:
        frame["soc_frac"] = obs["soc_end_frac"]
    prices = store.prices_between(site_id, start, end)
    if len(prices):
        prices = prices.sort_values("issued_at").groupby(level=0).last()
        frame = frame.join(prices[["import_price_per_kwh", "export_price_per_kwh", "spot_per_kwh"]].rename(columns={
            "import_price_per_kwh": "import_price", "export_price_per_kwh": "export_price",
            "spot_per_kwh": "spot_price"}), how="left")
    frame.index.name = "slot_start"
    weather = store.weather_between(site_id, start, end)
    cols = [c for c in ("temp_c", "ghi_wm2", "dni_wm2", "dhi_wm2", "cloud_cover_pct") if c in weather.columns]
    if len(weather) and cols:
        weather = weather.sort_values("issued_at").groupby(level=0).last()[cols]
    else:
        weather = None
    return frame, weather
