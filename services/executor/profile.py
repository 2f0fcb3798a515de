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

import ast
import math
import operator
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.config import yaml_load
from shared.config_checks import nearest_key

PROFILE_DIR = Path(__file__).parent / "profiles"

RegisterType = Literal["u16", "s16", "u32", "s32", "f32"]
WORDS: dict[str, int] = {"u16": 1, "s16": 1, "u32": 2, "s32": 2, "f32": 2}
RAW_RANGE: dict[str, tuple[float, float]] = {
    "u16": (0, 0xFFFF),
    "s16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFFFFFF),
    "s32": (-0x80000000, 0x7FFFFFFF),
    "f32": (-3.4e38, 3.4e38),
}
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


# --------------------------------------------------------------------------- expressions

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.RShift: operator.rshift,
    ast.LShift: operator.lshift,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _coalesce(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


_FUNCS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "int": int,
    "coalesce": _coalesce,
}


class Expr:
    """A safe arithmetic expression over named values. ``None`` operands give ``None`` (unknown stays unknown)."""

    def __init__(self, text: str | int | float):
        self.text = str(text)
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as err:
            raise ValueError(f"not a valid expression {self.text!r}: {err.msg}") from None
        self.names: set[str] = set()
        self._check(tree.body)
        self._tree = tree.body

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, bool)):
                raise ValueError(f"only numbers are allowed in {self.text!r}")
        elif isinstance(node, ast.Name):
            self.names.add(node.id)
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            self._check(node.operand)
        elif isinstance(node, ast.Compare) and all(type(op) in _CMPOPS for op in node.ops):
            self._check(node.left)
            for comp in node.comparators:
                self._check(comp)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value)
        elif isinstance(node, ast.IfExp):
            self._check(node.test)
            self._check(node.body)
            self._check(node.orelse)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
            if node.keywords:
                raise ValueError(f"keyword arguments are not allowed in {self.text!r}")
            for arg in node.args:
                self._check(arg)
        else:
            raise ValueError(f"unsupported syntax {type(node).__name__} in {self.text!r}")

    def evaluate(self, env: dict[str, Any]) -> Any:
        try:
            return self._eval(self._tree, env)
        except _Unknown:
            return None
        except (ZeroDivisionError, OverflowError, ValueError):
            return None

    def _eval(self, node: ast.AST, env: dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in env:
                raise KeyError(f"{node.id!r} is not defined for expression {self.text!r}")
            return env[node.id]
        if isinstance(node, ast.Call):
            args = [self._eval(a, env) for a in node.args]
            name = node.func.id  # type: ignore[attr-defined]
            if name != "coalesce" and any(a is None for a in args):
                raise _Unknown
            return _FUNCS[name](*args)
        if isinstance(node, ast.IfExp):
            test = self._eval(node.test, env)
            if test is None:
                raise _Unknown
            return self._eval(node.body if test else node.orelse, env)
        if isinstance(node, ast.BoolOp):
            values = [self._eval(v, env) for v in node.values]
            if any(v is None for v in values):
                raise _Unknown
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, env)
            if value is None:
                raise _Unknown
            if isinstance(node.op, ast.USub):
                return -value
            if isinstance(node.op, ast.Not):
                return not value
            return value
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, env), self._eval(node.right, env)
            if left is None or right is None:
                raise _Unknown
            if isinstance(node.op, (ast.BitAnd, ast.BitOr, ast.RShift, ast.LShift)):
                left, right = int(left), int(right)  # status bits: registers decode to floats
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, env)
            for op, comp in zip(node.ops, node.comparators):
                right = self._eval(comp, env)
                if left is None or right is None:
                    raise _Unknown
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        raise ValueError(f"unsupported node in {self.text!r}")  # pragma: no cover - rejected by _check

    def __repr__(self) -> str:
        return f"Expr({self.text!r})"


class _Unknown(Exception):
    """An operand was None (not readable): the whole expression is unknown."""


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


# --------------------------------------------------------------------------- register codec


def encode_value(spec: RegisterSpec, value: float, word_order: str, scale: float | None = None) -> list[int]:
    """Engineering value (in ``spec.unit``) -> list of 16-bit words. Raises ValueError if out of the type's range."""
    factor = spec.scale if scale is None else scale
    raw = value / factor
    if spec.type == "f32":
        words = _float_words(raw)
    else:
        if not math.isfinite(raw):
            raise ValueError(f"value {value!r} is not finite")
        raw_int = int(round(raw))
        lo, hi = RAW_RANGE[spec.type]
        if not lo <= raw_int <= hi:
            raise ValueError(f"raw value {raw_int} out of range {lo}..{hi} for {spec.type}")
        bits = raw_int & (0xFFFF if spec.words == 1 else 0xFFFFFFFF)
        words = [bits] if spec.words == 1 else [(bits >> 16) & 0xFFFF, bits & 0xFFFF]
    if spec.words == 2 and (spec.word_order or word_order) == "little":
        words = list(reversed(words))
    return words


def decode_raw(spec: RegisterSpec, words: list[int], word_order: str) -> int | float:
    """List of 16-bit words -> raw (unscaled) number."""
    if spec.words == 2 and (spec.word_order or word_order) == "little":
        words = list(reversed(words))
    if spec.type == "f32":
        import struct

        return struct.unpack(">f", struct.pack(">HH", words[0], words[1]))[0]
    bits = words[0] if spec.words == 1 else (words[0] << 16) | words[1]
    if spec.type == "s16" and bits & 0x8000:
        return bits - 0x10000
    if spec.type == "s32" and bits & 0x80000000:
        return bits - 0x100000000
    return bits


def _float_words(value: float) -> list[int]:
    import struct

    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]
