"""MQTT message contracts (DESIGN §3): one pydantic model per topic, one encoder, one decoder.

Over 500 lines: one pydantic model per topic, the one topic table and its decoder: the whole
wire format in one file, as docs/mqtt.md describes it.

Every JSON payload carries ``"schema": "darkstar.<kind>/<major>"``. :func:`decode` validates a
payload against the topic's model and raises :class:`ContractError` (with who/what/why ready
for an ``events/error`` message) on bad JSON, an unknown kind or major version, or invalid
fields. Consumers catch it, report it and keep running.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_RE = re.compile(r"^darkstar\.(?P<kind>[a-z_]+)/(?P<major>\d+)$")
STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"
MAX_SLOTS = 7 * 24 * 4  # one week of 15-min slots; more is a broken producer, not a plan
MAX_STRING_CHARS = 4096  # every string of a message, typed fields (str_max_length) and free-form alike

Kw = Annotated[float, Field(allow_inf_nan=False)]
NonNegKw = Annotated[float, Field(ge=0, allow_inf_nan=False)]
NonNegKwh = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Price = Annotated[float, Field(allow_inf_nan=False, ge=-100, le=100)]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


class ContractError(ValueError):
    """A payload that does not satisfy its contract: ``why`` is a readable reason without secrets."""

    def __init__(self, what: str, why: str):
        super().__init__(f"{what}: {why}")
        self.what = what
        self.why = why


class Message(BaseModel):
    """Base of every payload: the schema tag, the site and when it was made."""

    # no NaN/Infinity in any float, no string longer than a few kB (a bus is not a file store)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, allow_inf_nan=False,
                              str_max_length=MAX_STRING_CHARS)
    KIND: ClassVar[str] = ""
    MAJOR: ClassVar[int] = 1

    schema_: str = Field(alias="schema")
    site_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")

    def __init__(self, **data: Any):
        data.setdefault("schema", f"darkstar.{self.KIND}/{self.MAJOR}")
        super().__init__(**data)

    @field_validator("schema_")
    @classmethod
    def _schema_matches(cls, value: str) -> str:
        expected = f"darkstar.{cls.KIND}/{cls.MAJOR}"
        if value != expected:
            raise ValueError(f"schema must be {expected!r}, got {value!r}")
        return value


class SlotSeries(Message):
    """A message whose slots must be in strictly increasing time order."""

    @field_validator("slots", check_fields=False)
    @classmethod
    def _ordered(cls, slots: list[Any]) -> list[Any]:
        starts = [s.start for s in slots]
        if any(b <= a for a, b in zip(starts, starts[1:])):
            raise ValueError("slots must be in strictly increasing order of start, without duplicates")
        return slots


# --------------------------------------------------------------------------- prices, weather, forecast


class PriceSlot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    start: AwareDatetime
    spot_per_kwh: Price | None = None
    import_price_per_kwh: Price
    export_price_per_kwh: Price


class PricesMsg(SlotSeries):
    KIND: ClassVar[str] = "prices"
    prices_id: str = Field(default_factory=new_id)
    issued_at: AwareDatetime = Field(default_factory=utcnow)
    area: str | None = None
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    resolution_minutes: Literal[15, 30, 60]
    source: str = "unknown"
    slots: list[PriceSlot] = Field(min_length=1, max_length=MAX_SLOTS)


class PriceNowMsg(Message):
    """The price of the slot in progress and of the next one, republished every slot (retained), so
    Home Assistant sees a price that changes when the slot does, not only when a new curve arrives."""

    KIND: ClassVar[str] = "price_now"
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    slot_start: AwareDatetime
    import_price_per_kwh: Price
    export_price_per_kwh: Price
    next_slot_start: AwareDatetime | None = None
    next_import_price_per_kwh: Price | None = None
    next_export_price_per_kwh: Price | None = None
    prices_id: str | None = None

    @classmethod
    def from_prices(cls, prices: PricesMsg, now: datetime) -> PriceNowMsg | None:
        """The slot containing ``now`` and its successor; None when the curve does not cover ``now``."""
        step = timedelta(minutes=prices.resolution_minutes)
        current = next((i for i, s in enumerate(prices.slots) if s.start <= now < s.start + step), None)
        if current is None:
            return None
        slot = prices.slots[current]
        nxt = prices.slots[current + 1] if current + 1 < len(prices.slots) else None
        return cls(site_id=prices.site_id, currency=prices.currency, slot_start=slot.start,
                   import_price_per_kwh=slot.import_price_per_kwh, export_price_per_kwh=slot.export_price_per_kwh,
                   next_slot_start=nxt.start if nxt else None,
                   next_import_price_per_kwh=nxt.import_price_per_kwh if nxt else None,
                   next_export_price_per_kwh=nxt.export_price_per_kwh if nxt else None, prices_id=prices.prices_id)


class WeatherSlot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    start: AwareDatetime
    temp_c: float | None = Field(None, ge=-90, le=70)
    ghi_wm2: float | None = Field(None, ge=0, le=1500)
    dni_wm2: float | None = Field(None, ge=0, le=1500)
    dhi_wm2: float | None = Field(None, ge=0, le=1500)
    cloud_cover_pct: float | None = Field(None, ge=0, le=100)


class WeatherMsg(SlotSeries):
    KIND: ClassVar[str] = "weather"
    weather_id: str = Field(default_factory=new_id)
    issued_at: AwareDatetime = Field(default_factory=utcnow)
    source: str = "unknown"
    resolution_minutes: Literal[15, 30, 60]
    slots: list[WeatherSlot] = Field(min_length=1, max_length=MAX_SLOTS)


class ForecastSlot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    start: AwareDatetime
    load_p10_kw: NonNegKw
    load_p50_kw: NonNegKw
    load_p90_kw: NonNegKw
    pv_p10_kw: NonNegKw
    pv_p50_kw: NonNegKw
    pv_p90_kw: NonNegKw

    @field_validator("load_p90_kw", "pv_p90_kw")
    @classmethod
    def _no_crossing(cls, value: float, info: Any) -> float:
        prefix = info.field_name.split("_p90")[0]
        p10, p50 = info.data.get(f"{prefix}_p10_kw"), info.data.get(f"{prefix}_p50_kw")
        if p10 is not None and p50 is not None and not (p10 <= p50 <= value):
            raise ValueError(f"{prefix} quantiles cross: need p10 <= p50 <= p90")
        return value


class ForecastMsg(SlotSeries):
    KIND: ClassVar[str] = "forecast"
    forecast_id: str = Field(default_factory=new_id)
    issued_at: AwareDatetime = Field(default_factory=utcnow)
    model_id: str
    fallback: bool = False
    notes: list[str] = Field(default_factory=list)
    slots: list[ForecastSlot] = Field(min_length=1, max_length=MAX_SLOTS)


# --------------------------------------------------------------------------- plan


class PlanSlot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    start: AwareDatetime
    mode: str = Field(max_length=32)
    charge_kw: NonNegKw = 0.0
    discharge_kw: NonNegKw = 0.0
    import_kw: NonNegKw = 0.0
    export_kw: NonNegKw = 0.0
    soc_kwh: NonNegKwh = Field(description="stored energy at the END of the slot")
    soc_target_frac: float | None = Field(None, ge=0, le=1)
    pv_curtail_kw: NonNegKw = 0.0
    water_kw: NonNegKw = 0.0
    ev_kw: NonNegKw = 0.0
    load_kw: NonNegKw | None = None
    pv_kw: NonNegKw | None = None
    import_price_per_kwh: Price | None = None
    export_price_per_kwh: Price | None = None
    reason_code: str | None = Field(None, max_length=64)
    battery_value_per_kwh: float | None = Field(None, allow_inf_nan=False)


class CostBreakdown(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    import_cost: float = Field(allow_inf_nan=False)
    export_revenue: float = Field(allow_inf_nan=False)
    wear_cost: float = Field(0.0, allow_inf_nan=False)
    capacity_cost: float = Field(0.0, allow_inf_nan=False)
    penalty_cost: float = Field(0.0, allow_inf_nan=False)
    total_cost: float = Field(allow_inf_nan=False)


class SolverStats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    solver: str = "highs"
    status: str
    objective: float | None = None
    build_s: float = Field(0.0, ge=0)
    solve_s: float = Field(0.0, ge=0)
    mip_gap: float | None = None


class PlanMsg(SlotSeries):
    KIND: ClassVar[str] = "plan"
    plan_id: str = Field(default_factory=new_id)
    created_at: AwareDatetime = Field(default_factory=utcnow)
    valid_until: AwareDatetime
    inputs: dict[str, str | None] = Field(default_factory=dict, description="ids of prices, forecast, ... used")
    fallback: bool = False
    reason: str = ""
    mode_changes_per_day: float | None = None
    slots: list[PlanSlot] = Field(min_length=1, max_length=MAX_SLOTS)
    cost: CostBreakdown
    solver: SolverStats
    explanation: dict[str, Any] = Field(default_factory=dict)


# --------------------------------------------------------------------------- executor side


class TelemetryMsg(Message):
    KIND: ClassVar[str] = "telemetry"
    ts: AwareDatetime
    soc_frac: float | None = Field(None, ge=0, le=1, description="None when the inverter did not report it")
    soc_kwh: float | None = Field(None, ge=0)
    pv_kw: NonNegKw | None = None
    load_kw: NonNegKw | None = None
    grid_kw: Kw | None = Field(None, description="positive = import")
    battery_kw: Kw | None = Field(None, description="positive = charging")
    water_kw: NonNegKw | None = None
    ev_kw: NonNegKw | None = None
    # optional (same major): read where the source has them (the Home Assistant backend's entities)
    water_temp_c: float | None = Field(None, ge=-40, le=120, description="water heater temperature")
    ev_plugged: bool | None = None
    ev_soc_frac: float | None = Field(None, ge=0, le=1)
    source: str = "executor"


class ObservationMsg(Message):
    KIND: ClassVar[str] = "observation"
    slot_start: AwareDatetime
    duration_minutes: Literal[15] = 15
    load_kwh: NonNegKwh | None = None
    pv_kwh: NonNegKwh | None = None
    import_kwh: NonNegKwh | None = None
    export_kwh: NonNegKwh | None = None
    charge_kwh: NonNegKwh | None = None
    discharge_kwh: NonNegKwh | None = None
    water_kwh: NonNegKwh | None = None
    ev_kwh: NonNegKwh | None = None
    soc_end_frac: float | None = Field(None, ge=0, le=1)
    coverage_frac: float = Field(1.0, ge=0, le=1, description="share of the slot covered by readings")

    @field_validator("slot_start")
    @classmethod
    def _aligned(cls, value: datetime) -> datetime:
        if value.minute % 15 or value.second or value.microsecond:
            raise ValueError("slot_start must be on the 15-minute grid")
        return value


class OverrideInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    expires_at: AwareDatetime | None = None
    power_kw: float | None = None
    target_soc_frac: float | None = None  # force_charge: the SoC where charging stops


class EnergyTotalsMsg(Message):
    """Energy counters (kWh) since ``since``, from the executor's observations: what HA's energy
    dashboard reads as ``total_increasing`` sensors (a restart of the count is a meter reset there)."""

    KIND: ClassVar[str] = "energy_totals"
    since: AwareDatetime
    ts: AwareDatetime = Field(default_factory=utcnow)
    import_kwh: NonNegKwh = 0.0
    export_kwh: NonNegKwh = 0.0
    pv_kwh: NonNegKwh = 0.0
    load_kwh: NonNegKwh = 0.0
    charge_kwh: NonNegKwh = 0.0
    discharge_kwh: NonNegKwh = 0.0
    # optional (same major): money the battery saved vs the same home without it (shared/cost.py
    # battery_saving) over the slots whose prices the plan gave; may fall (wear, a losing cycle)
    saving: float | None = None
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    saving_unpriced_slots: int = Field(0, ge=0, description="measured slots without a price: not in saving")


class ExecutorStateMsg(Message):
    KIND: ClassVar[str] = "executor_state"
    ts: AwareDatetime = Field(default_factory=utcnow)
    mode: str
    override: OverrideInfo | None = None
    plan_id: str | None = None
    last_write: dict[str, Any] | None = None
    alarms: list[str] = Field(default_factory=list)
    shadow: bool = False


# --------------------------------------------------------------------------- context, commands, events

CONTEXT_TYPES: dict[str, type] = {
    "vacation": bool,
    "away": bool,
    "ev_plugged": bool,
    "ev_departure": datetime,
    "ev_target_kwh": float,
    "ev_soc_frac": float,  # the car's SoC as its charger reports it
    "ev_target_soc_frac": float,  # wanted SoC at departure (with ev_soc_frac: ev_target_kwh follows)
    "guests": bool,
    "risk": str,  # cautious | balanced | bold (the planner ignores anything else, saying so)
    "reserve_soc_frac": float,
}


class ContextMsg(Message):
    KIND: ClassVar[str] = "context"
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")
    value: bool | float | AwareDatetime | str | None
    set_at: AwareDatetime = Field(default_factory=utcnow)
    expires_at: AwareDatetime | None = None
    source: str = "unknown"

    @field_validator("value")
    @classmethod
    def _typed(cls, value: Any, info: Any) -> Any:
        name = info.data.get("name")
        expected = CONTEXT_TYPES.get(name or "")
        if expected is None or value is None:
            return value
        if expected is bool and not isinstance(value, bool):
            raise ValueError(f"context {name!r} needs true/false")
        if expected is str and not isinstance(value, str):
            raise ValueError(f"context {name!r} needs a text value")
        if expected is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"context {name!r} needs a number")
        if expected is datetime and isinstance(value, str):
            # from JSON the union's str member wins over AwareDatetime: parse it here, offset required
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                value = None
            if value is None or value.tzinfo is None:
                raise ValueError(f"context {name!r} needs an ISO 8601 time with offset")
        if expected is datetime and not isinstance(value, datetime):
            raise ValueError(f"context {name!r} needs an ISO 8601 time with offset")
        return value


class CommandMsg(Message):
    KIND: ClassVar[str] = "command"
    correlation_id: str = Field(default_factory=new_id, max_length=128)
    args: dict[str, Any] = Field(default_factory=dict)
    ttl_s: float | None = Field(None, gt=0, le=7 * 86400)
    sent_at: AwareDatetime = Field(default_factory=utcnow)
    issued_by: str | None = Field(None, max_length=64, description="who asked (user or service name)")
    reason: str | None = Field(None, max_length=200, description="why, as the sender put it")


class CommandResultMsg(Message):
    KIND: ClassVar[str] = "command_result"
    correlation_id: str | None = None
    status: Literal["ok", "error"]
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class ErrorEventMsg(Message):
    KIND: ClassVar[str] = "error"
    ts: AwareDatetime = Field(default_factory=utcnow)
    who: str = Field(description="the service that rejected or failed")
    what: str = Field(description="topic or operation concerned")
    why: str = Field(description="readable reason; never a secret")
    payload_excerpt: str | None = Field(None, max_length=300)
    count: int = Field(1, ge=1, description="occurrences of this (what, why) since its last report")


class OracleResultMsg(Message):
    KIND: ClassVar[str] = "oracle_result"
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    oracle_cost: float
    realized_cost: float | None = None
    regret: float | None = None
    breakdown: dict[str, float] = Field(default_factory=dict)


class TrainerRunMsg(Message):
    KIND: ClassVar[str] = "trainer_run"
    run_id: str
    target: str
    status: Literal["started", "finished", "failed", "rejected"]
    metrics: dict[str, float] = Field(default_factory=dict)
    model_id: str | None = None
    detail: str | None = None


# --------------------------------------------------------------------------- topic table


@dataclass(frozen=True)
class TopicSpec:
    """One row of the DESIGN §3 table. ``suffix`` may contain ``{name}``/``{service}``/``{action}``."""

    suffix: str
    model: type[Message] | None  # None: plain-text status payload
    retained: bool
    qos: int


TOPICS: dict[str, TopicSpec] = {
    "prices": TopicSpec("prices", PricesMsg, True, 1),
    "weather": TopicSpec("weather", WeatherMsg, True, 1),
    "forecast": TopicSpec("forecast", ForecastMsg, True, 1),
    "plan": TopicSpec("plan", PlanMsg, True, 1),
    "telemetry": TopicSpec("telemetry", TelemetryMsg, False, 0),
    "observations": TopicSpec("observations", ObservationMsg, False, 1),
    "executor_state": TopicSpec("executor/state", ExecutorStateMsg, True, 1),
    "price_now": TopicSpec("prices/now", PriceNowMsg, True, 1),
    "energy_totals": TopicSpec("energy/totals", EnergyTotalsMsg, True, 1),
    "context": TopicSpec("context/{name}", ContextMsg, True, 1),
    "command": TopicSpec("cmd/{service}/{action}", CommandMsg, False, 1),
    "command_result": TopicSpec("cmd/{service}/{action}/result", CommandResultMsg, False, 1),
    "status": TopicSpec("{service}/status", None, True, 1),
    "error": TopicSpec("events/error", ErrorEventMsg, False, 1),
    "oracle_result": TopicSpec("oracle/result", OracleResultMsg, False, 1),
    "trainer_run": TopicSpec("trainer/run", TrainerRunMsg, False, 1),
}
MODELS: dict[str, type[Message]] = {spec.model.KIND: spec.model for spec in TOPICS.values() if spec.model}


def topic(base: str, site_id: str, kind: str, **parts: str) -> str:
    """Full topic for ``kind`` (a key of TOPICS), e.g. ``topic("darkstar", "home", "context", name="away")``."""
    return f"{base}/{site_id}/" + TOPICS[kind].suffix.format(**parts)


def kind_of_topic(base: str, topic_name: str) -> tuple[str, str, dict[str, str]] | None:
    """(site_id, kind, parts) for a concrete topic, or None when it is not ours."""
    prefix = base.rstrip("/") + "/"
    if not topic_name.startswith(prefix):
        return None
    rest = topic_name[len(prefix) :].split("/")
    if len(rest) < 2:
        return None
    site_id, tail = rest[0], rest[1:]
    for kind, spec in TOPICS.items():
        pattern = spec.suffix.split("/")
        if len(pattern) != len(tail):
            continue
        parts: dict[str, str] = {}
        for want, got in zip(pattern, tail):
            if want.startswith("{") and want.endswith("}"):
                parts[want[1:-1]] = got
            elif want != got:
                break
        else:
            return site_id, kind, parts
    return None


def encode(msg: Message) -> bytes:
    """UTF-8 JSON with the schema tag, timestamps ISO 8601 with offset."""
    return msg.model_dump_json(by_alias=True, exclude_none=False).encode("utf-8")


def _excerpt(payload: bytes | str) -> str:
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    return text[:200]


MAX_PAYLOAD_BYTES = 2_000_000  # a week of 15-min plan slots is ~300 kB
MAX_JSON_DEPTH = 16
MAX_INT_DIGITS = 18
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _json_depth(raw: bytes) -> int:
    """Deepest nesting of ``raw``, counted before parsing (brackets inside strings do not count)."""
    depth = deepest = 0
    for match in _STRUCTURE.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer with {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} overflows (NaN and Infinity are refused)")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number (NaN and Infinity are refused)")


def _parse_bounded(payload: bytes | str, what: str) -> Any:
    """json.loads with limits checked first: size, nesting depth, integer digits, no NaN/Infinity."""
    raw = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else bytes(payload)
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise ContractError(what, f"payload of {len(raw)} bytes is larger than {MAX_PAYLOAD_BYTES}")
    depth = _json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise ContractError(what, f"JSON nested {depth} deep (at most {MAX_JSON_DEPTH})")
    try:
        data = json.loads(raw, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ContractError(what, f"not valid UTF-8 JSON ({err})") from None
    except (ValueError, RecursionError) as err:
        raise ContractError(what, f"refused JSON: {err}") from None
    too_long = _long_string(data)
    if too_long is not None:  # also inside free-form fields (args, explanation, data) the models do not type
        raise ContractError(what, f"{too_long}: a string longer than {MAX_STRING_CHARS} characters")
    return data


def _long_string(node: Any, path: str = "") -> str | None:
    """The path of the first string (key or value) longer than MAX_STRING_CHARS, or None."""
    if isinstance(node, str):
        return (path or "(top level)") if len(node) > MAX_STRING_CHARS else None
    if isinstance(node, dict):
        for key, value in node.items():
            if len(key) > MAX_STRING_CHARS:
                return f"{path}.<key>" if path else "<key>"
            found = _long_string(value, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _long_string(value, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def decode(payload: bytes | str, expected_kind: str | None = None) -> Message:
    """Parse and validate a JSON payload; raise ContractError saying what is wrong and where."""
    what = expected_kind or "payload"
    data = _parse_bounded(payload, what)
    if not isinstance(data, dict):
        raise ContractError(what, f"payload must be a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if not isinstance(schema, str):
        raise ContractError(what, "missing 'schema' field (expected 'darkstar.<kind>/<major>')")
    match = SCHEMA_RE.match(schema)
    if not match:
        raise ContractError(what, f"malformed schema {schema[:60]!r} (expected 'darkstar.<kind>/<major>')")
    kind, major = match["kind"], int(match["major"])
    model = MODELS.get(kind)
    if model is None:
        raise ContractError(what, f"unknown message kind {kind!r}")
    if expected_kind is not None and model is not MODELS.get(expected_kind):
        raise ContractError(what, f"expected a {expected_kind!r} message, got {kind!r}")
    if major != model.MAJOR:
        raise ContractError(what, f"unsupported major version {major} of {kind!r} (this build reads {model.MAJOR})")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = []
        for item in err.errors()[:5]:
            loc = ".".join(str(p) for p in item["loc"]) or "(top level)"
            problems.append(f"{loc}: {item['msg']}")
        more = f" (+{err.error_count() - 5} more)" if err.error_count() > 5 else ""
        raise ContractError(what, "; ".join(problems) + more) from None


def decode_for_topic(base: str, topic_name: str, payload: bytes) -> tuple[str, str, dict[str, str], Message | str]:
    """Decode a message by its topic: (site_id, kind, parts, message). Status payloads come back as text."""
    found = kind_of_topic(base, topic_name)
    if found is None:
        raise ContractError(topic_name, "topic is not part of the Darkstar contract")
    site_id, kind, parts = found
    spec = TOPICS[kind]
    if spec.model is None:
        text = payload.decode("utf-8", "replace").strip()
        if text not in (STATUS_ONLINE, STATUS_OFFLINE):
            raise ContractError(topic_name, f"status must be 'online' or 'offline', got {text[:40]!r}")
        return site_id, kind, parts, text
    msg = decode(payload, spec.model.KIND)
    if msg.site_id != site_id:  # type: ignore[attr-defined]
        raise ContractError(topic_name, f"site_id {msg.site_id!r} does not match the topic's site {site_id!r}")  # type: ignore[attr-defined]
    if kind == "context" and msg.name != parts.get("name"):  # type: ignore[attr-defined]
        raise ContractError(topic_name, "context name in the payload does not match the topic")
    return site_id, kind, parts, msg


def payload_excerpt(payload: bytes | str) -> str:
    return _excerpt(payload)
