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


def test_the_no_cycles_contract_has_no_exceptions() -> None:
    """A cycle is removed (move the shared piece down, or the driver up), never listed as an exception."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]
    acyclic = [c for c in contracts if c["type"] == "acyclic_siblings"]
    assert acyclic and {"shared", "services"} <= set(acyclic[0]["ancestors"])
    assert all(not c.get("ignore_imports") for c in acyclic), acyclic


def test_a_module_over_500_lines_says_why_at_its_top() -> None:
    unexplained = []
    for path in sorted([*ROOT.glob("shared/**/*.py"), *ROOT.glob("services/**/*.py")]):
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES and not any("over 500 lines:" in line.lower() for line in lines[:30]):
            unexplained.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    assert not unexplained, "split these or give the reason at the top ('Over 500 lines: ...'): " + ", ".join(unexplained)


def test_command_handlers_are_registered_before_connecting() -> None:
    """Every ``register_command`` call sits in ``register_commands``, which ``Service.start`` runs
    before the MQTT client connects, or in a constructor (earlier still): a command queued for the
    service finds its handler."""
    import ast

    misplaced = []
    for path in sorted(ROOT.glob("services/**/*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            calls = [c for c in ast.walk(func) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                     and c.func.attr == "register_command"]
            if calls and func.name not in ("register_commands", "__init__"):
                misplaced.append(f"{path.relative_to(ROOT)}:{func.name}")
    assert not misplaced, misplaced


def test_service_start_registers_commands_before_the_client_starts(tmp_path: Path) -> None:
    from services.planner.service import PlannerService
    from tests.conftest import free_port, make_site

    service = PlannerService(make_site(tmp_path, {"host": "127.0.0.1", "port": free_port()}))
    seen: list[set[str]] = []
    service.mqtt.start = lambda: seen.append(set(service.commands))  # type: ignore[method-assign]
    service.on_start = lambda: None  # type: ignore[method-assign]
    service.start()
    service._stop.set()
    assert seen == [{"replan", "manual_block", "clear_manual_blocks"}]


def test_the_architecture_doc_names_every_module_of_the_tree():
    """docs/architecture.md's folder table stays the map: a new shared module or service part is named there."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    parts = [p for p in sorted((ROOT / "shared").iterdir()) if p.name != "__init__.py" and not p.name.startswith((".", "_"))
             and (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))]
    parts += [p for p in sorted((ROOT / "services").iterdir()) if p.suffix == ".py" and p.name != "__init__.py"]
    named = [str(p.relative_to(ROOT)) + ("/" if p.is_dir() else "") for p in parts]
    missing = [n for n in named if n not in doc]
    assert missing == [], f"not in docs/architecture.md: {missing}"


def test_no_code_reads_beside_the_repository():
    """A user's clone has nothing beside it: no script, test or service may reach for ../shared (the
    development-only data folder); what they need ships in examples/data or tests/fixtures."""
    import re

    beside = re.compile(r"\.\./shared|\.parent\s*/\s*[\"']shared[\"']|parents\[\d\]\s*/\s*[\"']shared[\"']")
    offenders = [f"{p.relative_to(ROOT)}:{n}" for folder in ("benchmarks", "services", "shared", "tests", "deploy", "darkstar")
                 for p in sorted((ROOT / folder).rglob("*.py"))
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if beside.search(line) and p.name != "test_architecture.py"]
    assert offenders == []
