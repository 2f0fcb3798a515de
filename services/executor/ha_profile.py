"""Home Assistant executor profiles: intents -> HA service calls on entities, as YAML data.

A profile names the controls of one HA inverter integration (``controls``: control name ->
the entity id that integration creates by default; the site's ``homeassistant.controls``
overrides any of them) and, per intent, the service calls that put the inverter in that mode.
A step's data value that is a string starting with ``=`` is an expression over the intent's
parameters (``"=power_w"``, ``"=round(soc_floor_pct)"``, same safe evaluator as the Modbus
profiles); any other value is sent as written (``option: "Force Charge"``). Every profile cites
the public entity documentation it was written from under ``sources``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.executor.modbus.expr import Expr
from services.executor.modbus.profile import ProfileError
from shared.config import yaml_load

HA_PROFILE_DIR = Path(__file__).parent / "ha_profiles"
# Actions a step may take, the entity domains that offer each, and the state that shows it worked
# ("option"/"value": the written data field; "on"/"off": that state; None: nothing to read back).
# The service is <entity domain>.<action>, so a profile serves integration entities (select.x) and
# HA helpers standing in for them (input_select.x) alike.
ACTIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "select_option": (("select", "input_select"), "option"),
    "set_value": (("number", "input_number"), "value"),
    "turn_on": (("switch", "input_boolean"), "on"),
    "turn_off": (("switch", "input_boolean"), "off"),
    "press": (("button", "input_button"), None),
    "run": (("script",), None),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HAStep(_Strict):
    action: str = Field(description="one of ACTIONS; the service is <entity domain>.<action>")
    control: str = Field(description="name of a control of this profile")
    data: dict[str, str | int | float | bool] = Field(default_factory=dict)
    verify: bool = Field(True, description="wait until the entity shows the written value")

    @field_validator("action")
    @classmethod
    def _known_action(cls, value: str) -> str:
        if value not in ACTIONS:
            raise ValueError(f"unsupported action {value!r} (supported: {', '.join(ACTIONS)})")
        return value

    def service(self, entity_id: str) -> tuple[str, str]:
        """(domain, service) for this step on ``entity_id``; ValueError when the entity cannot do it."""
        domain = entity_id.split(".", 1)[0]
        domains, _ = ACTIONS[self.action]
        if domain not in domains:
            raise ValueError(f"{entity_id}: a {domain} entity cannot {self.action} (needs {' or '.join(domains)})")
        return domain, "turn_on" if self.action == "run" else self.action

    @field_validator("data")
    @classmethod
    def _expressions_parse(cls, value: dict[str, Any]) -> dict[str, Any]:
        for item in value.values():
            if isinstance(item, str) and item.startswith("="):
                Expr(item[1:])
        return value

    def service_data(self, params: dict[str, Any]) -> dict[str, Any]:
        """The data to send, expressions evaluated; raises ValueError when one is unknown for this intent."""
        out: dict[str, Any] = {}
        for key, item in self.data.items():
            if isinstance(item, str) and item.startswith("="):
                result = Expr(item[1:]).evaluate(params)
                if result is None:
                    raise ValueError(f"{key}: {item[1:]!r} has no value for this intent")
                out[key] = result
            else:
                out[key] = item
        return out

    def expected_state(self, data: dict[str, Any]) -> str | float | None:
        """What the entity's state must show after this step (None: nothing to read back)."""
        if not self.verify:
            return None
        field = ACTIONS[self.action][1]
        if field in ("on", "off"):
            return field
        if field is None:
            return None
        return data.get(field)


class HAIntents(_Strict):
    self_consumption: list[HAStep]
    hold: list[HAStep] = Field(description="battery idle: required, the safety rules need it")
    charge: list[HAStep] | None = None
    discharge: list[HAStep] | None = None
    export_limit: list[HAStep] | None = None
    water_on: list[HAStep] | None = None
    water_off: list[HAStep] | None = None


class HALimits(_Strict):
    max_charge_kw: float | None = Field(None, gt=0)
    max_discharge_kw: float | None = Field(None, gt=0)


class HAProfile(_Strict):
    name: str
    title: str = ""
    description: str = ""
    sources: list[str] = Field(default_factory=list, description="public entity documentation of the integration")
    controls: dict[str, str | None] = Field(description="control name -> default entity id (None: site must set it)")
    intents: HAIntents
    limits: HALimits = Field(default_factory=HALimits)

    @model_validator(mode="after")
    def _controls_exist(self) -> HAProfile:
        for intent, steps in self.intents:
            for i, step in enumerate(steps or []):
                if step.control not in self.controls:
                    raise ValueError(f"intents.{intent}.{i}.control: unknown control {step.control!r}")
        return self

    def steps_for(self, intent: str) -> list[HAStep] | None:
        return getattr(self.intents, intent)

    def resolve_controls(self, overrides: dict[str, str]) -> dict[str, str]:
        """Control name -> entity id, the site's overrides first. A control with no entity is left out:
        the intents that need it are unsupported (the executor then falls back), the others still work."""
        unknown = sorted(set(overrides) - set(self.controls))
        if unknown:
            raise ProfileError(f"homeassistant.controls: {', '.join(unknown)} not a control of profile {self.name!r} "
                               f"(controls: {', '.join(self.controls)})")
        resolved = {name: overrides.get(name) or default for name, default in self.controls.items()}
        out = {name: str(entity) for name, entity in resolved.items() if entity}
        for needed in ("self_consumption", "hold"):
            missing = sorted({s.control for s in self.steps_for(needed) or []} - set(out))
            if missing:
                raise ProfileError(f"homeassistant.controls: profile {self.name!r} needs an entity for "
                                   f"{', '.join(missing)} (used by {needed}, which the safety rules need)")
        return out

    def usable(self, intent: str, controls: dict[str, str]) -> bool:
        steps = self.steps_for(intent)
        return steps is not None and all(s.control in controls for s in steps)


def load_ha_profile(name_or_path: str | Path) -> HAProfile:
    """A shipped profile by name (``"generic"``) or any HA profile YAML by path; errors name file and key."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = HA_PROFILE_DIR / f"{name_or_path}.yaml"
    try:
        data = yaml_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        shipped = ", ".join(sorted(p.stem for p in HA_PROFILE_DIR.glob("*.yaml")))
        raise ProfileError(f"Home Assistant profile not found: {path} (shipped: {shipped})") from None
    except yaml.YAMLError as err:
        raise ProfileError(f"{path}: not valid YAML: {getattr(err, 'problem', err)}") from None
    try:
        return HAProfile.model_validate(data)
    except ValidationError as err:
        lines = [f"invalid Home Assistant profile {path}:"]
        lines += [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
        raise ProfileError("\n".join(lines)) from None
