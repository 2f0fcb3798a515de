"""A simulated OCPP 1.6J charge point with a car, built on the same ``ocpp`` library as the central system.

It connects over a real websocket with basic auth, boots, reports status and meter values, and
obeys charging profiles the way the OCPP 1.6 smart-charging chapter describes them (simplified to
one connector): a valid TxProfile of the running transaction wins, else the TxDefaultProfile,
else the hardware maximum. The car draws ``min(limit x phases x voltage, its onboard maximum)``
until it is full, and its SoC is sent in MeterValues. Used by the tests, the demo (``--ev``)
and ``benchmarks/ocpp_bench.py``. Faults can be injected: ``fault()``, ``reject_profiles``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import websockets
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as _OcppChargePoint
from ocpp.v16 import call, call_result
from ocpp.v16.enums import (
    Action,
    ChargePointErrorCode,
    ChargePointStatus,
    ChargingProfilePurposeType,
    ChargingProfileStatus,
    ClearChargingProfileStatus,
    ConfigurationStatus,
    RemoteStartStopStatus,
)
from websockets.asyncio.client import connect
from websockets.headers import build_authorization_basic

log = logging.getLogger("darkstar.chargepoint_sim")
logging.getLogger("darkstar.chargepoint_sim.wire").setLevel(logging.WARNING)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


@dataclass
class SimCar:
    battery_kwh: float = 60.0
    soc_frac: float = 0.3
    max_kw: float = 11.0  # onboard charger
    efficiency: float = 0.9  # battery energy per metered kWh


def _reported(hook: Callable[..., Any]) -> Callable[..., Any]:
    """After-hooks run as detached tasks: a lost connection or a slow answer is logged, not left unretrieved."""

    @functools.wraps(hook)
    async def run(*args: Any, **kwargs: Any) -> None:
        try:
            await hook(*args, **kwargs)
        except (TimeoutError, websockets.exceptions.ConnectionClosed) as err:
            log.warning("simulated charge point: %s failed: %s", hook.__name__, type(err).__name__)

    return run


def profile_limit_a(profile: dict[str, Any], now: datetime, tx_start: datetime | None) -> float | None:
    """A profile's limit at ``now`` (amps), or None when its schedule does not cover ``now``."""
    schedule = profile["chargingSchedule"]
    if profile["chargingProfileKind"] == "Relative":
        start = tx_start or now
    else:
        start = _parse(schedule["startSchedule"]) if schedule.get("startSchedule") else tx_start or now
    offset = (now - start).total_seconds()
    duration = schedule.get("duration")
    if offset < 0 or (duration is not None and offset >= duration):
        return None
    if profile.get("validTo") and now >= _parse(profile["validTo"]):
        return None
    limit = None
    for period in schedule["chargingSchedulePeriod"]:
        if period["startPeriod"] <= offset:
            limit = float(period["limit"])
    return limit


class SimChargePoint(_OcppChargePoint):
    def __init__(self, identity: str, url: str, password: str, *, car: SimCar | None = None,
                 clock: Callable[[], datetime] = _utcnow, phases: int = 3, voltage_v: float = 230.0,
                 max_current_a: float = 16.0, meter_interval_s: float = 10.0, reports_soc: bool = True):
        super().__init__(identity, None, response_timeout=10, logger=logging.getLogger("darkstar.chargepoint_sim.wire"))
        self.url, self.password = url, password
        self.car = car or SimCar()
        self.clock = clock
        self.phases, self.voltage_v, self.max_current_a = phases, voltage_v, max_current_a
        self.meter_interval_s = meter_interval_s
        self.reports_soc = reports_soc  # most AC wallboxes never learn the car's SoC
        self.status = ChargePointStatus.available
        self.error_code = ChargePointErrorCode.no_error
        self.plugged = False
        self.transaction_id: int | None = None
        self.tx_start: datetime | None = None
        self.profiles: dict[str, dict[str, Any]] = {}  # purpose -> profile (camelCase, as received)
        self.energy_wh = 0.0
        self.power_kw = 0.0
        self.reject_profiles = False
        self.config: dict[str, str] = {}
        self.booted = asyncio.Event()
        self.connected = asyncio.Event()
        self._last_step: datetime | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False

    # ------------------------------------------------------------------ physics
    def limit_a(self, now: datetime | None = None) -> float:
        """The current the charge point allows now (profiles as in OCPP 1.6 §3.13, one connector)."""
        now = now or self.clock()
        tx = self.profiles.get("TxProfile")
        if tx is not None and self.transaction_id is not None:
            limit = profile_limit_a(tx, now, self.tx_start)
            if limit is not None:
                return min(limit, self.max_current_a)
        default = self.profiles.get("TxDefaultProfile")
        if default is not None:
            limit = profile_limit_a(default, now, self.tx_start)
            if limit is not None:
                return min(limit, self.max_current_a)
        return self.max_current_a

    def step(self) -> None:
        """Advance the car to the clock's now at the power that was in force."""
        now = self.clock()
        last, self._last_step = self._last_step, now
        if last is not None and now > last:
            hours = (now - last).total_seconds() / 3600.0
            room_kwh = (1.0 - self.car.soc_frac) * self.car.battery_kwh
            meter_kwh = min(self.power_kw * hours, room_kwh / self.car.efficiency)
            self.energy_wh += meter_kwh * 1000.0
            self.car.soc_frac = min(1.0, self.car.soc_frac + meter_kwh * self.car.efficiency / self.car.battery_kwh)
        self.power_kw = 0.0
        if self.transaction_id is not None and self.plugged and self.status != ChargePointStatus.faulted:
            amps = self.limit_a(now)
            if self.car.soc_frac < 0.999 and amps >= 6.0:
                self.power_kw = min(amps * self.phases * self.voltage_v / 1000.0, self.car.max_kw)

    def _status_now(self) -> str:
        if self.status == ChargePointStatus.faulted:
            return self.status
        if not self.plugged:
            return ChargePointStatus.available
        if self.transaction_id is None:
            return ChargePointStatus.preparing
        if self.power_kw > 0:
            return ChargePointStatus.charging
        return ChargePointStatus.suspended_ev if self.car.soc_frac >= 0.999 else ChargePointStatus.suspended_evse

    # ------------------------------------------------------------------ connection
    async def connect(self) -> None:
        self._connection = await connect(
            self.url, subprotocols=["ocpp1.6"],
            additional_headers={"Authorization": build_authorization_basic(self.id, self.password)},
            open_timeout=5)
        self.connected.set()
        self._tasks = [asyncio.ensure_future(self._receive()), asyncio.ensure_future(self._meter_loop())]
        boot = await self.call(call.BootNotification(charge_point_model="Darkstar-Sim", charge_point_vendor="Darkstar"))
        self.heartbeat_s = boot.interval
        self.step()
        await self.send_status()
        self.booted.set()

    async def _receive(self) -> None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            await self.start()
        self.connected.clear()

    async def _meter_loop(self) -> None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed, asyncio.CancelledError):
            while True:
                await asyncio.sleep(self.meter_interval_s)
                await self.tick()

    async def tick(self) -> None:
        """Advance physics, report a status change and send meter values (what a real charger does)."""
        before = self._status_now()
        self.step()
        if not self.connected.is_set():
            return  # offline: the car goes on as its profiles say; nothing to tell anyone
        if self._status_now() != before:
            await self.send_status()
        if self.plugged:
            await self.send_meter_values()

    async def disconnect(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._connection is not None:
            await self._connection.close()
        self.connected.clear()
        self.booted.clear()

    async def send_status(self) -> None:
        await self.call(call.StatusNotification(connector_id=1, error_code=self.error_code, status=self._status_now(),
                                                timestamp=self.clock().isoformat()))

    async def send_meter_values(self) -> None:
        sampled = [
            {"value": f"{self.power_kw * 1000:.0f}", "measurand": "Power.Active.Import", "unit": "W"},
            {"value": f"{self.energy_wh:.0f}", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        ]
        if self.reports_soc:
            sampled.append({"value": f"{self.car.soc_frac * 100:.1f}", "measurand": "SoC", "unit": "Percent"})
        await self.call(call.MeterValues(connector_id=1, transaction_id=self.transaction_id,
                                         meter_value=[{"timestamp": self.clock().isoformat(), "sampled_value": sampled}]))

    # ------------------------------------------------------------------ the car
    async def plug(self) -> None:
        self.step()
        self.plugged = True
        await self.send_status()

    async def unplug(self) -> None:
        self.step()
        if self.transaction_id is not None:
            await self._stop_transaction("EVDisconnected")
        self.plugged = False
        self.step()
        await self.send_status()

    async def fault(self, code: str = ChargePointErrorCode.ground_failure) -> None:
        self.step()
        self.status, self.error_code = ChargePointStatus.faulted, code
        self.step()
        await self.send_status()

    async def _stop_transaction(self, reason: str) -> None:
        tx, self.transaction_id = self.transaction_id, None
        self.profiles.pop("TxProfile", None)
        await self.call(call.StopTransaction(meter_stop=int(self.energy_wh), timestamp=self.clock().isoformat(),
                                             transaction_id=tx, reason=reason))

    # ------------------------------------------------------------------ central system -> charge point
    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str) -> Any:
        self.config[key] = value
        return call_result.ChangeConfiguration(status=ConfigurationStatus.accepted)

    @on(Action.remote_start_transaction, skip_schema_validation=True)
    def on_remote_start(self, id_tag: str, connector_id: int | None = None,
                        charging_profile: dict[str, Any] | None = None) -> Any:
        ok = self.plugged and self.transaction_id is None and self.status != ChargePointStatus.faulted
        self._pending_profile = charging_profile
        return call_result.RemoteStartTransaction(
            status=RemoteStartStopStatus.accepted if ok else RemoteStartStopStatus.rejected)

    @after(Action.remote_start_transaction)
    @_reported
    async def after_remote_start(self, id_tag: str, **_: Any) -> None:
        if not (self.plugged and self.transaction_id is None):
            return
        self.step()
        result = await self.call(call.StartTransaction(connector_id=1, id_tag=id_tag, meter_start=int(self.energy_wh),
                                                       timestamp=self.clock().isoformat()))
        if result.id_tag_info["status"] != "Accepted":
            return
        self.transaction_id, self.tx_start = result.transaction_id, self.clock()
        profile = getattr(self, "_pending_profile", None)
        if profile:
            self.profiles["TxProfile"] = _camel(profile)
        self.step()
        await self.send_status()

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int) -> Any:
        ok = transaction_id == self.transaction_id
        return call_result.RemoteStopTransaction(
            status=RemoteStartStopStatus.accepted if ok else RemoteStartStopStatus.rejected)

    @after(Action.remote_stop_transaction)
    @_reported
    async def after_remote_stop(self, transaction_id: int) -> None:
        if transaction_id == self.transaction_id:
            self.step()
            await self._stop_transaction("Remote")
            self.step()
            await self.send_status()

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any]) -> Any:
        profile = _camel(cs_charging_profiles)
        purpose = profile["chargingProfilePurpose"]
        bad_tx = purpose == ChargingProfilePurposeType.tx_profile and (
            self.transaction_id is None or profile.get("transactionId") not in (None, self.transaction_id))
        if self.reject_profiles or bad_tx:
            return call_result.SetChargingProfile(status=ChargingProfileStatus.rejected)
        self.step()
        self.profiles[purpose] = profile
        return call_result.SetChargingProfile(status=ChargingProfileStatus.accepted)

    @after(Action.set_charging_profile)
    @_reported
    async def after_set_charging_profile(self, **_: Any) -> None:
        await self.tick()

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, id: int | None = None, connector_id: int | None = None,
                                  charging_profile_purpose: str | None = None, stack_level: int | None = None) -> Any:
        self.step()
        gone = [p for p, prof in self.profiles.items()
                if (id is None or prof["chargingProfileId"] == id)
                and (charging_profile_purpose is None or p == charging_profile_purpose)]
        for purpose in gone:
            del self.profiles[purpose]
        return call_result.ClearChargingProfile(
            status=ClearChargingProfileStatus.accepted if gone else ClearChargingProfileStatus.unknown)

    @after(Action.clear_charging_profile)
    @_reported
    async def after_clear_charging_profile(self, **_: Any) -> None:
        await self.tick()


def _camel(data: Any) -> Any:
    """Handlers get snake_case (the library converts); profiles are kept as on the wire."""
    if isinstance(data, dict):
        return {_camel_key(k): _camel(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_camel(v) for v in data]
    return data


def _camel_key(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)
