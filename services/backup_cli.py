"""``darkstar backup --to FILE`` and ``darkstar restore FILE`` (see :mod:`shared.storage.backup`).

The database comes from ``--url``, else the site file's ``database.url`` (``--site`` or
``$DARKSTAR_SITE``), else ``./var/darkstar.db``, as for ``darkstar db``. The models directory is
``--models-dir``, else the site's ``trainer.model_dir``. Moving to another host or database:
``darkstar backup --to b.tar.gz`` there, ``darkstar restore b.tar.gz --url postgresql+psycopg://...``
here (into an empty database); registry paths are relative to the models directory, so the
models work from wherever the directory now is.

It sits in services/, above both storage and the model registry it drives (a restore makes the
registry's artifact paths relative), so neither of those imports the other's caller.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from shared.config import ConfigError, TrainerSettings, load_site_config
from shared.storage.cli import resolve_url
from shared.storage.db import StorageError, safe_url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    if parser.prog.endswith("restore"):
        parser.add_argument("file", type=Path, help="backup file written by 'darkstar backup'")
        parser.add_argument("--site-to", type=Path, default=None, help="also write the backed-up site file here")
    else:
        parser.add_argument("--to", type=Path, required=True, help="backup file to write (.tar.gz)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="database URL (sqlite:///..., mysql+pymysql://..., postgresql+psycopg://...)")
    where.add_argument("--site", help="site YAML file: its database.url and trainer.model_dir (default: $DARKSTAR_SITE)")
    parser.add_argument("--models-dir", type=Path, default=None, help="models directory (default: trainer.model_dir)")


def _models_dir(args: argparse.Namespace) -> Path:
    if args.models_dir is not None:
        return Path(args.models_dir)
    site_path = args.site or os.environ.get("DARKSTAR_SITE")
    return Path(load_site_config(site_path).trainer.model_dir if site_path else TrainerSettings().model_dir)


def run(args: argparse.Namespace) -> int:
    from shared.storage.backup import backup, restore

    try:
        url = resolve_url(args)
        models = _models_dir(args)
    except ConfigError as err:
        print(f"darkstar {args.command}: {err}", file=sys.stderr)
        return 2
    site_file = args.site or os.environ.get("DARKSTAR_SITE")
    try:
        if args.command == "backup":
            report = backup(url, args.to, models, Path(site_file) if site_file else None)
            print(f"backup of {safe_url(url)} -> {report.summary()}")
        else:
            from shared.registry import relativize_registry_paths
            from shared.storage import Store

            manifest = restore(args.file, url, models, args.site_to)
            store = Store.open(url, migrate=False)
            try:
                moved = relativize_registry_paths(store, models, manifest.get("model_dir"))
            finally:
                store.close()
            rows = sum(t["rows"] for t in manifest["tables"].values())
            print(f"restored {args.file} ({manifest['source_dialect']}, {manifest['created_at']}) into {safe_url(url)}: "
                  f"{rows} rows, counts and checksums match; {manifest['model_files']} model files -> {models}"
                  + (f"; {moved} registry paths made relative" if moved else ""))
    except (StorageError, OSError) as err:
        print(f"darkstar {args.command}: {err}", file=sys.stderr)
        return 1
    return 0
