"""Planner (Kepler) service shell: listens to prices, forecast, telemetry and context; publishes the plan."""

from __future__ import annotations

from typing import ClassVar

from shared.contracts import CommandMsg
from shared.homeassistant import Entity
from shared.service import Service


class PlannerService(Service):
    name: ClassVar[str] = "planner"
    inputs: ClassVar[dict[str, float | None]] = {
        "prices": 36 * 3600.0,
        "forecast": 6 * 3600.0,
        "telemetry": None,
    }
    not_implemented: ClassVar[list[str]] = ["optimisation and plan publishing (Kepler)"]
    tick_s: ClassVar[float | None] = 900.0
    uses_store: ClassVar[bool] = False

    def on_start(self) -> None:
        self.register_command("replan", self._cmd_replan)

    def _cmd_replan(self, msg: CommandMsg) -> dict[str, object]:
        return {"replanned": False, "why": "the optimiser is not part of this build yet"}

    def ha_entities(self) -> list[Entity]:
        return [
            Entity(component="button", object_id="replan", name="Replan now", command_topic="cmd/planner/replan",
                   payload_press=f'{{"schema":"darkstar.command/1","site_id":"{self.site.site_id}"}}',
                   icon="mdi:refresh"),
        ]
