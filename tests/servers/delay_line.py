"""A delay-line TCP proxy: a WAN link of a given round-trip time and rate on loopback.

This kernel has no ``sch_netem``, so tests and ``bench/`` put this proxy in
front of a server instead::

    with DelayLine(target_port=ssh.port, rtt=0.050, rate=125e6) as link:
        ...  # connect to 127.0.0.1:link.port

Each direction of each connection is a link of its own, modelled as a real
one: a byte arriving at the proxy first waits for the link to be free
(serialisation at ``rate`` bytes/s, a token bucket without burst), then
travels ``rtt / 2`` and is written to the other side at that time stamp.
Bytes wait in a time-stamped queue, so many chunks are in flight at once and
the rate is not capped at one chunk per round trip. The queue is bounded
like a link's buffer: at most ``rate * rtt`` bytes plus ``slack``; past that
the proxy stops reading that side, and TCP flow control back-pressures the
sender instead of the proxy buffering without bound.

A new connection reaches the server one ``rtt`` after the client connected
(the TCP handshake's round trip, which the local ``connect()`` does not pay),
and the client's bytes are read only from then on: the first bytes either
way arrive ``1.5 * rtt`` after connecting, as across a real link.
End-of-file is forwarded in order, after the bytes.

The proxy runs its own event loop in a thread (the clients under test are
usually subprocesses): a context manager for tests and ``bench/``.
``link_rate()`` measures what the link itself carries (a raw TCP bulk copy);
``known_hosts_via()`` lets an SSH client trust the server's key on the
proxy's port. By hand, in front of a server on port 2222::

    PYTHONPATH=tests python -m servers.delay_line 2222 --rtt 0.05 --rate 125e6
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Self

CHUNK = 256 * 1024  # reads and writes of the raw-copy helpers
DEFAULT_SLACK = 1024 * 1024  # a link's buffer beyond its bandwidth-delay product


@dataclass(frozen=True)
class LinkSpec:
    """One link: the round-trip time in seconds and the rate per direction in bytes/s (None: unlimited)."""

    rtt: float
    rate: float | None = None
    slack: int = DEFAULT_SLACK

    @property
    def one_way(self) -> float:
        return self.rtt / 2

    @property
    def queue_limit(self) -> int:
        """The bytes one direction holds before it stops reading: rate x RTT plus the slack.

        Without a rate the slack alone bounds it, and so caps a connection at slack / (RTT / 2).
        """
        in_flight = self.rate * self.rtt if self.rate is not None else 0
        return int(in_flight) + self.slack


class Direction:
    """One direction of one connection: bytes fed in leave ``one_way`` later, at most ``rate`` bytes/s.

    ``source`` is the transport read from (paused while the queue is full);
    ``sink`` the side written to, once it is connected.
    """

    def __init__(self, spec: LinkSpec, source: Side, sink: Side) -> None:
        self.spec = spec
        self.source = source
        self.sink = sink
        self.queue: deque[tuple[float, bytes]] = deque()  # (due time, bytes); b"" is the end of file
        self.queued = 0
        self.peak_queued = 0  # the most bytes ever held: at most queue_limit plus one read
        self.link_free_at = 0.0  # when the link has serialised everything queued so far
        self.arrived = asyncio.Event()
        self.paused = False

    def feed(self, data: bytes) -> None:
        now = time.monotonic()
        start = max(now, self.link_free_at)
        self.link_free_at = start + (len(data) / self.spec.rate if self.spec.rate else 0.0)
        self.queue.append((self.link_free_at + self.spec.one_way, data))
        self.queued += len(data)
        self.peak_queued = max(self.peak_queued, self.queued)
        self.arrived.set()
        if self.queued >= self.spec.queue_limit and not self.paused:
            self.paused = True
            self.source.pause_reading()

    def feed_eof(self) -> None:
        self.queue.append((max(time.monotonic(), self.link_free_at) + self.spec.one_way, b""))
        self.arrived.set()

    async def run(self) -> None:
        """Deliver every queued chunk at its due time, until the end of file has been delivered."""
        await self.sink.connected.wait()
        while True:
            while not self.queue:
                self.arrived.clear()
                await self.arrived.wait()
            due, data = self.queue[0]
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.sink.writable.wait()
            self.queue.popleft()
            if not data:
                self.sink.write_eof()
                return
            self.sink.write(data)
            self.queued -= len(data)
            if self.paused and self.queued < self.spec.queue_limit:
                self.paused = False
                self.source.resume_reading()


class Side(asyncio.Protocol):
    """One TCP connection of the proxy (to the client or to the server); feeds its outgoing Direction."""

    def __init__(self, conn: Connection, *, wait_for_server: bool = False) -> None:
        self.conn = conn
        self.wait_for_server = wait_for_server  # the client: read nothing before the server is connected
        self.transport: asyncio.Transport | None = None
        self.outgoing: Direction | None = None
        self.connected = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.wait_for_server:
            transport.pause_reading()
        self.connected.set()

    def data_received(self, data: bytes) -> None:
        assert self.outgoing is not None
        self.outgoing.feed(data)

    def eof_received(self) -> bool:
        assert self.outgoing is not None
        self.outgoing.feed_eof()
        return True  # half-close: the other direction goes on

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.close()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def write_eof(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and self.transport.can_write_eof():
            self.transport.write_eof()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Connection:
    """A client's connection and the proxy's connection to the server, joined by two Directions."""

    def __init__(self, proxy: LinkServer) -> None:
        self.proxy = proxy
        self.client = Side(self, wait_for_server=True)
        self.server = Side(self)
        self.client.outgoing = Direction(proxy.spec, self.client, self.server)
        self.server.outgoing = Direction(proxy.spec, self.server, self.client)
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def start(self) -> None:
        assert self.client.outgoing is not None and self.server.outgoing is not None
        self.tasks = [asyncio.ensure_future(coro) for coro in (
            self.connect(), self.client.outgoing.run(), self.server.outgoing.run())]
        for task in self.tasks[1:]:
            task.add_done_callback(self.direction_done)

    async def connect(self) -> None:
        await asyncio.sleep(self.proxy.spec.rtt)  # the TCP handshake's round trip
        try:
            await asyncio.get_running_loop().create_connection(
                lambda: self.server, self.proxy.target_host, self.proxy.target_port)
        except OSError:
            self.close()  # the server refused: so does the link
            return
        self.client.resume_reading()

    def direction_done(self, task: asyncio.Task[None]) -> None:
        if all(t.done() for t in self.tasks[1:]):
            self.close()  # both ends of file delivered

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in self.tasks:
            task.cancel()
        self.client.abort()
        self.server.abort()
        self.proxy.connections.discard(self)


class LinkServer:
    """The proxy in the running event loop: ``await start()``, then ``await close()``."""

    def __init__(self, target_port: int, spec: LinkSpec, target_host: str = "127.0.0.1", port: int = 0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.spec = spec
        self.port = port
        self.connections: set[Connection] = set()
        self.server: asyncio.Server | None = None

    def accept(self) -> Side:
        conn = Connection(self)
        self.connections.add(conn)
        conn.start()
        return conn.client

    async def start(self) -> None:
        self.server = await asyncio.get_running_loop().create_server(self.accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        tasks = [task for conn in self.connections for task in conn.tasks]
        for conn in list(self.connections):
            conn.close()
        await asyncio.gather(*tasks, return_exceptions=True)  # let the cancelled ones finish before the loop stops
        if self.server is not None:
            await self.server.wait_closed()


class DelayLine:
    """The proxy in a thread of its own: ``with DelayLine(port, rtt=0.05, rate=125e6) as link: link.port``."""

    def __init__(self, target_port: int, rtt: float, rate: float | None = None, *,
                 target_host: str = "127.0.0.1", slack: int = DEFAULT_SLACK, port: int = 0) -> None:
        self.spec = LinkSpec(rtt, rate, slack)
        self.server = LinkServer(target_port, self.spec, target_host, port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="delay-line", daemon=True)

    @property
    def port(self) -> int:
        return self.server.port

    def __enter__(self) -> Self:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def _discard(listener: socket.socket) -> None:
    """Accept one connection, read it to its end, then answer one byte (the sender's 'all received')."""
    conn, _ = listener.accept()
    with conn:
        while conn.recv(CHUNK):
            pass
        conn.sendall(b"!")


def link_rate(spec: LinkSpec, nbytes: int) -> float:
    """Bytes/s of a raw TCP bulk copy of ``nbytes`` through a link of ``spec``: what the link carries.

    Timed from the connect to the receiver's acknowledgement of the last byte, minus two
    round trips: the handshake's, and the first byte's way there with the acknowledgement's back.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        reader = threading.Thread(target=_discard, args=(listener,), daemon=True)
        reader.start()
        with DelayLine(listener.getsockname()[1], spec.rtt, spec.rate, slack=spec.slack) as link:
            block = bytes(CHUNK)
            start = time.monotonic()
            with socket.create_connection(("127.0.0.1", link.port)) as sock:
                left = nbytes
                while left > 0:
                    left -= sock.send(block[:min(left, CHUNK)])
                sock.shutdown(socket.SHUT_WR)
                if sock.recv(1) != b"!":
                    raise ConnectionError("the receiver of the link test did not confirm")
            elapsed = time.monotonic() - start - 2 * spec.rtt
        reader.join(timeout=10)
    return nbytes / max(elapsed, 1e-9)


def known_hosts_via(known_hosts: Path, port: int, dest: Path) -> Path:
    """Write ``dest``: the host key of ``known_hosts``'s first line, for ``[127.0.0.1]:port`` (the proxy)."""
    key = known_hosts.read_text().split(maxsplit=1)[1]  # "ssh-ed25519 AAAA..." after the host pattern
    dest.write_text(f"[127.0.0.1]:{port} {key}")
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description="A delay-line TCP proxy in front of 127.0.0.1:PORT (Ctrl-C stops it).")
    p.add_argument("target_port", type=int)
    p.add_argument("--rtt", type=float, default=0.05, help="round-trip time in seconds (default 0.05)")
    p.add_argument("--rate", type=float, help="bytes/s per direction (default: unlimited)")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    args = p.parse_args()
    with DelayLine(args.target_port, args.rtt, args.rate, port=args.port) as line:
        print(f"127.0.0.1:{line.port} -> 127.0.0.1:{args.target_port}, RTT {args.rtt * 1000:g} ms, "
              f"rate {args.rate or 'unlimited'} B/s", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the with block closes the line
            threading.Event().wait()


if __name__ == "__main__":
    main()
