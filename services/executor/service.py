"""Executor service shell: follows the plan on the inverter (Modbus), with overrides and safety."""

from __future__ import annotations

from typing import ClassVar

from shared.service import Service


class ExecutorService(Service):
    name: ClassVar[str] = "executor"
    inputs: ClassVar[dict[str, float | None]] = {"plan": None}
    not_implemented: ClassVar[list[str]] = ["Modbus control loop"]
