"""The progress callback of long batch work: ``progress(done, total, what)``; the CLI draws it
(``services/batch_cli.progress_bar``), library code only calls it."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, str], None]
