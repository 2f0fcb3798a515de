"""Readable device logs: a gateway answering garbage on the Modbus port gives one line per kind of
error and then summaries (what, how often, since when), never the raw hex frames above DEBUG."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.executor.inverter import InverterError
from services.executor.modbus.profile import load_profile
from services.executor.modbus.transport import ModbusInverter
from shared.config import ModbusConfig
from shared.logsummary import SUMMARY_LOGGER, SummarisingFilter, readable

GARBAGE = bytes.fromhex("0001000000ff01" + "de ad be ef 00 17 42 99 13 37".replace(" ", "")) * 3


def test_raw_frames_are_cut_from_a_message():
    text = readable("Frame check failed, ignoring!! recv: 0x0 0x1 0x0 0x0 0x0 0xff 0x1 0xde 0xad, expected 0x2")
    assert "0xde" not in text and text.startswith("Frame check failed, ignoring!! recv: <frame>")


def test_a_garbage_gateway_gives_summaries_not_hex_dumps(caplog: pytest.LogCaptureFixture):
    lib = logging.getLogger("pymodbus.logging")
    summary = SummarisingFilter("Modbus", interval_s=3600)
    lib.addFilter(summary)
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
        failures = 0
        for _ in range(8):
            with pytest.raises(InverterError):
                await inverter.read_telemetry()
            failures += 1
        await inverter.close()
        server.close()
        await server.wait_closed()
        return failures

    try:
        with caplog.at_level(logging.DEBUG, logger=SUMMARY_LOGGER):
            assert asyncio.run(body()) == 8
            summary.flush()
    finally:
        lib.removeFilter(summary)
        logging.getLogger("pymodbus").setLevel(old_level)
    lib_records = [r for r in caplog.records if r.name.startswith("pymodbus") and r.levelno >= logging.WARNING]
    assert lib_records == []  # nothing from pymodbus itself above DEBUG
    lines = [r.getMessage() for r in caplog.records if r.name == SUMMARY_LOGGER]
    assert lines, "the errors were not reported at all"
    firsts = [m for m in lines if "further ones are summarised" in m]
    repeats = [m for m in lines if " more x " in m]
    assert firsts and repeats  # each kind said once, then counted with its first time
    assert all("0xde" not in m and "\\xde" not in m for m in lines)
    assert len(lines) < 8 + 8  # fewer lines than errors: summarised, not one per frame
