"""Oracle service shell: perfect-hindsight optimum per day and MPC-vs-oracle regret."""

from __future__ import annotations

from typing import ClassVar

from shared.service import Service


class OracleService(Service):
    name: ClassVar[str] = "oracle"
    inputs: ClassVar[dict[str, float | None]] = {"observations": None, "plan": None}
    not_implemented: ClassVar[list[str]] = ["nightly oracle runs"]
