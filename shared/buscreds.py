"""Per-service MQTT credentials for the embedded broker, generated at first start.

Each service logs in as its own name with a random password kept in ``mqtt.credentials_file``
(``var/mqtt-credentials.json`` by default, owner-only, 0600 in a 0700 directory). A service
that is not in the file yet adds itself on first connect (under a file lock, so processes
starting together do not overwrite each other); the embedded broker re-reads the file when
it changes. Nothing else needs configuring: a new service (web, HA adapter, OCPP) connects
through :class:`shared.mqtt.MqttClient` exactly like the five originals.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

_PASSWORD_BYTES = 24


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def load_credentials(path: Path) -> dict[str, str]:
    """username -> password of every service that has started once (empty when none has)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise RuntimeError(f"{path}: unreadable MQTT credentials file ({type(err).__name__}); "
                           "delete it to generate new ones") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise RuntimeError(f"{path}: MQTT credentials file must map names to passwords; delete it to regenerate")
    return data


def service_password(path: Path, service: str) -> str:
    """The service's password, generated and stored owner-only the first time it is asked for."""
    with _locked(path):
        creds = load_credentials(path)
        if service not in creds:
            creds[service] = secrets.token_urlsafe(_PASSWORD_BYTES)
            tmp = path.with_name(path.name + ".new")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(creds, out, indent=1, sort_keys=True)
            os.replace(tmp, path)
        os.chmod(path, 0o600)  # also repairs a file someone made readable by others
        return creds[service]
