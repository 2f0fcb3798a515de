"""The charger role: what the executor needs from any EV charger backend (OCPP, evcc, Home Assistant).

A backend reports one :class:`ChargerReading` (plugged, charging, faulted, power, energy, the car's
SoC when known) and takes one :class:`ChargeCommand`: the power now plus the plan's power for the
coming slots and the time after which the charger must fall back to its configured safe behaviour
by itself (a backend that can store a schedule on the charger does so, so a Darkstar crash never
leaves a high current behind). ``fallback()`` applies the safe behaviour at once (shut-down, stale
plan, refused command). The control rules live in ``control.py``; backends only translate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from shared.config import ChargerConfig


class ChargerError(RuntimeError):
    """The charger could not be reached or refused a command."""


class ChargerBusy(RuntimeError):
    """The command was held back (e.g. a write rate limit), not refused: send it again on a later tick."""


@dataclass(frozen=True)
class ChargerReading:
    ts: datetime
    connected: bool  # the backend reaches the charger now
    plugged: bool | None = None  # None: not known (not connected, no status yet)
    charging: bool | None = None
    faulted: bool = False
    power_kw: float | None = None  # measured, None when not reported or stale
    energy_kwh: float | None = None  # meter register
    soc_frac: float | None = None  # the car's SoC, when the charger or car reports it
    status: str = ""  # backend's own status word (OCPP status, evcc mode)
    error: str | None = None


@dataclass(frozen=True)
class ChargeCommand:
    """What the charger should do: ``limit_a`` per phase now, then ``schedule`` (slot start, amps)
    until ``until``; after ``until`` the charger's fallback applies without Darkstar."""

    limit_a: float
    limit_kw: float
    until: datetime
    schedule: tuple[tuple[datetime, float], ...] = field(default=())
    source: str = "plan"  # plan | quick | guard
    reason: str = ""
    target_soc_frac: float | None = None  # for backends that plan themselves (evcc)
    departure: datetime | None = None


class Charger(Protocol):
    name: str
    config: ChargerConfig

    async def start(self) -> None: ...

    async def read(self) -> ChargerReading: ...

    async def apply(self, command: ChargeCommand) -> None:
        """Send the command; raise :class:`ChargerError` when it is refused or cannot be sent."""

    async def fallback(self) -> None:
        """Put the charger in its configured safe behaviour now; raise ChargerError if unreachable."""

    async def close(self) -> None: ...
