"""The evcc backend: drive one evcc loadpoint through evcc's REST API (``evs[].charger.type: evcc``).

evcc (github.com/evcc-io/evcc) runs the charger itself; Darkstar sets the loadpoint's mode and
currents from the plan and reads the vehicle from ``GET /api/state``. Endpoints as published in
evcc's ``server/openapi.yaml`` (loadpoint ids start at 1; these endpoints need no login):

- ``POST /api/loadpoints/{id}/mode/{off|pv|minpv|now}``, ``.../maxcurrent/{A}``, ``.../mincurrent/{A}``
- ``POST /api/vehicles/{name}/plan/soc/{soc}/{RFC3339 time}``: evcc's own plan (used as the fallback)
- ``GET /api/state``: ``loadpoints[i]`` with ``connected``, ``charging``, ``chargePower`` (W),
  ``chargedEnergy`` (Wh, session), ``vehicleSoc`` (%), ``vehicleName``, ``mode``, ``maxCurrent``.

Plan slot with power -> mode ``now`` at ``maxcurrent`` = the slot's amps; no power -> ``off``.
Fallback: ``current`` -> ``minpv`` with ``mincurrent`` = the fallback current (evcc charges at
least that, more from PV surplus), plus evcc's own SoC plan for the target and departure when
known; ``default`` -> ``pv``. evcc keeps a current it was given until told otherwise (it has no
expiring schedule like OCPP): if Darkstar stops without reaching it, the last mode stays.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import httpx

from services.executor.chargers.base import ChargeCommand, ChargerError, ChargerReading
from shared.config import ChargerConfig


class EvccCharger:
    def __init__(self, name: str, config: ChargerConfig, *, client: httpx.AsyncClient | None = None,
                 timeout_s: float = 5.0):
        if not config.url or not config.identity or not config.identity.isdigit():
            raise ValueError(f"evs {name}: an evcc charger needs url and identity = the loadpoint number (1-based)")
        self.name, self.config = name, config
        self.loadpoint = int(config.identity)
        self._client = client
        self._own_client = client is None
        self.timeout_s = timeout_s
        self._lp: dict[str, Any] = {}  # last loadpoint state read
        self._plan: tuple[float, datetime] | None = None  # last target SoC and departure seen

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.config.url.rstrip("/"), timeout=self.timeout_s)

    async def close(self) -> None:
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None

    async def _request(self, method: str, path: str) -> Any:
        if self._client is None:
            await self.start()
        assert self._client is not None
        try:
            response = await self._client.request(method, path)
        except httpx.HTTPError as err:
            raise ChargerError(f"evcc {self.config.url}: {type(err).__name__}: {err}") from None
        if response.status_code >= 400:
            raise ChargerError(f"evcc {method} {path}: HTTP {response.status_code} {response.text[:200]}")
        try:
            body = response.json()
        except ValueError:
            return None
        # the docs describe /api/state wrapped in {"result": ...}; answers without the wrapper are accepted too
        return body.get("result", body) if isinstance(body, dict) else body

    async def read(self) -> ChargerReading:
        now = datetime.now(timezone.utc)
        try:
            state = await self._request("GET", "/api/state")
        except ChargerError as err:
            return ChargerReading(ts=now, connected=False, error=str(err))
        loadpoints = state.get("loadpoints") or [] if isinstance(state, dict) else []
        if len(loadpoints) < self.loadpoint:
            return ChargerReading(ts=now, connected=False,
                                  error=f"evcc has {len(loadpoints)} loadpoint(s), no number {self.loadpoint}")
        lp = loadpoints[self.loadpoint - 1]
        self._lp = lp
        soc = lp.get("vehicleSoc")
        known_soc = isinstance(soc, (int, float)) and (soc > 0 or lp.get("vehicleName"))
        power_w = lp.get("chargePower")
        energy_wh = lp.get("chargedEnergy")
        return ChargerReading(
            ts=now, connected=True, plugged=bool(lp.get("connected")), charging=bool(lp.get("charging")),
            power_kw=power_w / 1000.0 if isinstance(power_w, (int, float)) else None,
            energy_kwh=energy_wh / 1000.0 if isinstance(energy_wh, (int, float)) else None,
            soc_frac=min(1.0, soc / 100.0) if known_soc else None, status=str(lp.get("mode", "")),
        )

    async def _set(self, what: str, value: Any, current: Any) -> None:
        if current != value:
            await self._request("POST", f"/api/loadpoints/{self.loadpoint}/{what}/{value}")

    async def apply(self, command: ChargeCommand) -> None:
        if command.target_soc_frac is not None and command.departure is not None:
            self._plan = (command.target_soc_frac, command.departure)
        lp = self._lp
        if command.limit_a <= 0:
            await self._set("mode", "off", lp.get("mode"))
            return
        amps = _amps(command.limit_a)
        await self._set("maxcurrent", amps, lp.get("maxCurrent"))
        await self._set("mode", "now", lp.get("mode"))

    async def fallback(self) -> None:
        fb, lp = self.config.fallback, self._lp
        if fb.mode == "default":
            await self._set("mode", "pv", lp.get("mode"))
            return
        await self._set("mincurrent", _amps(max(fb.current_a, self.config.min_current_a)), lp.get("minCurrent"))
        await self._set("maxcurrent", _amps(self.config.max_current_a), lp.get("maxCurrent"))
        await self._set("mode", "minpv", lp.get("mode"))
        vehicle = lp.get("vehicleName")
        if self._plan is not None and vehicle:
            soc, departure = self._plan
            when = departure.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            await self._request("POST", f"/api/vehicles/{vehicle}/plan/soc/{round(soc * 100)}/{when}")


def _amps(value: float) -> int | float:
    """evcc takes currents as numbers in the path; whole amps as integers (coarse-current chargers)."""
    return int(value) if float(value).is_integer() else round(value, 1)
