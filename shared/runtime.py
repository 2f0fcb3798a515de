"""Running services: config, logging, storage, HTTP servers and graceful shutdown on SIGTERM.

``python -m services.<name>`` runs one service (``run_one``); ``darkstar up`` runs them all in
one process (services.stack). Either way a SIGTERM stops the HTTP servers, lets every
service finish and acknowledge the messages it has in hand, says ``offline`` and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from shared.config import ConfigError, SiteConfig, load_site_config
from shared.logsummary import summarise_library_logs

log = logging.getLogger("darkstar")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SITE = PROJECT_ROOT / "examples" / "se4-home.yaml"


def setup_logging(level: str | None = None) -> None:
    level = (level or os.environ.get("DARKSTAR_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("transitions", "amqtt", "uvicorn.access", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Modbus: raw frames only at DEBUG; otherwise errors summarised (what, how often, since when).
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    summarise_library_logs("pymodbus.logging", "Modbus")
    summarise_library_logs("darkstar.executor.device", "inverter")  # the executor's per-tick read errors


def add_site_argument(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--site",
        default=None if required else os.environ.get("DARKSTAR_SITE"),
        required=required,
        help="site YAML file (default: $DARKSTAR_SITE, else examples/se4-home.yaml)",
    )


def load_site_or_exit(path: str | None) -> SiteConfig:
    """Load the site config; on a bad config print the key paths and exit 2 (start-up must fail loudly)."""
    try:
        return load_site_config(path or DEFAULT_SITE)
    except ConfigError as err:
        print(f"darkstar: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def migrate_database(url: str) -> None:
    """Bring the database to the newest schema in a child process.

    Alembic (with Mako and friends) stays out of the long-running process: ~15 MB less resident
    memory on a small machine. The URL travels in the environment, never on a command line.
    """
    env = {k: v for k, v in os.environ.items() if k != "DARKSTAR_SITE"}
    env["DARKSTAR__DATABASE__URL"] = url
    proc = subprocess.run([sys.executable, "-m", "services.cli", "db", "upgrade"], env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"database migration failed ({proc.returncode}):\n{tail}")


def open_store(site: SiteConfig) -> Any:
    """Migrations, engine and repository for the site's database."""
    from shared.storage.db import make_engine
    from shared.storage.repository import Store

    url = site.database.url.get_secret_value()
    migrate_database(url)
    return Store(make_engine(url, echo=site.database.echo))


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us, so several can share one process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def port_in_use_message(host: str, port: int, key: str) -> str | None:
    """None if ``host:port`` can be bound now; else one line naming the port, the key and the fix."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as err:
            env = "DARKSTAR__" + key.upper().replace(".", "__")
            return (f"{key}: port {port} on {host} is not available ({err.strerror}); stop what uses it "
                    f"(another darkstar?) or choose another port: {key} in the site file or {env}=...")
    return None


def http_server(app: Any, host: str, port: int) -> _QuietServer:
    # open event streams (the web app's /api/events) must not hold a shutdown for long
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=3)
    return _QuietServer(config)


_early_stop = threading.Event()


def catch_stop_signals_early() -> None:
    """Remember a SIGTERM/SIGINT that arrives while services start, before the HTTP loop runs."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: _early_stop.set())


async def serve_until_signal(
    servers: list[_QuietServer], on_stop: Callable[[], None], stop_event: asyncio.Event | None = None
) -> None:
    """Serve HTTP until SIGTERM/SIGINT (or ``stop_event``), then stop servers and call ``on_stop``."""
    loop = asyncio.get_running_loop()
    stop = stop_event or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if _early_stop.is_set():
        stop.set()
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not waiter and task.exception() is not None:
            log.error("HTTP server failed: %s", task.exception())
    log.info("stopping")
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    waiter.cancel()
    await loop.run_in_executor(None, on_stop)


def run_one(service_cls: type, argv: list[str] | None = None) -> int:
    """Entry point of ``python -m services.<name>``."""
    parser = argparse.ArgumentParser(prog=f"python -m services.{service_cls.name}")
    add_site_argument(parser)
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default from http.ports)")
    args = parser.parse_args(argv)
    setup_logging()
    catch_stop_signals_early()
    site = load_site_or_exit(args.site)
    port_key = getattr(service_cls, "port_key", service_cls.name)  # the web app serves on "dashboard"
    port = args.port or site.http.ports[port_key]
    busy = port_in_use_message(site.http.host, port, f"http.ports.{port_key}")
    if busy:
        print(f"python -m services.{service_cls.name}: {busy}", file=sys.stderr)
        return 2
    try:
        store = open_store(site) if service_cls.uses_store else None
    except RuntimeError as err:  # the same message as `darkstar up`, not a traceback
        print(f"python -m services.{service_cls.name}: {err}", file=sys.stderr)
        return 1
    extra = {"site_path": args.site or DEFAULT_SITE} if getattr(service_cls, "takes_site_path", False) else {}
    service = service_cls(site, store=store, **extra)
    service.start()
    server = http_server(service.build_app(), site.http.host, port)
    log.info("%s serving http://%s:%d (docs at /docs)", service_cls.name, site.http.host, port)
    asyncio.run(serve_until_signal([server], service.stop))
    return 0
