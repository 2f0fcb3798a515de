"""The ``Inverter`` role (evcc pattern): read telemetry, apply an intent; and the device-limit clamp.

Implemented once for Modbus (:class:`services.executor.modbus.transport.ModbusInverter`, driven
by a YAML profile); the control loop only knows this role.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, Protocol

from shared.config import BatteryConfig

if TYPE_CHECKING:  # the profile's limits only; the role itself knows no Modbus
    from services.executor.modbus.profile import Profile

Mode = Literal["charge", "discharge", "self_consumption", "hold"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Intent:
    """What the executor wants the inverter to do now. Powers are AC-side kW, >= 0."""

    mode: Mode
    power_kw: float = 0.0
    export_limit_kw: float | None = None
    soc_floor_frac: float | None = None
    soc_ceiling_frac: float | None = None
    water_kw: float | None = None

    @property
    def may_discharge(self) -> bool:
        """True when the battery may deliver energy under this intent (self-consumption covers load from it)."""
        return self.mode == "discharge" or self.mode == "self_consumption"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Telemetry:
    """One reading. A field is ``None`` when the device did not report it: never guessed."""

    ts: datetime
    soc_frac: float | None = None
    soc_kwh: float | None = None
    pv_kw: float | None = None
    load_kw: float | None = None
    grid_kw: float | None = None
    battery_kw: float | None = None
    water_kw: float | None = None
    ev_kw: float | None = None
    values: dict[str, float | None] = field(default_factory=dict, compare=False, repr=False)
    connection_epoch: int = 0

    def measured(self) -> dict[str, float | None]:
        return {
            k: getattr(self, k)
            for k in ("soc_frac", "soc_kwh", "pv_kw", "load_kw", "grid_kw", "battery_kw", "water_kw", "ev_kw")
        }


@dataclass
class WriteResult:
    requested: Intent
    applied: Intent
    ok: bool
    verified: bool
    writes: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    clamped: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    error: str | None = None
    connection_epoch: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "intent": self.applied.as_dict(),
            "ok": self.ok,
            "verified": self.verified,
            "registers": [w["register"] for w in self.writes],
            "clamped": self.clamped,
            "unsupported": self.unsupported,
            "error": self.error,
        }


class InverterError(RuntimeError):
    """The device could not be read or written after the retries."""


class Inverter(Protocol):
    """The role the control loop talks to; vendors differ only in their profile."""

    async def read_telemetry(self) -> Telemetry: ...

    async def apply(self, intent: Intent) -> WriteResult: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class DeviceLimits:
    """Effective limits: the tighter of the profile's and the site's battery configuration."""

    max_charge_kw: float
    max_discharge_kw: float
    max_export_kw: float | None
    min_soc_frac: float
    max_soc_frac: float

    @classmethod
    def build(cls, profile: Profile, battery: BatteryConfig | None, max_export_kw: float | None) -> DeviceLimits:
        charge = [v for v in (profile.limits.max_charge_kw, battery and battery.max_charge_kw) if v]
        discharge = [v for v in (profile.limits.max_discharge_kw, battery and battery.max_discharge_kw) if v]
        export = [v for v in (profile.limits.max_export_kw, max_export_kw) if v is not None]
        if not charge or not discharge:
            raise ValueError(
                f"profile {profile.name!r} has no power limits and no battery is configured: refusing to run unbounded"
            )
        return cls(
            max_charge_kw=min(charge),
            max_discharge_kw=min(discharge),
            max_export_kw=min(export) if export else None,
            min_soc_frac=battery.min_soc_frac if battery else 0.0,
            max_soc_frac=battery.max_soc_frac if battery else 1.0,
        )


def clamp_intent(intent: Intent, limits: DeviceLimits) -> tuple[Intent, list[str]]:
    """Bring an intent inside the device's limits; say what was changed."""
    notes: list[str] = []
    power = intent.power_kw
    if not math.isfinite(power) or power < 0:
        notes.append(f"power_kw {power!r} -> 0")
        power = 0.0
    cap = {"charge": limits.max_charge_kw, "discharge": limits.max_discharge_kw}.get(intent.mode)
    if cap is None:
        power = 0.0
    elif power > cap:
        notes.append(f"{intent.mode} power {power:.3f} kW -> {cap:.3f} kW (device limit)")
        power = cap
    export = intent.export_limit_kw
    if export is not None:
        export = max(0.0, export)
        if limits.max_export_kw is not None and export > limits.max_export_kw:
            notes.append(f"export limit {export:.3f} kW -> {limits.max_export_kw:.3f} kW")
            export = limits.max_export_kw
    floor, ceiling = intent.soc_floor_frac, intent.soc_ceiling_frac
    if floor is not None and floor < limits.min_soc_frac:
        notes.append(f"soc floor {floor:.3f} -> {limits.min_soc_frac:.3f}")
        floor = limits.min_soc_frac
    if ceiling is not None and ceiling > limits.max_soc_frac:
        notes.append(f"soc ceiling {ceiling:.3f} -> {limits.max_soc_frac:.3f}")
        ceiling = limits.max_soc_frac
    if floor is not None and ceiling is not None and floor > ceiling:
        notes.append(f"soc floor {floor:.3f} above ceiling {ceiling:.3f} -> floor = ceiling")
        floor = ceiling
    water = intent.water_kw
    if water is not None and (not math.isfinite(water) or water < 0):
        water = 0.0
    clamped = replace(
        intent, power_kw=power, export_limit_kw=export, soc_floor_frac=floor, soc_ceiling_frac=ceiling, water_kw=water
    )
    return clamped, notes


def intent_params(intent: Intent) -> dict[str, float | None]:
    """The intent's values in the units device profiles write (kW and W, fraction and %): Modbus and HA."""
    def scaled(value: float | None, factor: float) -> float | None:
        return None if value is None else value * factor

    return {
        "power_kw": intent.power_kw,
        "power_w": intent.power_kw * 1000.0,
        "export_limit_kw": intent.export_limit_kw,
        "export_limit_w": scaled(intent.export_limit_kw, 1000.0),
        "soc_floor_frac": intent.soc_floor_frac,
        "soc_floor_pct": scaled(intent.soc_floor_frac, 100.0),
        "soc_ceiling_frac": intent.soc_ceiling_frac,
        "soc_ceiling_pct": scaled(intent.soc_ceiling_frac, 100.0),
        "water_kw": intent.water_kw,
        "water_w": scaled(intent.water_kw, 1000.0),
    }
