"""The OpenAPI 3.1 document of the ``s3ferry serve`` API, as data (served at ``/api/v1/openapi.json``)."""

from __future__ import annotations

from typing import Any

_FLOW_PARAM = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "The flow's name in the flows file (percent-encoded)."}
_LIST_PARAMS = [
    {"name": "flow", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}, "explode": True,
     "description": "Only these flows (repeatable; default: all)."},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
]
_ERROR = {"description": "An error: one line in `error`.",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_AUTH_ERRORS = {"401": _ERROR, "403": _ERROR}


def _ok(schema: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _list(name: str, item: str, description: str) -> dict[str, Any]:
    return {"type": "object", "description": description, "required": [name, "offset", "limit"],
            "properties": {name: {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
                           "offset": {"type": "integer"}, "limit": {"type": "integer"}}}


_STARTED = {"202": _ok("Started", "The run started."), "409": _ERROR, "404": _ERROR, **_AUTH_ERRORS}

_EVENTS = {
    "summary": "S3 event notifications in (only with a [serve.events] table in the flows file): each object "
               "they name is pushed at once by the push flows it matches.",
    "description": "seaweedfs (the filer's notification.webhook), minio (its webhook target) and eventbridge "
                   "(an API destination) send `Authorization: Bearer TOKEN` with the events token (default: the "
                   "serve token); sns (an HTTPS subscription) is checked by its message signature and topic "
                   "instead. Answered as soon as the events are queued: the push follows.",
    "security": [{"bearer": []}, {}],
    "parameters": [{"name": "source", "in": "path", "required": True,
                    "schema": {"enum": ["seaweedfs", "minio", "eventbridge", "sns"]}}],
    "requestBody": {"required": True, "content": {"application/json": {}, "text/plain": {}}},
    "responses": {"202": _ok("Queued", "Accepted: how many events, how many (event, flow) deliveries queued."),
                  "400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR, "503": _ERROR},
}

PATHS: dict[str, Any] = {
    "/healthz": {"get": {"summary": "Liveness (no token needed).", "security": [],
                         "responses": {"200": _ok("Health", "The process serves.")}}},
    "/metrics": {"get": {"summary": "Prometheus metrics of the process (text exposition format).",
                         "responses": {"200": {"description": "Metrics", "content": {"text/plain": {}}},
                                       **_AUTH_ERRORS}}},
    "/api/v1/openapi.json": {"get": {"summary": "This document.",
                                     "responses": {"200": {"description": "OpenAPI 3.1"}, **_AUTH_ERRORS}}},
    "/api/v1/flows": {"get": {"summary": "Every flow with its state, next run, retry queue depth and last run.",
                              "responses": {"200": _ok("Flows", "The flows."), **_AUTH_ERRORS}}},
    "/api/v1/flows/{name}": {"get": {"summary": "One flow.", "parameters": [_FLOW_PARAM],
                                     "responses": {"200": _ok("Flow", "The flow."), "404": _ERROR, **_AUTH_ERRORS}}},
    "/api/v1/flows/{name}/trigger": {"post": {"summary": "Run the flow now (its schedule is unchanged).",
                                              "parameters": [_FLOW_PARAM], "responses": _STARTED}},
    "/api/v1/flows/{name}/pause": {"post": {
        "summary": "Pause the flow's schedule (a run in flight goes on; trigger still runs it).",
        "parameters": [_FLOW_PARAM], "responses": {"200": _ok("Flow", "The flow, paused."), "404": _ERROR,
                                                   **_AUTH_ERRORS}}},
    "/api/v1/flows/{name}/resume": {"post": {
        "summary": "Resume the flow's schedule.", "parameters": [_FLOW_PARAM],
        "responses": {"200": _ok("Flow", "The flow."), "404": _ERROR, **_AUTH_ERRORS}}},
    "/api/v1/flows/{name}/queue/retry": {"post": {
        "summary": "Retry now: a run of the push flow through its retry queue (as push --retry-failed), or only "
                   "through the objects named by `key`.",
        "parameters": [_FLOW_PARAM, {"name": "key", "in": "query", "explode": True,
                                     "schema": {"type": "array", "items": {"type": "string"}},
                                     "description": "Only these S3 keys of the queue (repeatable; default: all)."}],
        "responses": {**_STARTED, "400": _ERROR}}},
    "/api/v1/flows/{name}/queue/{key}": {"delete": {
        "summary": "Drop one object from the push flow's retry queue (it is not delivered).",
        "parameters": [_FLOW_PARAM, {"name": "key", "in": "path", "required": True, "schema": {"type": "string"},
                                     "description": "The object's S3 key (slashes as they are, other reserved "
                                                    "characters percent-encoded)."}],
        "responses": {"200": _ok("Dropped", "Dropped."), "404": _ERROR, **_AUTH_ERRORS}}},
    "/api/v1/runs": {"get": {"summary": "The runs this process made, newest first.", "parameters": _LIST_PARAMS,
                             "responses": {"200": _ok("Runs", "A page of runs."), "400": _ERROR, **_AUTH_ERRORS}}},
    "/api/v1/deliveries": {"get": {"summary": "Files copied (kept in the journal), newest first.",
                                   "parameters": _LIST_PARAMS,
                                   "responses": {"200": _ok("Deliveries", "A page."), "400": _ERROR,
                                                 **_AUTH_ERRORS}}},
    "/api/v1/failures": {"get": {"summary": "Files (or runs: path empty) that failed, newest first.",
                                 "parameters": _LIST_PARAMS,
                                 "responses": {"200": _ok("Failures", "A page."), "400": _ERROR, **_AUTH_ERRORS}}},
    "/api/v1/queue": {"get": {"summary": "The retry queues of the push flows.", "parameters": _LIST_PARAMS,
                              "responses": {"200": _ok("Queue", "A page."), "400": _ERROR, **_AUTH_ERRORS}}},
    "/api/v1/progress": {"get": {"summary": "The runs in flight and their bytes so far.",
                                 "responses": {"200": _ok("Progress", "Runs in flight."), **_AUTH_ERRORS}}},
    "/api/v1/events/{source}": {"post": _EVENTS},
}

_TIME = {"type": ["string", "null"], "format": "date-time"}
_EVENT = {"type": "object", "properties": {
    "time": _TIME, "flow": {"type": ["string", "null"]}, "kind": {"type": "string"}, "source": {"type": "string"},
    "destination": {"type": "string"}, "path": {"type": "string"}, "result": {"enum": ["copied", "failed"]},
    "error": {"type": ["string", "null"]}}}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Health": {"type": "object", "properties": {"status": {"const": "ok"}, "version": {"type": "string"}}},
    "Flow": {"type": "object", "properties": {
        "name": {"type": "string"}, "kind": {"enum": ["pull", "push"]}, "source": {"type": "string"},
        "destination": {"type": "string"}, "schedule": {"type": "string"},
        "state": {"enum": ["healthy", "failing", "paused", "running"]}, "paused": {"type": "boolean"},
        "running": {"type": "boolean"}, "next_run": _TIME, "queue_depth": {"type": "integer"},
        "last_run": {"type": ["object", "null"], "description": "The journal's record of its last run."}}},
    "Flows": {"type": "object",
              "properties": {"flows": {"type": "array", "items": {"$ref": "#/components/schemas/Flow"}}}},
    "Started": {"type": "object", "properties": {"flow": {"type": "string"}, "started": {"const": True}}},
    "Dropped": {"type": "object", "properties": {"flow": {"type": "string"}, "dropped": {"type": "string"}}},
    "Run": {"type": "object", "description": "One run: as `s3ferry run --json` prints it, with `id` and `ended`.",
            "properties": {"id": {"type": "integer"}, "flow": {"type": "string"}, "started": _TIME, "ended": _TIME,
                           "status": {"enum": ["ok", "failed"]}, "exit_code": {"type": "integer"}}},
    "Runs": _list("runs", "Run", "A page of runs."),
    "Queued": {"type": "object", "properties": {"events": {"type": "integer"}, "queued": {"type": "integer"}}},
    "Event": _EVENT,
    "Deliveries": _list("deliveries", "Event", "A page of files copied."),
    "Failures": _list("failures", "Event", "A page of failures."),
    "QueuedPush": {"type": "object", "properties": {
        "flow": {"type": "string"}, "key": {"type": "string"}, "etag": {"type": "string"},
        "attempts": {"type": "integer"}, "last_error": {"type": "string"}, "updated": _TIME,
        "first_failed": _TIME}},
    "Queue": _list("queue", "QueuedPush", "A page of the retry queues."),
    "RunProgress": {"type": "object", "properties": {
        "flow": {"type": "string"}, "started": _TIME, "files_started": {"type": "integer"},
        "files_finished": {"type": "integer"}, "bytes_done": {"type": "integer"}, "bytes_total": {"type": "integer"},
        "files": {"type": "array", "items": {"type": "string"}}}},
    "Progress": {"type": "object", "properties": {
        "running": {"type": "array", "items": {"$ref": "#/components/schemas/RunProgress"}}}},
}


def document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this version of s3ferry."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "s3ferry serve", "version": version,
                 "description": "The flows of one `s3ferry serve` process: their state, runs, deliveries, "
                                "failures, retry queues and progress. Every path but /healthz needs "
                                "`Authorization: Bearer TOKEN`."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": SCHEMAS},
    }
