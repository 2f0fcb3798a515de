"""The one Darkstar version string (``darkstar --version``, ``/healthz``, HA discovery, backups).

It comes from the installed package metadata, i.e. ``[project] version`` in pyproject.toml;
a source tree that is not installed reads pyproject.toml directly.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@cache
def darkstar_version() -> str:
    try:
        return version("darkstar")
    except PackageNotFoundError:
        try:
            return str(tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"
