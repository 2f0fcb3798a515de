"""Checks a start needs before anything starts: one line per problem, then exit, no traceback.

``darkstar plan`` and ``darkstar up`` run these first, so a typo in the inverter profile or a
port taken by another process stops the command before any service, broker or database opens.
"""

from __future__ import annotations

import argparse
import logging
import sys

from shared.config import SiteConfig
from shared.config_checks import limit_problems
from shared.runtime import load_site_or_exit, port_in_use_message

log = logging.getLogger("darkstar.preflight")


def profile_problems(site: SiteConfig) -> list[str]:
    """The executor's inverter profile loads, and the site's battery fits the inverter's limits."""
    from services.executor.modbus.profile import ProfileError, load_profile

    try:
        profile = load_profile(site.executor.profile)
    except ProfileError as err:
        return [f"executor.profile: {err}"]
    for problem in limit_problems(site, profile.limits.model_dump(), f"profile {profile.name}"):
        log.warning("%s", problem)
    return []


def port_problems(site: SiteConfig) -> list[str]:
    """Every port ``darkstar up`` will listen on is free now."""
    wanted = [(site.http.host, port, f"http.ports.{name}") for name, port in site.http.ports.items()]
    if site.mqtt.embedded:
        wanted.append((site.mqtt.host, site.mqtt.port, "mqtt.port"))
    if any(ev.charger.type == "ocpp" for ev in site.evs) and site.executor.ocpp.port:
        wanted.append((site.executor.ocpp.host, site.executor.ocpp.port, "executor.ocpp.port"))
    messages = [port_in_use_message(host, port, key) for host, port, key in wanted]
    return [m for m in messages if m]


def preflight_or_exit(args: argparse.Namespace) -> None:
    """Exit 2 with one line per problem when ``args.command`` cannot start."""
    site = load_site_or_exit(getattr(args, "site", None))
    problems = profile_problems(site)
    if args.command == "up":
        problems += port_problems(site)
    for problem in problems:
        print(f"darkstar {args.command}: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(2)
