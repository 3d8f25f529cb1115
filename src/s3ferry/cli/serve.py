"""``s3ferry serve FLOWS.toml``: the flows on their schedules, with an HTTP API, a status page and /metrics.

Registered on :data:`s3ferry.cli.main` when :mod:`s3ferry.cli` imports this module. The flows run as
``s3ferry run`` runs them (the same scheduler, locks, SIGHUP reload); the HTTP side is
:mod:`s3ferry.service`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from s3ferry.cli.app import main, observing
from s3ferry.cli.common import say
from s3ferry.cli.flags import options
from s3ferry.cli.run import announce, chosen, load, reload_flows, service_log
from s3ferry.core.errors import InterruptedError_, UsageError
from s3ferry.core.redaction import printable, register_secret

if TYPE_CHECKING:  # loaded by the command itself: `s3ferry --help` stays fast
    from s3ferry.jobs.flowfile import Flow
    from s3ferry.jobs.runner import Outcome
    from s3ferry.service.main import Events, Listen

TOKEN_ENV = "S3FERRY_SERVE_TOKEN"
#: a shorter token is refused: it could be guessed over the network
MIN_TOKEN = 16

EXAMPLES_SERVE = """
\b
Examples:
  s3ferry serve --token-file /etc/s3ferry/token flows.toml
  S3FERRY_SERVE_TOKEN=... s3ferry serve --listen 0.0.0.0:8443 \\
      --tls-cert cert.pem --tls-key key.pem flows.toml
  curl -H "Authorization: Bearer $(cat token)" http://127.0.0.1:8470/api/v1/flows
  kill -HUP <pid>                           # reload flows.toml (checked first)
"""


@main.command(epilog=EXAMPLES_SERVE)
@click.argument("flows_file", type=click.Path(path_type=Path, dir_okay=False))
@options("serve")
def serve(flows_file: Path, check: bool, selected: tuple[str, ...], state_dir: Path | None, as_json: bool,
          debug: bool, listen: str, tls_cert: Path | None, tls_key: Path | None, token_file: Path | None,
          no_auth: bool, grace: float, **params: Any) -> None:
    """Run the flows of FLOWS_FILE on their schedules and serve their state over HTTP.

    One port (--listen) serves the JSON API (/api/v1, its OpenAPI document at
    /api/v1/openapi.json), the status page (/), /metrics and /healthz. Every
    path but /healthz needs the token (--token-file or S3FERRY_SERVE_TOKEN;
    never on the command line): API clients send "Authorization: Bearer
    TOKEN", a browser logs in once at /login.

    --check validates everything (the flows file, the token, the TLS files,
    --listen) and starts nothing. SIGTERM/SIGINT: the port closes, no run starts, the runs in flight get
    --grace seconds to finish (exit 0), then are cancelled (exit 130; their
    journals keep what the next start resumes). SIGHUP reloads FLOWS_FILE as
    `s3ferry run` does.
    """
    from s3ferry.jobs import runner

    service_log.setLevel("ERROR" if params.get("quiet") and not debug else "INFO")

    def body() -> None:
        where = listen_at(listen, tls_cert, tls_key)
        token = read_token(token_file, no_auth, where.host)
        loaded = load(flows_file, selected, require_env=not check)
        for problem in loaded.problems:
            click.echo(printable(problem.format(str(flows_file))), err=True)
        flows = runner.with_state_dir(chosen(loaded, selected, flows_file), state_dir)
        events = event_intake(loaded.serve, flows_file, flows, token)
        if check:
            for flow in flows:
                click.echo(printable(flow.describe()))
            return
        announce(f"serving {len(flows)} flow{'s' if len(flows) != 1 else ''} of {flows_file} on {where.url}", flows)
        from s3ferry.service.auth import Auth
        from s3ferry.service.main import Service

        service = Service(flows, Auth(token, secure_cookie=where.tls is not None), partial(report, as_json),
                          events=events)
        if events is not None:
            names = ", ".join(f.name for f in events.dispatcher.flows) or "none (no push flow)"
            say(f"events: POST {where.url}api/v1/events/{{seaweedfs,minio,eventbridge,sns}} push flows {names}")
        reload = partial(reload_flows, service.scheduler, flows_file, selected, state_dir)
        if not asyncio.run(until_signalled(service, where, grace, reload)):
            raise InterruptedError_("interrupted: runs still in flight after --grace were stopped; "
                                    "the next start resumes them")

    observing(params, debug, "serve", body)


def report(as_json: bool, outcome: Outcome) -> None:
    """A run's line, as ``s3ferry run`` prints it."""
    if as_json and not outcome.skipped:
        click.echo(json.dumps(outcome.as_dict()))
    elif outcome.report is not None:
        say(printable(f"{outcome.flow.name}: {outcome.report.summary()}"))
    if outcome.error is not None:
        from s3ferry.observe.logs import final_error

        hint = f"; {outcome.error.hint}" if outcome.error.hint else ""
        click.echo(final_error(f"error: flow {outcome.flow.name}: {outcome.error}{hint}", outcome.error.exit_code),
                   err=True)


async def until_signalled(service: Any, where: Listen, grace: float, reload: partial[None]) -> bool:
    """Serve until SIGTERM/SIGINT (a second one cancels at once); True when the runs in flight finished."""
    loop = asyncio.get_running_loop()
    stop, task = asyncio.Event(), asyncio.current_task()
    assert task is not None

    def signalled() -> None:
        if stop.is_set():
            task.cancel()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        return bool(await service.run(where, stop, grace))
    except asyncio.CancelledError:
        return False
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def listen_at(listen: str, cert: Path | None, key: Path | None) -> Listen:
    """``--listen HOST:PORT`` (``[v6]:PORT``) and the TLS pair, checked."""
    from s3ferry.service.app import tls_context
    from s3ferry.service.main import Listen

    host, sep, port_text = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--listen {listen!r}: expected HOST:PORT (127.0.0.1:8470, [::1]:8470)")
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together: give both (or neither, for plain HTTP)")
    tls = None
    if cert is not None and key is not None:
        try:
            tls = tls_context(cert, key)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise UsageError(f"--tls-cert {cert} / --tls-key {key}: cannot load them: {exc}") from None
    return Listen(host, int(port_text), tls)


def loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def read_token(token_file: Path | None, no_auth: bool, host: str) -> str | None:
    """The bearer token: from --token-file, else S3FERRY_SERVE_TOKEN; None only with --no-auth on loopback."""
    if no_auth:
        if token_file is not None or os.environ.get(TOKEN_ENV):
            raise UsageError(f"--no-auth and a token (--token-file, {TOKEN_ENV}) contradict each other: give one")
        if not loopback(host):
            raise UsageError(f"--no-auth (no token asked) is only for a loopback address, not {host}")
        return None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --token-file {token_file} ({exc})") from None
        where = f"--token-file {token_file}"
    else:
        token, where = os.environ.get(TOKEN_ENV, "").strip(), TOKEN_ENV
        if not token:
            raise UsageError(f"serve needs its token from --token-file FILE or {TOKEN_ENV} "
                             "(or --no-auth, on a loopback address only)")
    if len(token) < MIN_TOKEN or any(c.isspace() or not c.isprintable() for c in token):
        # (worded so that no "token:" precedes a word: the log scrubber would mask it as a secret)
        raise UsageError(f"a token needs at least {MIN_TOKEN} printable characters without spaces (make one with "
                         f"openssl rand -hex 32); {where} holds a weaker one")
    register_secret(token)  # masked in every log line and error from here on
    return token


__all__ = ["serve"]


def event_intake(serve: dict[str, Any], flows_file: Path, flows: list[Flow], token: str | None) -> Events | None:
    """The event intake the flows file's ``[serve.events]`` table asks for (None without one). Its senders
    use the serve token unless the table names a token of their own."""
    unknown = sorted(set(serve) - {"events"})
    if unknown:
        raise UsageError(f"{flows_file}: [serve]: unknown key {unknown[0]!r} (known: events)")
    table = serve.get("events")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise UsageError(f"{flows_file}: serve.events must be a table: [serve.events]")
    import dataclasses

    from s3ferry.service.dispatch import EventDispatcher
    from s3ferry.service.events import EventIntake, settings_from_table
    from s3ferry.service.main import Events

    settings = settings_from_table(table, flows_file.parent)
    if settings.token is None and token is not None:
        settings = dataclasses.replace(settings, token=token)
    missing = sorted(set(settings.flows) - {f.name for f in flows})
    if missing:
        raise UsageError(f"{flows_file}: serve.events.flows: no flow named {missing[0]!r}")
    return Events(EventIntake(settings), EventDispatcher(flows, settings.flows))
