"""Inverter profiles: register maps and intent write sequences as YAML data, validated at load.

A profile says, for one inverter family, where each value lives (address, holding or input
table, type, scale, word order, unit), which register blocks to read in one request, how the
telemetry fields are computed from register values (small expressions such as
``"(pv1 + pv2) / 1000"``), and how each intent is written (a list of register writes whose
values are expressions of the intent's parameters). New hardware is a new YAML file, not new
code (evcc pattern, see STYLE.md).

Expressions are parsed with :mod:`ast` and only arithmetic, comparisons, ``a if c else b`` and
the functions ``min max abs round int coalesce`` are allowed; anything else is a profile error.

Every error names the profile file and the key path, e.g.
``darkstar_sim.yaml: intents.charge.0.register: unknown register 'powr'``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.executor.modbus.codec import WORDS, RegisterType
from services.executor.modbus.expr import Expr
from shared.config import yaml_load
from shared.config_checks import nearest_key

PROFILE_DIR = Path(__file__).parent.parent / "profiles"

TELEMETRY_FIELDS = ("soc_frac", "soc_kwh", "pv_kw", "load_kw", "grid_kw", "battery_kw", "water_kw", "ev_kw")
INTENT_MODES = ("charge", "discharge", "self_consumption", "hold")
# Names an intent write expression may use (besides register names and limits).
INTENT_PARAMS = (
    "power_kw",
    "power_w",
    "export_limit_kw",
    "export_limit_w",
    "soc_floor_frac",
    "soc_floor_pct",
    "soc_ceiling_frac",
    "soc_ceiling_pct",
    "water_kw",
    "water_w",
)
LIMIT_NAMES = ("max_charge_kw", "max_discharge_kw", "max_export_kw")


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the key path."""


# --------------------------------------------------------------------------- schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterSpec(_Strict):
    """One value in the device's register map. ``value = raw * scale`` (or ``raw * 10**sf`` for SunSpec)."""

    address: int | None = Field(None, ge=0, le=65535, description="absolute 0-based protocol address")
    model: int | None = Field(None, description="SunSpec model id; then ``offset`` is counted from the model's first data register")
    offset: int | None = Field(None, ge=0)
    table: Literal["holding", "input"] = "holding"
    type: RegisterType = "u16"
    scale: float = 1.0
    scale_factor_register: str | None = Field(None, description="SunSpec: name of the *_SF register (power of ten)")
    word_order: Literal["big", "little"] | None = Field(None, description="order of 16-bit words; None = profile default")
    unit: str = ""
    invalid: list[int] = Field(default_factory=list, description="raw values meaning 'not available'")
    writable: bool = False
    write_multiple: bool = Field(False, description="write with function 16 even for one register (devices that refuse 6)")
    min: float | None = Field(None, description="lowest value (in ``unit``) the device accepts")
    max: float | None = Field(None, description="highest value (in ``unit``) the device accepts")
    description: str = ""

    @model_validator(mode="after")
    def _located(self) -> RegisterSpec:
        if self.address is None and (self.model is None or self.offset is None):
            raise ValueError("give either 'address' or 'model' with 'offset'")
        if self.address is not None and self.model is not None:
            raise ValueError("give 'address' or 'model'+'offset', not both")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self

    @property
    def words(self) -> int:
        return WORDS[self.type]


class ReadBlock(_Strict):
    table: Literal["holding", "input"] = "holding"
    address: int | None = Field(None, ge=0, le=65535)
    model: int | None = None
    offset: int = Field(0, ge=0)
    count: int = Field(ge=1, le=125, description="registers per request (Modbus allows at most 125)")

    @model_validator(mode="after")
    def _located(self) -> ReadBlock:
        if (self.address is None) == (self.model is None):
            raise ValueError("give either 'address' or 'model'")
        return self


class WriteStep(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    target: str = Field(alias="register", description="name of the register to write")
    value: str | int | float = Field(description="expression over the intent's parameters, limits and register values")
    verify: bool = Field(True, description="read the register back after writing and compare")

    @field_validator("value")
    @classmethod
    def _parses(cls, value: str | int | float) -> str | int | float:
        Expr(value)
        return value


class IntentWrites(_Strict):
    """Write sequences per intent. A missing mode is unsupported by the device (the executor then falls back)."""

    charge: list[WriteStep] | None = None
    discharge: list[WriteStep] | None = None
    self_consumption: list[WriteStep]
    hold: list[WriteStep] = Field(description="battery idle: required, the safety rules need it")
    export_limit: list[WriteStep] | None = None
    soc_limits: list[WriteStep] | None = None
    water: list[WriteStep] | None = None


class DeviceLimits(_Strict):
    max_charge_kw: float | None = Field(None, gt=0)
    max_discharge_kw: float | None = Field(None, gt=0)
    max_export_kw: float | None = Field(None, ge=0)


class SunSpecDiscovery(_Strict):
    base_addresses: list[int] = Field(default_factory=lambda: [40000, 0, 50000])
    table: Literal["holding"] = "holding"


class Profile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str = ""
    description: str = ""
    sources: list[str] = Field(default_factory=list, description="public documents the register map comes from")
    word_order: Literal["big", "little"] = "big"
    sunspec: SunSpecDiscovery | None = None
    limits: DeviceLimits = Field(default_factory=DeviceLimits)
    registers: dict[str, RegisterSpec]
    read_blocks: list[ReadBlock] = Field(min_length=1)
    telemetry: dict[str, str | int | float]
    intents: IntentWrites
    notes: list[str] = Field(default_factory=list)

    @field_validator("telemetry")
    @classmethod
    def _known_fields(cls, value: dict[str, str | int | float]) -> dict[str, str | int | float]:
        unknown = sorted(set(value) - set(TELEMETRY_FIELDS))
        if unknown:
            raise ValueError(f"unknown telemetry field(s) {unknown}; allowed: {list(TELEMETRY_FIELDS)}")
        for name, text in value.items():
            try:
                Expr(text)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
        return value

    @model_validator(mode="after")
    def _references(self) -> Profile:
        problems: list[tuple[str, str]] = []
        regs = self.registers
        for name, spec in regs.items():
            if spec.model is not None and self.sunspec is None:
                problems.append((f"registers.{name}.model", "SunSpec model addressing needs a 'sunspec' section"))
            if spec.scale_factor_register is not None and spec.scale_factor_register not in regs:
                problems.append(
                    (f"registers.{name}.scale_factor_register", f"unknown register {spec.scale_factor_register!r}")
                )
        for key, text in self.telemetry.items():
            for ref in sorted(Expr(text).names - set(regs)):
                problems.append((f"telemetry.{key}", f"unknown register {ref!r}"))
        allowed = set(regs) | set(INTENT_PARAMS) | set(LIMIT_NAMES)
        for intent in ("charge", "discharge", "self_consumption", "hold", "export_limit", "soc_limits", "water"):
            steps = getattr(self.intents, intent)
            for i, step in enumerate(steps or []):
                where = f"intents.{intent}.{i}"
                spec = regs.get(step.target)
                if spec is None:
                    problems.append((f"{where}.register", f"unknown register {step.target!r}"))
                elif not spec.writable:
                    problems.append((f"{where}.register", f"register {step.target!r} is not writable"))
                elif spec.table != "holding":
                    problems.append((f"{where}.register", f"register {step.target!r} is an input register"))
                for ref in sorted(Expr(step.value).names - allowed):
                    problems.append((f"{where}.value", f"unknown name {ref!r}"))
        if problems:
            raise ValueError("; ".join(f"{path}: {why}" for path, why in problems))
        return self

    # ----------------------------------------------------------------- helpers

    @cached_property
    def telemetry_exprs(self) -> dict[str, Expr]:
        return {k: Expr(v) for k, v in self.telemetry.items()}

    def writes_for(self, intent: str) -> list[WriteStep] | None:
        return getattr(self.intents, intent)

    def supports(self, intent: str) -> bool:
        return getattr(self.intents, intent) is not None

    @property
    def supported_modes(self) -> tuple[str, ...]:
        return tuple(m for m in INTENT_MODES if self.supports(m))

    @property
    def has_soc_floor(self) -> bool:
        """True when the device itself can be told a SoC floor (so self-consumption stops at the reserve)."""
        if self.intents.soc_limits is not None:
            return any("soc_floor_pct" in Expr(s.value).names or "soc_floor_frac" in Expr(s.value).names
                       for s in self.intents.soc_limits)
        return any("soc_floor_pct" in Expr(s.value).names or "soc_floor_frac" in Expr(s.value).names
                   for s in self.intents.self_consumption)


# --------------------------------------------------------------------------- loading


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid inverter profile {source}:"]
    for item in err.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(top level)"
        msg = item["msg"].removeprefix("Value error, ")
        # Cross-reference errors carry their own key paths ("intents.charge.0.register: ...").
        if path == "(top level)" and ": " in msg:
            for part in msg.split("; "):
                lines.append(f"  {part}")
        else:
            lines.append(f"  {path}: {msg}")
    return "\n".join(lines)


def profile_from_dict(data: Any, source: str = "<dict>") -> Profile:
    if not isinstance(data, dict):
        raise ProfileError(f"invalid inverter profile {source}: top level must be a mapping, got {type(data).__name__}")
    try:
        return Profile.model_validate(data)
    except ValidationError as err:
        raise ProfileError(_format_error(err, source)) from None


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a shipped profile by name (``"darkstar_sim"``) or any profile YAML by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        shipped = available_profiles()
        hint = nearest_key(str(name_or_path), shipped)
        raise ProfileError(f"inverter profile not found: {path}" + (f" (did you mean {hint!r}?)" if hint else "")
                           + f" (shipped profiles: {', '.join(shipped)})") from None
    try:
        data = yaml_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ProfileError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    return profile_from_dict(data, source=str(path))


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
