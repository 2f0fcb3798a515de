"""Config sense: cross-field checks of a site and readable unknown-key errors.

Field validators check one value; these rules check values against each other (battery power
against capacity and the fuse, appliances against the fuse). An error stops the start with the
key path; a warning is logged at start and the start goes on. Unknown keys name the nearest
valid key (:mod:`difflib`) and the YAML line, so a typo is fixed without reading the docs.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel

if TYPE_CHECKING:  # shared.config imports this module; the type is only for annotations
    from shared.config import SiteConfig

# Home batteries charge at about 0.5-1C; above 2C is worth a warning, above 5C is most likely a typo.
C_RATE_WARN = 2.0
C_RATE_TYPO = 5.0
# A power several times what can physically flow is a typo, not an oversized inverter.
TYPO_FACTOR = 3.0


@dataclass(frozen=True)
class ConfigProblem:
    level: Literal["error", "warning"]
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# --------------------------------------------------------------------------- unknown keys


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X``, ``X | None``, ``list[X]`` or ``dict[str, X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, dict):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def valid_keys(root: type[BaseModel], parent: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the mapping at ``parent`` (a pydantic error ``loc`` without its last part)."""
    model: type[BaseModel] | None = root
    for part in parent:
        if model is None:
            return []
        if isinstance(part, int) or part not in model.model_fields:
            continue  # a list index (or a dict key) keeps the item model
        model = _model_in(model.model_fields[part].annotation)
    return sorted(model.model_fields) if model is not None else []


def nearest_key(key: str, candidates: list[str]) -> str | None:
    matches = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


def yaml_key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """1-based line of every key in a YAML document, by key path (list items by index)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key_path = (*path, key_node.value)
                lines[key_path] = key_node.start_mark.line + 1
                walk(value_node, key_path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    walk(root, ())
    return lines


def unknown_key_message(root: type[BaseModel], loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> str:
    """``unknown key (did you mean 'max_charge_kw'?), line 12`` for a pydantic ``extra_forbidden`` error."""
    key = str(loc[-1]) if loc else ""
    hint = nearest_key(key, valid_keys(root, loc[:-1]))
    text = "unknown key" + (f" (did you mean {hint!r}?)" if hint else "")
    line = lines.get(tuple(loc))
    return text + (f", line {line}" if line else "")


# --------------------------------------------------------------------------- cross-field checks


def _level(value: float, possible: float) -> Literal["error", "warning"]:
    return "error" if value > TYPO_FACTOR * possible else "warning"


def cross_field_problems(site: SiteConfig) -> list[ConfigProblem]:
    """Values that are each valid but cannot all be true of one home."""
    problems: list[ConfigProblem] = []
    fuse_kw = site.grid.max_import_kw
    pv_kw = site.pv.kwp_total
    if site.pv.inverter_ac_limit_kw is not None:
        pv_kw = min(pv_kw, site.pv.inverter_ac_limit_kw)
    bat = site.battery
    if bat is not None:
        for key, power_kw in (("max_charge_kw", bat.max_charge_kw), ("max_discharge_kw", bat.max_discharge_kw)):
            c_rate = power_kw / bat.capacity_kwh
            if c_rate > C_RATE_WARN:  # only a warning: small test batteries and supercaps exist
                typo = " (kW and kWh, or W and kW, swapped?)" if c_rate > C_RATE_TYPO else ""
                problems.append(ConfigProblem("warning", f"battery.{key}", (
                    f"{c_rate:.1f}C ({power_kw:g} kW on {bat.capacity_kwh:g} kWh) is unusually high for a home "
                    f"battery{typo}")))
        # Charging power comes from the grid (through the fuse) or from PV: nothing else feeds it.
        # Inverters rated a little above the fuse are common (the fuse then limits): a warning;
        # several times above is a typo.
        reachable_kw = fuse_kw + pv_kw
        if bat.max_charge_kw > reachable_kw:
            problems.append(ConfigProblem(_level(bat.max_charge_kw, reachable_kw), "battery.max_charge_kw", (
                f"{bat.max_charge_kw:g} kW can never flow in: grid.max_import_kw {fuse_kw:g} kW + PV {pv_kw:g} kW "
                f"= {reachable_kw:g} kW")))
        # Discharge serves the house (wired for the fuse) and the export limit.
        usable_kw = fuse_kw + site.grid.max_export_kw
        if bat.max_discharge_kw > usable_kw:
            problems.append(ConfigProblem(_level(bat.max_discharge_kw, usable_kw), "battery.max_discharge_kw", (
                f"{bat.max_discharge_kw:g} kW can never flow out: house load up to grid.max_import_kw "
                f"{fuse_kw:g} kW + grid.max_export_kw {site.grid.max_export_kw:g} kW = {usable_kw:g} kW")))
        fill_kw = min(bat.max_charge_kw, reachable_kw)
        fill_h = bat.capacity_kwh / fill_kw
        if fill_h > 48:  # longer than any plan horizon; longer than a week is a typo
            problems.append(ConfigProblem("error" if fill_h > 168 else "warning", "battery.capacity_kwh", (
                f"{bat.capacity_kwh:g} kWh takes {fill_h:.0f} h to fill at the most that can flow in "
                f"({fill_kw:g} kW), longer than any plan")))
        if site.pv.inverter_ac_limit_kw is not None and bat.max_discharge_kw > site.pv.inverter_ac_limit_kw:
            problems.append(ConfigProblem("warning", "battery.max_discharge_kw", (
                f"{bat.max_discharge_kw:g} kW is above pv.inverter_ac_limit_kw {site.pv.inverter_ac_limit_kw:g} kW: "
                "a hybrid inverter caps both")))
    for i, heater in enumerate(site.water_heaters):
        if heater.power_kw > fuse_kw:
            problems.append(ConfigProblem("error", f"water_heaters.{i}.power_kw", (
                f"{heater.power_kw:g} kW is above the fuse grid.max_import_kw {fuse_kw:g} kW")))
    for i, ev in enumerate(site.evs):
        if ev.max_charge_kw > fuse_kw:
            problems.append(ConfigProblem("error", f"evs.{i}.max_charge_kw", (
                f"{ev.max_charge_kw:g} kW is above the fuse grid.max_import_kw {fuse_kw:g} kW")))
        if ev.target_kwh > ev.battery_kwh:
            problems.append(ConfigProblem("error", f"evs.{i}.target_kwh", (
                f"{ev.target_kwh:g} kWh is more than the car's battery_kwh {ev.battery_kwh:g} kWh")))
    ha = site.homeassistant
    if (ha is not None and ha.input == "statestream" and site.executor.backend == "homeassistant"
            and not site.executor.shadow_mode):
        problems.append(ConfigProblem("error", "homeassistant.input", (
            "statestream is read only (no token): the executor cannot write through it; set "
            "executor.shadow_mode: true to observe and plan, or homeassistant.input: websocket to drive HA")))
    if site.pv.inverter_ac_limit_kw is not None and site.pv.kwp_total > 2 * site.pv.inverter_ac_limit_kw:
        problems.append(ConfigProblem("warning", "pv.inverter_ac_limit_kw", (
            f"{site.pv.kwp_total:g} kWp on a {site.pv.inverter_ac_limit_kw:g} kW inverter clips most sunny hours")))
    return problems


def limit_problems(site: SiteConfig, limits: dict[str, float | None], source: str) -> list[ConfigProblem]:
    """Battery and export settings against the inverter's own limits (from its profile)."""
    problems: list[ConfigProblem] = []
    ours = {
        "max_charge_kw": ("battery.max_charge_kw", site.battery.max_charge_kw if site.battery else None),
        "max_discharge_kw": ("battery.max_discharge_kw", site.battery.max_discharge_kw if site.battery else None),
        "max_export_kw": ("grid.max_export_kw", site.grid.max_export_kw),
    }
    for name, (path, value) in ours.items():
        limit = limits.get(name)
        if value is not None and limit is not None and value > limit:
            problems.append(ConfigProblem("warning", path, (
                f"{value:g} kW is above the inverter's {name} {limit:g} kW ({source}); the inverter's limit applies")))
    return problems
