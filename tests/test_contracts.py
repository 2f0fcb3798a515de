"""Every MQTT contract round-trips, and no malformed payload gets past decode or crashes it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.contracts import (
    MODELS,
    TOPICS,
    CommandMsg,
    CommandResultMsg,
    ContextMsg,
    ContractError,
    CostBreakdown,
    EnergyTotalsMsg,
    ErrorEventMsg,
    ExecutorStateMsg,
    ForecastMsg,
    ForecastSlot,
    ObservationMsg,
    OracleResultMsg,
    PlanMsg,
    PlanSlot,
    PriceNowMsg,
    PriceSlot,
    PricesMsg,
    SolverStats,
    TelemetryMsg,
    TrainerRunMsg,
    WeatherMsg,
    WeatherSlot,
    decode,
    decode_for_topic,
    encode,
    kind_of_topic,
    topic,
)

T0 = datetime(2025, 10, 26, 0, 0, tzinfo=timezone.utc)  # a DST change day in Europe
SITE = "se4-home"


def slots(n: int) -> list[datetime]:
    return [T0 + timedelta(minutes=15 * i) for i in range(n)]


def sample_messages() -> dict[str, object]:
    return {
        "prices": PricesMsg(site_id=SITE, area="SE4", currency="EUR", resolution_minutes=15, source="test",
                            slots=[PriceSlot(start=s, spot_per_kwh=-0.01 * i, import_price_per_kwh=0.1,
                                             export_price_per_kwh=-0.02) for i, s in enumerate(slots(8))]),
        "weather": WeatherMsg(site_id=SITE, resolution_minutes=60,
                              slots=[WeatherSlot(start=s, temp_c=3.5, ghi_wm2=0.0) for s in slots(4)[::4]]),
        "forecast": ForecastMsg(site_id=SITE, model_id="aurora-test",
                                slots=[ForecastSlot(start=s, load_p10_kw=0.2, load_p50_kw=0.5, load_p90_kw=0.9,
                                                    pv_p10_kw=0, pv_p50_kw=0, pv_p90_kw=0) for s in slots(4)]),
        "plan": PlanMsg(site_id=SITE, valid_until=T0 + timedelta(hours=1),
                        slots=[PlanSlot(start=s, mode="charge", charge_kw=5, import_kw=5.5, soc_kwh=10 + i)
                               for i, s in enumerate(slots(4))],
                        cost=CostBreakdown(currency="EUR", import_cost=1.0, export_revenue=0.0, total_cost=1.0),
                        solver=SolverStats(status="optimal", objective=1.0, build_s=0.01, solve_s=0.02)),
        "telemetry": TelemetryMsg(site_id=SITE, ts=T0, soc_frac=None, pv_kw=1.0, load_kw=0.5, grid_kw=-0.5),
        "observations": ObservationMsg(site_id=SITE, slot_start=T0, load_kwh=0.2, pv_kwh=0.0, import_kwh=0.2),
        "executor_state": ExecutorStateMsg(site_id=SITE, mode="self_consumption", plan_id="p1"),
        "context": ContextMsg(site_id=SITE, name="vacation", value=True),
        "command": CommandMsg(site_id=SITE, args={"power_kw": 3}, ttl_s=600),
        "command_result": CommandResultMsg(site_id=SITE, correlation_id="c1", status="ok", data={"x": 1}),
        "error": ErrorEventMsg(site_id=SITE, who="planner", what="darkstar/se4-home/prices", why="bad"),
        "oracle_result": OracleResultMsg(site_id=SITE, day="2025-10-26", currency="EUR", oracle_cost=1.5),
        "trainer_run": TrainerRunMsg(site_id=SITE, run_id="r1", target="aurora", status="finished",
                                     metrics={"load_mae_kw": 0.3}),
        "price_now": PriceNowMsg(site_id=SITE, currency="EUR", slot_start=T0, import_price_per_kwh=0.21,
                                 export_price_per_kwh=0.04, next_slot_start=T0 + timedelta(minutes=15),
                                 next_import_price_per_kwh=0.25, next_export_price_per_kwh=0.05),
        "energy_totals": EnergyTotalsMsg(site_id=SITE, since=T0, import_kwh=12.5, export_kwh=3.25, pv_kwh=20.0,
                                        saving=-0.42, currency="EUR", saving_unpriced_slots=3),
    }


def test_every_topic_kind_has_a_sample():
    assert set(sample_messages()) == {k for k, spec in TOPICS.items() if spec.model is not None}


@pytest.mark.parametrize("kind", sorted(sample_messages()))
def test_round_trip_of_every_contract(kind: str):
    msg = sample_messages()[kind]
    payload = encode(msg)
    data = json.loads(payload)
    assert data["schema"] == f"darkstar.{type(msg).KIND}/1"
    assert decode(payload) == msg
    parts = {"name": "vacation", "service": "planner", "action": "replan"}
    full_topic = topic("darkstar", SITE, kind, **parts)
    site, found_kind, _, decoded = decode_for_topic("darkstar", full_topic, payload)
    assert (site, found_kind, decoded) == (SITE, kind, msg)


def test_timestamps_are_iso_with_offset():
    data = json.loads(encode(sample_messages()["plan"]))
    assert data["slots"][0]["start"].endswith("Z") or data["slots"][0]["start"].endswith("+00:00")


def test_unknown_major_version_is_rejected_with_reason():
    data = json.loads(encode(sample_messages()["prices"]))
    data["schema"] = "darkstar.prices/2"
    with pytest.raises(ContractError, match="unsupported major version 2"):
        decode(json.dumps(data))


def test_invalid_field_is_named_in_the_error():
    data = json.loads(encode(sample_messages()["forecast"]))
    data["slots"][1]["load_p90_kw"] = 0.1  # below p50: quantiles cross
    with pytest.raises(ContractError, match=r"slots\.1\.load_p90_kw"):
        decode(json.dumps(data))


def test_naive_timestamps_are_refused():
    data = json.loads(encode(sample_messages()["telemetry"]))
    data["ts"] = "2025-10-26T00:00:00"
    with pytest.raises(ContractError, match="ts"):
        decode(json.dumps(data))


def test_site_in_payload_must_match_topic():
    payload = encode(sample_messages()["prices"])
    with pytest.raises(ContractError, match="does not match"):
        decode_for_topic("darkstar", "darkstar/other-site/prices", payload)


def test_context_types_are_enforced():
    with pytest.raises(ValueError, match="true/false"):
        ContextMsg(site_id=SITE, name="vacation", value=3.0)


def test_a_departure_time_survives_the_bus_and_needs_an_offset():
    # from JSON a time is a string: it must come back as an aware datetime (the web app and HA send it)
    at = datetime(2025, 8, 16, 6, 15, tzinfo=timezone(timedelta(hours=2)))
    back = decode(encode(ContextMsg(site_id=SITE, name="ev_departure", value=at)))
    assert back.value == at and isinstance(back.value, datetime)
    with pytest.raises(ValueError, match="with offset"):
        ContextMsg.model_validate({"site_id": SITE, "name": "ev_departure", "value": "2025-08-16T06:15:00"})


def test_status_topics_are_plain_text():
    assert decode_for_topic("darkstar", "darkstar/x/planner/status", b"offline")[3] == "offline"
    with pytest.raises(ContractError):
        decode_for_topic("darkstar", "darkstar/x/planner/status", b"maybe")


def test_topic_parsing_is_unambiguous():
    assert kind_of_topic("darkstar", "darkstar/x/executor/state")[1] == "executor_state"
    assert kind_of_topic("darkstar", "darkstar/x/oracle/result")[1] == "oracle_result"
    assert kind_of_topic("darkstar", "darkstar/x/cmd/executor/force_charge")[1] == "command"
    assert kind_of_topic("darkstar", "elsewhere/x/plan") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(MODELS)), junk=st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_random_payloads_raise_contract_error_or_validate(kind: str, junk: dict):
    junk = {"schema": f"darkstar.{kind}/1", "site_id": SITE, **junk}
    try:
        msg = decode(json.dumps(junk))
    except ContractError as err:
        assert err.why
    else:
        assert type(msg).KIND == kind


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_random_bytes_never_crash_decode(raw: bytes):
    with pytest.raises(ContractError):
        decode(raw)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(sample_messages())), data=st.data())
def test_mutating_one_field_of_a_valid_message_is_caught_or_valid(kind: str, data):
    payload = json.loads(encode(sample_messages()[kind]))
    key = data.draw(st.sampled_from(sorted(payload)))
    payload[key] = data.draw(json_values)
    try:
        decode(json.dumps(payload))
    except ContractError as err:
        assert err.what and err.why


def test_price_now_is_the_slot_in_progress_and_the_next_one():
    prices = sample_messages()["prices"]
    assert isinstance(prices, PricesMsg)
    now = prices.slots[2].start + timedelta(minutes=7)
    msg = PriceNowMsg.from_prices(prices, now)
    assert msg is not None and msg.slot_start == prices.slots[2].start
    assert msg.next_slot_start == prices.slots[3].start
    assert PriceNowMsg.from_prices(prices, prices.slots[-1].start + timedelta(minutes=15)) is None  # past the curve
