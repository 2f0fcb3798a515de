"""``darkstar db upgrade [REV] | downgrade [REV] | current`` with ``--url URL`` or ``--site SITE.yaml``.

The database comes from ``--url``, else from the site file's ``database.url`` (``--site`` or
``$DARKSTAR_SITE``, with ``DARKSTAR__DATABASE__URL`` overriding it), else the default SQLite
file ``./var/darkstar.db``. Output never shows the password.
"""

from __future__ import annotations

import argparse
import os
import sys

from shared.config import ConfigError, DatabaseConfig, load_site_config
from shared.storage.db import StorageError, current_revision, downgrade, head_revision, migrate, safe_url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["upgrade", "downgrade", "current"], help="what to do")
    parser.add_argument(
        "revision",
        nargs="?",
        default=None,
        help="target revision (upgrade: default 'head'; downgrade: default '-1', 'base' drops every table)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="database URL (sqlite:///..., mysql+pymysql://..., postgresql+psycopg://...)")
    where.add_argument("--site", help="site YAML file whose database.url is used (default: $DARKSTAR_SITE)")


def resolve_url(args: argparse.Namespace) -> str:
    """The database URL: ``--url``, else the site file's ``database.url``, else the environment or default."""
    if args.url:
        return str(args.url)
    site_path = args.site or os.environ.get("DARKSTAR_SITE")
    if site_path:
        return load_site_config(site_path).database.url.get_secret_value()
    env_url = os.environ.get("DARKSTAR__DATABASE__URL")
    return env_url or DatabaseConfig().url.get_secret_value()


def run(args: argparse.Namespace) -> int:
    try:
        url = resolve_url(args)
    except ConfigError as err:
        print(f"darkstar db: {err}", file=sys.stderr)
        return 2
    shown = safe_url(url)
    try:
        if args.action == "upgrade":
            target = args.revision or "head"
            migrate(url, target)
            print(f"{shown}: upgraded to {current_revision(url) or 'base'}")
        elif args.action == "downgrade":
            target = args.revision or "-1"
            if current_revision(url) is None:
                print(f"{shown}: nothing to downgrade (no Darkstar schema)")
                return 0
            downgrade(url, target)
            print(f"{shown}: downgraded to {current_revision(url) or 'base'}")
        else:
            rev = current_revision(url)
            head = head_revision()
            state = "up to date" if rev == head else f"behind head {head}" if rev else f"empty; head is {head}"
            print(f"{shown}: {rev or 'base'} ({state})")
    except StorageError as err:
        print(f"darkstar db: {err}", file=sys.stderr)
        return 1
    return 0
