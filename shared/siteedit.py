"""Editing a site YAML file safely: the schema as a form, validation by the same models, atomic save.

- :func:`schema_fields`: every key of the file's site (descriptions, units, defaults, choices,
  bounds) walked from the pydantic models of shared.config, grouped per device/section.
- :func:`apply_changes` + :func:`validate`: a change set (``{"battery.capacity_kwh": "12"}``)
  applied to the file's data and validated exactly as ``darkstar up`` would load it.
- :func:`save`: a round-trip YAML edit (ruamel.yaml keeps comments, order and quoting), written
  to a temporary file and renamed over the original (atomic), after a timestamped backup.
"""

from __future__ import annotations

import copy
import difflib
import io
import os
import re
import shutil
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, time, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretStr

from shared.config import ConfigError, SiteConfig, site_config_from_dict, yaml_load

SECRET_KEYS = {"password", "admin_token", "entsoe_token", "url"}
UNITS = (("_per_kwh", "per kWh"), ("_per_kw", "per kW"), ("_kwh", "kWh"), ("_kwp", "kWp"), ("_kw", "kW"),
         ("_frac", "fraction 0–1"), ("_pct", "%"), ("_deg", "°"), ("_minutes", "min"), ("_hours", "h"),
         ("_days", "days"), ("_s", "s"), ("_m", "m"), ("_c", "°C"), ("kwp", "kWp"))
PATH_RE = re.compile(r"^[a-z_][a-z0-9_]*(\[\d+\])?(\.[a-z_][a-z0-9_]*(\[\d+\])?)*$")


@dataclass
class FieldInfo:
    path: str
    group: str
    kind: Literal["bool", "int", "float", "str", "choice", "time", "yaml", "secret"]
    description: str = ""
    unit: str = ""
    default: Any = None
    choices: list[str] = field(default_factory=list)
    bounds: dict[str, float] = field(default_factory=dict)
    optional: bool = False


def unit_of(name: str) -> str:
    for suffix, unit in UNITS:
        if name.endswith(suffix):
            return unit
    return ""


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(inner type, optional) for ``X | None``."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else annotation), True
    return annotation, False


def _kind(annotation: Any) -> tuple[str, list[str]]:
    if annotation is SecretStr:
        return "secret", []
    if typing.get_origin(annotation) is Literal:
        return "choice", [str(a) for a in typing.get_args(annotation)]
    for typ, name in ((bool, "bool"), (int, "int"), (float, "float"), (time, "time"), (str, "str"), (Path, "str")):
        if annotation is typ:
            return name, []
    return "yaml", []  # lists and mappings of scalars: edited as YAML text


def _bounds(info: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for meta in info.metadata:
        for key in ("ge", "gt", "le", "lt"):
            value = getattr(meta, key, None)
            if value is not None:
                out[key] = float(value)
    return out


def _default(info: Any) -> Any:
    if info.is_required():
        return None
    value = info.default_factory() if info.default_factory is not None else info.default
    if isinstance(value, (BaseModel, SecretStr)):
        return None
    return value.isoformat(timespec="minutes") if isinstance(value, time) else value


def schema_fields(data: dict[str, Any], model: type[BaseModel] = SiteConfig, prefix: str = "",
                  group: str = "site") -> list[FieldInfo]:
    """Every editable leaf for the file's ``data``: nested sections, existing list items, optional devices present."""
    out: list[FieldInfo] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation, optional = _unwrap(info.annotation)
        origin = typing.get_origin(annotation)
        here = data.get(name) if isinstance(data, dict) else None
        sub_group = name if not prefix else group
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if optional and here is None:
                continue  # an absent device (no battery): adding one is a file edit, not a form field
            out += schema_fields(here or {}, annotation, f"{path}.", sub_group)
            continue
        if origin is list:
            (item,) = typing.get_args(annotation) or (Any,)
            if isinstance(item, type) and issubclass(item, BaseModel):
                for i, entry in enumerate(here or []):
                    out += schema_fields(entry if isinstance(entry, dict) else {}, item, f"{path}[{i}].",
                                         f"{sub_group}[{i}]" if not prefix else group)
                continue
        kind, choices = _kind(annotation)
        if name in SECRET_KEYS:
            kind = "secret"
        out.append(FieldInfo(path=path, group=sub_group if prefix else "site", kind=kind,
                             description=info.description or "", unit=unit_of(name), default=_default(info),
                             choices=choices, bounds=_bounds(info), optional=optional))
    return out


def _steps(path: str) -> list[str | int]:
    if not PATH_RE.match(path):
        raise KeyError(f"not a settings key: {path!r}")
    steps: list[str | int] = []
    for part in path.split("."):
        name, _, index = part.partition("[")
        steps.append(name)
        if index:
            steps.append(int(index.rstrip("]")))
    return steps


def get_value(data: Any, path: str) -> Any:
    node = data
    for step in _steps(path):
        if isinstance(step, int):
            node = node[step] if isinstance(node, list) and step < len(node) else None
        else:
            node = node.get(step) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def _set(node: Any, steps: list[str | int], value: Any, remove: bool) -> None:
    for step in steps[:-1]:
        if isinstance(step, int):
            node = node[step]
        else:
            if node.get(step) is None:
                node[step] = {}
            node = node[step]
    last = steps[-1]
    if remove:
        if isinstance(node, dict):
            node.pop(last, None)
    else:
        node[last] = value


def parse_value(raw: Any, info: FieldInfo | None) -> tuple[Any, bool]:
    """(value, remove): an empty text means "use the default" (the key leaves the file)."""
    if isinstance(raw, str) and raw.strip() == "":
        return None, True
    if not isinstance(raw, str):
        return raw, False
    if info is not None and info.kind in ("str", "choice", "time"):
        return raw, False  # a name or a clock time stays text ("07:00", "SE4")
    try:
        return yaml_load(raw), False
    except Exception as err:  # noqa: BLE001 - yaml raises several types; any of them means bad text
        raise ValueError(f"not a valid value: {err}") from None


def apply_changes(data: dict[str, Any], changes: dict[str, Any], fields: list[FieldInfo]) -> dict[str, Any]:
    """A copy of ``data`` with ``changes`` (path -> raw text from the form) applied; secrets are never set here."""
    by_path = {f.path: f for f in fields}
    out = copy.deepcopy(data)
    for path, raw in changes.items():
        info = by_path.get(path)
        if info is None:
            raise KeyError(f"{path}: not a settings key of this site")
        if info.kind == "secret":
            raise KeyError(f"{path}: secrets are not edited in the web app (edit the file or the environment)")
        value, remove = parse_value(raw, info)
        _set(out, _steps(path), value, remove)
    return out


def validate(data: dict[str, Any], source: str) -> tuple[SiteConfig | None, dict[str, str]]:
    """The site as ``darkstar up`` would load it (environment overrides left out), or errors per key path."""
    try:
        return site_config_from_dict(data, source=source, environ={}), {}
    except ConfigError as err:
        errors: dict[str, str] = {}
        for line in str(err).splitlines()[1:]:
            path, _, why = line.strip().partition(": ")
            errors[_display_path(path)] = why
        return None, errors or {"(file)": str(err)}


def _display_path(path: str) -> str:
    """``water_heaters.0.power_kw`` (pydantic) -> ``water_heaters[0].power_kw`` (the form's)."""
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", path)


def _roundtrip() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip mode: comments, key order and quoting survive
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)  # the examples' style: "  - item" under a key
    return yaml


def edited_text(path: Path, changes: dict[str, Any], fields: list[FieldInfo]) -> str:
    """The file's text with the changes applied, comments and layout kept."""
    yaml = _roundtrip()
    doc = yaml.load(path.read_text(encoding="utf-8"))
    by_path = {f.path: f for f in fields}
    for key, raw in changes.items():
        value, remove = parse_value(raw, by_path.get(key))
        _set(doc, _steps(key), value, remove)
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return buf.getvalue()


_SECRET_NAMES = "|".join(sorted(SECRET_KEYS | {"token"}))
# a secret key anywhere a YAML key can stand: block style, a list item, flow style, quoted
_SECRET_KEY = re.compile(r"(?:^|[\s{,\-])[\"']?(?:" + _SECRET_NAMES + r")[\"']?\s*:(?:\s|$)")
_PLAIN_SECRET = re.compile(r"^(\s*(?:-\s+)?(?:" + _SECRET_NAMES + r")\s*:\s*)([^\s\"'|>#{\[][^#]*?)(\s+#.*)?$")
_BLOCK_START = re.compile(r":\s*(?:[|>][-+0-9]*)?\s*(?:#.*)?$")  # the value follows on the next lines
HIDDEN = "'********'"


def redact(text: str) -> str:
    """``text`` with every secret's value replaced: the preview is open to readers, secrets are not.
    A plain ``key: value`` keeps its comment; any other line holding a secret (flow style, quoted
    keys or values) is hidden whole, and so are the lines of a secret whose value follows below it."""
    out: list[str] = []
    hiding_deeper_than: int | None = None
    for line in text.splitlines(keepends=True):
        body, end = line.rstrip("\n"), "\n" if line.endswith("\n") else ""
        indent = len(body) - len(body.lstrip())
        if hiding_deeper_than is not None:
            if body.strip() and indent <= hiding_deeper_than:
                hiding_deeper_than = None
            else:
                out.append((" " * indent + HIDDEN if body.strip() else body) + end)
                continue
        if not _SECRET_KEY.search(body):
            out.append(line)
            continue
        plain = _PLAIN_SECRET.match(body)
        if plain:
            out.append(plain.group(1) + HIDDEN + (plain.group(3) or "") + end)
        else:
            out.append(" " * indent + f"{HIDDEN}  # a line holding a secret" + end)
            if _BLOCK_START.search(body):
                hiding_deeper_than = indent
    return "".join(out)


def diff(old_text: str, new_text: str, name: str) -> str:
    """The unified diff of an edit, secrets redacted (a secret is never edited here, so nothing is hidden that changes)."""
    return "".join(difflib.unified_diff(redact(old_text).splitlines(keepends=True),
                                        redact(new_text).splitlines(keepends=True),
                                        fromfile=f"{name} (saved)", tofile=f"{name} (edited)", n=1))


def read_only_reason(path: Path) -> str | None:
    """Why a save of ``path`` cannot work for this process (the file or its folder not writable, e.g. a read-only
    mount in docker-compose), or None when it can."""
    if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
        return None
    return (f"{path} is read-only here (a read-only mount, as in docker-compose): edit the file on the host and "
            "restart the services, or mount its folder writable for the web app (docs/deployment.md)")


def save(path: Path, new_text: str, now: datetime | None = None) -> Path:
    """Back up the current file (``<name>.<UTC time>.bak`` beside it), then atomically replace it."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    shutil.copy2(path, backup)
    tmp = path.with_name(f".{path.name}.{stamp}.tmp")
    tmp.write_text(new_text, encoding="utf-8")
    shutil.copymode(path, tmp)
    os.replace(tmp, path)  # atomic on one filesystem: a reader sees the old or the new file, never half
    return backup
