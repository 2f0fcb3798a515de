"""Live states of the site's Home Assistant entities: one owner of the connection, its retries and freshness.

``LiveEntities.run()`` connects, subscribes to ``subscribe_entities`` for exactly the configured
entities (HA sends their full state first, then compressed changes), and reconnects with
back-off when HA restarts or the network drops. Readers ask for the role values now
(:meth:`LiveEntities.values`) and for the alarms, each naming the entity and what is wrong with it:
unavailable/unknown, a unit Darkstar cannot convert, an entity that disappeared (renamed or
removed), a refused token, a lost connection. Nothing is guessed: a role with a problem has no value.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.config import HomeAssistantConfig
from shared.ha.client import HAAuthError, HAError, HAWebSocket
from shared.ha.units import RoleValue, convert

log = logging.getLogger("darkstar.ha")

BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class EntityState:
    state: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    removed: bool = False
    updated_at: float | None = None  # HA's last_updated (epoch s): a frozen integration shows an old one


class EntityReadings:
    """The states of the configured entities as some connection keeps them (WebSocket or MQTT
    statestream), and the one rule that turns them into role values or alarms naming the entity."""

    def __init__(self, config: HomeAssistantConfig, *, site_currency: str | None = None,
                 on_change: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.site_currency = site_currency
        self.ha_currency: str | None = None
        self.states: dict[str, EntityState] = {}
        self.connected = asyncio.Event()
        self.connection_epoch = 0  # +1 per (re)connection: a restarted HA may have lost our last write
        self.connection_problem: str | None = "not connected yet"
        self.on_change = on_change
        self.extra_entities: set[str] = set(config.controls.values())  # read back after writes

    @property
    def entity_ids(self) -> list[str]:
        return sorted({e.entity_id for e in self.config.entities.values()} | self.extra_entities)

    def _changed(self, entity_id: str) -> None:
        if self.on_change is not None:
            self.on_change(entity_id)

    def _missing(self, entity_id: str) -> str:
        return "entity not found in Home Assistant (renamed or removed?)"

    # ------------------------------------------------------------------ reading
    def entity_value(self, role: str) -> RoleValue:
        """The role's value now, or None with a reason naming the entity."""
        spec = self.config.entities[role]
        where = f"{spec.entity_id} ({role})"
        if self.connection_problem is not None:
            return RoleValue(None, f"{where}: {self.connection_problem}")
        current = self.states.get(spec.entity_id)
        if current is None or current.removed:
            return RoleValue(None, f"{where}: {self._missing(spec.entity_id)}")
        if spec.max_age_s is not None and current.updated_at is not None:
            age_s = time.time() - float(current.updated_at)
            if age_s > spec.max_age_s:
                return RoleValue(None, f"{where}: stale, no update from Home Assistant for {age_s:.0f} s "
                                       f"(max_age_s {spec.max_age_s:g})")
        unit = current.attributes.get("unit_of_measurement") or spec.unit
        result = convert(role, current.state, unit, spec.sign)
        if result.problem is not None:
            return RoleValue(None, f"{where}: {result.problem}")
        return result

    def values(self) -> dict[str, RoleValue]:
        return {role: self.entity_value(role) for role in self.config.entities}

    def alarms(self) -> list[str]:
        """One line per configured entity that gives no value now, or the connection's problem."""
        if self.connection_problem is not None:
            return [f"homeassistant: {self.connection_problem}"]
        out = [f"homeassistant: {v.problem}" for v in self.values().values() if v.problem]
        if self.site_currency and self.ha_currency and self.site_currency != self.ha_currency:
            # HA shows every price in its own currency: EUR/kWh would be summed as SEK in the energy dashboard.
            out.append(f"homeassistant: site currency {self.site_currency} differs from Home Assistant's "
                       f"{self.ha_currency}; its energy dashboard would count Darkstar's prices as {self.ha_currency}")
        return out


class LiveEntities(EntityReadings):
    """The states of the configured entities, kept current over one WebSocket connection."""

    def __init__(self, config: HomeAssistantConfig, *, site_currency: str | None = None,
                 on_change: Callable[[str], None] | None = None) -> None:
        super().__init__(config, site_currency=site_currency, on_change=on_change)
        self.client: HAWebSocket | None = None
        self._stop = False
        self._first_event = asyncio.Event()

    # ------------------------------------------------------------------ connection
    async def run(self) -> None:
        """Connect, subscribe, wait for the end of the connection, reconnect; until :meth:`stop`."""
        attempt = 0
        while not self._stop:
            try:
                await self._connect_once()
                attempt = 0
                assert self.client is not None and self.client.closed is not None
                reason = await self.client.closed
                self._lost(f"Home Assistant connection lost: {reason}")
            except HAAuthError as err:
                self._lost(f"{err}; check homeassistant.token")
            except HAError as err:
                self._lost(str(err))
            except asyncio.CancelledError:
                break
            if self._stop:
                break
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            attempt += 1
        await self.close()

    async def _connect_once(self) -> None:
        self.client = await HAWebSocket(self.config.url, self.config.token_value()).connect()
        self._first_event = asyncio.Event()
        await self.client.subscribe("subscribe_entities", self._on_event, entity_ids=self.entity_ids)
        try:  # HA sends the current states right after the result; count as connected once they are in
            await asyncio.wait_for(self._first_event.wait(), self.client.timeout_s)
        except asyncio.TimeoutError:
            raise HAError("Home Assistant sent no states for the subscribed entities") from None
        self.ha_currency = (await self.client.call("get_config")).get("currency")
        self.connection_epoch += 1
        self.connection_problem = None
        self.connected.set()
        log.info("Home Assistant %s connected at %s: %d entities", self.client.ha_version, self.config.url,
                 len(self.entity_ids))

    def _lost(self, problem: str) -> None:
        if self.connection_problem != problem:
            log.warning("%s", problem)
        self.connection_problem = problem
        self.connected.clear()

    async def stop(self) -> None:
        self._stop = True
        await self.close()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    # ------------------------------------------------------------------ events
    def _on_event(self, event: dict[str, Any]) -> None:
        """``subscribe_entities`` messages: ``a`` full states, ``c`` diffs (``+`` changed, ``-`` removed attrs), ``r`` removed."""
        self._first_event.set()
        for entity_id, full in (event.get("a") or {}).items():
            self.states[entity_id] = EntityState(full.get("s"), dict(full.get("a") or {}),
                                                 updated_at=full.get("lu", full.get("lc")))
            self._changed(entity_id)
        for entity_id, diff in (event.get("c") or {}).items():
            current = self.states.setdefault(entity_id, EntityState())
            plus, minus = diff.get("+") or {}, diff.get("-") or {}
            if "s" in plus:
                current.state = plus["s"]
            current.updated_at = plus.get("lu", plus.get("lc", current.updated_at))
            current.attributes.update(plus.get("a") or {})
            for name in minus.get("a") or []:
                current.attributes.pop(name, None)
            current.removed = False
            self._changed(entity_id)
        for entity_id in event.get("r") or []:
            self.states[entity_id] = EntityState(removed=True)
            self._changed(entity_id)
