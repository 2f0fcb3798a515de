"""shared/auth.py: the one authorisation rule for MQTT topics, HTTP /admin and the web app."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shared.auth import (
    AuthError,
    authorize,
    check_password,
    may_publish,
    principal_from_mqtt_user,
    principal_from_token,
    require,
    service_principal,
)
from shared.config import ConfigError, site_config_from_dict
from shared.service import Service
from tests.conftest import make_site

HA_PASSWORD = "ha-password-long-enough"
VIEWER_PASSWORD = "viewer-password-long"


def _site(tmp_path: Path):
    return make_site(tmp_path, {"embedded": True}, auth={"users": [
        {"name": "homeassistant", "password": HA_PASSWORD, "grants": ["context:*", "command:executor/*"]},
        {"name": "viewer", "password": VIEWER_PASSWORD, "grants": []},
    ]})


def test_only_the_planner_publishes_the_plan_and_only_the_executor_telemetry(tmp_path: Path) -> None:
    site = _site(tmp_path)
    base, disc = "darkstar", "homeassistant"
    plan = f"darkstar/{site.site_id}/plan"
    telemetry = f"darkstar/{site.site_id}/telemetry"
    assert may_publish(service_principal("planner"), base, disc, plan)
    for other in ("executor", "forecaster", "trainer", "oracle", "web"):
        assert not may_publish(service_principal(other), base, disc, plan)
    assert may_publish(service_principal("executor"), base, disc, telemetry)
    assert may_publish(service_principal("executor"), base, disc, f"darkstar/{site.site_id}/executor/state")
    assert not may_publish(service_principal("planner"), base, disc, telemetry)
    ha = principal_from_mqtt_user(site.auth.users, "homeassistant")
    assert not may_publish(ha, base, disc, plan)
    # a service may report its own status and command results, not another's
    assert may_publish(service_principal("planner"), base, disc, f"darkstar/{site.site_id}/planner/status")
    assert not may_publish(service_principal("planner"), base, disc, f"darkstar/{site.site_id}/executor/status")
    assert not may_publish(None, base, disc, "somewhere/else")  # anonymous: nothing at all


def test_commands_only_from_granted_users(tmp_path: Path) -> None:
    site = _site(tmp_path)
    ha = principal_from_mqtt_user(site.auth.users, "homeassistant")
    viewer = principal_from_mqtt_user(site.auth.users, "viewer")
    cmd = f"darkstar/{site.site_id}/cmd/executor/force_export"
    assert may_publish(ha, "darkstar", "homeassistant", cmd)
    assert not may_publish(viewer, "darkstar", "homeassistant", cmd)
    assert not may_publish(ha, "darkstar", "homeassistant", f"darkstar/{site.site_id}/cmd/planner/replan")
    assert not may_publish(service_principal("planner"), "darkstar", "homeassistant", cmd)
    assert principal_from_mqtt_user(site.auth.users, "stranger") is None
    with pytest.raises(AuthError, match="unauthenticated client may not command:executor/pause"):
        require(None, "command:executor/pause")


def test_tokens_map_to_principals_and_passwords_compare_exactly(tmp_path: Path) -> None:
    site = _site(tmp_path)
    admin = principal_from_token(site, "test-admin-token")
    assert admin is not None and authorize(admin, "settings:write") and authorize(admin, "command:executor/pause")
    ha = principal_from_token(site, HA_PASSWORD)
    assert ha is not None and ha.name == "homeassistant" and not authorize(ha, "settings:write")
    assert principal_from_token(site, "test-admin-toke") is None
    assert principal_from_token(site, None) is None
    assert check_password({"planner": "abc"}, "planner", "abc")
    assert not check_password({"planner": "abc"}, "planner", "abd")
    assert not check_password({"planner": "abc"}, "nobody", "")


def test_short_user_password_and_duplicate_users_fail_at_start(tmp_path: Path) -> None:
    base = make_site(tmp_path, {"embedded": True}).model_dump(mode="json")
    base["http"]["admin_token"] = "x" * 20
    base["database"]["url"] = "sqlite:///x.db"
    with pytest.raises(ConfigError, match=r"auth.users.0.password"):
        site_config_from_dict({**base, "auth": {"users": [{"name": "ha", "password": "short"}]}}, environ={})
    user = {"name": "ha", "password": "p" * 12}
    with pytest.raises(ConfigError, match=r"auth.users: .*unique"):
        site_config_from_dict({**base, "auth": {"users": [user, user]}}, environ={})


class _Echo(Service):
    name = "executor"
    uses_store = False

    def __init__(self, site) -> None:  # type: ignore[no-untyped-def]
        super().__init__(site)
        self.seen: list = []
        self.register_command("pause", lambda msg: self.seen.append(msg) or {})


def test_admin_http_uses_the_same_rule_and_records_who_and_why(tmp_path: Path) -> None:
    site = _site(tmp_path)
    service = _Echo(site)
    client = TestClient(service.build_app())
    url = "/admin/command/pause"
    assert client.post(url, json={"ttl_s": 60}).status_code == 401
    viewer = client.post(url, json={"ttl_s": 60}, headers={"Authorization": f"Bearer {VIEWER_PASSWORD}"})
    assert viewer.status_code == 403 and "command:executor/pause" in viewer.json()["detail"]
    assert service.seen == []
    ok = client.post(url, json={"ttl_s": 60, "reason": "storm"}, headers={"Authorization": f"Bearer {HA_PASSWORD}"})
    assert ok.status_code == 200
    assert service.seen[0].issued_by == "homeassistant" and service.seen[0].reason == "storm"
    assert service.seen[0].args == {"ttl_s": 60}
