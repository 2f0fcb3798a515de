"""``darkstar up``: every service in one process, with the embedded broker and SQLite by default."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from shared.broker import EmbeddedBroker
from shared.clock import WALL_CLOCK, Clock
from shared.config import SiteConfig
from shared.runtime import DEFAULT_SITE, add_site_argument, catch_stop_signals_early, http_server, load_site_or_exit, open_store, serve_until_signal, setup_logging

log = logging.getLogger("darkstar.stack")


def service_classes() -> list[type]:
    from services.executor.service import ExecutorService
    from services.forecaster.service import ForecasterService
    from services.oracle.service import OracleService
    from services.planner.service import PlannerService
    from services.trainer.service import TrainerService
    from services.web.service import WebService

    # The recorder first, so it is subscribed before the others publish.
    return [ForecasterService, PlannerService, ExecutorService, TrainerService, OracleService, WebService]


class Stack:
    """The embedded stack; also used by tests to run everything in-process."""

    def __init__(self, site: SiteConfig, *, with_broker: bool | None = None, clock: Clock = WALL_CLOCK,
                 site_path: Path | str | None = None) -> None:
        self.site = site
        self.site_path = site_path
        self.clock = clock
        self.with_broker = site.mqtt.embedded if with_broker is None else with_broker
        self.broker: EmbeddedBroker | None = None
        self.store: Any = None
        self.services: list[Any] = []

    def start(self) -> None:
        if self.with_broker:
            self.broker = EmbeddedBroker(self.site.mqtt, self.site.auth.users)
            self.broker.start()
        self.store = open_store(self.site)
        self.services = [
            cls(self.site, store=self.store, clock=self.clock,
                **({"site_path": self.site_path} if getattr(cls, "takes_site_path", False) else {}))
            for cls in service_classes()
        ]
        for service in self.services:
            if hasattr(service, "site_hook"):
                service.site_hook = self.apply_site
            service.start()
        for service in self.services:
            if not service.mqtt.wait_connected(10):
                log.warning("%s is not connected to the broker yet; it keeps trying", service.name)

    def apply_site(self, saved: SiteConfig) -> list[str]:
        """A saved site file's planning sections go to the planner (it replans with them) and the web app.

        Only the sections the planner reads at each replan (services.web.service.HOT_SECTIONS) are
        taken; the rest of the running site (ports, broker, the demo's replay and simulator) stays.
        """
        from services.web.service import HOT_SECTIONS

        update = {key: getattr(saved, key) for key in HOT_SECTIONS}
        self.site = self.site.model_copy(update=update)
        taken = []
        for service in self.services:
            if service.name in ("planner", "web"):
                service.site = service.site.model_copy(update=update)
                taken.append(service.name)
        return taken

    def stop(self) -> None:
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception:  # noqa: BLE001 - stop the others anyway
                log.exception("stopping %s failed", service.name)
        if self.broker is not None:
            self.broker.stop()
        if self.store is not None and hasattr(self.store, "close"):
            self.store.close()

    def http_servers(self) -> list[Any]:
        """One server per service; the web app on the dashboard port."""
        ports = self.site.http.ports
        return [http_server(s.build_app(), self.site.http.host, ports[getattr(s, "port_key", s.name)])
                for s in self.services]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_site_argument(parser)
    parser.add_argument("--demo", action="store_true",
                        help="run against a simulated site: a Modbus inverter simulator replaying a real home")
    parser.add_argument("--data", default=None, help="demo: recorded site data to replay (default: the SE4 home)")
    parser.add_argument("--accel", type=float, default=60.0, help="demo: simulated seconds per real second")
    parser.add_argument("--start", default=None, help="demo: simulated start time (default 2025-08-15T06:00+02:00)")
    parser.add_argument("--ev", action="store_true",
                        help="demo: add a car on a simulated OCPP charge point (plugs in 18:00, leaves 07:00, wants 80 %%)")


def run(args: argparse.Namespace) -> int:
    setup_logging()
    catch_stop_signals_early()
    site = load_site_or_exit(args.site)
    runner: Any
    if args.demo:
        from services.demo.run import Demo

        runner = Demo(site, Stack, args.data, args.start, args.accel, site_path=args.site or DEFAULT_SITE, ev=args.ev)
        stack = runner.stack
        site = runner.site
    else:
        runner = stack = Stack(site, site_path=args.site or DEFAULT_SITE)
    try:
        runner.start()
    except RuntimeError as err:
        print(f"darkstar up: {err}", file=sys.stderr)
        runner.stop()
        return 1
    ports = site.http.ports
    if args.demo:
        print(f"Demo: simulated site {site.site_id} from {runner.sim_time:%Y-%m-%d %H:%M} UTC at {args.accel:g}x, "
              f"inverter simulator on Modbus TCP 127.0.0.1:{site.executor.modbus.port}", file=sys.stderr)
        if args.ev:
            print(f"Demo EV: simulated OCPP charge point {site.evs[0].charger.identity} on "
                  f"ws://127.0.0.1:{site.executor.ocpp.port}/{site.executor.ocpp.path}/", file=sys.stderr)
    print(f"Darkstar is up for site {site.site_id}: web app http://{site.http.host}:{ports['dashboard']}", file=sys.stderr)
    if args.demo:
        print(f"  sign in to act with the admin token in {runner.workdir / 'admin_token'}", file=sys.stderr)
    for service in stack.services:
        port = ports[getattr(service, "port_key", service.name)]
        print(f"  {service.name:<10} http://{site.http.host}:{port}/docs", file=sys.stderr)
    asyncio.run(serve_until_signal(stack.http_servers(), runner.stop))
    return 0
