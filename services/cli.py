"""The ``darkstar`` command line.

Each command lives with the part that owns it and is imported only when used, so a
container with only the planner's dependencies can still run ``darkstar plan``.
A command module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("services.stack", "start every service in one process (embedded broker and SQLite by default)"),
    "plan": ("services.planner.cli", "plan a schedule from recorded data"),
    "backtest": ("services.oracle.backtest_cli", "closed-loop backtest of the planner over a date range"),
    "oracle": ("services.oracle.cli", "perfect-hindsight optimum per day"),
    "forecast": ("services.forecaster.cli", "forecast tools (eval)"),
    "train": ("services.trainer.cli", "train aurora or antares models"),
    "env-episode": ("services.trainer.env_cli", "run one Gym environment episode"),
    "whatif": ("services.oracle.whatif_cli", "what-if analyses (export)"),
    "import": ("services.forecaster.import_cli", "import history into observations: from Home Assistant or a CSV"),
    "db": ("shared.storage.cli", "database migrations (upgrade, downgrade, current)"),
    "backup": ("services.backup_cli", "back up the database, models directory and site file to one file"),
    "restore": ("services.backup_cli", "restore a backup into an empty SQLite, MariaDB or PostgreSQL database"),
}

# Commands that check everything a start needs (config, inverter profile, ports) before starting.
PREFLIGHT_COMMANDS = ("up", "plan")


def main(argv: list[str] | None = None) -> int:
    from shared.version import darkstar_version

    parser = argparse.ArgumentParser(prog="darkstar", description="Darkstar local-first energy agent")
    parser.add_argument("--version", action="version", version=f"darkstar {darkstar_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    wanted = argv[0] if argv and not argv[0].startswith("-") else None
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        cmd_parser = sub.add_parser(name, help=help_text)
        if name != wanted:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and (err.name == module_name or module_name.startswith(err.name + ".")):
                print(f"darkstar {name}: not available yet in this version", file=sys.stderr)
                return 2
            print(f"darkstar {name}: missing dependency {err.name!r}; install the matching extra", file=sys.stderr)
            return 2
        module.add_arguments(cmd_parser)
        modules[name] = module
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in PREFLIGHT_COMMANDS:
        from services.preflight import preflight_or_exit

        preflight_or_exit(args)
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
