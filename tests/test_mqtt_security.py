"""MQTT credentials and TLS work against a real Mosquitto, and secrets stay out of logs."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.broker import port_is_open
from shared.config import MQTTConfig
from shared.mqtt import MqttClient
from tests.conftest import free_port, wait_for

PASSWORD = "s3cret-Passw0rd-for-tests"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_mosquitto() -> Iterator[dict]:
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make the test certificates")
    work = Path(tempfile.mkdtemp(prefix="darkstar-tls-"))
    work.chmod(0o777)  # mosquitto drops to its own user and must read these files
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=darkstar-test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=work)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
             "-out", "server.csr", cwd=work)
    (work / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=work)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(work / "passwd"), "planner", PASSWORD], check=True,
                   capture_output=True)
    for f in work.iterdir():
        f.chmod(0o644)
    port = free_port()
    (work / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\ncafile {work}/ca.crt\ncertfile {work}/server.crt\nkeyfile {work}/server.key\n"
        f"allow_anonymous false\npassword_file {work}/passwd\n"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(work / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port))
        yield {"port": port, "ca": work / "ca.crt"}
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def test_tls_with_username_and_password_connects(tls_mosquitto, caplog):
    cfg = MQTTConfig(embedded=False, host="127.0.0.1", port=tls_mosquitto["port"], tls=True,
                     ca_certs=tls_mosquitto["ca"], username="planner", password=PASSWORD)
    client = MqttClient(cfg, "tls-site", "planner", persistent_session=False)
    with caplog.at_level(logging.DEBUG):
        client.start()
        try:
            assert client.wait_connected(15)
        finally:
            client.stop()
    assert PASSWORD not in caplog.text


def test_wrong_password_is_refused_and_not_logged(tls_mosquitto, caplog):
    wrong = "not-the-password-123"
    cfg = MQTTConfig(embedded=False, host="127.0.0.1", port=tls_mosquitto["port"], tls=True,
                     ca_certs=tls_mosquitto["ca"], username="planner", password=wrong, protocol="5")
    client = MqttClient(cfg, "tls-site", "planner", persistent_session=False)
    with caplog.at_level(logging.DEBUG):
        client.start()
        try:
            assert not client.wait_connected(3)
            wait_for(lambda: client.last_error and "refused" in client.last_error)
        finally:
            client.stop()
    assert wrong not in caplog.text and PASSWORD not in caplog.text


def test_a_server_certificate_from_an_unknown_ca_is_refused(tls_mosquitto, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=other)
    cfg = MQTTConfig(embedded=False, host="127.0.0.1", port=tls_mosquitto["port"], tls=True,
                     ca_certs=other / "ca.crt", username="planner", password=PASSWORD)
    client = MqttClient(cfg, "tls-site", "planner", persistent_session=False)
    client.start()
    try:
        assert not client.wait_connected(3)
    finally:
        client.stop()
