"""The service runtime: one object per service, the same in the embedded stack and in a container.

A service subscribes to its inputs, validates every message against its contract (a bad one
becomes an ``events/error`` message and the service keeps running), remembers context,
tracks input freshness, runs periodic work, declares its Home Assistant entities, and serves
``/healthz``, ``/readyz``, ``/metrics`` and token-guarded ``/admin`` routes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from shared.auth import AuthError, Principal, principal_from_token, require
from shared.clock import WALL_CLOCK, Clock
from shared.config import SiteConfig
from shared.contracts import (
    TOPICS,
    CommandMsg,
    CommandResultMsg,
    ContextMsg,
    ContractError,
    ErrorEventMsg,
    Message,
    decode_for_topic,
    kind_of_topic,
    payload_excerpt,
)
from shared.errorevents import ErrorThrottle
from shared.storage.spool import BufferedWriter
from shared.homeassistant import Entity, discovery_messages, status_entity
from shared.mqtt import MqttClient
from shared.plausibility import SiteLimits, implausible
from shared.version import darkstar_version

log = logging.getLogger("darkstar.service")

CommandHandler = Callable[[CommandMsg], dict[str, Any]]
SWAGGER_DIR = Path(__file__).parent / "static" / "swagger-ui"  # vendored swagger-ui-dist: /docs works offline


def serve_local_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from files this package ships (FastAPI's default loads them from a CDN).

    Build the app with ``docs_url=None, redoc_url=None``; URLs honour the ASGI root_path (HA Ingress).
    """
    app.mount("/_static/swagger-ui", StaticFiles(directory=SWAGGER_DIR), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API",
            swagger_js_url=f"{root}/_static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/_static/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}/_static/swagger-ui/favicon-32x32.png",
        )


def _wildcard_suffix(kind: str, **parts: str) -> str:
    suffix = TOPICS[kind].suffix
    for key in ("name", "service", "action"):
        suffix = suffix.replace("{" + key + "}", parts.get(key, "+"))
    return suffix


class Service:
    """Base class of the five services. Subclasses set ``name`` and override the hooks."""

    name: ClassVar[str] = "service"
    # kind -> max age (s) before the input counts as stale for /readyz; None: used when present
    inputs: ClassVar[dict[str, float | None]] = {}
    tick_s: ClassVar[float | None] = None
    uses_store: ClassVar[bool] = True

    def __init__(
        self, site: SiteConfig, *, store: Any = None, mqtt: MqttClient | None = None, clock: Clock = WALL_CLOCK
    ) -> None:
        self.site = site
        self.clock = clock
        self.store = store
        self.mqtt = mqtt or MqttClient(site.mqtt, site.site_id, self.name)
        self.context: dict[str, ContextMsg] = {}
        self.last_input_at: dict[str, datetime] = {}
        self.latest: dict[str, Message] = {}
        self.started_at: datetime | None = None
        self.commands: dict[str, CommandHandler] = {}
        self.limits = SiteLimits(site)
        self.error_throttle = ErrorThrottle(self._emit_error)
        # Writes that must survive a database outage go through this (shared/storage/spool.py).
        self.writer = BufferedWriter(store, site.database.spool_dir / f"{self.name}.sqlite",
                                     max_rows=site.database.spool_max_rows, on_outage=self._database_down,
                                     on_recovered=self._database_back) if store is not None else None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._lock = threading.RLock()
        self.metrics_registry = CollectorRegistry()
        self.m_received = Counter("darkstar_messages_received", "valid messages received", ["kind"],
                                  registry=self.metrics_registry)
        self.m_rejected = Counter("darkstar_messages_rejected", "invalid messages rejected", ["kind"],
                                  registry=self.metrics_registry)
        self.m_published = Counter("darkstar_messages_published", "messages published", ["kind"],
                                   registry=self.metrics_registry)
        self.m_handle_s = Histogram("darkstar_handle_seconds", "time to validate and handle one message",
                                    ["kind"], registry=self.metrics_registry,
                                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5))
        self.m_connected = Gauge("darkstar_mqtt_connected", "1 when connected to the broker", registry=self.metrics_registry)
        self.m_connected.set_function(lambda: 1.0 if self.mqtt.connected else 0.0)
        self.m_tick_errors = Counter("darkstar_tick_errors", "periodic work that failed", registry=self.metrics_registry)

    # ------------------------------------------------------------------ hooks for subclasses
    def subscriptions(self) -> list[str]:
        """Kinds (keys of contracts.TOPICS) this service listens to; context and its commands always."""
        return list(self.inputs)

    def handle(self, kind: str, parts: dict[str, str], msg: Message, retained: bool) -> None:
        """Called with every valid message of a subscribed kind."""

    def tick(self) -> None:
        """Periodic work every ``tick_s`` seconds."""

    def ha_entities(self) -> list[Entity]:
        return []

    def extra_routes(self, router: APIRouter, admin: APIRouter) -> None:
        """Add service-specific public and admin routes."""

    def register_commands(self) -> None:
        """Register the command handlers (``register_command``); called before connecting, so a
        command delivered at once (a retained or queued QoS-1 message) finds its handler."""

    def on_start(self) -> None:
        """After the MQTT client started."""

    def on_stop(self) -> None:
        """Before the MQTT client stops."""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.started_at = datetime.now(timezone.utc)
        self._stop.clear()
        self.register_commands()
        for kind in self.subscriptions():
            self._subscribe(kind, shared=True)
        self._subscribe("context", shared=False)  # every replica needs the context
        self.mqtt.subscribe(self._shared(self.mqtt.topic("command", service=self.name, action="+")),
                            self._on_command, qos=1)
        self.mqtt.on_connected = self.publish_discovery
        self.mqtt.start()
        self.on_start()
        threading.Thread(target=self._flush_errors_loop, name=f"errors-{self.name}", daemon=True).start()
        if self.tick_s:
            self._ticker = threading.Thread(target=self._tick_loop, name=f"tick-{self.name}", daemon=True)
            self._ticker.start()
        log.info("%s started for site %s", self.name, self.site.site_id)

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(30)
        self.on_stop()
        self.error_throttle.flush(force=True)  # counts held back are reported before going offline
        self.mqtt.stop()
        if self.writer is not None:
            self.writer.close()  # spooled rows stay on disk for the next start
        log.info("%s stopped", self.name)

    def _tick_loop(self) -> None:
        assert self.tick_s
        while not self._stop.wait(self.clock.wall_seconds(self.tick_s)):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - periodic work must survive one bad round
                self.m_tick_errors.inc()
                log.exception("%s: periodic work failed", self.name)

    # ------------------------------------------------------------------ messaging
    def _shared(self, topic_filter: str) -> str:
        """Fleet mode: replicas of a service split its inputs through an MQTT 5 shared subscription."""
        group = self.site.mqtt.share_group
        return f"$share/{group}/{topic_filter}" if group else topic_filter

    def _subscribe(self, kind: str, shared: bool) -> None:
        topic_filter = f"{self.site.mqtt.base_topic}/{self.site.site_id}/{_wildcard_suffix(kind)}"
        self.mqtt.subscribe(self._shared(topic_filter) if shared else topic_filter, self._on_raw,
                            qos=TOPICS[kind].qos)

    def _on_raw(self, topic_name: str, payload: bytes, retained: bool) -> None:
        started = time.perf_counter()
        try:
            _site, kind, parts, msg = decode_for_topic(self.site.mqtt.base_topic, topic_name, payload)
        except ContractError as err:
            found = kind_of_topic(self.site.mqtt.base_topic, topic_name)
            self.m_rejected.labels(kind=found[1] if found else "unknown").inc()  # bounded label set
            self.report_error(topic_name, err.why, payload)
            return
        if not isinstance(msg, Message):
            return
        why = implausible(kind, msg, self.limits, self.clock.now())
        if why is not None:  # contract-valid but impossible here: reported, never stored or acted on
            self.m_rejected.labels(kind=kind).inc()
            self.report_error(topic_name, f"implausible: {why}", payload)
            return
        self.m_received.labels(kind=kind).inc()
        with self._lock:
            self.last_input_at[kind] = datetime.now(timezone.utc)
            self.latest[kind] = msg
            if isinstance(msg, ContextMsg):
                self.context[msg.name] = msg
        try:
            self.handle(kind, parts, msg, retained)
        except Exception as err:  # noqa: BLE001 - report, keep running
            log.exception("%s: handling %s failed", self.name, topic_name)
            self.report_error(topic_name, f"handler failed: {type(err).__name__}: {err}", None)
        finally:
            self.m_handle_s.labels(kind=kind).observe(time.perf_counter() - started)

    def publish(self, kind: str, msg: Message, **parts: str) -> None:
        self.mqtt.publish_msg(kind, msg, **parts)
        self.m_published.labels(kind=kind).inc()

    def report_error(self, what: str, why: str, payload: bytes | str | None) -> None:
        """Report a rejection or failure on ``events/error``; never raises, never floods.

        Repeats of the same (topic, reason) within a minute are counted, not sent: the next
        event for it carries ``count`` (shared/errorevents.py), and the log says it once too.
        """
        self.error_throttle.report(what, why, payload)

    def _emit_error(self, what: str, why: str, payload: bytes | str | None, count: int) -> None:
        repeats = f" ({count} times since the last report)" if count > 1 else ""
        log.warning("%s rejected %s: %s%s", self.name, what, why[:300], repeats)
        try:
            event = ErrorEventMsg(
                site_id=self.site.site_id,
                who=self.name,
                what=what[:200],
                why=why[:1000],
                payload_excerpt=payload_excerpt(payload) if payload is not None else None,
                count=count,
            )
            self.publish("error", event)
        except RuntimeError as err:  # not connected (starting or stopping): the log line above stands
            log.debug("%s: error event not published: %s", self.name, err)
        except Exception:  # noqa: BLE001 - reporting must never take the service down
            log.exception("%s: could not publish error event", self.name)

    def _flush_errors_loop(self) -> None:
        while not self._stop.wait(5.0):
            self.error_throttle.flush()
            if self.writer is not None and self.writer.pending:
                try:
                    self.writer.drain()
                except Exception:  # noqa: BLE001 - retried in 5 s
                    log.exception("%s: writing spooled rows failed", self.name)

    def _database_down(self, why: str) -> None:
        pending = self.writer.pending if self.writer is not None else 0
        self.report_error("database", f"database unreachable, writes spooled on disk ({pending} rows): {why}", None)

    def _database_back(self, written: int) -> None:
        log.warning("%s: database reachable again; %d spooled row(s) written", self.name, written)

    def context_value(self, name: str, default: Any = None) -> Any:
        """Current value of a context item, or ``default`` when unset or expired."""
        msg = self.context.get(name)
        if msg is None:
            return default
        if msg.expires_at is not None and msg.expires_at <= datetime.now(timezone.utc):
            return default
        return msg.value

    def register_command(self, action: str, handler: CommandHandler) -> None:
        self.commands[action] = handler

    def _on_command(self, topic_name: str, payload: bytes, retained: bool) -> None:
        try:
            _site, kind, parts, msg = decode_for_topic(self.site.mqtt.base_topic, topic_name, payload)
        except ContractError as err:
            self.m_rejected.labels(kind="command").inc()
            self.report_error(topic_name, err.why, payload)
            return
        if kind != "command" or not isinstance(msg, CommandMsg):
            return  # our own replies on .../result
        action = parts["action"]
        result = self.run_command(action, msg)
        self.publish("command_result", result, service=self.name, action=action)

    def run_command(self, action: str, msg: CommandMsg) -> CommandResultMsg:
        result = self._run_command(action, msg)
        self._record_command(action, msg, result)
        return result

    def _run_command(self, action: str, msg: CommandMsg) -> CommandResultMsg:
        handler = self.commands.get(action)
        base = {"site_id": self.site.site_id, "correlation_id": msg.correlation_id}
        if handler is None:
            known = ", ".join(sorted(self.commands)) or "none"
            return CommandResultMsg(**base, status="error", error=f"unknown action {action!r} (known: {known})")
        try:
            data = handler(msg) or {}
        except Exception as err:  # noqa: BLE001 - a failed command is a reply, not a crash
            log.exception("%s: command %s failed", self.name, action)
            return CommandResultMsg(**base, status="error", error=f"{type(err).__name__}: {err}")
        return CommandResultMsg(**base, status="ok", data=data)

    def _record_command(self, action: str, msg: CommandMsg, result: CommandResultMsg) -> None:
        """Who asked for what and why, and how it ended: a log line and a ``command`` event row."""
        who = msg.issued_by or "unnamed sender"
        why = msg.reason or "no reason given"
        log.info("%s: command %s by %s (%s): %s%s", self.name, action, who, why, result.status,
                 f" ({result.error})" if result.error else "")
        if self.store is None or not hasattr(self.store, "store_event"):
            return
        try:
            self.store.store_event(site_id=self.site.site_id, kind="command", who=who[:64],
                                   what=f"{self.name}/{action}", why=why,
                                   data={"args": msg.args, "ttl_s": msg.ttl_s, "correlation_id": msg.correlation_id,
                                         "status": result.status, "error": result.error})
        except Exception:  # noqa: BLE001 - a database hiccup must not turn a done command into an error
            log.exception("%s: could not record command %s", self.name, action)

    def dashboard_url(self) -> str:
        """The web app's address, shown in HA as the device's configuration URL."""
        http = self.site.http
        return http.public_url or f"http://{http.host}:{http.ports.get('dashboard', 8080)}"

    def publish_discovery(self) -> None:
        entities = [status_entity(self.name), *self.ha_entities()]
        for topic_name, payload in discovery_messages(
            self.site.mqtt.base_topic, self.site.mqtt.discovery_prefix, self.site.site_id, self.site.name,
            self.name, entities, configuration_url=self.dashboard_url(),
        ):
            self.mqtt.publish(topic_name, payload, qos=1, retain=True)

    # ------------------------------------------------------------------ health
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {"broker": "ok" if self.mqtt.connected else "not connected"}
        ok = self.mqtt.connected
        if self.store is not None:
            try:
                db_ok = bool(self.store.ping())
            except Exception:  # noqa: BLE001
                db_ok = False
            checks["database"] = "ok" if db_ok else "unreachable"
            if self.writer is not None and (self.writer.pending or self.writer.dropped_rows):
                checks["database_spool"] = {"pending_rows": self.writer.pending,
                                            "dropped_rows": self.writer.dropped_rows}
            ok = ok and db_ok
        else:
            checks["database"] = "not used by this service"
        now = datetime.now(timezone.utc)
        inputs: dict[str, str] = {}
        for kind, max_age_s in self.inputs.items():
            seen = self.last_input_at.get(kind)
            if seen is None:
                inputs[kind] = "never received"
                if max_age_s is not None:
                    ok = False
            elif max_age_s is not None and now - seen > timedelta(seconds=max_age_s):
                inputs[kind] = f"stale: last {int((now - seen).total_seconds())} s ago"
                ok = False
            else:
                inputs[kind] = f"fresh: {int((now - seen).total_seconds())} s ago"
        checks["inputs"] = inputs
        return ok, checks

    def build_app(self) -> FastAPI:
        app = FastAPI(title=f"Darkstar {self.name}", version="0.1.0",
                      description=f"{self.name} service of Darkstar for site {self.site.site_id}",
                      docs_url=None, redoc_url=None)
        serve_local_docs(app)
        public = APIRouter()
        admin = APIRouter(prefix="/admin", dependencies=[Depends(self._require_admin)], tags=["admin"])

        @public.get("/healthz")
        def healthz() -> dict[str, Any]:
            return {"status": "alive", "service": self.name, "site_id": self.site.site_id, "version": darkstar_version()}

        @public.get("/readyz")
        def readyz() -> JSONResponse:
            ok, checks = self.readiness()
            return JSONResponse({"ready": ok, "service": self.name, **checks}, status_code=200 if ok else 503)

        @public.get("/metrics")
        def metrics() -> PlainTextResponse:
            return PlainTextResponse(generate_latest(self.metrics_registry), media_type=CONTENT_TYPE_LATEST)

        @public.get("/context")
        def context() -> dict[str, Any]:
            return {name: msg.model_dump(mode="json", by_alias=True) for name, msg in self.context.items()}

        @admin.post("/command/{action}")
        def command(action: str, request: Request, body: dict[str, Any] | None = None) -> dict[str, Any]:
            body = body or {}
            msg = CommandMsg(site_id=self.site.site_id, args=body.get("args", {k: v for k, v in body.items() if k != "reason"}),
                             issued_by=request.state.principal.name, reason=str(body.get("reason") or "admin API")[:200])
            result = self.run_command(action, msg)
            if result.status != "ok":
                raise HTTPException(status_code=400, detail=result.error)
            return result.model_dump(mode="json", by_alias=True)

        self.extra_routes(public, admin)
        app.include_router(public)
        app.include_router(admin)
        return app

    _bearer = HTTPBearer(auto_error=False)

    def admin_action(self, path: str) -> str:
        """The shared/auth.py action an ``/admin/...`` request means."""
        rest = path.split("/admin/", 1)[-1].strip("/")
        if rest.startswith("command/"):
            return f"command:{self.name}/{rest.removeprefix('command/')}"
        return f"admin:{self.name}/{rest}"

    def _require_admin(self, request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        if self.site.http.admin_token is None and not self.site.auth.users:
            raise HTTPException(status_code=503, detail="admin routes are disabled: set http.admin_token")
        principal = principal_from_token(self.site, credentials.credentials if credentials else None)
        if principal is None:
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            require(principal, self.admin_action(request.url.path))
        except AuthError as err:
            raise HTTPException(status_code=403, detail=str(err)) from None
        request.state.principal = principal
        return principal
