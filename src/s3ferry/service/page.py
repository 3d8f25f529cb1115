"""The status page of ``s3ferry serve``: server-rendered HTML, a stylesheet and a small script, all served here.

``/`` shows the flows at a glance (healthy, failing, paused, running; last and
next run), the runs in flight with their bytes, the latest deliveries and
failures, and the retry queues with their buttons. The buttons are plain
forms posting to ``/ui/...`` (they work without JavaScript: each answers with
a redirect to ``/``); the script (``/static/page.js``) refreshes the page's
body every two seconds (``/?part=body``) and posts the forms in the
background. No CDN: the page loads nothing from anywhere else.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from s3ferry.service.auth import COOKIE, SESSION_SECONDS, Auth
from s3ferry.service.state import ServiceState

STATIC = Path(__file__).with_name("static")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
#: what a page may load: only from here (no inline script, no other origin)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def _doc(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="stylesheet" href="/static/page.css"><script src="/static/page.js" defer></script>'
            f"</head><body>{body}</body></html>")


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html",
                        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


def login_form(message: str = "") -> str:
    note = f'<p class="error">{escape(message)}</p>' if message else ""
    return _doc("s3ferry: log in", '<main class="login"><h1>s3ferry serve</h1>' + note +
                '<form method="post" action="/login"><label>Token <input type="password" name="token" '
                'id="token" autocomplete="current-password" required autofocus></label> '
                '<button type="submit" id="login">Log in</button></form></main>')


def _button(action: str, label: str, csrf: str, extra: dict[str, str] | None = None, css: str = "") -> str:
    fields = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in (extra or {}).items())
    return (f'<form method="post" action="{escape(action)}" class="inline"><input type="hidden" name="csrf" '
            f'value="{escape(csrf)}">{fields}<button type="submit" class="{css}">{escape(label)}</button></form>')


def _table(head: tuple[str, ...], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _td(*values: object, attrs: str = "") -> str:
    return f"<tr {attrs}>" + "".join(f"<td>{escape('' if v is None else str(v))}</td>" for v in values) + "</tr>"


def _size(n: object) -> str:
    value = float(n) if isinstance(n, int | float) else 0.0
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


async def body(state: ServiceState, csrf: str) -> str:
    """The page's body: every section, rendered from what the API gives."""
    flows = await state.flow_views()
    rows = []
    for f in flows:
        name, last = str(f["name"]), f["last_run"]
        last_text = "never" if not isinstance(last, dict) else f"{last['status']} at {last['ended']}"
        at = f"/ui/flows/{quote(name, safe='')}"  # a flow's name may hold any character (a quoted TOML key)
        buttons = _button(f"{at}/trigger", "Run now", csrf)
        buttons += (_button(f"{at}/resume", "Resume", csrf) if f["paused"] else _button(f"{at}/pause", "Pause", csrf))
        rows.append(f'<tr data-flow="{escape(name)}" class="state-{escape(str(f["state"]))}">'
                    f'<td>{escape(name)}</td><td>{escape(str(f["kind"]))}</td>'
                    f'<td><span class="badge">{escape(str(f["state"]))}</span></td>'
                    f"<td>{escape(last_text)}</td><td>{escape(str(f['next_run'] or '-'))}</td>"
                    f"<td>{f['queue_depth']}</td><td>{buttons}</td></tr>")
    running = [_td(p["flow"], f"{p['files_finished']}/{p['files_started']}",
                   f"{_size(p['bytes_done'])} of {_size(p['bytes_total'])}") for p in state.progress_views()]
    every = list(state.sched.flows.values())
    delivered = [_td(e["time"], e["flow"], e["path"], attrs='class="delivery"')
                 for e in await state.events(every, "copied", 15, 0)]
    failed = [_td(e["time"], e["flow"], e["path"] or "(the run)", e["error"], attrs='class="failure"')
              for e in await state.events(every, "failed", 15, 0)]
    queued = []
    for q in await state.queue_views(every):
        flow = str(q["flow"])
        at = f"/ui/flows/{quote(flow, safe='')}"
        buttons = (_button(f"{at}/retry", "Retry now", csrf, {"key": str(q["key"])}, css="retry")
                   + _button(f"{at}/drop", "Drop", csrf, {"key": str(q["key"])}, css="drop"))
        queued.append(f'<tr class="queued" data-key="{escape(str(q["key"]))}"><td>{escape(flow)}</td>'
                      f'<td>{escape(str(q["key"]))}</td><td>{q["attempts"]}</td>'
                      f'<td>{escape(str(q["last_error"]))}</td><td>{buttons}</td></tr>')
    return (
        "<h2>Flows</h2>" + _table(("flow", "kind", "state", "last run", "next run", "queue", ""), rows, "No flows.")
        + "<h2>Running</h2>" + _table(("flow", "files", "bytes"), running, "Nothing is running.")
        + '<h2>Retry queue</h2><div id="queue">'
        + _table(("flow", "key", "attempts", "last error", ""), queued, "The retry queues are empty.") + "</div>"
        + '<h2>Recent deliveries</h2><div id="deliveries">'
        + _table(("time", "flow", "file"), delivered, "Nothing delivered yet.") + "</div>"
        + '<h2>Recent failures</h2><div id="failures">'
        + _table(("time", "flow", "file", "error"), failed, "No failures.") + "</div>")


def static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files (name -> bytes, content type), read once when the app is built: a few kilobytes, and
    no file is opened while serving (nor can a request name one outside this set)."""
    return {path.name: (path.read_bytes(), _TYPES[path.suffix]) for path in sorted(STATIC.iterdir())
            if path.suffix in _TYPES}


def routes(state: ServiceState, auth: Auth) -> list[web.RouteDef]:
    """The page's routes: ``/``, ``/login``, ``/logout``, ``/ui/...`` (the forms), ``/static/...``."""

    async def index(request: web.Request) -> web.Response:
        content = await body(state, auth.csrf(request))
        if request.query.get("part") == "body":
            return _html(content)
        header = ('<header><h1>s3ferry serve</h1><form method="post" action="/logout" class="inline">'
                  f'<input type="hidden" name="csrf" value="{escape(auth.csrf(request))}">'
                  '<button type="submit">Log out</button></form></header>')
        return _html(_doc("s3ferry serve", header + f'<main id="content">{content}</main>'))

    async def login_page(request: web.Request) -> web.Response:
        return _html(login_form())

    async def login(request: web.Request) -> web.Response:
        given = str((await request.post()).get("token", ""))
        if auth.token is not None and not auth.token_ok(given):
            return _html(login_form("Wrong token."), status=403)
        response = web.HTTPSeeOther("/")
        if auth.token is not None:
            response.set_cookie(COOKIE, auth.open_session(), httponly=True, samesite="Strict",
                                secure=auth.secure_cookie, path="/", max_age=int(SESSION_SECONDS))
        raise response

    async def logout(request: web.Request) -> web.Response:
        auth.sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def action(request: web.Request) -> web.Response:
        flow = state.flow(request.match_info["name"])
        if flow is None:
            raise web.HTTPNotFound(text="no such flow")
        verb = request.match_info["action"]
        if verb in ("pause", "resume"):
            state.sched.pause(flow.name, paused=verb == "pause")
        elif verb == "trigger":
            state.start_run(flow)
        elif verb == "retry":
            state.start_run(flow, retry=True, keys=[str(k) for k in (await request.post()).getall("key", [])])
        elif verb == "drop":
            await state.drop(flow, str((await request.post()).get("key", "")))
        else:
            raise web.HTTPNotFound(text="no such action")
        raise web.HTTPSeeOther("/")

    files = static_files()

    async def static(request: web.Request) -> web.Response:
        found = files.get(request.match_info["file"])
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        return web.Response(body=body, content_type=content_type,
                            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    return [web.get("/", index), web.get("/login", login_page), web.post("/login", login),
            web.post("/logout", logout), web.post("/ui/flows/{name}/{action}", action),
            web.get("/static/{file}", static)]

