"""Trainer (Antares) service shell: training jobs and the model registry."""

from __future__ import annotations

from typing import ClassVar

from shared.service import Service


class TrainerService(Service):
    name: ClassVar[str] = "trainer"
    inputs: ClassVar[dict[str, float | None]] = {"observations": None}
    not_implemented: ClassVar[list[str]] = ["training jobs and model registry (Antares)"]
