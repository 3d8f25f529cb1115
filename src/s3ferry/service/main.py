"""The life of ``s3ferry serve``: start the scheduler and the HTTP server, run until told to stop, stop gently.

Stopping (SIGTERM or SIGINT, through ``stop``): the port closes first (no new
request), then the scheduler stops starting runs, and the runs in flight get
``grace`` seconds to finish. Runs still going then are cancelled: their own
clean-ups run, their journals keep the parts already stored and the retry
queue its entries, so the next start resumes them. A second signal cancels at
once.

With an event intake (``[serve.events]`` in the flows file), its route is
mounted beside the API (it checks its own senders), its per-flow workers start
with the server, and every event flow runs once at start (the catch-up scan:
what was put while nobody listened is delivered). Stopping: events still
queued are dropped with the port (the sender's retry or the next catch-up
delivers them), deliveries in flight get the same ``grace``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from s3ferry.core.errors import UsageError
from s3ferry.jobs.flowfile import Flow
from s3ferry.jobs.runner import OnOutcome, Outcome, Scheduler
from s3ferry.service.app import build_app
from s3ferry.service.auth import Auth
from s3ferry.service.dispatch import EventDispatcher
from s3ferry.service.events import EventIntake, event_routes
from s3ferry.service.state import ServiceState

log = logging.getLogger("s3ferry.service")
#: more routes for the app, made from the service's state (its flows, their journals, "run now"): the event
#: intake plugs in here; they are behind the token like every route but /healthz
RoutesFor = Callable[[ServiceState], Sequence[web.RouteDef]]


#: where the event intake is mounted (``POST /api/v1/events/{source}``)
EVENTS_PREFIX = "/api/v1/events/"


@dataclass(frozen=True)
class Events:
    """The event intake of a service: who may send (``intake``) and where events go (``dispatcher``)."""

    intake: EventIntake
    dispatcher: EventDispatcher


@dataclass(frozen=True)
class Listen:
    """Where the server listens, and how."""

    host: str
    port: int
    tls: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"


class Service:
    """The scheduler, its state and the HTTP server of one ``serve`` process."""

    def __init__(self, flows: Sequence[Flow], auth: Auth, on_outcome: OnOutcome,
                 extra_routes: RoutesFor | None = None, events: Events | None = None) -> None:
        self.state = ServiceState()
        self.report = on_outcome
        self.scheduler = Scheduler(flows, self._outcome, progress=self.state.listener)
        self.state.scheduler = self.scheduler
        self.events = events
        routes = list(extra_routes(self.state)) if extra_routes is not None else []
        if events is not None:
            routes += event_routes(events.intake, events.dispatcher)
            auth.self_checked = (*auth.self_checked, EVENTS_PREFIX)
        # built before the event loop runs: it reads the page's static files
        self.app = build_app(self.state, auth, routes)

    def _outcome(self, outcome: Outcome) -> None:
        self.state.on_outcome(outcome)
        self.report(outcome)

    async def run(self, listen: Listen, stop: asyncio.Event, grace: float) -> bool:
        """Serve until ``stop`` is set; True when every run in flight finished within ``grace``."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        scheduling: asyncio.Task[None] | None = None
        try:
            site = web.TCPSite(runner, listen.host, listen.port, ssl_context=listen.tls, shutdown_timeout=2.0)
            try:  # the port first: a service that cannot serve starts no run
                await site.start()
            except OSError as exc:  # in use, or not an address of this host
                raise UsageError(f"cannot listen on {listen.url}: {exc.strerror or exc}") from None
            scheduling = asyncio.create_task(self.scheduler.run(), name="scheduler")
            catching_up = self._start_events()
            log.info("serving on %s", listen.url)
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait([scheduling, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if scheduling.done():  # the scheduler never ends by itself: it failed
                scheduling.result()
            await site.stop()  # no new request (and no new trigger) from here on
            busy = sum(self.scheduler.is_running(name) for name in self.scheduler.flows)
            if busy:
                log.info("stopping: waiting up to %.0f s for %d run%s in flight", grace, busy, "s" * (busy > 1))
            finished = await self.scheduler.drain(grace) and await self._drain_events(catching_up, grace)
            if not finished:
                log.warning("stopping: runs still in flight after %.0f s are cancelled (their journals keep what "
                            "the next start resumes)", grace)
            return finished
        finally:
            if scheduling is not None:
                scheduling.cancel()
                await asyncio.gather(scheduling, return_exceptions=True)
            if self.events is not None:
                await self.events.dispatcher.stop()
                await self.events.intake.close()
            await runner.cleanup()
            await self.state.close()

    def _start_events(self) -> asyncio.Task[int] | None:
        """The event workers, and the catch-up run of every event flow (in the background)."""
        if self.events is None:
            return None
        self.events.dispatcher.start()
        return asyncio.create_task(self.events.dispatcher.catch_up(), name="events-catch-up")

    async def _drain_events(self, catching_up: asyncio.Task[int] | None, grace: float) -> bool:
        """Deliveries of events in flight (and the catch-up run) within ``grace``; True when they ended."""
        if self.events is None:
            return True
        if catching_up is not None:
            done, _ = await asyncio.wait([catching_up], timeout=grace)
            if not done:
                catching_up.cancel()
                await asyncio.gather(catching_up, return_exceptions=True)
                return False
        return await self.events.dispatcher.drain(grace)
