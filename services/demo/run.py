"""``darkstar up --demo``: the whole stack against a simulated site, in accelerated time.

A Modbus TCP inverter simulator (battery physics) replays the recorded load and PV of a real
home; the forecaster replays that home's recorded prices (today's, tomorrow's after the
auction) and trains on its past; the planner plans; the executor drives the simulator over
Modbus. All of it runs on one simulated clock, ``--accel`` times faster than real time.
"""

from __future__ import annotations

import secrets
import shutil
import socket
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from pydantic import SecretStr

from shared.asyncthread import LoopThread
from shared.clock import SimClock
from shared.config import SiteConfig
from shared.runtime import PROJECT_ROOT
from shared.sitedata import load_site_data

DEFAULT_DATA = PROJECT_ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz"
DEFAULT_START = "2025-08-15T06:00:00+02:00"
DEMO_DIR = Path("var") / "demo"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SimulatorThread:
    """The asyncio Modbus simulator on its own thread, for a stack made of threads."""

    def __init__(self, simulator: Any) -> None:
        self.simulator = simulator
        self._thread = LoopThread("modbus-simulator")

    def start(self, timeout_s: float = 15.0) -> None:
        self._thread.start(self.simulator.start, timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._thread.stop(self.simulator.stop, timeout_s)


def demo_site(site: SiteConfig, data_path: Path, modbus_port: int, workdir: Path) -> SiteConfig:
    """The site as the demo runs it: replayed world, simulated inverter, its own database and models."""
    return site.model_copy(update={
        "forecaster": site.forecaster.model_copy(update={
            "replay_data": str(data_path), "model_dir": str(workdir / "models"), "history_days": 30,
        }),
        # the trainer's models (and backups beside them) stay in the demo's directory too
        "trainer": site.trainer.model_copy(update={"model_dir": str(workdir / "models")}),
        "executor": site.executor.model_copy(update={
            "profile": "darkstar_sim", "tick_s": 30.0, "telemetry_stale_s": 180.0,
            "modbus": site.executor.modbus.model_copy(update={"host": "127.0.0.1", "port": modbus_port,
                                                               "transport": "tcp"}),
        }),
        "database": site.database.model_copy(update={"url": SecretStr(f"sqlite:///{workdir / 'demo.db'}")}),
        "http": site.http if site.http.admin_token is not None else site.http.model_copy(
            update={"admin_token": SecretStr(_demo_token(workdir))}),
    })


def _demo_token(workdir: Path) -> str:
    """A fresh admin token for the demo's web app, in a file only this user can read (never printed)."""
    token = secrets.token_urlsafe(18)
    path = workdir / "admin_token"
    path.write_text(token + "\n", encoding="utf-8")
    path.chmod(0o600)
    return token


class Demo:
    """Simulator + stack on one simulated clock."""

    def __init__(self, site: SiteConfig, stack_factory: Callable[..., Any], data_path: Path | None = None,
                 start: str | None = None, accel: float = 60.0, workdir: Path = DEMO_DIR,
                 site_path: Path | str | None = None, ev: bool = False) -> None:
        """``stack_factory`` is ``services.stack.Stack``, passed in so the demo and the stack do not import each other.

        ``site_path``: the site file; the web app's settings page edits a copy in ``workdir``.
        ``ev``: add a car on a simulated OCPP charge point (``services/demo/ev.py``).
        """
        from services.demo.simulator import InverterSimulator

        self.data_path = Path(data_path or DEFAULT_DATA)
        self.workdir = workdir
        if site.battery is None:
            raise ValueError("the demo needs a site with a battery")
        if workdir.exists():
            shutil.rmtree(workdir)  # a demo starts from a clean slate: its clock restarts too
        workdir.mkdir(parents=True)
        started = pd.Timestamp(start or DEFAULT_START)
        if started.tzinfo is None:
            started = started.tz_localize(site.tz)
        self.clock = SimClock(started.to_pydatetime(), accel)
        self.site = demo_site(site, self.data_path, _free_port(), workdir)
        self.car: Any = None
        if ev:  # a car on a simulated OCPP wallbox (services/demo/ev.py)
            from services.demo.ev import DemoCar, with_demo_ev

            self.site = with_demo_ev(self.site)
            self.car = DemoCar(self.site, self.clock)
        data = load_site_data(self.data_path)
        self.simulator = SimulatorThread(InverterSimulator(
            self.site, data, clock=self.clock, port=self.site.executor.modbus.port, soc_frac=0.5))
        if self.car is not None:  # the wallbox is on the house's grid meter, beside the inverter
            self.simulator.simulator.external_kw = lambda: self.car.cp.power_kw
        demo_file = None
        if site_path is not None:  # the demo never changes the example file
            demo_file = workdir / "site.yaml"
            shutil.copyfile(site_path, demo_file)
        self.stack = stack_factory(self.site, clock=self.clock, site_path=demo_file)

    def start(self) -> None:
        self.simulator.start()
        self.stack.start()
        if self.car is not None:
            self.car.start()

    def stop(self) -> None:
        self.stack.stop()  # first: the executor puts the charger on its fallback while it is connected
        if self.car is not None:
            self.car.stop()
        self.simulator.stop()

    @property
    def sim_time(self) -> datetime:
        return self.clock.now()


def demo_on_free_ports(site: SiteConfig, stack_factory: Callable[..., Any], workdir: Path, accel: float = 60.0,
                       site_path: Path | str | None = None, start: str | None = None, ev: bool = False) -> Demo:
    """A demo whose broker and HTTP ports are free ones: for tests, screenshots and benchmarks beside a running stack."""
    ports = {name: _free_port() for name in site.http.ports}
    site = site.model_copy(update={
        "mqtt": site.mqtt.model_copy(update={"port": _free_port()}),
        "http": site.http.model_copy(update={"ports": ports}),
    })
    return Demo(site, stack_factory, start=start, accel=accel, workdir=workdir, site_path=site_path, ev=ev)
