"""Forecaster (Aurora) service shell: the recorder of the bus, prices/weather/forecasts (see shared.forecast)."""

from __future__ import annotations

import json
from typing import ClassVar

from shared.contracts import (
    ContextMsg,
    ErrorEventMsg,
    ForecastMsg,
    Message,
    ObservationMsg,
    PlanMsg,
    PricesMsg,
    WeatherMsg,
)
from shared.homeassistant import Entity
from shared.service import Service


class ForecasterService(Service):
    name: ClassVar[str] = "forecaster"
    # The recorder stores every contract message seen on the bus: one writer for bus data.
    inputs: ClassVar[dict[str, float | None]] = {
        "telemetry": None,
        "observations": None,
        "prices": None,
        "weather": None,
        "forecast": None,
        "plan": None,
        "error": None,
    }
    not_implemented: ClassVar[list[str]] = ["price/weather ingest and load/PV forecasts (Aurora)"]

    def handle(self, kind: str, parts: dict[str, str], msg: Message, retained: bool) -> None:
        self.record(msg)

    def record(self, msg: Message) -> None:
        if self.store is None:
            return
        if isinstance(msg, PricesMsg):
            self.store.store_prices(msg)
        elif isinstance(msg, WeatherMsg):
            self.store.store_weather(msg)
        elif isinstance(msg, ForecastMsg):
            self.store.store_forecast(msg)
        elif isinstance(msg, ObservationMsg):
            self.store.store_observation(msg)
        elif isinstance(msg, PlanMsg):
            self.store.store_plan(msg)
        elif isinstance(msg, ContextMsg):
            self.store.store_context(msg)
        elif isinstance(msg, ErrorEventMsg):
            self.store.store_event(msg)

    def ha_entities(self) -> list[Entity]:
        def context_switch(name: str, label: str) -> Entity:
            payload = {"schema": "darkstar.context/1", "site_id": self.site.site_id, "name": name,
                       "source": "homeassistant"}
            return Entity(
                component="switch",
                object_id=name,
                name=label,
                state_topic=f"context/{name}",
                command_topic=f"context/{name}",
                value_template="{{ 'ON' if value_json.value else 'OFF' }}",
                payload_on=json.dumps({**payload, "value": True}),
                payload_off=json.dumps({**payload, "value": False}),
                extra={"state_on": "ON", "state_off": "OFF", "retain": True, "qos": 1},
            )

        return [context_switch("vacation", "Vacation mode"), context_switch("away", "Away")]
