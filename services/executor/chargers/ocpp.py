"""OCPP 1.6J central system and the OCPP charger backend, with the ``ocpp`` library over ``websockets``.

Charge points connect to ``ws://<executor.ocpp.host>:<port>/<path>/<identity>`` with subprotocol
``ocpp1.6`` and HTTP basic auth (OCPP security profile 1: user = identity, password from
``evs[].charger.password``); an unknown identity or a wrong password is refused in the handshake
(401) before any OCPP message. Use TLS in front (security profile 2) when the link leaves the house.

Handled from the charge point: BootNotification (accepted, heartbeat interval), Heartbeat,
StatusNotification (plugged, charging, faulted), MeterValues (power, energy, SoC), Authorize and
StartTransaction (the ``authorize`` policy), StopTransaction. Sent to it: ChangeConfiguration (meter
values to sample), SetChargingProfile (the fallback as TxDefaultProfile at boot; the plan as a
TxProfile in amps per phase per 15-min slot, valid until the plan expires), RemoteStartTransaction
(plugged, no transaction, the plan wants power), RemoteStopTransaction, ClearChargingProfile.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import websockets
from ocpp.exceptions import OCPPError
from ocpp.messages import unpack
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as _OcppChargePoint
from ocpp.v16 import call, call_result
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    ChargePointStatus,
    ChargingProfileKindType,
    ChargingProfilePurposeType,
    ChargingProfileStatus,
    ChargingRateUnitType,
    ClearChargingProfileStatus,
    RegistrationStatus,
    RemoteStartStopStatus,
)
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.headers import parse_authorization_basic

from services.executor.chargers.base import ChargeCommand, ChargerError, ChargerReading
from shared.config import ChargerConfig, OcppServerConfig

log = logging.getLogger("darkstar.executor.ocpp")
# The library logs every frame at INFO; that is a debugging aid, so it goes to its own quiet logger.
wire_log = logging.getLogger("darkstar.executor.ocpp.wire")
wire_log.setLevel(logging.WARNING)

PLUGGED = {ChargePointStatus.preparing, ChargePointStatus.charging, ChargePointStatus.suspended_ev,
           ChargePointStatus.suspended_evse, ChargePointStatus.finishing}
TX_PROFILE_ID = 1  # Darkstar's plan profile; a new one with the same id replaces it on the charger
DEFAULT_PROFILE_ID = 2  # the fallback, installed at boot as TxDefaultProfile
METER_STALE_S = 120.0  # power older than this is not reported (no guess)
MEASURANDS = "Power.Active.Import,Energy.Active.Import.Register,SoC"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class ConnectorState:
    status: str = "Unknown"
    error_code: str = "NoError"
    transaction_id: int | None = None
    id_tag: str | None = None
    power_kw: float | None = None
    power_at: datetime | None = None
    energy_kwh: float | None = None
    soc_frac: float | None = None


@dataclass
class SessionState:
    """What the central system knows about one charge point (kept across reconnects)."""

    identity: str
    connected: bool = False
    booted: bool = False
    vendor: str = ""
    model: str = ""
    last_message_at: datetime | None = None
    connections: int = 0
    connectors: dict[int, ConnectorState] = field(default_factory=dict)

    def connector(self, connector_id: int) -> ConnectorState:
        return self.connectors.setdefault(connector_id, ConnectorState())


def _measured(sampled: list[dict[str, Any]], conn: ConnectorState, ts: datetime) -> None:
    """Power, energy and SoC from MeterValues' sampled values (phase-less values; units as sent)."""
    for sv in sampled:
        measurand = sv.get("measurand", "Energy.Active.Import.Register")
        if sv.get("phase"):
            continue  # per-phase values; the total is sent phase-less by every charger we know
        try:
            value = float(sv["value"])
        except (KeyError, TypeError, ValueError):
            continue
        unit = sv.get("unit")
        if measurand == "Power.Active.Import":
            conn.power_kw = value if unit == "kW" else value / 1000.0
            conn.power_at = ts
        elif measurand == "Energy.Active.Import.Register":
            conn.energy_kwh = value if unit == "kWh" else value / 1000.0
        elif measurand == "SoC":
            conn.soc_frac = max(0.0, min(1.0, value / 100.0))


class CentralSystemSession(_OcppChargePoint):
    """One connected charge point: the ``ocpp`` library routes its calls to the handlers below."""

    def __init__(self, identity: str, connection: ServerConnection, system: CentralSystem):
        super().__init__(identity, connection, response_timeout=system.server.response_timeout_s, logger=wire_log)
        self.system = system
        self.state = system.state(identity)
        self.config = system.chargers[identity]

    async def route_message(self, raw_msg: str) -> None:
        self.state.last_message_at = _now()
        self.system.messages_in += 1
        try:
            unpack(raw_msg)
        except OCPPError as err:  # the library would only log it
            self.system.rejected(self.id, f"not an OCPP-J message: {type(err).__name__}: {err.description}")
            return
        await super().route_message(raw_msg)

    async def _handle_call(self, msg: Any) -> Any:
        try:
            return await super()._handle_call(msg)
        except OCPPError as err:  # answered with a CallError by the library; also reported
            self.system.rejected(self.id, f"{msg.action} rejected: {type(err).__name__}: {err.description}")
            raise

    def _accepts(self, id_tag: str) -> bool:
        cfg = self.config
        return cfg.authorize == "accept_all" or id_tag == cfg.id_tag or id_tag in cfg.allowed_id_tags

    def _id_tag_info(self, id_tag: str) -> dict[str, str]:
        status = AuthorizationStatus.accepted if self._accepts(id_tag) else AuthorizationStatus.invalid
        return {"status": status}

    @on(Action.boot_notification)
    def on_boot(self, charge_point_vendor: str, charge_point_model: str, **_: Any) -> Any:
        self.state.vendor, self.state.model = charge_point_vendor, charge_point_model
        return call_result.BootNotification(current_time=_iso(_now()), interval=self.system.server.heartbeat_s,
                                            status=RegistrationStatus.accepted)

    @after(Action.boot_notification)
    async def after_boot(self, **_: Any) -> None:
        # Calls from a handler would wait on the receive loop that runs it: configure after the reply.
        try:
            await self.call(call.ChangeConfiguration(key="MeterValuesSampledData", value=MEASURANDS))
            await self.call(call.ChangeConfiguration(key="MeterValueSampleInterval", value="10"))
            await self.install_default_profile()
            self.state.booted = True
        except Exception as err:  # noqa: BLE001 - a charge point that fails this is reported, not fatal
            log.warning("ocpp %s: configuration after boot failed: %s", self.id, err)

    async def install_default_profile(self) -> None:
        fb = self.config.fallback
        if fb.mode != "current":
            return
        profile = {
            "charging_profile_id": DEFAULT_PROFILE_ID, "stack_level": 0,
            "charging_profile_purpose": ChargingProfilePurposeType.tx_default_profile,
            "charging_profile_kind": ChargingProfileKindType.relative,
            "charging_schedule": {"charging_rate_unit": ChargingRateUnitType.amps,
                                  "charging_schedule_period": [{"start_period": 0, "limit": fb.current_a,
                                                                "number_phases": self.config.phases}]},
        }
        result = await self.call(call.SetChargingProfile(connector_id=self.config.connector_id,
                                                         cs_charging_profiles=profile))
        if result is None or result.status != ChargingProfileStatus.accepted:
            raise ChargerError(f"charge point {self.id} refused the fallback default profile")

    @on(Action.heartbeat)
    def on_heartbeat(self) -> Any:
        return call_result.Heartbeat(current_time=_iso(_now()))

    @on(Action.status_notification)
    def on_status(self, connector_id: int, error_code: str, status: str, **_: Any) -> Any:
        if connector_id > 0:
            conn = self.state.connector(connector_id)
            conn.status, conn.error_code = status, error_code
            if status not in PLUGGED:
                conn.power_kw, conn.power_at = 0.0, _now()
        self.system.notify(self.id)
        return call_result.StatusNotification()

    @on(Action.meter_values)
    def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]],
                        transaction_id: int | None = None, **_: Any) -> Any:
        conn = self.state.connector(connector_id)
        if conn.transaction_id is None and transaction_id is not None:
            conn.transaction_id = transaction_id  # one Darkstar did not start (or started before a restart)
        for mv in meter_value:
            _measured(mv.get("sampled_value", []), conn, _now())
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str) -> Any:
        return call_result.Authorize(id_tag_info=self._id_tag_info(id_tag))

    @on(Action.start_transaction)
    def on_start_transaction(self, connector_id: int, id_tag: str, meter_start: int, **_: Any) -> Any:
        info = self._id_tag_info(id_tag)
        self.system.next_transaction_id += 1
        tx = self.system.next_transaction_id
        if info["status"] == AuthorizationStatus.accepted:
            conn = self.state.connector(connector_id)
            conn.transaction_id, conn.id_tag = tx, id_tag
            conn.energy_kwh = meter_start / 1000.0
        self.system.notify(self.id)
        return call_result.StartTransaction(transaction_id=tx, id_tag_info=info)

    @on(Action.stop_transaction)
    def on_stop_transaction(self, meter_stop: int, transaction_id: int, **_: Any) -> Any:
        for conn in self.state.connectors.values():
            if conn.transaction_id == transaction_id:
                conn.transaction_id, conn.energy_kwh = None, meter_stop / 1000.0
        self.system.notify(self.id)
        return call_result.StopTransaction()


class CentralSystem:
    """The websocket server; one :class:`CentralSystemSession` per connected charge point."""

    def __init__(self, server: OcppServerConfig, chargers: dict[str, ChargerConfig],
                 on_change: Callable[[str], None] | None = None):
        self.server = server
        self.chargers = chargers  # identity -> config (password, policy, connector, fallback)
        self.on_change = on_change
        self.on_error: Callable[[str, str], None] | None = None  # (what, why): a rejected message
        self.rejected_messages = 0
        self.sessions: dict[str, CentralSystemSession] = {}
        self.states: dict[str, SessionState] = {}
        self.next_transaction_id = 0
        self.messages_in = 0
        self.refused = 0
        self._ws: Server | None = None
        self.port: int | None = None

    def state(self, identity: str) -> SessionState:
        return self.states.setdefault(identity, SessionState(identity))

    def rejected(self, identity: str, why: str) -> None:
        """A malformed or invalid message from a charge point: answered (CallError) or dropped, and reported."""
        self.rejected_messages += 1
        log.warning("ocpp %s: %s", identity, why)
        if self.on_error is not None:
            self.on_error(f"ocpp/{identity}", why)

    def notify(self, identity: str) -> None:
        if self.on_change is not None:
            self.on_change(identity)

    def _identity(self, path: str) -> str | None:
        prefix = "/" + self.server.path.strip("/") + "/" if self.server.path.strip("/") else "/"
        if not path.startswith(prefix):
            return None
        identity = path[len(prefix):].split("?", 1)[0]
        return identity if identity in self.chargers else None

    def _check(self, connection: ServerConnection, request: Any) -> Any:
        """Handshake: a configured identity, its password (basic auth, user = identity), ocpp1.6."""
        identity = self._identity(request.path)
        if identity is None:
            self.refused += 1
            return connection.respond(404, "unknown charge point\n")
        header = request.headers.get("Authorization")
        expected = self.chargers[identity].secret() or ""
        try:
            user, password = parse_authorization_basic(header) if header else ("", "")
        except websockets.exceptions.InvalidHeader:
            user, password = "", ""
        if not (hmac.compare_digest(user.encode(), identity.encode())
                and hmac.compare_digest(password.encode(), expected.encode())):
            self.refused += 1
            log.warning("ocpp: refused %s from %s: wrong or missing credentials", identity, connection.remote_address)
            response = connection.respond(401, "authentication required\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="darkstar-ocpp"'
            return response
        return None

    async def start(self) -> None:
        self._ws = await serve(self._handler, self.server.host, self.server.port, subprotocols=["ocpp1.6"],
                               process_request=self._check, ping_interval=30, ping_timeout=30)
        self.port = self._ws.sockets[0].getsockname()[1] if self._ws.sockets else self.server.port
        log.info("ocpp central system listening on %s:%s/%s/<identity>", self.server.host, self.port,
                 self.server.path)

    async def _handler(self, connection: ServerConnection) -> None:
        identity = self._identity(connection.request.path if connection.request else "")
        if identity is None or connection.subprotocol != "ocpp1.6":
            await connection.close(1002, "ocpp1.6 subprotocol required")
            return
        old = self.sessions.get(identity)
        if old is not None:  # a reconnect before the old socket noticed it was gone
            await old._connection.close()
        session = CentralSystemSession(identity, connection, self)
        self.sessions[identity] = session
        state = session.state
        state.connected, state.booted = True, False
        state.connections += 1
        self.notify(identity)
        try:
            await session.start()
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            if self.sessions.get(identity) is session:
                del self.sessions[identity]
                state.connected = False
                self.notify(identity)

    async def stop(self) -> None:
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
            self._ws = None

    def session(self, identity: str) -> CentralSystemSession:
        session = self.sessions.get(identity)
        if session is None:
            raise ChargerError(f"charge point {identity} is not connected")
        return session


def tx_profile(command: ChargeCommand, now: datetime, phases: int, transaction_id: int | None) -> dict[str, Any]:
    """The plan as a TxProfile: amps per phase from now, one period per slot (equal neighbours merged),
    ending at ``command.until`` so the charger falls back by itself if Darkstar goes silent."""
    now = now.replace(microsecond=0)
    periods = [{"start_period": 0, "limit": command.limit_a, "number_phases": phases}]
    for start, amps in command.schedule:
        offset = int((start - now).total_seconds())
        if offset <= 0 or start >= command.until:
            continue
        if amps != periods[-1]["limit"]:
            periods.append({"start_period": offset, "limit": amps, "number_phases": phases})
    profile: dict[str, Any] = {
        "charging_profile_id": TX_PROFILE_ID, "stack_level": 1,
        "charging_profile_purpose": ChargingProfilePurposeType.tx_profile,
        "charging_profile_kind": ChargingProfileKindType.absolute,
        "charging_schedule": {
            "charging_rate_unit": ChargingRateUnitType.amps, "start_schedule": _iso(now),
            "duration": max(1, int((command.until - now).total_seconds())),
            "charging_schedule_period": periods,
        },
    }
    if transaction_id is not None:
        profile["transaction_id"] = transaction_id
    return profile


class OcppCharger:
    """The :class:`~services.executor.chargers.base.Charger` role for one OCPP charge point."""

    def __init__(self, name: str, config: ChargerConfig, system: CentralSystem, clock: Callable[[], datetime] = _now):
        self.name = name
        self.config = config
        self.system = system
        self.clock = clock

    async def start(self) -> None:
        """The central system is started by its owner (one server for every OCPP charger)."""

    async def read(self) -> ChargerReading:
        state = self.system.states.get(self.config.identity or "")
        now = self.clock()
        if state is None or not state.connected:
            return ChargerReading(ts=now, connected=False)
        conn = state.connector(self.config.connector_id)
        status = conn.status
        fresh = conn.power_at is not None and (_now() - conn.power_at).total_seconds() <= METER_STALE_S
        return ChargerReading(
            ts=now, connected=True,
            plugged=None if status == "Unknown" else status in PLUGGED,
            charging=status == ChargePointStatus.charging,
            faulted=status == ChargePointStatus.faulted,
            power_kw=conn.power_kw if fresh else None, energy_kwh=conn.energy_kwh, soc_frac=conn.soc_frac,
            status=status, error=None if conn.error_code == "NoError" else conn.error_code,
        )

    async def apply(self, command: ChargeCommand) -> None:
        cfg = self.config
        session = self.system.session(cfg.identity or "")
        conn = session.state.connector(cfg.connector_id)
        now = self.clock()
        if conn.transaction_id is None and conn.status != ChargePointStatus.preparing:
            if conn.status not in PLUGGED or conn.status == ChargePointStatus.finishing:
                return  # nothing plugged, or the user or car ended the session: the schedule goes with the next start
            # A transaction runs that Darkstar has not seen (started at the wallbox, or before a restart):
            # a TxProfile without a transaction id applies to it (OCPP 1.6 §3.13.3).
        elif conn.transaction_id is None:
            # Started even when the plan waits (0 A now): the TxProfile holds the car until its slots,
            # and once it expires the fallback default profile charges it, so a Darkstar that goes
            # silent before the plan's slot never leaves the car uncharged at departure.
            profile = tx_profile(command, now, cfg.phases, None)
            result = await session.call(call.RemoteStartTransaction(
                id_tag=cfg.id_tag, connector_id=cfg.connector_id, charging_profile=profile))
            if result is None or result.status != RemoteStartStopStatus.accepted:
                raise ChargerError(f"charge point {cfg.identity} refused RemoteStartTransaction")
            return
        profile = tx_profile(command, now, cfg.phases, conn.transaction_id)
        result = await session.call(call.SetChargingProfile(connector_id=cfg.connector_id,
                                                            cs_charging_profiles=profile))
        if result is None or result.status != ChargingProfileStatus.accepted:
            status = getattr(result, "status", "a CallError")
            raise ChargerError(f"charge point {cfg.identity} answered {status} to SetChargingProfile")

    async def fallback(self) -> None:
        """Remove Darkstar's TxProfile: the TxDefaultProfile (fallback current) or the charger's own default
        applies; a plugged car without a transaction gets one, so the fallback really charges it."""
        cfg = self.config
        session = self.system.session(cfg.identity or "")
        result = await session.call(call.ClearChargingProfile(
            id=TX_PROFILE_ID, connector_id=cfg.connector_id,
            charging_profile_purpose=ChargingProfilePurposeType.tx_profile))
        if result is None or result.status not in (ClearChargingProfileStatus.accepted,
                                                    ClearChargingProfileStatus.unknown):
            raise ChargerError(f"charge point {cfg.identity} refused ClearChargingProfile")
        conn = session.state.connector(cfg.connector_id)
        if conn.transaction_id is None and conn.status == ChargePointStatus.preparing:
            # Plugged and waiting: start it. With fallback 'current' the transaction carries that current
            # itself (not only the default profile, which a charger that has not booted since may lack).
            profile = None
            if cfg.fallback.mode == "current":
                profile = {"charging_profile_id": TX_PROFILE_ID, "stack_level": 1,
                           "charging_profile_purpose": ChargingProfilePurposeType.tx_profile,
                           "charging_profile_kind": ChargingProfileKindType.relative,
                           "charging_schedule": {"charging_rate_unit": ChargingRateUnitType.amps,
                                                 "charging_schedule_period": [{"start_period": 0,
                                                                               "limit": cfg.fallback.current_a,
                                                                               "number_phases": cfg.phases}]}}
            started = await session.call(call.RemoteStartTransaction(
                id_tag=cfg.id_tag, connector_id=cfg.connector_id, charging_profile=profile))
            if started is None or started.status != RemoteStartStopStatus.accepted:
                # the profile is cleared, which is the fallback: say so once, do not retry every tick
                log.warning("ocpp %s: RemoteStartTransaction for the fallback refused; the car waits for the "
                            "user or the wallbox", cfg.identity)

    async def stop_transaction(self) -> None:
        session = self.system.session(self.config.identity or "")
        tx = session.state.connector(self.config.connector_id).transaction_id
        if tx is None:
            return
        result = await session.call(call.RemoteStopTransaction(transaction_id=tx))
        if result is None or result.status != RemoteStartStopStatus.accepted:
            raise ChargerError(f"charge point {self.config.identity} refused RemoteStopTransaction")

    async def close(self) -> None:
        """The central system is stopped by its owner."""
