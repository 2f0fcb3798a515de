"""What every batch command shares: arguments, dates, the progress bar and error reporting.

Used by ``darkstar backtest``, ``oracle``, ``train``, ``forecast eval``, ``whatif`` and
``env-episode`` (and the benchmark scripts), so that each says the same thing the same way.

One meaning of a date range everywhere: ``--from`` is the first local day and ``--to`` the
**last local day, inclusive** (``--from 2025-08-01 --to 2025-08-31`` is all of August).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, datetime
from pathlib import Path

from shared.progress import Progress


def parse_date(text: str, option: str = "date") -> date:
    """A local day, ``YYYY-MM-DD``; the error names the option."""
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise ValueError(f"{option}: not a date (YYYY-MM-DD): {text!r}") from None


def add_site_data_arguments(parser: argparse.ArgumentParser, *, data_required: bool = True) -> None:
    parser.add_argument("--site", type=Path, required=True, help="site YAML file")
    parser.add_argument("--data", type=Path, required=data_required, default=None, help="recorded site data CSV (.gz)")


def add_range_arguments(parser: argparse.ArgumentParser, *, required: bool = True, default_from: str = "",
                        default_to: str = "") -> None:
    """``--from`` / ``--to``: first and last local day, both inclusive."""
    parser.add_argument("--from", dest="date_from", required=required, default=None,
                        help="first local day, YYYY-MM-DD" + (f" (default: {default_from})" if default_from else ""))
    parser.add_argument("--to", dest="date_to", required=required, default=None,
                        help="last local day (inclusive), YYYY-MM-DD" + (f" (default: {default_to})" if default_to else ""))


def add_output_arguments(parser: argparse.ArgumentParser, *, quiet: bool = True) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    if quiet:
        parser.add_argument("--quiet", action="store_true", help="no progress bar")


def date_range(args: argparse.Namespace, default_from: date | None = None,
               default_to: date | None = None) -> tuple[date, date]:
    """The inclusive day range of ``--from`` / ``--to`` (defaults when not given); --to before --from is an error."""
    first = parse_date(args.date_from, "--from") if args.date_from else default_from
    last = parse_date(args.date_to, "--to") if args.date_to else default_to
    if first is None or last is None:
        raise ValueError("give --from and --to (local days, inclusive)")
    if last < first:
        raise ValueError(f"--to {last} is before --from {first} (--to is the last day, inclusive)")
    return first, last


def batch_errors() -> tuple[type[BaseException], ...]:
    """What a batch command reports as a one-line error (bad config, data, dates, prices) instead of a traceback."""
    from shared.config import ConfigError
    from shared.optimize.inputs import PlanInputError
    from shared.sitedata import SiteDataError
    from shared.tariff import PriceError

    return (ConfigError, SiteDataError, PlanInputError, PriceError, ValueError, FileNotFoundError)


def report_error(command: str, err: BaseException, code: int = 2) -> int:
    print(f"darkstar {command}: {err}", file=sys.stderr)
    return code


def progress_bar(label: str, quiet: bool = False) -> Progress | None:
    """A progress bar on stderr (rich, redrawn in place on a terminal; a line every 5 % otherwise,
    so logs stay readable). None when ``quiet``."""
    if quiet:
        return None
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        return _line_progress(label)
    from rich.progress import (
        BarColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bar

    bar = Bar(TextColumn(label), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[what]}"),
              TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console)
    task: list = []

    def show(done: int, total: int, what: str) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(label, total=max(total, 1), what=what))
        bar.update(task[0], completed=done, total=max(total, 1), what=what)
        if done >= total:
            bar.stop()

    return show


def _line_progress(label: str) -> Progress:
    state = {"last": -1, "t0": time.perf_counter()}

    def show(done: int, total: int, what: str) -> None:
        frac = done / max(total, 1)
        pct = int(frac * 100)
        if pct // 5 == state["last"] // 5 and done != total:
            return
        state["last"] = pct
        elapsed = time.perf_counter() - state["t0"]
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        print(f"{label} {pct:3d}% {what} {elapsed:5.0f}s eta {eta:5.0f}s", file=sys.stderr, flush=True)

    return show
