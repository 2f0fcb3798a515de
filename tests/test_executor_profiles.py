"""Inverter profiles: every shipped profile loads, bad ones fail naming the key path, and the
vendor maps decode and write correctly over real Modbus TCP against register images laid out
the way the public documentation describes (SunSpec model chain, Sungrow word-swapped values)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

import pytest
import yaml
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from services.executor.inverter import Intent
from services.executor.modbus.codec import decode_raw, encode_value
from services.executor.modbus.expr import Expr
from services.executor.modbus.profile import (
    PROFILE_DIR,
    ProfileError,
    RegisterSpec,
    available_profiles,
    load_profile,
    profile_from_dict,
)
from services.executor.modbus.transport import ModbusInverter
from shared.config import BatteryConfig, ModbusConfig, yaml_load

BATTERY = BatteryConfig(capacity_kwh=10.0, max_charge_kw=5.0, max_discharge_kw=5.0)


def test_every_shipped_profile_loads_and_can_hold_and_self_consume() -> None:
    names = available_profiles()
    assert {"darkstar_sim", "sunspec", "sungrow_sh", "deye_hybrid"} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert {"hold", "self_consumption"} <= set(profile.supported_modes), name
        assert "soc_frac" in profile.telemetry, name
        if name != "darkstar_sim":
            assert profile.sources, f"{name}: a vendor map must cite its public source"


def _sim_profile() -> dict:
    return yaml_load((PROFILE_DIR / "darkstar_sim.yaml").read_text())


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["intents"]["charge"][0].update(register="powr"), "intents.charge.0.register: unknown register 'powr'"),
        (lambda d: d["intents"]["hold"].append({"register": "soc", "value": 1}), "intents.hold.2.register: register 'soc' is not writable"),
        (lambda d: d["telemetry"].update(soc_frac="__import__('os')"), "telemetry: soc_frac: unsupported syntax"),
        (lambda d: d["telemetry"].update(pv_kw="pv_power_w / 1000"), "telemetry.pv_kw: unknown register 'pv_power_w'"),
        (lambda d: d["intents"].pop("self_consumption"), "intents.self_consumption: Field required"),
        (lambda d: d["registers"]["soc"].update(type="u64"), "registers.soc.type"),
        (lambda d: d["intents"]["discharge"][0].update(value="power_mw * 2"), "intents.discharge.0.value: unknown name 'power_mw'"),
        (lambda d: d["read_blocks"][0].update(count=500), "read_blocks.0.count"),
    ],
)
def test_profile_errors_name_the_key_path(mutate, expected: str) -> None:
    data = _sim_profile()
    mutate(data)
    with pytest.raises(ProfileError) as err:
        profile_from_dict(data, source="broken.yaml")
    assert "broken.yaml" in str(err.value)
    assert expected in str(err.value)


def test_unknown_profile_lists_the_shipped_ones(tmp_path) -> None:
    with pytest.raises(ProfileError, match="shipped profiles: .*darkstar_sim"):
        load_profile("no_such_inverter")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n  registers: [\n")
    with pytest.raises(ProfileError, match="not valid YAML at line"):
        load_profile(bad)


def test_register_codec_round_trips_types_word_orders_and_scales() -> None:
    s32 = RegisterSpec(address=0, type="s32", unit="W")
    for order in ("big", "little"):
        words = encode_value(s32, -123456, order)
        assert decode_raw(s32, words, order) == -123456
    assert encode_value(s32, -2, "little") == [0xFFFE, 0xFFFF]  # low word first
    pct = RegisterSpec(address=0, type="u16", scale=0.1, unit="%")
    assert encode_value(pct, 55.5, "big") == [555]
    with pytest.raises(ValueError, match="out of range"):
        encode_value(RegisterSpec(address=0, type="u16"), 70000, "big")
    f32 = RegisterSpec(address=0, type="f32")
    assert decode_raw(f32, encode_value(f32, 1.5, "big"), "big") == 1.5


def test_expressions_are_safe_and_unknown_stays_unknown() -> None:
    assert Expr("(a + b) / 1000").evaluate({"a": 1500, "b": 500}) == 2.0
    assert Expr("(a + b) / 1000").evaluate({"a": None, "b": 500}) is None
    assert Expr("coalesce(a, b) / 100").evaluate({"a": None, "b": 55}) == 0.55
    assert Expr("p * ((s & 2 > 0) - (s & 4 > 0))").evaluate({"p": 3, "s": 4}) == -3
    for evil in ("__import__('os').system('true')", "a.__class__", "[x for x in y]", "'text'"):
        with pytest.raises(ValueError):
            Expr(evil)


# --------------------------------------------------------------------------- vendor maps over TCP


@asynccontextmanager
async def register_server(
    holding: dict[int, list[int]], inputs: dict[int, list[int]], requests: list | None = None
) -> AsyncIterator[int]:
    """A Modbus TCP server holding the given register images (address -> consecutive words);
    ``requests`` collects (function code, address, values written) of every request."""

    async def action(fc, start, address, count, registers, values):  # noqa: ANN001, ANN202
        if requests is not None:
            requests.append((fc, address, list(values) if values else None))
        return None

    def block(image: dict[int, list[int]]) -> list[SimData]:
        if not image:
            return [SimData(0, values=0, datatype=DataType.REGISTERS)]
        return [SimData(a, values=list(v), datatype=DataType.REGISTERS) for a, v in sorted(image.items())]

    bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
    device = SimDevice(0, simdata=(bits, [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                                   block(holding), block(inputs)), action=action)
    server = ModbusTcpServer(device, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    try:
        yield server.transport.sockets[0].getsockname()[1]
    finally:
        await server.shutdown()


async def read_holding(port: int, address: int, count: int) -> list[int]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    try:
        return list((await client.read_holding_registers(address, count=count, device_id=1)).registers)
    finally:
        client.close()


def s16(value: int) -> int:
    return value & 0xFFFF


def test_sunspec_chain_is_discovered_and_storage_controls_written() -> None:
    model_103 = [0xFFFF] * 50
    model_103[12], model_103[13] = 1500, 0  # W, W_SF
    model_124 = [0] * 24
    model_124[0] = 5000  # WChaMax
    model_124[5] = 5  # MinRsvPct
    model_124[6], model_124[20] = 555, s16(-1)  # ChaState 55.5 %
    model_124[10] = model_124[11] = 10000  # OutWRte / InWRte 100.00 %
    model_124[23] = s16(-2)  # InOutWRte_SF
    image = [0x5375, 0x6E53, 1, 66] + [0] * 66 + [103, 50] + model_103 + [124, 24] + model_124 + [0xFFFF, 0]

    async def body() -> None:
        async with register_server({40000: image}, {}) as port:
            inverter = ModbusInverter(load_profile("sunspec"), ModbusConfig(port=port, timeout_s=1), battery=BATTERY)
            telemetry = await inverter.read_telemetry()
            assert telemetry.soc_frac == pytest.approx(0.555)  # model 802 absent: ChaState of model 124
            assert inverter.values["ac_power"] == 1500
            result = await inverter.apply(Intent("charge", 2.5, soc_floor_frac=0.1, soc_ceiling_frac=1.0))
            assert result.ok and result.verified, result
            assert "soc_limits" not in result.unsupported
            m124 = 40000 + 4 + 66 + 2 + 50 + 2  # first data register of model 124
            regs = await read_holding(port, m124, 24)
            assert regs[3] == 3 and regs[15] == 1  # StorCtl_Mod: both limits; ChaGriSet: grid
            assert regs[11] == 5000 and regs[10] == s16(-5000)  # InWRte 50 %, OutWRte -50 % (forced charge)
            assert regs[5] == 10  # MinRsvPct = reserve
            await inverter.apply(Intent("hold", soc_floor_frac=0.1, soc_ceiling_frac=1.0))
            regs = await read_holding(port, m124, 24)
            assert regs[10] == 0 and regs[11] == 0 and regs[3] == 3
            await inverter.close()

    asyncio.run(asyncio.wait_for(body(), 20))


def test_sungrow_word_swapped_values_and_forced_mode() -> None:
    def s32_little(value: int) -> list[int]:
        bits = value & 0xFFFFFFFF
        return [bits & 0xFFFF, bits >> 16]

    inputs = {
        5016: s32_little(4200),  # PV 4.2 kW
        13000: [0x4] + [0] * 6 + s32_little(900) + s32_little(-1500) + [0] * 10 + [2000, 873],
    }
    holding = {13049: [0, 0xCC, 0] + [0] * 5 + [1000, 100], 13073: [0]}

    async def body() -> None:
        async with register_server(holding, inputs) as port:
            inverter = ModbusInverter(load_profile("sungrow_sh"), ModbusConfig(port=port, timeout_s=1), battery=BATTERY)
            t = await inverter.read_telemetry()
            assert (t.soc_frac, t.pv_kw, t.load_kw) == pytest.approx((0.873, 4.2, 0.9))
            assert t.grid_kw == pytest.approx(1.5)  # export register -1500 W = importing 1.5 kW
            assert t.battery_kw == pytest.approx(-2.0)  # running state bit 0x4: discharging
            result = await inverter.apply(Intent("discharge", 7.0, soc_floor_frac=0.1, soc_ceiling_frac=0.95))
            assert result.ok and result.verified
            assert result.applied.power_kw == 5.0 and result.clamped  # the site battery's 5 kW
            assert await read_holding(port, 13049, 10) == [2, 0xBB, 5000, 0, 0, 0, 0, 0, 950, 100]
            await inverter.close()

    asyncio.run(asyncio.wait_for(body(), 20))


def test_deye_time_of_use_control_uses_function_16_and_cannot_discharge_at_power() -> None:
    holding = {148: [1000, 1500], 166: [30, 0, 0, 0, 0, 0, 0], 588: [64, 0, s16(-1200)], 625: [s16(-300)],
               653: [950], 672: [1000, 800, 0, 0]}
    requests: list = []

    async def body() -> None:
        async with register_server(holding, {}, requests) as port:
            inverter = ModbusInverter(load_profile("deye_hybrid"), ModbusConfig(port=port, timeout_s=1), battery=BATTERY)
            t = await inverter.read_telemetry()
            assert (t.soc_frac, t.pv_kw, t.load_kw, t.grid_kw) == pytest.approx((0.64, 1.8, 0.95, -0.3))
            assert t.battery_kw == pytest.approx(1.2)  # Deye: negative battery output = charging
            result = await inverter.apply(Intent("charge", 3.0, soc_floor_frac=0.2, soc_ceiling_frac=0.95))
            assert result.ok and result.verified
            writes = [(fc, a, v) for fc, a, v in requests if v is not None]
            assert {fc for fc, _, _ in writes} == {16}
            assert {a: v[0] for _, a, v in writes} == {166: 95, 148: 0, 149: 2355, 172: 1}
            refused = await inverter.apply(Intent("discharge", 3.0))
            assert not refused.ok and "cannot do 'discharge'" in refused.error
            await inverter.close()

    asyncio.run(asyncio.wait_for(body(), 20))


def test_profile_without_limits_and_without_battery_refuses_to_run() -> None:
    with pytest.raises(ValueError, match="refusing to run unbounded"):
        ModbusInverter(load_profile("sungrow_sh"), ModbusConfig())


def test_profile_yaml_headers_are_valid_yaml_documents() -> None:
    for path in PROFILE_DIR.glob("*.yaml"):
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_every_shipped_home_assistant_profile_loads_cites_its_source_and_can_be_safe():
    from services.executor.ha_profile import HA_PROFILE_DIR, ACTIONS, load_ha_profile

    names = sorted(p.stem for p in HA_PROFILE_DIR.glob("*.yaml"))
    assert {"generic", "goodwe", "enphase_envoy"} <= set(names)
    for name in names:
        profile = load_ha_profile(name)
        assert profile.sources, name
        assert profile.intents.self_consumption and profile.intents.hold  # the safety rules need both
        for _intent, steps in profile.intents:
            for step in steps or []:
                assert step.action in ACTIONS


def test_a_home_assistant_profile_error_names_the_file_and_key(tmp_path):
    from services.executor.ha_profile import load_ha_profile
    from services.executor.modbus.profile import ProfileError

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ncontrols: {mode: select.x}\nintents:\n  self_consumption:\n"
                   "    - {action: select_option, control: nope, data: {option: a}}\n"
                   "  hold:\n    - {action: explode, control: mode}\n")
    with pytest.raises(ProfileError) as err:
        load_ha_profile(bad)
    text = str(err.value)
    assert "bad.yaml" in text and "intents.hold.0.action" in text and "explode" in text
