"""Test helpers for the event intake: a push flow over the test servers, and a minimal aiohttp app that
mounts ``event_routes`` (the real ``serve`` app is built elsewhere; no app of ours lives in src for tests)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from s3ferry.demo import servers as testbed
from s3ferry.jobs.flowfile import Flow, load
from s3ferry.service.dispatch import EventDispatcher
from s3ferry.service.events import EventIntake, EventSettings, event_routes

TOKEN = "events-test-token"


def push_flows(tmp: Path, ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str, inbox: Path,
               prefix: str = "out/", extra: str = "") -> list[Flow]:
    """One push flow ``outbox``: s3://bucket/prefix to ``inbox`` on the sshd (``extra``: more keys)."""
    path = tmp / "flows.toml"
    path.write_text(f"""\
[defaults]
identity = "{ssh.user_key}"
known_hosts = "{ssh.known_hosts}"
endpoint_url = "{s3.endpoint}"
state_dir = "{tmp / 'state'}"

[flows.outbox]
kind = "push"
source = "s3://{bucket}/{prefix}"
destination = "{ssh.url(inbox)}/"
every = "1h"
{extra}
""")
    loaded = load(path)
    assert not loaded.errors, [p.format(str(path)) for p in loaded.errors]
    return list(loaded.flows.values())


@dataclass
class EventApp:
    """The intake and the dispatcher behind ``POST /api/v1/events/{source}`` on 127.0.0.1:``port``."""

    intake: EventIntake
    dispatcher: EventDispatcher
    port: int

    def url(self, source: str) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/events/{source}"

    def copied(self) -> list[str]:
        """Every path the event runs delivered (once per delivery)."""
        return [rel for _, report in self.dispatcher.reports for rel in report.copied]


@asynccontextmanager
async def event_app(flows: list[Flow], settings: EventSettings | None = None, port: int = 0) -> AsyncIterator[EventApp]:
    intake = EventIntake(settings or EventSettings(token=TOKEN))
    dispatcher = EventDispatcher(flows)
    app = web.Application()
    app.add_routes(event_routes(intake, dispatcher))
    runner = web.AppRunner(app)
    await runner.setup()
    port = port or testbed.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    dispatcher.start()
    try:
        yield EventApp(intake, dispatcher, port)
    finally:
        await dispatcher.stop()
        await intake.close()
        await runner.cleanup()


@contextmanager
def seaweed_with_webhook(base: Path, port: int, token: str = TOKEN) -> Iterator[testbed.SeaweedServer]:
    """A SeaweedFS of its own whose filer posts every change to our intake on ``port``.

    The filer reads ``notification.toml`` from ``~/.seaweedfs/`` (among other places): it is started with
    HOME pointing at a folder that holds one.
    """
    home = base / "home"
    (home / ".seaweedfs").mkdir(parents=True, exist_ok=True)
    (home / ".seaweedfs" / "notification.toml").write_text(f"""\
[notification.webhook]
enabled = true
endpoint = "http://127.0.0.1:{port}/api/v1/events/seaweedfs"
bearer_token = "{token}"
timeout_seconds = 5
max_retries = 2
backoff_seconds = 1
max_backoff_seconds = 2
workers = 5
buffer_size = 1000
path_prefixes = ["/buckets/"]
""")
    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(home)  # read by the child at start only
    try:
        server = testbed.SeaweedServer(base / "weed").start()
    finally:
        if saved is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = saved
    try:
        yield server
    finally:
        server.stop()
