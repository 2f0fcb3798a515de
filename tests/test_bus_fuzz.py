"""Generated payloads on every topic to running services over the real embedded broker.

Hypothesis builds messages from valid ones with fields replaced by hostile values (huge, negative,
NaN-like, deep, long, wrong types, far dates). Afterwards: the services still run and answer a
command, every rejection was reported (the counts on ``events/error`` add up to the rejections),
and nothing implausible was stored.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.forecaster.service import ForecasterService
from services.planner.service import PlannerService
from shared.contracts import (
    TOPICS,
    CommandMsg,
    ObservationMsg,
    PriceSlot,
    PricesMsg,
    TelemetryMsg,
    decode,
    encode,
)
from shared.plausibility import implausible
from shared.storage.repository import Store
from tests.conftest import embedded_mqtt, make_site, running, start_embedded_broker, wait_for
from tests.test_service_runtime import Watcher

NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)

HOSTILE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(min_value=-10**30, max_value=10**30),
    st.sampled_from([1e300, -1e300, 99.0, 1e6, -5.0, "NaN", "Infinity", None, True, [], {}]),
    st.text(max_size=50), st.just("x" * 5000),
    st.sampled_from(["9999-12-31T23:45:00+00:00", "1970-01-01T00:00:00+00:00", "not a date"]),
    st.recursive(st.integers(), lambda inner: st.lists(inner, max_size=2), max_leaves=40),
)


def _valid(site_id: str) -> dict[str, dict[str, Any]]:
    price = PricesMsg(site_id=site_id, currency="EUR", resolution_minutes=15, source="fuzz",
                      slots=[PriceSlot(start=NOW + timedelta(minutes=15 * i), import_price_per_kwh=0.2,
                                       export_price_per_kwh=0.05) for i in range(4)])
    return {
        "prices": json.loads(encode(price)),
        "telemetry": json.loads(encode(TelemetryMsg(site_id=site_id, ts=NOW, soc_frac=0.5, soc_kwh=5.0, pv_kw=1.0,
                                                    load_kw=0.5, grid_kw=-0.5, battery_kw=0.0))),
        "observations": json.loads(encode(ObservationMsg(site_id=site_id, slot_start=NOW - timedelta(hours=1),
                                                         load_kwh=0.3, pv_kwh=0.1, import_kwh=0.2))),
        "command": json.loads(encode(CommandMsg(site_id=site_id, args={}))),
    }


def _mutate(data: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(data))
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _paths(data: Any, prefix: list[str | int] | None = None) -> list[list[str | int]]:
    prefix = prefix or []
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in ([prefix + [k]] + _paths(v, prefix + [k]))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data[:2]) for p in ([prefix + [i]] + _paths(v, prefix + [i]))]
    return []


def test_generated_payloads_on_every_topic_are_refused_reported_and_never_stored(tmp_path: Path) -> None:
    mqtt = {**embedded_mqtt(tmp_path), "publish_burst": 100_000}  # a barrage on purpose: the rate rule is tested apart
    broker = start_embedded_broker(mqtt)
    site = make_site(tmp_path, mqtt)
    store = Store.open(site.database.url.get_secret_value())
    base = f"darkstar/{site.site_id}"
    watcher = Watcher(broker.host, broker.port, f"{base}/#")
    planner, recorder = PlannerService(site), ForecasterService(site, store=store)
    valid = _valid(site.site_id)
    published: list[tuple[str, bytes]] = []

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(kind=st.sampled_from(sorted(valid)), data=st.data())
    def publish_one(kind: str, data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(_paths(valid[kind])))
        payload = json.dumps(_mutate(valid[kind], path, data.draw(HOSTILE))).encode()
        topic_name = f"{base}/cmd/planner/clear_manual_blocks" if kind == "command" else f"{base}/{TOPICS[kind].suffix}"
        watcher.publish(topic_name, payload)
        published.append((topic_name, payload))

    try:
        with running(recorder), running(planner, watcher, store):
            publish_one()
            # still alive: a command round trip after the barrage
            probe = CommandMsg(site_id=site.site_id, issued_by="fuzz", reason="alive?")
            watcher.publish(f"{base}/cmd/planner/clear_manual_blocks", encode(probe))
            wait_for(lambda: [p for p in watcher.on(f"{base}/cmd/planner/clear_manual_blocks/result")
                              if probe.correlation_id.encode() in p], timeout_s=30)
            for service in (planner, recorder):
                service.error_throttle.flush(force=True)

            def reported(service: Any) -> int:
                events = [decode(p) for p in watcher.on(f"{base}/events/error")]
                return sum(e.count for e in events if e.who == service.name and e.what.startswith(base)
                           and not e.why.startswith("handler failed"))

            def rejected(service: Any) -> float:
                return sum(s.value for m in service.m_rejected.collect() for s in m.samples if s.name.endswith("_total"))

            for service in (planner, recorder):
                wait_for(lambda s=service: reported(s) == rejected(s), timeout_s=20)  # noqa: B023
            print(f"fuzz: {len(published)} published, rejected planner {rejected(planner):g} recorder {rejected(recorder):g}")
            assert rejected(recorder) > 0  # the generator did produce refusals
            # no payload made a handler crash (a crash is reported as "handler failed", and is a bug)
            crashes = [e.why for e in map(decode, watcher.on(f"{base}/events/error")) if e.why.startswith("handler failed")]
            assert crashes == []
            # nothing implausible among the stored observations either
            obs = store.observations_between(site.site_id, datetime(2000, 1, 1, tzinfo=timezone.utc),
                                             datetime(2100, 1, 1, tzinfo=timezone.utc))
            most_kwh = 0.25 * recorder.limits.load_kw  # no flow of the site exceeds the house's largest, per slot
            energy = [c for c in obs.columns if c.endswith("_kwh")]
            assert obs.empty or float(obs[energy].max().max()) <= most_kwh + 1e-9
            # nothing implausible reached the database
            latest = store.latest_prices(site.site_id)
            assert latest is None or implausible("prices", latest, recorder.limits, datetime.now(timezone.utc)) is None
            assert all(e["kind"] in ("error", "command") for e in store.recent_events(site.site_id, limit=100000))
    finally:
        broker.stop()
    assert published
