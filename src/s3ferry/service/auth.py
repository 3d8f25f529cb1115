"""Who may use ``s3ferry serve``: a bearer token for the API and ``/metrics``, a session cookie for the page.

Every path but ``/healthz`` (and ``/login``, the form that turns the token
into a session) needs one of them. A script sends ``Authorization: Bearer
TOKEN``. A browser posts the token once to ``/login`` and gets a random
session id in an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` under
TLS): the token never appears in a URL, and is never stored in the browser.
A request that changes something with a cookie must also carry the session's
CSRF token (a form field or ``X-CSRF-Token``): another site's page cannot
read it, so it cannot forge the request.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

COOKIE = "s3ferry_session"
#: the paths anyone may ask for: the liveness probe, and the form that takes the token
OPEN_PATHS = frozenset({"/healthz", "/login"})
#: at most this many browser sessions (the oldest goes first): logging in again and again cannot grow memory
SESSIONS_KEPT = 1000
#: a browser session ends after this many seconds (then the page asks for the token again)
SESSION_SECONDS = 12 * 3600.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Auth:
    """The token (None: ``--no-auth``) and the browser sessions opened with it."""

    token: str | None
    secure_cookie: bool = False
    #: paths under these prefixes check their senders themselves (the event intake: its own token, SNS
    #: signatures -- SNS cannot send our header); the middleware lets them through
    self_checked: tuple[str, ...] = ()
    sessions: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> (CSRF token, expiry)

    def token_ok(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def open_session(self) -> str:
        while len(self.sessions) >= SESSIONS_KEPT:
            self.sessions.pop(next(iter(self.sessions)))
        session = secrets.token_urlsafe(32)
        self.sessions[session] = (secrets.token_urlsafe(24), time.monotonic() + SESSION_SECONDS)
        return session

    def session_csrf(self, request: web.Request) -> str | None:
        """The CSRF token of the request's live session; None without one (an expired one is forgotten)."""
        session = request.cookies.get(COOKIE, "")
        found = self.sessions.get(session)
        if found is None:
            return None
        if found[1] < time.monotonic():
            del self.sessions[session]
            return None
        return found[0]

    def csrf(self, request: web.Request) -> str:
        """The CSRF token of the request's session ("" without one: a bearer client or --no-auth)."""
        return self.session_csrf(request) or ""


def _refused(request: web.Request, status: int, why: str) -> web.StreamResponse:
    if request.method == "GET" and request.path == "/":
        raise web.HTTPSeeOther("/login")  # a browser: to the form
    return web.json_response({"error": why}, status=status, headers={"WWW-Authenticate": 'Bearer realm="s3ferry"'})


def middleware(auth: Auth) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if auth.token is None or request.path in OPEN_PATHS or request.path.startswith(auth.self_checked):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not given:
                return _refused(request, 401, "send Authorization: Bearer TOKEN")
            if not auth.token_ok(given.strip()):
                return _refused(request, 403, "wrong token")
            return await handler(request)
        csrf = auth.session_csrf(request)
        if csrf is None:
            return _refused(request, 401, "send Authorization: Bearer TOKEN (or log in at /login)")
        if request.method not in ("GET", "HEAD"):
            given_csrf = request.headers.get("X-CSRF-Token") or str((await request.post()).get("csrf", ""))
            if not hmac.compare_digest(given_csrf.encode(), csrf.encode()):
                return _refused(request, 403, "missing or wrong CSRF token")
        return await handler(request)

    return check
