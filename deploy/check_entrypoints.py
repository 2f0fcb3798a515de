"""CI check of the image's environment without a Docker engine (stdlib only; run by .ci/steps).

1. Builds what the Dockerfile builds: ``uv sync --frozen --no-editable`` with the Dockerfile's
   ``ARG EXTRAS`` (from uv.lock) into a fresh venv, and checks that matplotlib imports there
   (the dashboard plots; it was missing from the image once).
2. Migrates a SQLite database with that venv's ``darkstar db upgrade`` (compose's ``migrate``).
3. Starts every compose service's command (``python -m services.<name>``) from that venv, as
   the containers do (working directory = the source tree, as /app in the image), against the
   machine's Mosquitto on 127.0.0.1:1883, and waits until each one's ``/readyz`` answers with
   the broker and the database reachable. Inputs (prices from the internet, a Modbus inverter)
   are not there in CI, so a 503 that says only "inputs stale" counts as started.

    python3 deploy/check_entrypoints.py [--keep-venv DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 600.0  # six services importing at once on a loaded 2-core CI machine take minutes


def dockerfile_extras() -> list[str]:
    match = re.search(r"^ARG EXTRAS=(\S+)", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    if match is None:
        raise SystemExit("Dockerfile has no ARG EXTRAS=...")
    return match.group(1).split(",")


def compose_services() -> list[str]:
    text = (ROOT / "docker-compose.yml").read_text()
    return re.findall(r'command: \["python", "-m", "services\.([a-z_]+)"\]', text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def readyz(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:  # 503: answered, not ready
        return json.loads(err.read() or b"{}")
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep-venv", type=Path, default=None, help="build the venv here (default: a temp dir)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="darkstar-image-env-"))
    venv = args.keep_venv or tmp / "venv"
    extras = dockerfile_extras()
    flags = [f for e in extras for f in ("--extra", e)]
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_LINK_MODE": "copy"}
    print(f"uv sync --frozen --no-editable {' '.join(flags)} -> {venv}", flush=True)
    subprocess.run(["uv", "sync", "--frozen", "--no-editable", *flags], cwd=ROOT, env=env, check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-c", "import matplotlib, lightgbm, highspy, psycopg, pymysql, amqtt, jinja2"],
                   check=True)
    db_url = f"sqlite:///{tmp / 'darkstar.db'}"
    site_id = f"ci-image-{uuid.uuid4().hex[:8]}"
    base = {**os.environ, "DARKSTAR_SITE": str(ROOT / "examples" / "se4-home.yaml"),
            "DARKSTAR__SITE_ID": site_id, "DARKSTAR__DATABASE__URL": db_url, "DARKSTAR__MQTT__EMBEDDED": "false",
            "DARKSTAR__MQTT__HOST": "127.0.0.1", "DARKSTAR__MQTT__PORT": "1883",
            "DARKSTAR__HTTP__ADMIN_TOKEN": uuid.uuid4().hex, "MPLCONFIGDIR": str(tmp / "mpl"),
            "DARKSTAR__TRAINER__MODEL_DIR": str(tmp / "models"), "DARKSTAR__FORECASTER__MODEL_DIR": str(tmp / "models")}
    subprocess.run([str(venv / "bin" / "darkstar"), "db", "upgrade"], cwd=ROOT, env=base, check=True)

    procs: dict[str, tuple[subprocess.Popen, int, Path]] = {}
    for name in compose_services():
        port = free_port()
        key = "DASHBOARD" if name == "web" else name.upper()
        log_path = tmp / f"{name}.log"
        proc = subprocess.Popen([str(python), "-m", f"services.{name}"], cwd=ROOT,
                                env={**base, f"DARKSTAR__HTTP__PORTS__{key}": str(port)},
                                stdout=log_path.open("w"), stderr=subprocess.STDOUT)
        procs[name] = (proc, port, log_path)
    results: dict[str, str] = {}
    deadline = time.monotonic() + READY_TIMEOUT_S
    while len(results) < len(procs) and time.monotonic() < deadline:
        for name, (proc, port, _) in procs.items():
            if name in results:
                continue
            if proc.poll() is not None:
                results[name] = f"FAILED: exited with {proc.returncode}"
                continue
            body = readyz(port)
            if body and body.get("broker") == "ok" and body.get("database", "ok") == "ok":
                results[name] = f"ok (/readyz ready={body.get('ready')}, broker ok, database {body.get('database', '-')})"
        time.sleep(1)
    for name, (proc, _, log_path) in procs.items():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        result = results.get(name, f"FAILED: no ready /readyz within {READY_TIMEOUT_S:.0f} s")
        print(f"  {name:<10} {result}")
        if result.startswith("FAILED"):
            print("    " + "\n    ".join(log_path.read_text().splitlines()[-15:]))
    ok = len(procs) > 0 and all(not r.startswith("FAILED") for r in results.values()) and len(results) == len(procs)
    print(f"image environment ({','.join(extras)}): {'every entrypoint ready' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
