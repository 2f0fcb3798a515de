"""Extension point: a charger Home Assistant already controls (``evs[].charger.type: homeassistant``).

Not implemented yet. The Home Assistant executor backend it builds on is there
(``services/executor/homeassistant.py``: ``shared.ha.live.LiveEntities`` reads entity states with
units and "unavailable", ``HAWriter`` makes service calls with a rate limit and read-back); what
is missing is this class: the :class:`~services.executor.chargers.base.Charger` role over them,
with the entities named from ``charger.identity`` (an entity-id prefix, e.g. ``wallbox``), and its
tests against a real HA core:

- read: ``binary_sensor.<id>_plugged`` (plugged), ``sensor.<id>_power`` (W or kW by its unit),
  ``sensor.<id>_energy`` (kWh), ``sensor.<id>_soc`` (%, optional), ``binary_sensor.<id>_fault``;
- apply: ``number.<id>_current`` = the command's amps (``number.set_value``), ``switch.<id>_charging``
  on when amps > 0, off otherwise;
- fallback: ``number.<id>_current`` = ``fallback.current_a`` and switch on (mode ``current``), or
  switch off and leave the integration's own logic (mode ``default``).

HA has no expiring schedule either: like evcc, the last current stays until Darkstar changes it.
"""

from __future__ import annotations

from services.executor.chargers.base import ChargeCommand, ChargerReading
from shared.config import ChargerConfig

NOT_AVAILABLE = ("charger type 'homeassistant' is not available in this version (the charger backend over "
                 "the Home Assistant executor backend is not written yet); use type ocpp or evcc, or drive the "
                 "charger from an HA automation")


class HomeAssistantCharger:
    def __init__(self, name: str, config: ChargerConfig):
        raise ValueError(f"evs {name}: {NOT_AVAILABLE}")

    async def start(self) -> None: ...

    async def read(self) -> ChargerReading:
        raise NotImplementedError(NOT_AVAILABLE)

    async def apply(self, command: ChargeCommand) -> None:
        raise NotImplementedError(NOT_AVAILABLE)

    async def fallback(self) -> None:
        raise NotImplementedError(NOT_AVAILABLE)

    async def close(self) -> None: ...
