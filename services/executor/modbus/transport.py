"""``ModbusInverter``: the :class:`~services.executor.inverter.Inverter` role over Modbus, driven by a profile.

It reads the profile's register blocks, decodes values (type, scale or SunSpec scale factor,
word order, "not available" sentinels) and computes telemetry fields; it writes an
:class:`~services.executor.inverter.Intent` as the profile's register sequence, clamped to the
device's limits whatever it is asked, then reads every written register back to verify it.

Transport (from :class:`shared.config.ModbusConfig`): Modbus TCP, RTU over a serial line, or RTU
frames over TCP (serial servers / "transparent" gateways). Every request is retried with
exponential back-off and a reconnect; a device exception (e.g. illegal value) is not retried.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime
from typing import Any, Awaitable, Callable

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ExceptionResponse

from services.executor.inverter import (
    DeviceLimits,
    Intent,
    InverterError,
    Telemetry,
    WriteResult,
    clamp_intent,
    intent_params,
    utcnow,
)
from services.executor.modbus.codec import decode_raw, encode_value
from services.executor.modbus.expr import Expr
from services.executor.modbus.profile import LIMIT_NAMES, Profile, ReadBlock, RegisterSpec
from shared.config import BatteryConfig, ModbusConfig

log = logging.getLogger(__name__)

SUNS = (0x5375, 0x6E53)  # "SunS" marker of a SunSpec register map


class _DeviceRefused(Exception):
    """A Modbus exception response: deterministic, retrying does not help."""


class ModbusInverter:
    """:class:`Inverter` over Modbus, driven by a profile."""

    def __init__(
        self,
        profile: Profile,
        modbus: ModbusConfig,
        *,
        battery: BatteryConfig | None = None,
        max_export_kw: float | None = None,
        clock: Callable[[], datetime] = utcnow,
        backoff_s: float = 0.1,
        backoff_max_s: float = 2.0,
    ):
        self.profile = profile
        self.config = modbus
        self.limits = DeviceLimits.build(profile, battery, max_export_kw)
        self.clock = clock
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.connection_epoch = 0  # +1 on every (re)connect: a restarted device may have lost its commands
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._model_starts: dict[int, int] = {}
        self._words: dict[tuple[str, int], int] = {}  # (table, address) -> last word read
        self.values: dict[str, float | None] = {}
        self.requests = 0
        self.failures = 0

    # ----------------------------------------------------------------- connection

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        cfg = self.config
        # reconnect_delay=0: no background reconnects; this class reconnects itself, with back-off.
        if cfg.transport == "tcp":
            return AsyncModbusTcpClient(cfg.host, port=cfg.port, timeout=cfg.timeout_s, retries=0, reconnect_delay=0)
        if cfg.transport == "rtu_over_tcp":
            return AsyncModbusTcpClient(
                cfg.host, port=cfg.port, framer=FramerType.RTU, timeout=cfg.timeout_s, retries=0, reconnect_delay=0
            )
        if not cfg.serial_port:
            raise InverterError("modbus.transport 'rtu' needs modbus.serial_port (e.g. /dev/ttyUSB0)")
        return AsyncModbusSerialClient(
            cfg.serial_port, framer=FramerType.RTU, baudrate=cfg.baudrate, timeout=cfg.timeout_s, retries=0,
            reconnect_delay=0,
        )

    async def _ensure_connected(self) -> None:
        if self._client is not None and self._client.connected:
            return
        if self._client is not None:
            self._client.close()
        self._client = self._make_client()
        if not await self._client.connect():
            self._client.close()
            self._client = None
            raise ConnectionError(f"cannot connect to {self._where()}")
        self.connection_epoch += 1
        self._words.clear()
        if self.profile.sunspec is not None:
            await self._discover_sunspec()

    def _where(self) -> str:
        cfg = self.config
        if cfg.transport == "rtu":
            return f"{cfg.serial_port} (RTU, unit {cfg.unit_id})"
        return f"{cfg.host}:{cfg.port} ({cfg.transport}, unit {cfg.unit_id})"

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _retrying(self, once: Callable[[], Awaitable[Any]], what: str) -> Any:
        """Run ``once`` with retries, back-off and reconnect; a refusal by the device is not retried."""
        attempts = 1 + self.config.retries
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                return await once()
            except _DeviceRefused as err:
                self.failures += 1
                raise InverterError(str(err)) from None
            except (ModbusException, ConnectionError, OSError, asyncio.TimeoutError) as err:
                self.failures += 1
                last = err
                await self.close()
                if attempt + 1 < attempts:
                    await asyncio.sleep(min(self.backoff_max_s, self.backoff_s * (2**attempt)))
        raise InverterError(f"{what} failed after {attempts} attempt(s) on {self._where()}: {last}")

    async def _request(self, op: Callable[[], Awaitable[Any]], what: str) -> Any:
        """One Modbus request with retries, back-off and reconnect; raise InverterError at the end."""

        async def once() -> Any:
            await self._ensure_connected()
            self.requests += 1
            response = await op()
            if isinstance(response, ExceptionResponse) or response.isError():
                raise _DeviceRefused(f"device refused {what}: {response}")
            return response

        return await self._retrying(once, what)

    async def connect(self) -> None:
        """Connect (and discover a SunSpec map) with retries; raise InverterError when the device stays unreachable."""
        await self._retrying(self._ensure_connected, "connect")

    async def _read_words(self, table: str, address: int, count: int) -> list[int]:
        unit = self.config.unit_id

        async def op() -> Any:
            assert self._client is not None
            if table == "input":
                return await self._client.read_input_registers(address, count=count, device_id=unit)
            return await self._client.read_holding_registers(address, count=count, device_id=unit)

        response = await self._request(op, f"read {table} {address}+{count}")
        words = list(response.registers)
        if len(words) < count:
            raise InverterError(f"short answer reading {table} {address}+{count}: {len(words)} registers")
        for i, word in enumerate(words[:count]):
            self._words[(table, address + i)] = word
        return words[:count]

    async def _write_words(self, address: int, words: list[int], what: str, multiple: bool = False) -> None:
        unit = self.config.unit_id

        async def op() -> Any:
            assert self._client is not None
            if len(words) == 1 and not multiple:
                return await self._client.write_register(address, words[0], device_id=unit)
            return await self._client.write_registers(address, words, device_id=unit)

        await self._request(op, f"write {what} at {address}")

    # ----------------------------------------------------------------- SunSpec discovery

    async def _discover_sunspec(self) -> None:
        assert self.profile.sunspec is not None
        self._model_starts = {}
        client = self._client
        assert client is not None
        for base in self.profile.sunspec.base_addresses:
            head = await client.read_holding_registers(base, count=2, device_id=self.config.unit_id)
            if head.isError() or tuple(head.registers[:2]) != SUNS:
                continue
            address = base + 2
            for _ in range(64):  # a real map has a handful of models; bound the walk
                header = await client.read_holding_registers(address, count=2, device_id=self.config.unit_id)
                if header.isError():
                    break
                model_id, length = header.registers[0], header.registers[1]
                if model_id == 0xFFFF:
                    break
                self._model_starts.setdefault(model_id, address)
                address += 2 + length
            log.info("SunSpec models at %s: %s", self._where(), self._model_starts)
            return
        raise ConnectionError(f"no SunSpec marker 'SunS' at {self.profile.sunspec.base_addresses} on {self._where()}")

    def _address(self, spec: RegisterSpec | ReadBlock) -> int | None:
        if spec.address is not None:
            return spec.address
        start = self._model_starts.get(spec.model or -1)
        if start is None:
            return None  # model not present on this device: its values stay unknown
        return start + 2 + (spec.offset or 0)

    # ----------------------------------------------------------------- decoding

    def _decode_all(self) -> dict[str, float | None]:
        values: dict[str, float | None] = {}
        regs = self.profile.registers
        raw: dict[str, int | float | None] = {}
        for name, spec in regs.items():
            address = self._address(spec)
            if address is None:
                raw[name] = None
                continue
            words = [self._words.get((spec.table, address + i)) for i in range(spec.words)]
            if any(w is None for w in words):
                raw[name] = None
                continue
            bits = words[0] if spec.words == 1 else (words[0] << 16) | words[1]  # type: ignore[operator]
            if bits in spec.invalid:
                raw[name] = None
                continue
            raw[name] = decode_raw(spec, words, self.profile.word_order)  # type: ignore[arg-type]
        for name, spec in regs.items():
            value = raw[name]
            if value is None:
                values[name] = None
                continue
            scale = self._scale(spec, raw)
            values[name] = None if scale is None else value * scale
        return values

    def _scale(self, spec: RegisterSpec, raw: dict[str, int | float | None]) -> float | None:
        if spec.scale_factor_register is None:
            return spec.scale
        sf = raw.get(spec.scale_factor_register)
        if sf is None or not -10 <= sf <= 10:
            return None
        return spec.scale * 10.0 ** int(sf)

    # ----------------------------------------------------------------- role

    async def read_telemetry(self) -> Telemetry:
        """Read every block and compute the telemetry fields. Raises InverterError if the device is unreachable."""
        await self.connect()  # addresses of SunSpec models are known only once connected
        for block in self.profile.read_blocks:
            address = self._address(block)
            if address is None:
                continue
            await self._read_words(block.table, address, block.count)
        self.values = self._decode_all()
        env = dict(self.values)
        fields: dict[str, float | None] = {}
        for name, expr in self.profile.telemetry_exprs.items():
            value = expr.evaluate(env)
            fields[name] = None if value is None or not math.isfinite(float(value)) else float(value)
        soc = fields.get("soc_frac")
        if soc is not None:
            # A few tenths of a percent outside 0..1 is calibration; more is a broken reading.
            fields["soc_frac"] = min(1.0, max(0.0, soc)) if -0.01 <= soc <= 1.01 else None
        for name in ("pv_kw", "load_kw", "water_kw", "ev_kw", "soc_kwh"):
            if fields.get(name) is not None and fields[name] < 0:  # type: ignore[operator]
                fields[name] = max(0.0, fields[name]) if fields[name] > -0.05 else None  # type: ignore[operator]
        return Telemetry(ts=self.clock(), values=dict(self.values), connection_epoch=self.connection_epoch, **fields)

    def clamp(self, intent: Intent) -> tuple[Intent, list[str]]:
        return clamp_intent(intent, self.limits)

    def _steps_for(self, intent: Intent) -> tuple[list[Any], list[str]]:
        intents = self.profile.intents
        unsupported: list[str] = []
        steps: list[Any] = []
        # SoC limits first: the floor must be in place before a mode that discharges.
        if intent.soc_floor_frac is not None and intent.soc_ceiling_frac is not None:
            if intents.soc_limits is not None:
                steps += intents.soc_limits
            elif not self.profile.has_soc_floor:  # e.g. Deye puts the floor in its mode sequences
                unsupported.append("soc_limits")
        if intent.export_limit_kw is not None:
            if intents.export_limit is not None:
                steps += intents.export_limit
            else:
                unsupported.append("export_limit")
        mode_steps = self.profile.writes_for(intent.mode)
        if mode_steps is None:
            raise InverterError(f"profile {self.profile.name!r} cannot do {intent.mode!r}")
        steps += mode_steps
        if intent.water_kw is not None:
            if intents.water is not None:
                steps += intents.water
            else:
                unsupported.append("water")
        return steps, unsupported

    async def apply(self, intent: Intent) -> WriteResult:
        """Write ``intent`` (clamped) and read it back. Never raises for device errors: see ``ok``/``error``."""
        applied, clamped = self.clamp(intent)
        result = WriteResult(requested=intent, applied=applied, ok=False, verified=False, clamped=clamped)
        try:
            await self.connect()
            steps, result.unsupported = self._steps_for(applied)
        except InverterError as err:
            result.error = str(err)
            return result
        env: dict[str, Any] = dict(self.values)
        env.update(intent_params(applied))
        env.update({name: getattr(self.limits, name) for name in LIMIT_NAMES})
        planned: list[tuple[str, RegisterSpec, int, list[int], bool]] = []
        try:
            for step in steps:
                spec = self.profile.registers[step.target]
                address = self._address(spec)
                if address is None:
                    raise InverterError(f"register {step.target!r} is not present on this device")
                value = Expr(step.value).evaluate(env)
                if value is None:
                    raise InverterError(f"value of {step.target!r} ({step.value}) is unknown: a needed reading is missing")
                value = float(value)
                if spec.min is not None and value < spec.min:
                    result.clamped.append(f"{step.target} {value:g} -> {spec.min:g}")
                    value = spec.min
                if spec.max is not None and value > spec.max:
                    result.clamped.append(f"{step.target} {value:g} -> {spec.max:g}")
                    value = spec.max
                scale = self._scale(spec, {k: v for k, v in self._raw_values().items()})
                if scale is None:
                    raise InverterError(f"scale factor of {step.target!r} is unknown")
                try:
                    words = encode_value(spec, value, self.profile.word_order, scale)
                except ValueError as err:
                    raise InverterError(f"{step.target}: {err}") from None
                planned.append((step.target, spec, address, words, step.verify))
        except InverterError as err:
            result.error = str(err)
            return result
        try:
            for name, spec, address, words, _verify in planned:
                current = [self._words.get((spec.table, address + i)) for i in range(len(words))]
                if current == words:
                    result.skipped.append(name)  # already holds the value: spare the flash
                    continue
                await self._write_words(address, words, name, spec.write_multiple)
                result.writes.append({"register": name, "address": address, "words": words})
            result.ok = True
            result.mismatches = await self._verify(planned)
            result.verified = not result.mismatches
        except InverterError as err:
            result.error = str(err)
        result.connection_epoch = self.connection_epoch
        return result

    def _raw_values(self) -> dict[str, int | float | None]:
        raw: dict[str, int | float | None] = {}
        for name, spec in self.profile.registers.items():
            address = self._address(spec)
            words = [self._words.get((spec.table, (address or 0) + i)) for i in range(spec.words)]
            if address is None or any(w is None for w in words):
                raw[name] = None
            else:
                raw[name] = decode_raw(spec, words, self.profile.word_order)  # type: ignore[arg-type]
        return raw

    async def _verify(self, planned: list[tuple[str, RegisterSpec, int, list[int], bool]]) -> list[str]:
        """Read the written holding registers back (one request per run of adjacent registers) and compare."""
        checks = [(n, a, w) for n, spec, a, w, verify in planned if verify]
        if not checks:
            return []
        spans: list[list[int]] = []  # [start, end) of adjacent registers; gaps may be unmapped on the device
        for _, address, words in sorted(checks, key=lambda c: c[1]):
            if spans and address <= spans[-1][1] and address + len(words) - spans[-1][0] <= 125:
                spans[-1][1] = max(spans[-1][1], address + len(words))
            else:
                spans.append([address, address + len(words)])
        for start, end in spans:
            await self._read_words("holding", start, end - start)
        mismatches = []
        # Only the last write to a register counts (a sequence may set a register twice).
        final: dict[int, tuple[str, list[int]]] = {}
        for name, address, words in checks:
            final[address] = (name, words)
        for address, (name, words) in final.items():
            got = [self._words.get(("holding", address + i)) for i in range(len(words))]
            if got != words:
                mismatches.append(f"{name}: wrote {words}, read back {got}")
        return mismatches
