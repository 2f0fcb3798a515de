"""The one authorisation rule of Darkstar: who is asking (credential -> Principal) and may they do it.

Every path that can move a battery, a charger or a setting asks this module and nothing else:
the MQTT broker's topic ACL (embedded broker plugin and the generated Mosquitto ACL), the
HTTP ``/admin`` routes of every service, and the web app (quick actions, settings, admin).

Actions are plain strings:

- ``command:<service>/<action>``   send a command (MQTT ``cmd/...`` topic, ``POST /admin/command``)
- ``context:<name>``               set a context item (``context/<name>``: vacation, away, ...)
- ``settings:write``               change the site configuration (web settings editor)
- ``admin:<name>``                 any other admin route (``admin:retrain``, ``admin:backup``)
- ``publish:<kind>``               publish a contract topic (``publish:plan``, ``publish:telemetry``);
                                   per-service kinds carry the service: ``publish:status/<service>``,
                                   ``publish:command_result/<service>``
- ``publish:discovery``            Home Assistant discovery payloads (``<prefix>/.../config``)
- ``publish:ha_status``            Home Assistant's own birth/will on ``<prefix>/status``
- ``publish:external``             any topic outside Darkstar's base and the discovery prefix

A grant is an :func:`fnmatch` pattern over actions (``command:executor/*``, ``context:*``, ``*``).
Subscribing (reading) is allowed to every authenticated principal; anonymous is nobody.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

from shared.config import SiteConfig, UserConfig
from shared.contracts import kind_of_topic

PrincipalKind = Literal["service", "user", "admin"]

# What each service publishes (DESIGN §3): only the planner publishes the plan, only the executor its
# telemetry and state. A service missing here gets only the common grants below; add new services here.
SERVICE_GRANTS: dict[str, tuple[str, ...]] = {
    "forecaster": ("publish:prices", "publish:price_now", "publish:weather", "publish:forecast", "publish:observations"),
    "planner": ("publish:plan",),
    # with EV chargers: the car's state as planner context, and a replan when the car deviates (docs/ev.md)
    "executor": ("publish:telemetry", "publish:observations", "publish:executor_state", "publish:energy_totals",
                 "context:ev_plugged", "context:ev_soc_frac", "context:ev_target_kwh", "command:planner/replan"),
    "oracle": ("publish:oracle_result",),
    "trainer": ("publish:trainer_run",),
    "dashboard": (),
    # the web app sends commands and context on behalf of a signed-in user it has checked with require()
    "web": ("command:*", "context:*"),
}

# What the ``homeassistant`` user of the compose Mosquitto may do (deploy/mosquitto/acl), and the
# grants to give a Home Assistant entry in ``auth.users`` for the embedded broker.
HOME_ASSISTANT_GRANTS: tuple[str, ...] = ("context:*", "command:*", "publish:ha_status")


def _service_common(name: str) -> tuple[str, ...]:
    return ("publish:error", f"publish:status/{name}", f"publish:command_result/{name}", "publish:discovery")


class AuthError(PermissionError):
    """A principal (or nobody) asked for an action it is not granted; the message names both."""

    def __init__(self, who: str, action: str) -> None:
        super().__init__(f"{who} may not {action}")
        self.who = who
        self.action = action


@dataclass(frozen=True)
class Principal:
    """An authenticated identity and what it may do."""

    name: str
    grants: frozenset[str] = field(default_factory=frozenset)
    kind: PrincipalKind = "user"

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r}"


def service_principal(name: str) -> Principal:
    """The identity a Darkstar service uses on the bus (its MQTT username is its name)."""
    return Principal(name, frozenset(_service_common(name) + SERVICE_GRANTS.get(name, ())), "service")


def admin_principal() -> Principal:
    return Principal("admin", frozenset({"*"}), "admin")


def authorize(principal: Principal | None, action: str) -> bool:
    """May ``principal`` do ``action``? ``None`` (unauthenticated) may do nothing."""
    if principal is None:
        return False
    return any(fnmatchcase(action, grant) for grant in principal.grants)


def require(principal: Principal | None, action: str) -> Principal:
    """Return the principal if it may do ``action``; raise :class:`AuthError` otherwise."""
    if not authorize(principal, action):
        raise AuthError(str(principal) if principal else "an unauthenticated client", action)
    assert principal is not None
    return principal


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


def principal_from_token(site: SiteConfig, token: str | None) -> Principal | None:
    """The principal of an HTTP bearer token: ``http.admin_token`` or a configured user's password.

    Every candidate is compared (constant time each) so the answer time does not tell which matched.
    """
    if not token:
        return None
    found: Principal | None = None
    admin = site.http.admin_token
    if admin is not None and _same(token, admin.get_secret_value()):
        found = admin_principal()
    for user in site.auth.users:
        if _same(token, user.password.get_secret_value()) and found is None:
            found = Principal(user.name, frozenset(user.grants), "user")
    return found


def principal_from_mqtt_user(
    users: Sequence[UserConfig], username: str | None, service_names: Iterable[str] = ()
) -> Principal | None:
    """The principal behind an MQTT username the broker has already authenticated.

    ``service_names`` are the usernames with generated service credentials (see shared.buscreds);
    configured users (``auth.users``) carry their own grants.
    """
    if not username:
        return None
    if username in set(service_names) or username in SERVICE_GRANTS:
        return service_principal(username)
    for user in users:
        if user.name == username:
            return Principal(user.name, frozenset(user.grants), "user")
    return None


def check_password(expected: Mapping[str, str], username: str | None, password: str | None) -> bool:
    """Constant-time username/password check against a table of known credentials."""
    if not username or password is None:
        return False
    stored = expected.get(username)
    matches = _same(password, stored if stored is not None else "")  # compare even for unknown users
    return matches and stored is not None


def topic_action(base_topic: str, discovery_prefix: str, topic_name: str) -> str:
    """The action publishing ``topic_name`` means."""
    prefix = discovery_prefix.rstrip("/")
    if topic_name == f"{prefix}/status":
        return "publish:ha_status"
    if topic_name.startswith(prefix + "/"):
        return "publish:discovery"
    if not topic_name.startswith(base_topic.rstrip("/") + "/"):
        return "publish:external"  # another system's topics on a shared broker: only by grant
    found = kind_of_topic(base_topic, topic_name)
    if found is None:
        return "publish:unknown"  # under our base but no contract topic: nobody is granted it by default
    _site, kind, parts = found
    if kind == "command":
        return f"command:{parts['service']}/{parts['action']}"
    if kind == "context":
        return f"context:{parts['name']}"
    if kind in ("status", "command_result"):
        return f"publish:{kind}/{parts['service']}"
    return f"publish:{kind}"


def may_publish(principal: Principal | None, base_topic: str, discovery_prefix: str, topic_name: str) -> bool:
    """The topic ACL used by the broker: every publish needs a grant (nobody anonymous)."""
    return authorize(principal, topic_action(base_topic, discovery_prefix, topic_name))
