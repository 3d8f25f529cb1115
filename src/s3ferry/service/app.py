"""The HTTP side of ``s3ferry serve``: one aiohttp application on one port.

``/healthz`` (open), ``/metrics`` (the process's Prometheus registry), the
JSON API under ``/api/v1`` (its OpenAPI 3.1 document at
``/api/v1/openapi.json``), and the status page (``/``, with ``/login`` and
the page's own forms under ``/ui``). Everything but ``/healthz`` and
``/login`` is behind the token (:mod:`s3ferry.service.auth`). Other modules
add routes through ``extra_routes`` (the event intake): they are behind the
token too.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from s3ferry.core.errors import S3FerryError
from s3ferry.core.version import installed_version
from s3ferry.jobs.flowfile import Flow
from s3ferry.jobs.push import PushSettings
from s3ferry.observe import metrics
from s3ferry.service import page
from s3ferry.service.auth import Auth, Handler, middleware
from s3ferry.service.openapi import document
from s3ferry.service.state import ServiceState

log = logging.getLogger("s3ferry.service")

API = "/api/v1"
#: the largest page of a list the API hands out
MAX_LIMIT = 500
STATE_KEY = web.AppKey("state", ServiceState)
AUTH_KEY = web.AppKey("auth", Auth)


def build_app(state: ServiceState, auth: Auth, extra_routes: Sequence[web.RouteDef] = ()) -> web.Application:
    """The application: the API, the page, ``/metrics`` and ``/healthz``, then ``extra_routes``."""
    app = web.Application(middlewares=[middleware(auth), journal_errors], client_max_size=1024 * 1024)
    app[STATE_KEY], app[AUTH_KEY] = state, auth
    app.add_routes([
        web.get("/healthz", healthz),
        web.get("/metrics", metrics_page),
        web.get(f"{API}/openapi.json", openapi),
        web.get(f"{API}/flows", flows),
        web.get(f"{API}/flows/{{name}}", one_flow),
        web.post(f"{API}/flows/{{name}}/trigger", trigger),
        web.post(f"{API}/flows/{{name}}/pause", pause),
        web.post(f"{API}/flows/{{name}}/resume", resume),
        web.post(f"{API}/flows/{{name}}/queue/retry", retry_queue),
        web.delete(f"{API}/flows/{{name}}/queue/{{key:.+}}", drop_queued),
        web.get(f"{API}/runs", runs),
        web.get(f"{API}/deliveries", deliveries),
        web.get(f"{API}/failures", failures),
        web.get(f"{API}/queue", queue),
        web.get(f"{API}/progress", progress),
        *page.routes(state, auth),
        *extra_routes,
    ])
    return app


@web.middleware
async def journal_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A journal that cannot be read (damaged, its folder gone) answers 503 with its one line, not a 500 with a
    traceback in the log."""
    try:
        return await handler(request)
    except S3FerryError as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        return web.json_response({"error": str(exc)}, status=503)


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context from a PEM certificate (chain) and its key; TLS 1.2 at least."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def state_of(request: web.Request) -> ServiceState:
    return request.app[STATE_KEY]


def flow_of(request: web.Request) -> Flow:
    found = state_of(request).flow(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound(text=f'{{"error": "no flow named {request.match_info["name"]!r}"}}',
                               content_type="application/json")
    return found


def page_args(request: web.Request) -> tuple[list[Flow], int, int]:
    """The flows (``?flow=NAME``, repeatable; all by default), ``limit`` and ``offset`` of a list request."""
    state = state_of(request)
    names = request.query.getall("flow", [])
    unknown = [n for n in names if state.flow(n) is None]
    if unknown:
        raise web.HTTPBadRequest(text=f'{{"error": "no flow named {unknown[0]!r}"}}', content_type="application/json")
    chosen = [state.sched.flows[n] for n in names] or list(state.sched.flows.values())
    try:
        limit, offset = int(request.query.get("limit", "50")), int(request.query.get("offset", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "limit and offset are whole numbers"}',
                                 content_type="application/json") from None
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise web.HTTPBadRequest(text=f'{{"error": "limit is 1 to {MAX_LIMIT}, offset 0 or more"}}',
                                 content_type="application/json")
    return chosen, limit, offset


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": installed_version()})


async def metrics_page(request: web.Request) -> web.Response:
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(installed_version()))


async def flows(request: web.Request) -> web.Response:
    return web.json_response({"flows": await state_of(request).flow_views()})


async def one_flow(request: web.Request) -> web.Response:
    return web.json_response(await state_of(request).flow_view(flow_of(request)))


def _started(flow: Flow, started: bool) -> web.Response:
    if not started:
        return web.json_response({"error": f"flow {flow.name} is running (or the service stops)"}, status=409)
    return web.json_response({"flow": flow.name, "started": True}, status=202)


async def trigger(request: web.Request) -> web.Response:
    flow = flow_of(request)
    return _started(flow, state_of(request).start_run(flow))


async def retry_queue(request: web.Request) -> web.Response:
    flow = flow_of(request)
    if not isinstance(flow.settings, PushSettings):
        return web.json_response({"error": f"flow {flow.name} is a {flow.kind}: it has no retry queue"}, status=400)
    return _started(flow, state_of(request).start_run(flow, retry=True, keys=request.query.getall("key", [])))


async def drop_queued(request: web.Request) -> web.Response:
    flow, key = flow_of(request), request.match_info["key"]
    if not await state_of(request).drop(flow, key):
        return web.json_response({"error": f"{key!r} is not in the retry queue of flow {flow.name}"}, status=404)
    return web.json_response({"flow": flow.name, "dropped": key})


async def pause(request: web.Request) -> web.Response:
    flow = flow_of(request)
    state_of(request).sched.pause(flow.name)
    return web.json_response(await state_of(request).flow_view(flow))


async def resume(request: web.Request) -> web.Response:
    flow = flow_of(request)
    state_of(request).sched.pause(flow.name, paused=False)
    return web.json_response(await state_of(request).flow_view(flow))


async def runs(request: web.Request) -> web.Response:
    chosen, limit, offset = page_args(request)
    names = {f.name for f in chosen}
    listed = [run for run in state_of(request).runs if run["flow"] in names]
    return web.json_response({"runs": listed[offset:offset + limit], "offset": offset, "limit": limit})


async def deliveries(request: web.Request) -> web.Response:
    chosen, limit, offset = page_args(request)
    found = await state_of(request).events(chosen, "copied", limit, offset)
    return web.json_response({"deliveries": found, "offset": offset, "limit": limit})


async def failures(request: web.Request) -> web.Response:
    chosen, limit, offset = page_args(request)
    found = await state_of(request).events(chosen, "failed", limit, offset)
    return web.json_response({"failures": found, "offset": offset, "limit": limit})


async def queue(request: web.Request) -> web.Response:
    chosen, limit, offset = page_args(request)
    items = await state_of(request).queue_views(chosen)
    return web.json_response({"queue": items[offset:offset + limit], "offset": offset, "limit": limit})


async def progress(request: web.Request) -> web.Response:
    return web.json_response({"running": state_of(request).progress_views()})
