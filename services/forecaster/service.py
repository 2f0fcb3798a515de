"""Forecaster (Aurora) service: prices, weather and load/PV forecasts; the recorder of the bus.

- Prices: published (retained) at start and whenever the published curve grows (tomorrow's
  auction result), polling every ``forecaster.price_poll_minutes`` until it appears.
- Weather: published with each forecast when a source gives it.
- Forecasts: p10/p50/p90 of load and PV for 48 h every ``forecaster.forecast_every_minutes``;
  Aurora models trained on the history (in the background), replaced only by a better model
  on held-back data; until a model exists, a flagged baseline (mean of the last 7 days), or the
  cold-start prior before a day is measured. A trained model replaces the prior only once it
  beats it on the recent measured days (shared/forecast/coldstart.py); until then the prior
  serves, labelled, with both scores in the forecast's notes.
- Recorder: every contract message seen on the bus goes to the database (one writer), and
  each finished local day of observations gets a data-quality grade.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from services.forecaster.world import World, make_world
from shared.contracts import (
    CommandMsg,
    ContextMsg,
    ErrorEventMsg,
    ForecastMsg,
    ForecastSlot,
    Message,
    ObservationMsg,
    PlanMsg,
    PriceNowMsg,
    PriceSlot,
    PricesMsg,
    WeatherMsg,
    WeatherSlot,
)
from shared.homeassistant import Entity, command_button
from shared.pricesanity import PriceSanity
from shared.service import Service
from shared.slots import SLOT, floor_slot, local_day_bounds, local_day_slots

if TYPE_CHECKING:
    from shared.forecast.coldstart import ColdStartChoice
    from shared.forecast.models import ForecastModels

# The forecasting stack (LightGBM, pvlib and their scientific dependencies) is imported when
# first needed: an idle stack on a Raspberry Pi should not carry ~100 MB it does not use yet.

log = logging.getLogger("darkstar.forecaster")
# The recorder: which Store write keeps each kind of message.
RECORDED: dict[type, str] = {
    PricesMsg: "store_prices", WeatherMsg: "store_weather", ForecastMsg: "store_forecast",
    ObservationMsg: "store_observation", PlanMsg: "store_plan", ContextMsg: "store_context",
    ErrorEventMsg: "store_event",
}
HORIZON = timedelta(hours=48)
HELD_BACK_DAYS = 7
COLD_START_DAYS = 7  # a trained model replaces the prior once it beats it on these recent measured days


class ForecasterService(Service):
    name: ClassVar[str] = "forecaster"
    inputs: ClassVar[dict[str, float | None]] = {
        "telemetry": None,
        "observations": None,
        "prices": None,
        "weather": None,
        "forecast": None,
        "plan": None,
        "error": None,
    }
    tick_s: ClassVar[float | None] = 60.0

    def __init__(self, *args: Any, world: World | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._world = world
        self.models: ForecastModels | None = None
        self.last_prices_end: pd.Timestamp | None = None
        self.published_prices: PricesMsg | None = None
        self.price_sanity = PriceSanity()  # an outlying curve waits for a second fetch (shared/pricesanity.py)
        self.price_now_slot: pd.Timestamp | None = None
        self.last_price_poll: datetime | None = None
        self.last_forecast_at: datetime | None = None
        self.last_train_at: datetime | None = None
        self.graded_until: date | None = None
        self.last_error: str | None = None
        self.registry_model_id: str | None = None  # the approved registry model in use, if any
        self.cold_start: tuple[tuple[str, date], ColdStartChoice] | None = None  # (model id, day) -> choice
        self._training = threading.Lock()
        self._train_thread: threading.Thread | None = None

    @property
    def world(self) -> World:
        if self._world is None:
            self._world = make_world(self.site, self.store)
        return self._world

    # ------------------------------------------------------------------ lifecycle
    def register_commands(self) -> None:
        self.register_command("retrain", lambda msg: self._cmd_retrain(msg))
        self.register_command("refresh", lambda msg: self._cmd_refresh(msg))

    def on_start(self) -> None:
        self._load_saved_model()
        self._seed_price_sanity()
        threading.Thread(target=self._safe_tick, name="forecaster-first", daemon=True).start()

    def _seed_price_sanity(self) -> None:
        """The recent distribution from the stored prices: a restart must not wave the next curve through."""
        if self.store is None:
            return
        now = self.clock.now()
        try:
            stored = self.store.prices_between(self.site.site_id, now - timedelta(days=7), now)
        except Exception:  # noqa: BLE001 - without history every curve passes, as on a new site
            log.warning("price sanity: stored prices could not be read; the next curve is not compared", exc_info=True)
            return
        if not stored.empty and "import_price_per_kwh" in stored:
            self.price_sanity.accepted([float(p) for p in stored["import_price_per_kwh"].dropna()])

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:  # noqa: BLE001 - the periodic loop retries
            log.exception("forecaster start-up round failed")

    def handle(self, kind: str, parts: dict[str, str], msg: Message, retained: bool) -> None:
        self.record(msg)

    # ------------------------------------------------------------------ recorder
    def record(self, msg: Message) -> None:
        if self.writer is None:
            return
        method = RECORDED.get(type(msg))
        if method is not None:
            self.writer.write(method, msg)  # spooled on disk while the database is down

    # ------------------------------------------------------------------ periodic work
    def tick(self) -> None:
        now = self.clock.now()
        cfg = self.site.forecaster
        self._load_registry_model()
        poll = timedelta(minutes=cfg.price_poll_minutes)
        if self.last_price_poll is None or now - self.last_price_poll >= poll:
            self.refresh_prices(now)
        every = timedelta(minutes=cfg.forecast_every_minutes)
        if self.last_forecast_at is None or now - self.last_forecast_at >= every or \
                floor_slot(now) - floor_slot(self.last_forecast_at) >= every:
            self.publish_forecast(now)
        if self.last_train_at is None or now - self.last_train_at >= timedelta(hours=cfg.retrain_hours):
            self.start_training(now)
        self.grade_finished_days(now)
        self.publish_price_now(now)

    def publish_price_now(self, now: datetime) -> PriceNowMsg | None:
        """Republish the current and next slot's price once per slot (retained ``prices/now``)."""
        prices = self.published_prices
        slot = floor_slot(now)
        if prices is None or self.price_now_slot == slot:
            return None
        msg = PriceNowMsg.from_prices(prices, now)
        if msg is None:
            return None
        self.publish("price_now", msg)
        self.price_now_slot = slot
        return msg

    def refresh_prices(self, now: datetime) -> PricesMsg | None:
        self.last_price_poll = now
        try:
            curve = self.world.prices(now)
        except Exception as err:  # noqa: BLE001 - a market outage is reported, the last prices stay
            self._problem("prices", f"price source {self.world.source} failed: {err}")
            return None
        if curve.empty:
            self._problem("prices", f"no prices published yet for {pd.Timestamp(now).tz_convert(self.site.tz).date()}")
            return None
        end = curve.index[-1]
        if self.last_prices_end is not None and end <= self.last_prices_end:
            return None  # nothing new: tomorrow's auction result not out yet
        verdict = self.price_sanity.check([ts.isoformat() for ts in curve.index],
                                          [float(p) for p in curve["import_price_per_kwh"]])
        if not verdict.publish:
            self._problem("prices", verdict.why or "price curve held")
            return None
        if verdict.why:
            log.warning("%s", verdict.why)
        msg = PricesMsg(
            site_id=self.site.site_id, area=self.site.tariff.price_area, currency=self.site.tariff.currency,
            resolution_minutes=15, source=str(self.world.source)[:60], issued_at=now,
            slots=[PriceSlot(start=ts.to_pydatetime(),
                             spot_per_kwh=None if pd.isna(r.spot_per_kwh) else float(r.spot_per_kwh),
                             import_price_per_kwh=float(r.import_price_per_kwh),
                             export_price_per_kwh=float(r.export_price_per_kwh))
                   for ts, r in curve.iterrows()],
        )
        self.publish("prices", msg)
        self.price_sanity.accepted([slot.import_price_per_kwh for slot in msg.slots])
        self.published_prices, self.price_now_slot = msg, None
        self.last_prices_end = end
        log.info("prices published up to %s (%d slots)", end.tz_convert(self.site.tz), len(msg.slots))
        return msg

    def publish_forecast(self, now: datetime) -> ForecastMsg | None:
        self.last_forecast_at = now
        issue = floor_slot(now)
        try:
            history = self.world.history(now, 14)
            weather = self.world.weather(now)
        except Exception as err:  # noqa: BLE001
            self._problem("forecast", f"inputs unavailable: {err}")
            return None
        notes: list[str] = []
        fallback = False
        models = self.models
        frame: pd.DataFrame | None = None
        if models is not None:
            from shared.forecast.models import ForecastError

            choice = self._model_or_prior(now, models)
            if not choice.use_model:
                (frame, model_id), fallback = self._prior(issue), True
                notes.append(f"prior: {choice.why}")
            else:
                try:
                    frame = models.forecast(issue, HORIZON, weather, history)
                    fallback = bool(frame.attrs.get("fallback", False))
                    notes += list(frame.attrs.get("notes", []))
                    model_id = models.model_id
                except ForecastError as err:
                    notes.append(f"model forecast failed: {err}")
                    frame = None
        if frame is None:
            frame, model_id = self._baseline(history, issue), "baseline-mean7"
            fallback = True
            if frame is not None:
                notes.append("baseline (mean of the same slot over the last 7 days) until a model is trained")
            else:  # cold start: a plan in the first minute, on physics and a stated prior
                frame, model_id = self._prior(issue)
                notes.append(f"cold start prior: less than a day of measured history; PV = clear-sky physics x "
                             f"monthly cloudiness prior, load = {self.site.forecaster.load_prior_daily_kwh:g} kWh/day "
                             "with a standard shape (forecaster.load_prior_daily_kwh)")
        if weather is None:
            notes.append("no weather forecast available")
        else:
            self._publish_weather(weather, now)
        msg = ForecastMsg(
            site_id=self.site.site_id, issued_at=now, model_id=model_id, fallback=fallback,
            notes=[n[:200] for n in notes][:10],
            slots=[ForecastSlot(start=ts.to_pydatetime(), **{c: float(r[c]) for c in frame.columns})
                   for ts, r in frame.iterrows()],
        )
        self.publish("forecast", msg)
        return msg

    def _prior(self, issue: pd.Timestamp) -> tuple[pd.DataFrame, str]:
        from shared.forecast.prior import MODEL_ID, prior_forecast

        index = pd.date_range(issue, issue + HORIZON, freq=SLOT, inclusive="left", name="slot_start")
        return prior_forecast(self.site, index), MODEL_ID

    def _model_or_prior(self, now: datetime, models: ForecastModels) -> ColdStartChoice:
        """The cold-start rule (shared/forecast/coldstart.py), decided once a day per model and logged."""
        from shared.forecast.coldstart import choose_model_or_prior
        from shared.forecast.features import HISTORY_DAYS_NEEDED

        key = (models.model_id, pd.Timestamp(now).tz_convert(self.site.tz).date())
        if self.cold_start is None or self.cold_start[0] != key:
            days = COLD_START_DAYS + HISTORY_DAYS_NEEDED + 1  # each scored day needs the model's lag history
            choice = choose_model_or_prior(models, self.world.history(now, days), self.site, pd.Timestamp(now),
                                           weather=self.world.weather_history(now, days), days=COLD_START_DAYS)
            if self.cold_start is None or self.cold_start[1].use_model != choice.use_model:
                log.info("cold start: %s", choice.why)
            self.cold_start = (key, choice)
        return self.cold_start[1]

    def _baseline(self, history: pd.DataFrame, issue: pd.Timestamp) -> pd.DataFrame | None:
        if history["load_kw"].notna().sum() < 96:
            return None
        from shared.forecast.evaluate import baseline_rows

        rows = baseline_rows(history, self.site, issue, int(HORIZON / SLOT))
        out = pd.DataFrame(index=rows.index)
        for target in ("load", "pv"):
            p50 = rows[f"{target}_mean7_kw"].fillna(rows[f"{target}_yesterday_kw"])
            p10 = rows[f"{target}_mean7_p10_kw"].fillna(p50)
            p90 = rows[f"{target}_mean7_p90_kw"].fillna(p50)
            q = np.sort(np.clip(np.column_stack([p10, p50, p90]), 0.0, None), axis=1)
            if target == "pv":
                q[rows["daylight"].to_numpy() <= 0] = 0.0
            out[f"{target}_p10_kw"], out[f"{target}_p50_kw"], out[f"{target}_p90_kw"] = q[:, 0], q[:, 1], q[:, 2]
        out = out.dropna()
        return out if len(out) else None

    def _publish_weather(self, weather: pd.DataFrame, now: datetime) -> None:
        cols = [c for c in ("temp_c", "ghi_wm2", "dni_wm2", "dhi_wm2", "cloud_cover_pct") if c in weather.columns]
        w = weather[cols].dropna(how="all")
        if w.empty:
            return
        slots = []
        for ts, r in w.iterrows():
            values = {c: float(np.clip(r[c], 0 if c != "temp_c" else -90, 1500 if c != "cloud_cover_pct" else 100))
                      for c in cols if pd.notna(r[c])}
            slots.append(WeatherSlot(start=ts.to_pydatetime(), **values))
        self.publish("weather", WeatherMsg(site_id=self.site.site_id, issued_at=now, source=str(self.world.source)[:60],
                                           resolution_minutes=15, slots=slots))

    # ------------------------------------------------------------------ models
    def _load_saved_model(self) -> None:
        """The newest Aurora artifact this forecaster saved (same names as the trainer's), if any."""
        saved = sorted(Path(self.site.forecaster.model_dir).glob("aurora_v1_*.pkl"), key=lambda p: p.stat().st_mtime)
        if saved:
            from shared.forecast.models import ForecastModels

            try:
                self.models = ForecastModels.load(saved[-1])
                log.info("loaded forecast model %s", self.models.model_id)
            except Exception as err:  # noqa: BLE001 - a broken file means retraining, not a crash
                log.warning("could not load %s: %s; retraining", saved[-1], err)

    def _load_registry_model(self) -> None:
        """Use the newest approved Aurora model of the registry (trained by the trainer) without a restart."""
        if self.store is None or not hasattr(self.store, "latest_approved_model"):
            return
        try:
            rec = self.store.latest_approved_model("aurora", self.site.site_id)
            if rec is None or rec.model_id == self.registry_model_id:
                return
            from shared.forecast.models import ForecastModels  # only when there is a model to load
            from shared.registry import resolve_artifact

            # the registry's files live in the trainer's models directory (one volume shared by both)
            self.models = ForecastModels.load(resolve_artifact(self.site.trainer.model_dir, rec.artifact_path))
            self.registry_model_id = rec.model_id
            log.info("loaded approved registry model %s (%s)", rec.model_id, self.models.model_id)
        except Exception as err:  # noqa: BLE001 - a bad registry entry keeps the current model
            self._problem("model", f"could not load the approved Aurora model: {err}")

    def start_training(self, now: datetime) -> bool:
        """Train in the background (one job at a time); the current model serves meanwhile."""
        if self._train_thread is not None and self._train_thread.is_alive():
            return False
        self.last_train_at = now
        self._train_thread = threading.Thread(target=self.train, args=(now,), name="aurora-train", daemon=True)
        self._train_thread.start()
        return True

    def train(self, now: datetime) -> dict[str, Any]:
        """Retrain on the last ``history_days`` whole local days the one way Aurora is trained
        (:func:`shared.training.train_aurora`): the candidate replaces the model in use only if
        it forecasts the held-back days better."""
        with self._training:
            days = self.site.forecaster.history_days
            history = self.world.history(now, days)
            weather = self.world.weather_history(now, days)
            date_to = pd.Timestamp(now).tz_convert(self.site.tz).date() - timedelta(days=1)
            date_from = date_to - timedelta(days=days - 1)
            from shared.forecast.models import ForecastError
            from shared.training import train_aurora

            try:
                run = train_aurora(history, self.site, date_from, date_to, model_dir=self.site.forecaster.model_dir,
                                   validation_days=HELD_BACK_DAYS, weather=weather, current=self.models)
            except (ForecastError, ValueError) as err:
                report = {"trained": False, "why": str(err)}
                log.info("not training: %s", report["why"])
                return report
            report = {"trained": True, "candidate_score": run.metrics["pinball_loss"],
                      "current_score": run.metrics.get("current_pinball_loss"), "reason": run.registry["reason"],
                      "artifacts": run.artifacts}
            if run.model is not None:
                self.models = run.model
                report["chosen"] = run.model.model_id
                if self.mqtt.connected:
                    self.publish_forecast(self.clock.now())  # the better model is used at once
            log.info("training: %s", json.dumps(report, default=str))
            return report

    # ------------------------------------------------------------------ data quality
    def grade_finished_days(self, now: datetime) -> None:
        if self.store is None:
            return
        today = pd.Timestamp(now).tz_convert(self.site.tz).date()
        day = self.graded_until + timedelta(days=1) if self.graded_until else today - timedelta(days=1)
        while day < today:
            start, end = local_day_bounds(day, self.site.tz)
            obs = self.store.observations_between(self.site.site_id, start.to_pydatetime(), end.to_pydatetime())
            if obs is not None and len(obs):
                expected = len(local_day_slots(day, self.site.tz))
                complete = obs[["load_kwh", "pv_kwh"]].notna().all(axis=1)
                if "coverage_frac" in obs.columns:
                    complete &= obs["coverage_frac"].fillna(0) >= 0.95
                battery_ok = bool(obs.get("soc_end_frac", pd.Series(dtype=float)).notna().sum() >= int(complete.sum()))
                present = int(complete.sum())
                grade = "gaps" if present < expected else ("clean" if battery_ok else "battery_missing")
                self.store.store_data_quality(self.site.site_id, day, "observations", expected_slots=expected,
                                              present_slots=min(present, expected), details={"grade": grade})
            self.graded_until = day
            day += timedelta(days=1)

    # ------------------------------------------------------------------ commands, health, HA
    def _cmd_retrain(self, msg: CommandMsg) -> dict[str, Any]:
        started = self.start_training(self.clock.now())
        return {"started": started, "current_model": self.models.model_id if self.models else None}

    def _cmd_refresh(self, msg: CommandMsg) -> dict[str, Any]:
        now = self.clock.now()
        self.last_prices_end = None
        prices = self.refresh_prices(now)
        forecast = self.publish_forecast(now)
        return {"prices_id": prices.prices_id if prices else None,
                "forecast_id": forecast.forecast_id if forecast else None}

    def _problem(self, what: str, why: str) -> None:
        if why != self.last_error:  # report a lasting problem once, not every minute
            self.report_error(what, why, None)
        self.last_error = why

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        ok, checks = super().readiness()
        checks["model"] = self.models.model_id if self.models else "none yet (baseline forecasts)"
        checks["last_problem"] = self.last_error
        return ok, checks

    def ha_entities(self) -> list[Entity]:
        def context_switch(name: str, label: str) -> Entity:
            payload = {"schema": "darkstar.context/1", "site_id": self.site.site_id, "name": name,
                       "source": "homeassistant"}
            return Entity(
                component="switch", object_id=name, name=label,
                state_topic=f"context/{name}", command_topic=f"context/{name}",
                value_template="{{ 'ON' if value_json.value else 'OFF' }}",
                payload_on=json.dumps({**payload, "value": True}),
                payload_off=json.dumps({**payload, "value": False}),
                extra={"state_on": "ON", "state_off": "OFF", "retain": True, "qos": 1},
            )

        cur = self.site.tariff.currency
        energy = ("{%% set ns = namespace(e=0) %%}{%% for s in value_json.slots %%}"
                  "{%% if (as_timestamp(s.start) | timestamp_custom('%%Y-%%m-%%d')) == "
                  "((as_timestamp(now()) + %d) | timestamp_custom('%%Y-%%m-%%d')) %%}"
                  "{%% set ns.e = ns.e + s.%s_p50_kw * 0.25 %%}{%% endif %%}{%% endfor %%}{{ ns.e | round(1) }}")
        # Own retained topic republished every slot; unit <currency>/kWh so HA's energy dashboard takes it.
        # (no device_class: "monetary" allows a bare currency only, not a price per kWh)
        price = {"state_topic": "prices/now", "unit": f"{cur}/kWh", "state_class": "measurement"}
        return [
            Entity(component="sensor", object_id="import_price_now", name="Import price now", icon="mdi:cash",
                   value_template="{{ value_json.import_price_per_kwh }}", **price),
            Entity(component="sensor", object_id="export_price_now", name="Export price now", icon="mdi:cash-plus",
                   value_template="{{ value_json.export_price_per_kwh }}", **price),
            Entity(component="sensor", object_id="import_price_next_slot", name="Import price next slot",
                   icon="mdi:cash-clock", value_template="{{ value_json.next_import_price_per_kwh }}", **price),
            Entity(component="sensor", object_id="cheapest_window_today", name="Cheapest 3 h today",
                   state_topic="prices", icon="mdi:clock-check",
                   value_template=(
                       "{% set today = now().strftime('%Y-%m-%d') %}{% set ns = namespace(best=none, v=999) %}"
                       "{% set xs = value_json.slots | selectattr('start', 'search', today) | list %}"
                       "{% for i in range(0, (xs | length) - 11) %}"
                       "{% set v = (xs[i:i+12] | map(attribute='import_price_per_kwh') | sum) %}"
                       "{% if v < ns.v %}{% set ns.v = v %}{% set ns.best = xs[i].start %}{% endif %}{% endfor %}"
                       "{{ as_timestamp(ns.best) | timestamp_custom('%H:%M') if ns.best else 'unknown' }}")),
            Entity(component="sensor", object_id="load_forecast_today", name="Load forecast today",
                   state_topic="forecast", value_template=energy % (0, "load"), unit="kWh", device_class="energy"),
            Entity(component="sensor", object_id="load_forecast_tomorrow", name="Load forecast tomorrow",
                   state_topic="forecast", value_template=energy % (86400, "load"), unit="kWh", device_class="energy"),
            Entity(component="sensor", object_id="pv_forecast_today", name="PV forecast today",
                   state_topic="forecast", value_template=energy % (0, "pv"), unit="kWh", device_class="energy"),
            Entity(component="sensor", object_id="pv_forecast_tomorrow", name="PV forecast tomorrow",
                   state_topic="forecast", value_template=energy % (86400, "pv"), unit="kWh", device_class="energy"),
            command_button(self.site.site_id, "retrain", "Retrain forecasts", "forecaster/retrain", "mdi:school"),
            context_switch("vacation", "Vacation mode"),
            context_switch("away", "Away"),
        ]
