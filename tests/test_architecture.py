"""The architecture as contracts: layers, no MQTT/HTTP/DB in the optimiser, forecaster and
simulators, no import cycles (import-linter, configured in pyproject.toml), and module size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_a_module_over_500_lines_says_why_at_its_top() -> None:
    unexplained = []
    for path in sorted([*ROOT.glob("shared/**/*.py"), *ROOT.glob("services/**/*.py")]):
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES and not any("over 500 lines:" in line.lower() for line in lines[:30]):
            unexplained.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    assert not unexplained, "split these or give the reason at the top ('Over 500 lines: ...'): " + ", ".join(unexplained)
