"""Who is asking, for the web app: a bearer token, or a session cookie set by the login form.

Whether a credential is someone and whether they may do an action is decided by the one rule in
``shared/auth.py`` (``principal_from_token``, ``require``); this module only carries the
credential between requests. The session cookie is HttpOnly and SameSite=Strict, and a
cookie-authenticated change must also echo the session's CSRF token in ``X-CSRF-Token``, which
another site's page cannot read (CSRF-safe). Bearer requests carry no ambient credential, so they
need no CSRF token.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request

from shared.auth import AuthError, Principal, principal_from_token, require
from shared.config import SiteConfig

COOKIE = "darkstar_session"
SESSION_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    expires_wall: float


class Sessions:
    """Server-side sessions (a random id in the cookie; nothing to forge or decode)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, principal: Principal) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(principal, secrets.token_urlsafe(24), time.time() + SESSION_S)
        with self._lock:
            now = time.time()
            self._by_id = {k: v for k, v in self._by_id.items() if v.expires_wall > now}
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._by_id.get(sid)
        return session if session is not None and session.expires_wall > time.time() else None

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def principal(site: SiteConfig, sessions: Sessions, request: Request, *, unsafe: bool) -> Principal | None:
    """The principal behind the request's credential, or None.

    ``unsafe``: the request changes something; a session cookie then needs the matching CSRF header.
    """
    token = bearer(request)
    if token is not None:
        return principal_from_token(site, token)
    session = sessions.get(request.cookies.get(COOKIE))
    if session is None:
        return None
    if unsafe and not secrets.compare_digest(request.headers.get("x-csrf-token", ""), session.csrf):
        return None
    return session.principal


def require_action(site: SiteConfig, sessions: Sessions, request: Request, action: str) -> Principal:
    """The principal if it may do ``action`` (shared.auth); else 401 (no credential) or 403 (not granted)."""
    if site.http.admin_token is None and not site.auth.users:
        raise HTTPException(503, "actions are disabled: set http.admin_token in the site configuration")
    who = principal(site, sessions, request, unsafe=True)
    if who is None:
        raise HTTPException(401, "sign in (bearer token, or the login form and its CSRF token)",
                            headers={"WWW-Authenticate": "Bearer"})
    try:
        return require(who, action)
    except AuthError as err:
        raise HTTPException(403, str(err)) from None
