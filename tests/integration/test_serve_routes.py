"""Routes another module adds to ``s3ferry serve`` (the event intake) are behind the token like the API; the
page's session cookie works only with its CSRF token. The app served in-process on loopback (aiohttp's own
test server), nothing mocked."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from s3ferry.jobs.runner import Scheduler
from s3ferry.service.app import build_app
from s3ferry.service.auth import COOKIE, Auth
from s3ferry.service.state import ServiceState

TOKEN = "0123456789abcdef0123456789abcdef"


async def event(request: web.Request) -> web.Response:
    return web.json_response({"source": request.match_info["source"]}, status=202)


async def exercise() -> None:
    state = ServiceState()
    state.scheduler = Scheduler([], lambda outcome: None)
    auth = Auth(TOKEN)
    app = build_app(state, auth, [web.post("/api/v1/events/{source}", event)])
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.post("/api/v1/events/s3")).status == 401
        assert (await client.post("/api/v1/events/s3", headers={"Authorization": "Bearer wrong"})).status == 403
        assert (await client.post("/api/v1/events/s3", headers={"Authorization": "Basic " + TOKEN})).status == 401
        answer = await client.post("/api/v1/events/s3", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status == 202 and await answer.json() == {"source": "s3"}
        # a browser session: reads work, a change needs the session's CSRF token
        login = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
        assert login.status == 303 and COOKIE in login.cookies
        assert "HttpOnly" in login.headers["Set-Cookie"] and "SameSite=Strict" in login.headers["Set-Cookie"]
        assert (await client.get("/api/v1/flows")).status == 200
        assert (await client.post("/api/v1/events/s3")).status == 403
        (csrf, _), = auth.sessions.values()
        assert (await client.post("/api/v1/events/s3", headers={"X-CSRF-Token": csrf})).status == 202
        await client.post("/logout", data={"csrf": csrf})
        assert (await client.get("/api/v1/flows")).status == 401
        assert (await client.get("/healthz")).status == 200


def test_extra_routes_and_sessions() -> None:
    asyncio.run(exercise())
