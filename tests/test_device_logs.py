"""Readable device logs: a gateway answering garbage on the Modbus port gives one line per kind of
error and then summaries (what, how often, since when), never the raw hex frames above DEBUG."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import pytest

from services.executor.control import ControlSettings
from services.executor.loop import DEVICE_LOGGER, ExecutorLoop
from services.executor.modbus.profile import load_profile
from services.executor.modbus.transport import ModbusInverter
from shared.clock import ManualClock
from shared.config import ModbusConfig, load_site_config
from shared.logsummary import SUMMARY_LOGGER, SummarisingFilter, readable
from tests.conftest import ROOT

SITE = load_site_config(ROOT / "examples" / "se4-home.yaml", environ={})

GARBAGE = bytes.fromhex("0001000000ff01" + "de ad be ef 00 17 42 99 13 37".replace(" ", "")) * 3


def test_raw_frames_are_cut_from_a_message():
    text = readable("Frame check failed, ignoring!! recv: 0x0 0x1 0x0 0x0 0x0 0xff 0x1 0xde 0xad, expected 0x2")
    assert "0xde" not in text and text.startswith("Frame check failed, ignoring!! recv: <frame>")


def test_a_garbage_gateway_gives_summaries_not_hex_dumps(caplog: pytest.LogCaptureFixture):
    """The executor's loop ticks against the gateway: neither pymodbus nor the loop logs a line per failure."""
    lib = logging.getLogger("pymodbus.logging")
    summary = SummarisingFilter("Modbus", interval_s=3600)
    lib.addFilter(summary)
    device = logging.getLogger(DEVICE_LOGGER)
    device_summary = SummarisingFilter("inverter", interval_s=3600)
    device.addFilter(device_summary)
    old_level = logging.getLogger("pymodbus").level
    logging.getLogger("pymodbus").setLevel(logging.WARNING)  # as setup_logging does below DEBUG

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(256):
                writer.write(GARBAGE)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def body() -> int:
        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        inverter = ModbusInverter(load_profile("darkstar_sim"), ModbusConfig(port=port, timeout_s=0.3, retries=0),
                                  backoff_s=0.0)
        clock = ManualClock(datetime(2026, 1, 12, 12, 0, tzinfo=timezone.utc))
        loop = ExecutorLoop(inverter, ControlSettings.for_device(SITE, inverter), site_id=SITE.site_id, clock=clock,
                            tick_s=10.0)
        failures = 0
        for _ in range(8):
            report = await loop.tick()
            failures += report.error is not None
            clock.advance(10)
        await inverter.close()
        server.close()
        await server.wait_closed()
        return failures

    try:
        with caplog.at_level(logging.DEBUG, logger=SUMMARY_LOGGER):
            assert asyncio.run(body()) == 8
            summary.flush()
            device_summary.flush()
    finally:
        lib.removeFilter(summary)
        device.removeFilter(device_summary)
        logging.getLogger("pymodbus").setLevel(old_level)
    lib_records = [r for r in caplog.records if r.name.startswith("pymodbus") and r.levelno >= logging.WARNING]
    assert lib_records == []  # nothing from pymodbus itself above DEBUG
    assert not [r for r in caplog.records if r.name == DEVICE_LOGGER]  # nor one line per tick from the loop
    lines = [r.getMessage() for r in caplog.records if r.name == SUMMARY_LOGGER]
    assert lines, "the errors were not reported at all"
    firsts = [m for m in lines if "further ones are summarised" in m]
    repeats = [m for m in lines if " more x " in m]
    assert firsts and repeats  # each kind said once, then counted with its first time
    assert all("0xde" not in m and "\\xde" not in m for m in lines)
    assert any(m.startswith("inverter: ") for m in lines) and any(m.startswith("inverter: 7 more x") for m in lines)
    assert len(lines) <= 8  # 8 failing ticks: each kind of trouble once, then one summary line per kind
