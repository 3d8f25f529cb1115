"""The OpenAPI document of ``s3ferry serve`` describes exactly the API's routes, and every reference in it
resolves (no server: the application's route table is read, not served)."""

from __future__ import annotations

import re
from typing import Any

from s3ferry.jobs.runner import Scheduler
from s3ferry.service.app import API, build_app
from s3ferry.service.auth import Auth
from s3ferry.service.dispatch import EventDispatcher
from s3ferry.service.events import EventIntake, EventSettings, event_routes
from s3ferry.service.openapi import document
from s3ferry.service.state import ServiceState

#: the page's own paths: HTML and forms, not the API
PAGE = {"/", "/login", "/logout", "/ui/flows/{name}/{action}", "/static/{file}"}


def app_routes() -> set[tuple[str, str]]:
    state = ServiceState()
    state.scheduler = Scheduler([], lambda outcome: None)
    # the event intake's route is there when the flows file has [serve.events]: documented too
    events = event_routes(EventIntake(EventSettings()), EventDispatcher([]))
    app = build_app(state, Auth("0123456789abcdef0123456789abcdef"), events)
    found = set()
    for route in app.router.routes():
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", route.resource.canonical if route.resource else "")
        if route.method != "HEAD" and path not in PAGE:
            found.add((route.method.lower(), path))
    return found


def test_every_api_route_is_documented_and_nothing_else() -> None:
    paths = document("1.0")["paths"]
    documented = {(method, path) for path, item in paths.items() for method in item}
    assert documented == app_routes()
    assert all(path.startswith(API) or path in ("/healthz", "/metrics") for _, path in documented)


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_references_resolve_and_only_healthz_is_open() -> None:
    doc = document("1.0")
    assert doc["openapi"] == "3.1.0" and doc["security"] == [{"bearer": []}]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in doc["components"]["schemas"]
    open_paths = [p for p, item in doc["paths"].items() for op in item.values() if op.get("security") == []]
    assert open_paths == ["/healthz"]
