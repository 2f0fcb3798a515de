"""Who is asking, for the web app: a bearer token, or a session cookie set by the login form.

The decision (is this credential the admin?) is the one rule in shared (``admin_token_ok``); this
module only carries the credential between requests. The session cookie is HttpOnly and
SameSite=Strict, and a cookie-authenticated POST must also echo the session's CSRF token in the
``X-CSRF-Token`` header, which another site's page cannot read (CSRF-safe). Bearer requests carry
no ambient credential, so they need no CSRF token.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request

from shared.config import SiteConfig
from shared.service import admin_token_ok

COOKIE = "darkstar_session"
SESSION_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    principal: str
    csrf: str
    expires_wall: float


class Sessions:
    """Server-side sessions (a random id in the cookie; nothing to forge or decode)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, principal: str) -> tuple[str, Session]:
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


def token_principal(site: SiteConfig, token: str | None) -> str | None:
    """The principal a presented token stands for (the shared rule decides), or None."""
    return "admin" if admin_token_ok(site, token) else None


def principal(site: SiteConfig, sessions: Sessions, request: Request, *, unsafe: bool) -> str | None:
    """'admin' when the request carries the admin credential; None otherwise.

    ``unsafe``: the request changes something; a cookie then needs the matching CSRF header.
    """
    token = bearer(request)
    if token is not None:
        return token_principal(site, token)
    session = sessions.get(request.cookies.get(COOKIE))
    if session is None:
        return None
    if unsafe and not secrets.compare_digest(request.headers.get("x-csrf-token", ""), session.csrf):
        return None
    return session.principal


def require_admin(site: SiteConfig, sessions: Sessions, request: Request) -> str:
    """Raise 401 (no or wrong credential) or 503 (no admin credential configured)."""
    if site.http.admin_token is None:
        raise HTTPException(503, "actions are disabled: set http.admin_token in the site configuration")
    who = principal(site, sessions, request, unsafe=True)
    if who is None:
        raise HTTPException(401, "sign in as admin (bearer token, or the login form and its CSRF token)",
                            headers={"WWW-Authenticate": "Bearer"})
    return who
