"""Site configuration: one YAML file per site plus environment overrides.

Over 500 lines: the whole site schema in one file, so a key path in an error message or the docs
is found in one place; each section is a small pydantic model.

Environment variables override YAML keys: ``DARKSTAR__MQTT__HOST=broker`` sets ``mqtt.host``
(prefix ``DARKSTAR__``, ``__`` between levels, values parsed as YAML scalars). A bad config
fails at start-up with :class:`ConfigError`, whose message names the file, the key path and
the reason, and never echoes a secret.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from datetime import time
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from shared.config_checks import cross_field_problems, unknown_key_message, yaml_key_lines

ENV_PREFIX = "DARKSTAR__"
log = logging.getLogger("darkstar.config")


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 sexagesimal numbers, so ``departure: 07:00`` stays a time."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
               r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML the way every Darkstar config and profile file is read."""
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - SafeLoader subclass


class ConfigError(ValueError):
    """A site configuration that cannot be used; the message names file, key path and reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- physical assets


class BatteryConfig(_Strict):
    capacity_kwh: float = Field(gt=0)
    max_charge_kw: float = Field(gt=0)
    max_discharge_kw: float = Field(gt=0)
    charge_efficiency: float = Field(0.95, gt=0, le=1)
    discharge_efficiency: float = Field(0.95, gt=0, le=1)
    min_soc_frac: float = Field(0.05, ge=0, le=1, description="hard lower SoC limit")
    max_soc_frac: float = Field(1.0, ge=0, le=1, description="hard upper SoC limit")
    reserve_soc_frac: float = Field(0.10, ge=0, le=1, description="soft reserve; going below costs a penalty")
    reserve_penalty_per_kwh: float = Field(1.0, ge=0)
    wear_cost_per_kwh: float = Field(0.0, ge=0, description="cost per kWh of throughput (charge + discharge)")
    terminal_value_per_kwh: float | None = Field(
        None, description="value of energy left at the horizon end; None derives it from the horizon's prices"
    )
    grid_charging_allowed: bool = True

    @model_validator(mode="after")
    def _soc_order(self) -> BatteryConfig:
        if not self.min_soc_frac <= self.reserve_soc_frac <= self.max_soc_frac:
            raise ValueError("need min_soc_frac <= reserve_soc_frac <= max_soc_frac")
        if self.min_soc_frac >= self.max_soc_frac:
            raise ValueError("min_soc_frac must be below max_soc_frac")
        return self

    @property
    def min_soc_kwh(self) -> float:
        return self.min_soc_frac * self.capacity_kwh

    @property
    def max_soc_kwh(self) -> float:
        return self.max_soc_frac * self.capacity_kwh

    @property
    def reserve_soc_kwh(self) -> float:
        return self.reserve_soc_frac * self.capacity_kwh


class PVArrayConfig(_Strict):
    name: str = "array"
    kwp: float = Field(gt=0)
    tilt_deg: float = Field(30.0, ge=0, le=90)
    azimuth_deg: float = Field(180.0, ge=0, lt=360, description="compass bearing the panels face, 180 = south")
    losses_frac: float = Field(0.14, ge=0, lt=1)


class PVConfig(_Strict):
    arrays: list[PVArrayConfig] = Field(default_factory=list)
    inverter_ac_limit_kw: float | None = Field(None, gt=0)
    curtailment_allowed: bool = True

    @property
    def kwp_total(self) -> float:
        return sum(a.kwp for a in self.arrays)


class WaterHeaterConfig(_Strict):
    name: str = "water_heater"
    power_kw: float = Field(gt=0)
    modulating: bool = False
    daily_min_kwh: float = Field(0.0, ge=0, description="energy per local day")
    max_gap_hours: float | None = Field(None, gt=0, description="longest allowed time between heatings")
    min_run_minutes: int = Field(15, ge=15)
    start_cost: float = Field(0.0, ge=0, description="cost per start, in the site currency")
    legionella_interval_days: int = Field(7, ge=1, description="anti-legionella cycle period in vacation mode")
    legionella_kwh: float = Field(3.0, ge=0)


class ChargerFallbackConfig(_Strict):
    """What the charger does when Darkstar cannot steer it (shut-down, lost connection, stale plan)."""

    mode: Literal["current", "default"] = Field(
        "current", description="current: charge at current_a (installed on the charger as its default "
        "profile, so it holds without Darkstar); default: clear Darkstar's profile, the charger's own default applies")
    current_a: float = Field(6.0, ge=0, description="per-phase current in fallback mode 'current'")


class ChargerConfig(_Strict):
    """The charger an EV is plugged into (``evs[].charger``); the executor drives it from the plan."""

    type: Literal["ocpp", "evcc", "homeassistant", "none"] = "none"
    identity: str | None = Field(None, description="OCPP charge point identity (the last part of its URL), "
                                 "or evcc loadpoint number (1-based); a homeassistant charger uses homeassistant.entities/controls")
    password: SecretStr | None = Field(None, description="OCPP security profile 1 basic-auth password")
    password_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                     description="or: the environment variable that holds it (kept out of the YAML)")
    url: str | None = Field(None, description="evcc: base URL of its API, e.g. http://evcc.local:7070")
    connector_id: int = Field(1, ge=1)
    id_tag: str = Field("darkstar", max_length=20, description="OCPP idTag for RemoteStartTransaction")
    authorize: Literal["accept_all", "id_tags"] = Field(
        "id_tags", description="OCPP Authorize policy: accept every idTag, or only id_tag and allowed_id_tags")
    allowed_id_tags: list[str] = Field(default_factory=list)
    phases: Literal[1, 3] = 3
    voltage_v: float = Field(230.0, gt=0, description="phase-to-neutral voltage")
    min_current_a: float = Field(6.0, ge=0, description="below this the car cannot charge (IEC 61851: 6 A)")
    max_current_a: float = Field(16.0, gt=0)
    fallback: ChargerFallbackConfig = Field(default_factory=ChargerFallbackConfig)
    deviation_kw: float = Field(1.0, gt=0, description="measured vs commanded EV power that triggers a replan")
    deviation_s: float = Field(120.0, gt=0, description="how long the deviation must last")

    @model_validator(mode="after")
    def _consistent(self) -> ChargerConfig:
        if self.min_current_a > self.max_current_a:
            raise ValueError("min_current_a must not exceed max_current_a")
        if self.fallback.current_a > self.max_current_a:
            raise ValueError("fallback.current_a must not exceed max_current_a")
        if self.type in ("ocpp", "evcc") and not self.identity:
            raise ValueError(f"a {self.type} charger needs an identity")
        if self.password_env is not None and not os.environ.get(self.password_env):
            raise ValueError(f"password_env: environment variable {self.password_env} is not set")
        if self.type == "ocpp" and self.secret() is None:
            raise ValueError("an ocpp charger needs a password (OCPP security profile 1: nothing "
                             "unauthenticated may connect as this charge point)")
        if self.type == "evcc" and not self.url:
            raise ValueError("an evcc charger needs the url of the evcc API")
        return self

    def secret(self) -> str | None:
        """The password (from the YAML or the environment variable named by password_env)."""
        if self.password is not None:
            return self.password.get_secret_value()
        return os.environ.get(self.password_env) if self.password_env else None

    def kw_for_amps(self, current_a: float) -> float:
        return current_a * self.voltage_v * self.phases / 1000.0

    def amps_for_kw(self, power_kw: float) -> float:
        return power_kw * 1000.0 / (self.voltage_v * self.phases)


class EVConfig(_Strict):
    name: str = "ev"
    battery_kwh: float = Field(60.0, gt=0)
    min_charge_kw: float = Field(1.4, ge=0)
    max_charge_kw: float = Field(gt=0)
    modulating: bool = True
    charge_efficiency: float = Field(0.9, gt=0, le=1)
    plugged_from: time = time(17, 0)
    departure: time = time(7, 0)
    target_kwh: float = Field(0.0, ge=0, description="energy needed by departure")
    shortfall_penalty_per_kwh: float = Field(5.0, ge=0)
    battery_may_feed_ev: bool = False
    target_soc_frac: float | None = Field(
        None, ge=0, le=1, description="when the car's SoC is known (its charger, or Home Assistant): the energy "
        "needed by departure is (target - SoC) x battery_kwh instead of target_kwh")
    charger: ChargerConfig = Field(default_factory=ChargerConfig)

    def needed_kwh(self, soc_frac: float | None, target_soc_frac: float | None) -> float | None:
        """Energy into the car's battery by departure from its SoC, or None when either is unknown."""
        if soc_frac is None or target_soc_frac is None:
            return None
        return max(0.0, target_soc_frac - soc_frac) * self.battery_kwh

    @model_validator(mode="after")
    def _power_order(self) -> EVConfig:
        if self.min_charge_kw > self.max_charge_kw:
            raise ValueError("min_charge_kw must not exceed max_charge_kw")
        if self.charger.type != "none" and self.charger.kw_for_amps(self.charger.max_current_a) < self.max_charge_kw - 0.05:
            raise ValueError(f"max_charge_kw {self.max_charge_kw:g} is more than the charger delivers at "
                             f"max_current_a ({self.charger.kw_for_amps(self.charger.max_current_a):.2f} kW)")
        return self


# --------------------------------------------------------------------------- grid and tariff


class TimeOfUseFee(_Strict):
    start: time
    end: time
    fee_per_kwh: float
    months: list[int] | None = Field(None, description="1-12; None = all months")
    weekdays_only: bool = False


class CapacityTierConfig(_Strict):
    above_kw: float = Field(ge=0)
    cost_per_period: float = Field(ge=0)


class CapacityTariffConfig(_Strict):
    enabled: bool = False
    price_per_kw: float = Field(0.0, ge=0, description="cost per kW of the billed peak per period")
    period: Literal["month", "day"] = "month"
    method: Literal["max_hourly", "mean_top_n_distinct_days", "tiers_mean_top3_daily", "max_15min"] = "max_hourly"
    top_n: int = Field(3, ge=1)
    tiers: list[CapacityTierConfig] = Field(default_factory=list)


class TariffConfig(_Strict):
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    price_area: str | None = None
    price_source: Literal["nordpool", "entsoe", "fixed", "data"] = "nordpool"
    entsoe_token: SecretStr | None = None
    auction_time_local: time = time(13, 0)
    day_ahead: bool = Field(
        True,
        description="prices come from a day-ahead auction published daily at auction_time_local; "
        "false for a time-of-use tariff known in advance",
    )
    grid_fee_per_kwh: float = 0.0
    grid_fee_schedule: list[TimeOfUseFee] = Field(default_factory=list)
    energy_tax_per_kwh: float = 0.0
    vat_frac: float = Field(0.0, ge=0, lt=1)
    export_bonus_per_kwh: float = 0.0
    export_fee_per_kwh: float = 0.0
    export_enabled: bool = True
    fixed_import_price_per_kwh: float | None = None
    fixed_export_price_per_kwh: float | None = None
    capacity: CapacityTariffConfig = Field(default_factory=CapacityTariffConfig)


class GridConfig(_Strict):
    max_import_kw: float = Field(17.0, gt=0, description="main fuse")
    max_export_kw: float = Field(17.0, ge=0)


class LocationConfig(_Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    altitude_m: float = 0.0
    timezone: str = "UTC"
    country: str = Field("SE", pattern=r"^[A-Z]{2}$")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


# --------------------------------------------------------------------------- runtime


class MQTTConfig(_Strict):
    embedded: bool = True
    host: str = "127.0.0.1"
    port: int = Field(11883, ge=1, le=65535, description="the embedded broker's port; 1883 is left to a real broker")
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_certs: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    tls_insecure: bool = False
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    keepalive_s: int = Field(30, ge=5)
    base_topic: str = Field("darkstar", pattern=r"^[A-Za-z0-9_\-/]+$")
    discovery_prefix: str = "homeassistant"
    share_group: str | None = Field(None, description="MQTT 5 shared-subscription group for fleet replicas")
    credentials_file: Path = Field(Path("var/mqtt-credentials.json"),
                                   description="per-service passwords for the embedded broker, generated, owner-only")
    allow_insecure_lan: bool = Field(False, description="let the embedded broker listen beyond loopback without TLS")
    max_publish_per_s: float = Field(
        20.0, gt=0, description="embedded broker: publishes per second a login other than Darkstar's own services "
        "may send (a token bucket; beyond it messages are dropped and counted), so one flooding client cannot "
        "starve commands")
    publish_burst: int = Field(50, ge=1, description="embedded broker: publishes such a login may send at once")

    @model_validator(mode="after")
    def _safe_bind(self) -> MQTTConfig:
        if self.embedded and not _is_loopback(self.host) and not self.tls and not self.allow_insecure_lan:
            raise ValueError(f"the embedded broker would listen on {self.host} without TLS: use 127.0.0.1, "
                             "set tls (with certfile/keyfile) or allow_insecure_lan: true")
        if self.embedded and self.tls and not (self.certfile and self.keyfile):
            raise ValueError("an embedded broker with tls needs certfile and keyfile")
        return self


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UserConfig(_Strict):
    """Another home system or person (Home Assistant, a phone app) allowed on the bus and HTTP."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")
    password: SecretStr = Field(description="MQTT password, also accepted as HTTP bearer token")
    grants: list[str] = Field(default_factory=list, description="action patterns, see shared/auth.py")

    @field_validator("password")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 12:
            raise ValueError("password must be at least 12 characters")
        return value


class AuthConfig(_Strict):
    users: list[UserConfig] = Field(default_factory=list)

    @field_validator("users")
    @classmethod
    def _unique(cls, users: list[UserConfig]) -> list[UserConfig]:
        names = [u.name for u in users]
        if len(set(names)) != len(names):
            raise ValueError("user names must be unique")
        return users


class RetentionConfig(_Strict):
    """Days of full detail; older rows are downsampled or pruned nightly (shared/storage/retention.py)."""

    enabled: bool = True
    run_at_local: time = Field(time(3, 30), description="local time of the nightly run (by the trainer)")
    execution_log_days: float = Field(14.0, gt=0, description="per-tick rows; older: one row per slot")
    plans_days: float = Field(7.0, gt=0, description="whole plans; older: the slots each plan was in force for")
    forecasts_days: float = Field(14.0, gt=0, description="whole forecasts; older: the slots each was newest for")
    error_events_days: float = Field(30.0, gt=0, description="single error events; older: one summary per day")


class DatabaseConfig(_Strict):
    url: SecretStr = SecretStr("sqlite:///var/darkstar.db")
    echo: bool = False
    spool_dir: Path = Field(Path("var/spool"), description="rows that could not be written during a database "
                            "outage wait here (one SQLite file per service) until it returns")
    spool_max_rows: int = Field(10_000, ge=1, description="per service; when full the oldest spooled row is dropped")
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

    @field_validator("url")
    @classmethod
    def _known_dialect(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not re.match(r"^(sqlite|postgresql(\+psycopg)?|mysql\+pymysql|mariadb\+pymysql)://", url):
            raise ValueError("database url must start with sqlite://, postgresql+psycopg:// or mysql+pymysql://")
        return value


DEFAULT_PORTS: dict[str, int] = {
    "dashboard": 8080, "forecaster": 8081, "planner": 8082, "executor": 8083, "trainer": 8084, "oracle": 8085,
}


class HTTPConfig(_Strict):
    host: str = "127.0.0.1"
    admin_token: SecretStr | None = Field(None, description="bearer token for /admin routes; None disables them")
    public_url: str | None = Field(None, pattern=r"^https?://",
                                   description="the web app's address as others (Home Assistant) reach it")
    ports: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_PORTS))

    @field_validator("ports", mode="before")
    @classmethod
    def _fill_ports(cls, value: Any) -> Any:
        """A partial mapping (``DARKSTAR__HTTP__PORTS__DASHBOARD=8090``) changes only the ports it names."""
        return {**DEFAULT_PORTS, **value} if isinstance(value, dict) else value


class RuleGuardSettings(_Strict):
    """The online switch to the self-consumption rule (:mod:`shared.ruleguard`)."""

    mode: Literal["off", "auto", "on"] = Field(
        "off", description="off: always the MPC; auto: the rule while the MPC's recent regret exceeds the margin; "
                           "on: always the rule")
    margin_frac: float = Field(0.005, ge=0, le=1, description="regret allowed, as a fraction of the rule's cost")
    window_days: int = Field(7, ge=1, le=60, description="finished days the regret is summed over")


class PlannerSettings(_Strict):
    horizon_hours: int = Field(48, ge=1, le=168)
    replan_minutes: int = Field(15, ge=1)
    soc_drift_replan_frac: float = Field(0.05, gt=0, le=1)
    risk: Literal["cautious", "balanced", "bold"] = "balanced"
    plan_validity_minutes: int = Field(60, ge=15)
    mip_gap: float = Field(0.001, ge=0, le=0.5)
    time_limit_s: float = Field(20.0, gt=0)
    setpoint_change_cost_per_kw: float = Field(0.002, ge=0)
    mode_switch_cost: float = Field(0.01, ge=0)
    rule_guard: RuleGuardSettings = Field(default_factory=RuleGuardSettings)


class ModbusConfig(_Strict):
    transport: Literal["tcp", "rtu", "rtu_over_tcp"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(1502, ge=1, le=65535)
    serial_port: str | None = None
    baudrate: int = 9600
    unit_id: int = Field(1, ge=0, le=247)
    timeout_s: float = Field(2.0, gt=0)
    retries: int = Field(3, ge=0)


class OcppServerConfig(_Strict):
    """The executor's OCPP 1.6J central system; charge points connect to ws://host:port/<path>/<identity>."""

    host: str = "0.0.0.0"
    port: int = Field(9000, ge=0, le=65535, description="0 picks a free port (tests)")
    path: str = Field("ocpp", pattern=r"^[A-Za-z0-9_\-/]*$")
    heartbeat_s: int = Field(300, ge=10)
    response_timeout_s: float = Field(10.0, gt=0)


class ExecutorSettings(_Strict):
    backend: Literal["modbus", "homeassistant"] = Field(
        "modbus", description="how the inverter is read and driven: own Modbus connection or Home Assistant entities")
    profile: str = "darkstar_sim"
    modbus: ModbusConfig = Field(default_factory=ModbusConfig)
    tick_s: float = Field(10.0, gt=0)
    shadow_mode: bool = False
    write_threshold_kw: float = Field(0.2, ge=0)
    telemetry_stale_s: float = Field(60.0, gt=0)
    import_guard: Literal["auto", "on", "off"] = Field(
        "auto", description="cap a fixed-command slot's import at the plan's (auto: with a capacity tariff)")
    import_guard_margin_kw: float = Field(0.2, ge=0, description="tolerated import above the plan's")
    max_override_s: float = Field(86400.0, gt=0, le=7 * 86400,
                                  description="longest pause or quick action a command may ask for (s)")
    ocpp: OcppServerConfig = Field(default_factory=OcppServerConfig)


HARole = Literal[
    "battery_soc", "battery_power", "pv_power", "load_power", "grid_power", "water_heater_power",
    "water_heater_temperature", "ev_soc", "ev_plugged", "ev_power", "import_energy", "export_energy",
]
HA_ROLES: tuple[str, ...] = get_args(HARole)


class HAEntityConfig(_Strict):
    """One Home Assistant entity playing a role; a plain ``sensor.x`` string is short for ``{entity_id: sensor.x}``."""

    entity_id: str = Field(pattern=r"^[a-z_]+\.[a-z0-9_]+$")
    sign: Literal[1, -1] = Field(
        1, description="-1 when the entity's positive direction is the opposite of Darkstar's "
        "(Darkstar: battery power positive = charging, grid power positive = import)")
    unit: str | None = Field(None, description="unit to assume when the entity has no unit_of_measurement")
    max_age_s: float | None = Field(
        None, gt=0, description="stale when Home Assistant has not updated it for this long (for entities "
        "that update regularly, e.g. a grid meter every few seconds; a PV sensor at 0 all night does not)")


class HAStatestreamConfig(_Strict):
    """Reading the entities from HA's ``mqtt_statestream`` integration instead of its WebSocket API:
    no token, read only. Its broker defaults to the site's own MQTT connection."""

    base_topic: str = Field("homeassistant_statestream", pattern=r"^[A-Za-z0-9_\-/]+$",
                            description="mqtt_statestream's base_topic (enable publish_attributes for units)")
    host: str | None = Field(None, description="broker HA publishes to; default: mqtt.host")
    port: int | None = Field(None, ge=1, le=65535, description="default: mqtt.port")
    username: str | None = Field(None, description="default: mqtt.username")
    password: SecretStr | None = Field(None, description="default: mqtt.password")


class HomeAssistantConfig(_Strict):
    """Reading the home from Home Assistant (and, with ``executor.backend: homeassistant``, driving it)."""

    input: Literal["websocket", "statestream"] = Field(
        "websocket", description="how entity states are read: the WebSocket API (token; reads and writes) or "
        "MQTT statestream (no token; read only, so the executor must run in shadow mode)")
    statestream: HAStatestreamConfig = Field(default_factory=HAStatestreamConfig)

    url: str = Field("http://homeassistant.local:8123", pattern=r"^https?://")
    token: SecretStr | None = Field(None, description="long-lived access token; better from the environment "
                                                      "(DARKSTAR__HOMEASSISTANT__TOKEN) or token_file")
    token_file: Path | None = Field(None, description="file holding the long-lived access token")
    entities: dict[HARole, HAEntityConfig] = Field(default_factory=dict)
    controls: dict[str, str] = Field(default_factory=dict, description="profile control name -> entity id")
    profile: str = Field("generic", description="HA executor profile (services/executor/ha_profiles/NAME.yaml)")
    min_write_interval_s: float = Field(30.0, ge=0, description="shortest time between two writes to one entity")
    verify_timeout_s: float = Field(5.0, gt=0, description="how long a written entity may take to show its new state")

    @field_validator("entities", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"entity_id": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    def token_value(self) -> str:
        """The token, from ``token`` or ``token_file``; the ConfigError never shows it."""
        if self.token is not None:
            return self.token.get_secret_value().strip()
        if self.token_file is not None:
            try:
                return self.token_file.read_text(encoding="utf-8").strip()
            except OSError as err:
                raise ConfigError(f"homeassistant.token_file: cannot read {self.token_file}: {err.strerror}") from None
        raise ConfigError("homeassistant.token: no token (set DARKSTAR__HOMEASSISTANT__TOKEN or homeassistant.token_file)")


class ForecasterSettings(_Strict):
    retrain_hours: int = Field(24 * 7, ge=1)
    weather_source: Literal["open-meteo", "none"] = "open-meteo"
    forecast_every_minutes: int = Field(60, ge=5)
    price_poll_minutes: int = Field(15, ge=1, description="retry interval until tomorrow's prices appear")
    history_days: int = Field(90, ge=9, description="training window")
    model_dir: str = "var/models"
    load_prior_daily_kwh: float = Field(
        12.0, gt=0, description="cold start: the household's daily consumption until a day has been measured")
    replay_data: str | None = Field(
        None,
        description="recorded site data replayed as the outside world (prices, weather, history): demo and offline",
    )


class TrainerSettings(_Strict):
    retrain_days: float = Field(7.0, gt=0, description="scheduled retraining interval (days); weekly by default")
    train_on_start: bool = Field(False, description="train once at start when no run is recorded yet")
    kinds: list[Literal["aurora", "antares"]] = Field(default_factory=lambda: ["aurora", "antares"])
    history_days: int = Field(365, ge=2, description="days of history replayed / trained on")
    validation_frac: float = Field(0.2, gt=0, lt=1, description="last fraction of days held back (Antares)")
    antares_episodes: Literal["simulated", "live"] = Field(
        "simulated", description="train Antares on MPC replays of the history, or on the live planner's own runs")
    aurora_validation_days: int = Field(7, ge=1)
    antares_max_excess_vs_mpc_frac: float = Field(
        0.02, ge=0, description="an Antares policy is approved only if its money on the validation days is at "
                                "most this fraction above the MPC's")
    seed: int = 0
    model_dir: str = "var/models"
    data: str | None = Field(None, description="recorded site data to train on (offline); default: "
                                               "forecaster.replay_data, else the database")


class PlausibilityConfig(_Strict):
    """Bounds beyond which a bus message cannot be true at this site (shared/plausibility.py)."""

    power_margin_frac: float = Field(0.25, ge=0, le=2, description="tolerance over fuse/inverter/battery limits")
    # EU day-ahead clearing is bounded to [-0.5, 4] EUR/kWh (harmonised min/max clearing price);
    # with grid fees and VAT on top, a consumer price outside [-1, 6] is a broken feed, not a market.
    price_min_per_kwh: float = -1.0
    price_max_per_kwh: float = 6.0
    live_window_s: float = Field(600.0, gt=0, description="how far a live timestamp may be from now")

    @model_validator(mode="after")
    def _band(self) -> PlausibilityConfig:
        if self.price_min_per_kwh >= self.price_max_per_kwh:
            raise ValueError("price_min_per_kwh must be below price_max_per_kwh")
        return self


class SiteConfig(_Strict):
    site_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")
    name: str = ""
    location: LocationConfig
    grid: GridConfig = Field(default_factory=GridConfig)
    tariff: TariffConfig = Field(default_factory=TariffConfig)
    battery: BatteryConfig | None = None
    pv: PVConfig = Field(default_factory=PVConfig)
    water_heaters: list[WaterHeaterConfig] = Field(default_factory=list)
    evs: list[EVConfig] = Field(default_factory=list)
    mqtt: MQTTConfig = Field(default_factory=MQTTConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    http: HTTPConfig = Field(default_factory=HTTPConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    plausibility: PlausibilityConfig = Field(default_factory=PlausibilityConfig)
    planner: PlannerSettings = Field(default_factory=PlannerSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    forecaster: ForecasterSettings = Field(default_factory=ForecasterSettings)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)
    homeassistant: HomeAssistantConfig | None = None

    @model_validator(mode="after")
    def _backend_needs_ha(self) -> SiteConfig:
        if self.executor.backend == "homeassistant" and self.homeassistant is None:
            raise ValueError("executor.backend 'homeassistant' needs a homeassistant: block (url, token, entities)")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return self.location.tz


# --------------------------------------------------------------------------- loading


def _format_validation_error(err: ValidationError, source: str, key_lines: dict[tuple[Any, ...], int]) -> str:
    lines = [f"invalid site configuration in {source}:"]
    for item in err.errors():
        loc = tuple(item["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            reason = unknown_key_message(SiteConfig, loc, key_lines)
        else:  # never echo input values: they may be secrets
            line = key_lines.get(loc) or key_lines.get(loc[:-1])
            reason = item["msg"] + (f" (line {line})" if line else "")
        lines.append(f"  {path}: {reason}")
    return "\n".join(lines)


def _apply_env_overrides(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """Merge ``DARKSTAR__A__B=value`` into the YAML mapping before validation.

    Hand-written rather than pydantic-settings on purpose: the overrides must land in the same
    mapping as the YAML so one validation reports one key path (with its YAML line), values are
    YAML scalars like the file's, and tests pass their own ``environ``; pydantic-settings' env
    source would need a custom source doing exactly this.
    """
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        try:
            value = yaml_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        # Secrets and free text stay strings even if they look like numbers.
        if path[-1] in {"password", "admin_token", "entsoe_token", "url", "username", "token"} and value is not None:
            value = raw
        node[path[-1]] = value
    return data


def _line_note(dotted_path: str, key_lines: dict[tuple[Any, ...], int] | None) -> str:
    loc = tuple(int(p) if p.isdigit() else p for p in dotted_path.split("."))
    line = (key_lines or {}).get(loc)
    return f" (line {line})" if line else ""


def site_config_from_dict(
    data: dict[str, Any], source: str = "<dict>", environ: dict[str, str] | None = None,
    key_lines: dict[tuple[Any, ...], int] | None = None,
) -> SiteConfig:
    """Validate a config mapping (after environment overrides); raise ConfigError naming key paths.

    Cross-field errors (a battery the fuse can never charge, ...) fail like field errors;
    cross-field warnings are logged once per load.
    """
    merged = _apply_env_overrides(dict(data), dict(os.environ if environ is None else environ))
    try:
        site = SiteConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source, key_lines or {})) from None
    problems = cross_field_problems(site)
    errors = [p for p in problems if p.level == "error"]
    if errors:
        raise ConfigError("\n".join([f"invalid site configuration in {source}:",
                                     *(f"  {p}{_line_note(p.path, key_lines)}" for p in errors)]))
    for problem in problems:
        log.warning("%s: %s", source, problem)
    return site


def load_site_config(path: str | Path, environ: dict[str, str] | None = None) -> SiteConfig:
    """Load a site YAML file, apply ``DARKSTAR__...`` environment overrides and validate it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"site configuration file not found: {path}") from None
    try:
        data = yaml_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return site_config_from_dict(data, source=str(path), environ=environ, key_lines=yaml_key_lines(text))
