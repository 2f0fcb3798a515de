"""A Modbus TCP inverter simulator implementing the ``darkstar_sim`` profile, with battery physics.

It replays recorded load and PV (``shared.sitedata``) on a simulated clock
(``shared.clock.SimClock``: simulated time = start + accel * wall time elapsed; or
``shared.clock.ManualClock`` for benchmarks),
applies the commanded mode and power through the project's one battery model
(``shared.battery.step``), and serves the results as Modbus registers. Physics advance lazily
on every Modbus request (and once a second in the background), split at slot boundaries, so
energy totals are exact for piecewise-constant commands whatever the polling rate.

Flows (kW, positive import / positive charge)::

    grid = load + water - pv_used + charge - discharge (+ ``external_kw``: loads beside the inverter, the demo's EV)

Modes: self-consumption (battery absorbs the PV surplus or covers the deficit), charge at P
(PV first, then grid), discharge at P (surplus exported), hold (battery idle). SoC stays
within the battery's hard limits and the commanded floor/ceiling; the export limit curtails
PV first, then discharge. Gaps in the recorded data are carried forward from the last
recorded slot (counted in ``filled_slots``); past the end of the data the replay wraps around.

Run stand-alone::

    python -m services.demo.simulator --site examples/se4-home.yaml \
        --data examples/data/se4_home_2025-07_2025-10.csv.gz --port 1502 --accel 60
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from services.executor.modbus.codec import encode_value
from services.executor.modbus.profile import Profile, RegisterSpec, load_profile
from shared.battery import step as battery_step
from shared.clock import Clock, ManualClock, SimClock
from shared.config import BatteryConfig, SiteConfig, load_site_config
from shared.sitedata import SiteData, load_site_data
from shared.slots import SLOT, floor_slot

log = logging.getLogger(__name__)

MODES = {0: "self_consumption", 1: "charge", 2: "discharge", 3: "hold"}
NO_EXPORT_LIMIT_W = 65535


@dataclass
class SimWrite:
    sim_ts: datetime
    register: str
    value: float
    accepted: bool
    reason: str = ""


@dataclass
class SimFaults:
    soc_unavailable: bool = False  # the BMS stops reporting SoC (register reads 0xFFFF)
    refuse_modes: set[int] = field(default_factory=set)  # mode values the device answers with exception 3


@dataclass
class SimTotals:
    load_kwh: float = 0.0
    pv_kwh: float = 0.0
    import_kwh: float = 0.0
    export_kwh: float = 0.0
    charge_kwh: float = 0.0
    discharge_kwh: float = 0.0
    water_kwh: float = 0.0
    curtailed_kwh: float = 0.0


@dataclass
class Flows:
    load_kw: float
    pv_kw: float
    water_kw: float
    charge_kw: float
    discharge_kw: float
    grid_kw: float
    curtailed_kw: float
    soc_end_kwh: float

    @property
    def battery_kw(self) -> float:
        return self.charge_kw - self.discharge_kw


@dataclass
class Command:
    mode: int = 0
    power_w: float = 0.0
    export_limit_w: float = NO_EXPORT_LIMIT_W
    soc_floor_pct: float = 0.0
    soc_ceiling_pct: float = 100.0
    water_w: float = 0.0


class InverterSimulator:
    """Modbus TCP server + battery physics + recorded load/PV replay. ``async start()`` / ``stop()``."""

    def __init__(
        self,
        site: SiteConfig,
        data: SiteData | pd.DataFrame,
        *,
        clock: Clock | None = None,
        start: datetime | None = None,
        accel: float | None = 60.0,
        host: str = "127.0.0.1",
        port: int = 1502,
        soc_frac: float = 0.5,
        profile: Profile | str = "darkstar_sim",
        background_s: float = 1.0,
        framer: FramerType = FramerType.SOCKET,
    ):
        if site.battery is None:
            raise ValueError(f"site {site.site_id!r} has no battery: the inverter simulator needs one")
        self.site = site
        self.battery: BatteryConfig = site.battery
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        frame = data.frame if isinstance(data, SiteData) else data
        if frame.empty:
            raise ValueError("site data has no rows")
        self._first_slot = frame.index[0]
        self.filled_slots = int(frame[["load_kw", "pv_kw"]].isna().any(axis=1).sum())
        filled = frame[["load_kw", "pv_kw"]].ffill().bfill()
        self._load = filled["load_kw"].to_numpy(dtype=float)
        self._pv = np.clip(filled["pv_kw"].to_numpy(dtype=float), 0.0, None)
        if start is None:
            start = self._first_slot.to_pydatetime()
        if clock is None:
            clock = ManualClock(start) if accel is None else SimClock(start, accel)
        self.clock = clock
        self.host = host
        self._port = port
        self.background_s = background_s
        self.framer = framer  # FramerType.RTU: RTU frames over TCP, like a serial-to-Ethernet gateway
        self.soc_kwh = soc_frac * self.battery.capacity_kwh
        self.command = Command(
            soc_floor_pct=self.battery.min_soc_frac * 100, soc_ceiling_pct=self.battery.max_soc_frac * 100
        )
        self.faults = SimFaults()
        self.totals = SimTotals()
        self.writes: list[SimWrite] = []
        self.soc_at_slot_end: dict[pd.Timestamp, float] = {}
        self.battery_kwh_by_slot: dict[pd.Timestamp, float] = {}
        self._t = self.clock.now()
        self._server: ModbusTcpServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._holding = {n: s for n, s in self.profile.registers.items() if s.table == "holding"}
        self._input = {n: s for n, s in self.profile.registers.items() if s.table == "input"}
        self._holding_by_address = {s.address: (n, s) for n, s in self._holding.items()}
        # Other loads on the same grid meter that the inverter does not cover (the demo's EV wallbox, kW).
        self.external_kw: Callable[[], float] | None = None

    # ----------------------------------------------------------------- data and physics

    def _series_index(self, ts: datetime) -> int:
        pos = int((pd.Timestamp(floor_slot(ts)) - self._first_slot) / SLOT)
        return pos % len(self._load)  # replay wraps past the end of the data

    def recorded(self, ts: datetime) -> tuple[float, float]:
        i = self._series_index(ts)
        return float(self._load[i]), float(self._pv[i])

    def _flows(self, ts: datetime, hours: float) -> Flows:
        load, pv = self.recorded(ts)
        cmd = self.command
        water = cmd.water_w / 1000.0
        mode = MODES.get(cmd.mode, "self_consumption")
        power = cmd.power_w / 1000.0
        want = {"self_consumption": pv - load - water, "charge": power, "discharge": -power, "hold": 0.0}[mode]
        floor = cmd.soc_floor_pct / 100 * self.battery.capacity_kwh
        ceiling = cmd.soc_ceiling_pct / 100 * self.battery.capacity_kwh
        hours = max(hours, 1.0 / 3600)  # instantaneous flows: limits over one second
        b = battery_step(self.soc_kwh, want, hours, self.battery, floor, ceiling)
        external = self.external_kw() if self.external_kw is not None else 0.0
        grid = load + water + external - pv + b.battery_kw
        curtailed = 0.0
        limit = cmd.export_limit_w / 1000.0 if cmd.export_limit_w < NO_EXPORT_LIMIT_W else None
        if limit is not None and grid < -limit:
            excess = -limit - grid
            curtailed = min(excess, pv)
            grid += curtailed
            remaining = excess - curtailed
            if remaining > 1e-9 and b.discharge_kw > 0:
                b = battery_step(self.soc_kwh, -(max(0.0, b.discharge_kw - remaining)), hours, self.battery, floor, ceiling)
                grid = load + water + external - (pv - curtailed) + b.battery_kw
        return Flows(load, pv - curtailed, water, b.charge_kw, b.discharge_kw, grid, curtailed, b.soc_end_kwh)

    def advance(self, until: datetime | None = None) -> None:
        """Integrate physics up to ``until`` (default: now on the simulated clock), split at slot boundaries."""
        until = until or self.clock.now()
        while self._t < until:
            slot_end = floor_slot(self._t).to_pydatetime() + SLOT
            seg_end = min(until, slot_end)
            hours = (seg_end - self._t).total_seconds() / 3600.0
            f = self._flows(self._t, hours)
            t = self.totals
            t.load_kwh += f.load_kw * hours
            t.pv_kwh += f.pv_kw * hours
            t.import_kwh += max(f.grid_kw, 0.0) * hours
            t.export_kwh += max(-f.grid_kw, 0.0) * hours
            t.charge_kwh += f.charge_kw * hours
            t.discharge_kwh += f.discharge_kw * hours
            t.water_kwh += f.water_kw * hours
            t.curtailed_kwh += f.curtailed_kw * hours
            slot = pd.Timestamp(floor_slot(self._t))
            self.battery_kwh_by_slot[slot] = self.battery_kwh_by_slot.get(slot, 0.0) + f.battery_kw * hours
            self.soc_kwh = f.soc_end_kwh
            self._t = seg_end
            if seg_end == slot_end:
                self.soc_at_slot_end[pd.Timestamp(slot_end)] = self.soc_kwh

    def flows_now(self) -> Flows:
        return self._flows(self._t, 0.0)

    # ----------------------------------------------------------------- registers

    def _input_values(self) -> dict[str, float | None]:
        f = self.flows_now()
        soc_pct = None if self.faults.soc_unavailable else self.soc_kwh / self.battery.capacity_kwh * 100
        return {
            "protocol_version": 1,
            "soc": soc_pct,
            "soc_energy": None if self.faults.soc_unavailable else self.soc_kwh,
            "pv_power": f.pv_kw * 1000,
            "load_power": f.load_kw * 1000,
            "grid_power": f.grid_kw * 1000,
            "battery_power": f.battery_kw * 1000,
            "water_power": f.water_kw * 1000,
            "sim_time": self._t.timestamp(),
            "status": 0,
            "capacity": self.battery.capacity_kwh,
            "max_charge": self.battery.max_charge_kw * 1000,
            "max_discharge": self.battery.max_discharge_kw * 1000,
        }

    def _encode(self, spec: RegisterSpec, value: float | None) -> list[int]:
        if value is None:
            sentinel = spec.invalid[0] if spec.invalid else 0
            return [sentinel] if spec.words == 1 else [(sentinel >> 16) & 0xFFFF, sentinel & 0xFFFF]
        return encode_value(spec, value, self.profile.word_order)

    def _holding_words(self) -> dict[int, int]:
        cmd = self.command
        values = {
            "mode": cmd.mode,
            "power_setpoint": cmd.power_w,
            "export_limit": cmd.export_limit_w,
            "soc_floor": cmd.soc_floor_pct,
            "soc_ceiling": cmd.soc_ceiling_pct,
            "water_setpoint": cmd.water_w,
        }
        words: dict[int, int] = {}
        for name, spec in self._holding.items():
            for i, w in enumerate(self._encode(spec, values.get(name, 0))):
                words[spec.address + i] = w  # type: ignore[operator]
        return words

    def _apply_write(self, address: int, values: list[int]) -> ExcCodes | None:
        """Validate a command write like a device would; update the command on success."""
        now = self._t
        updates: dict[str, float] = {}
        for i, word in enumerate(values):
            entry = self._holding_by_address.get(address + i)
            if entry is None:
                return ExcCodes.ILLEGAL_ADDRESS
            name, spec = entry
            value = word * spec.scale
            if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
                self.writes.append(SimWrite(now, name, value, False, "out of range"))
                return ExcCodes.ILLEGAL_VALUE
            if name == "mode" and (int(word) not in MODES or int(word) in self.faults.refuse_modes):
                self.writes.append(SimWrite(now, name, value, False, "mode refused"))
                return ExcCodes.ILLEGAL_VALUE
            updates[name] = value
        cmd = self.command
        for name, value in updates.items():
            self.writes.append(SimWrite(now, name, value, True))
            if name == "mode":
                cmd.mode = int(value)
            elif name == "power_setpoint":
                cmd.power_w = value
            elif name == "export_limit":
                cmd.export_limit_w = value
            elif name == "soc_floor":
                cmd.soc_floor_pct = value
            elif name == "soc_ceiling":
                cmd.soc_ceiling_pct = value
            elif name == "water_setpoint":
                cmd.water_w = value
        return None

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.advance()  # the old command applies until this request
        if function_code == 4:
            values = self._input_values()
            for name, spec in self._input.items():
                for i, w in enumerate(self._encode(spec, values[name])):
                    pos = spec.address + i - start_address  # type: ignore[operator]
                    if 0 <= pos < len(registers):
                        registers[pos] = w
            return None
        if function_code in (6, 16) and set_values is not None:
            return self._apply_write(address, [int(v) for v in set_values])
        if function_code == 3:
            for addr, w in self._holding_words().items():
                pos = addr - start_address
                if 0 <= pos < len(registers):
                    registers[pos] = w
        return None

    def _device(self) -> SimDevice:
        n_input = max(s.address + s.words for s in self._input.values())  # type: ignore[operator]
        n_holding = max(s.address + s.words for s in self._holding.values())  # type: ignore[operator]
        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        return SimDevice(
            0,  # answers every unit id
            simdata=(
                bits,
                [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                [SimData(0, count=n_holding, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=n_input, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self._action,
        )

    # ----------------------------------------------------------------- server

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0 picks a free port; read it back from ``.port``)."""
        if self._server is not None:
            return
        server = ModbusTcpServer(self._device(), address=(self.host, self._port), framer=self.framer)
        await server.serve_forever(background=True)
        sockets = getattr(server.transport, "sockets", None)
        if sockets:
            self._port = sockets[0].getsockname()[1]
        self._server = server
        if self.background_s > 0 and not isinstance(self.clock, ManualClock):
            self._task = asyncio.create_task(self._background(), name="inverter-sim-physics")
        log.info("inverter simulator listening on %s:%s", self.host, self._port)

    async def _background(self) -> None:
        while True:
            await asyncio.sleep(self.background_s)
            self.advance()

    async def stop(self) -> None:
        """Stop listening and drop every client connection (like a device power-cycle, state kept)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    def reset_commands(self) -> None:
        """Forget the commands, as a rebooted inverter does (back to self-consumption)."""
        self.advance()
        self.command = Command(
            soc_floor_pct=self.battery.min_soc_frac * 100, soc_ceiling_pct=self.battery.max_soc_frac * 100
        )

    def snapshot(self) -> dict[str, Any]:
        f = self.flows_now()
        return {
            "sim_time": self._t.isoformat(),
            "soc_frac": self.soc_kwh / self.battery.capacity_kwh,
            "mode": MODES.get(self.command.mode),
            "power_kw": self.command.power_w / 1000,
            "battery_kw": f.battery_kw,
            "grid_kw": f.grid_kw,
            "load_kw": f.load_kw,
            "pv_kw": f.pv_kw,
        }


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.demo.simulator", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", required=True, help="site YAML (needs a battery section)")
    parser.add_argument("--data", required=True, help="recorded site data CSV(.gz)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1502)
    parser.add_argument("--accel", type=float, default=60.0, help="simulated seconds per wall second")
    parser.add_argument("--start", default=None, help="simulated start time (ISO 8601); default: first slot of the data")
    parser.add_argument("--soc", type=float, default=0.5, help="initial state of charge, 0..1")


async def _serve(args: argparse.Namespace) -> None:
    site = load_site_config(args.site)
    data = load_site_data(args.data)
    start = pd.Timestamp(args.start).to_pydatetime() if args.start else None
    sim = InverterSimulator(site, data, start=start, accel=args.accel, host=args.host, port=args.port, soc_frac=args.soc)
    await sim.start()
    print(f"inverter simulator ({sim.profile.name}) on {sim.host}:{sim.port}, accel x{args.accel:g}, "
          f"simulated start {sim.clock.start.isoformat()}", flush=True)
    try:
        while True:
            await asyncio.sleep(10)
            snap = sim.snapshot()
            print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in snap.items()), flush=True)
    finally:
        await sim.stop()


def run(args: argparse.Namespace) -> int:
    for p in (args.site, args.data):
        if not Path(p).exists():
            print(f"error: file not found: {p}")
            return 2
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO)
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
