"""Connections to one SFTP server (:class:`SftpEndpoint`): the base of the source and the sink.

* Settings come from ``~/.ssh/config`` (Host, HostName, Port, User, HostKeyAlias,
  IdentityFile, UserKnownHostsFile), default key files and the agent, as with
  ``ssh``; ``--identity``, ``--known-hosts``, ``--host-key`` override them.
* Connections are opened on demand, pooled, and shared with :meth:`SftpEndpoint.child`
  endpoints (a tree's files). What they share (:class:`_Link`) includes the round trip
  timed on the first connection, from which requests in flight and write sessions are
  sized (the tuning constants below).
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from s3ferry.backends.sftp.errors import translate_error
from s3ferry.backends.sftp.trust import (
    DEFAULT_KNOWN_HOSTS,
    KeyLookup,
    SshTarget,
    TrustingClient,
    cipher_order,
    jump_address,
    key_label,
    unverified_key_error,
)
from s3ferry.core.errors import AuthError, HostKeyError, UnreachableError, UsageError
from s3ferry.core.options import SftpOptions
from s3ferry.core.units import human_bytes
from s3ferry.core.urls import Location

Conn = tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]

log = logging.getLogger("s3ferry")

_MiB = 1024 * 1024
#: The SSH channel window we advertise (what the server may send us unasked for). The server sends
#: only what our read requests ask for, and those are counted (:meth:`SftpEndpoint.read_window`), so a
#: wide window costs no memory; asyncssh's default (2 MiB) caps a read stream at 40 MiB/s at 50 ms.
_SSH_WINDOW = 64 * _MiB
#: The rate requests in flight are sized for (a 1 Gbit/s link): bytes in flight = rate x round trip.
_TARGET_RATE = 128 * _MiB
#: Bytes of read requests in flight per read stream at most (a part is read by one stream at a time).
_MAX_READ_IN_FLIGHT = 16 * _MiB
#: OpenSSH's window per session channel: one session has at most this much written in flight,
#: so writes across a long round trip go through several sessions of the one connection.
SERVER_WINDOW = 2 * _MiB
#: From this round trip on (seconds), readers share one connection rather than open one each.
_SHARE_RTT = 0.01
#: Reads of at most this many bytes share an open connection on any round trip (see ``_checkout_shared``)
SHORT_READ = 1024 * 1024
#: Sessions per connection at most (OpenSSH's MaxSessions is 10 by default; refusals are backed off).
_MAX_SESSIONS = 8
#: connections to one server on a short round trip (each is an sshd process; OpenSSH's MaxStartups
#: starts refusing at 10 unauthenticated ones)
_MAX_CONNECTIONS = 8


@dataclass
class _Link:
    """What one server's connections share: the round trip measured on the first, and the sink's sessions."""

    rtt: float | None = None  #: seconds, timed on the first connection (None: not connected yet)
    #: the sink's sessions on its shared connection (the first is the one :meth:`SftpSink._shared` returns)
    sessions: list[asyncssh.SFTPClient] = field(default_factory=list)
    #: sessions the server allows per connection, once it refused one (MaxSessions)
    session_cap: int = _MAX_SESSIONS
    #: the sessions being opened (see :meth:`SftpSink._open_sessions`)
    growing: asyncio.Future[None] | None = None
    #: held while a connection is opened (see :meth:`SftpEndpoint._checkout`)
    opening: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: every connection :meth:`SftpEndpoint._checkout` opened, and the turn of the next one to share
    pairs: list[Conn] = field(default_factory=list)
    turn: int = 0
    #: archive folders being made or made (found) this run, one request each whoever asks
    #: (see :meth:`SftpSource.archive`)
    archives: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    #: files being closed in the background (see :meth:`SftpSource._close_later`), awaited before the end
    closing: set[asyncio.Future[bool]] = field(default_factory=set)
    #: write requests in flight across all parts of all files: a part's last requests overlap the next
    #: part's first, so the pipe does not drain at part boundaries (sized in :meth:`SftpSink.write_sessions`)
    write_slots: asyncio.Semaphore | None = None
    write_slot_count: int = 0
    #: the first connection, opened ahead of its first use (see :meth:`SftpEndpoint.warm_up`)
    warming: asyncio.Future[None] | None = None
    #: the round trip being timed on the first connection (see :meth:`SftpEndpoint.connect`)
    measuring: asyncio.Future[None] | None = None


def _in_flight(rtt: float | None, least: int, most: int) -> int:
    """Bytes to keep in flight across ``rtt``: the bandwidth-delay product at :data:`_TARGET_RATE`."""
    return max(least, min(most, int((rtt or 0.0) * _TARGET_RATE)))


class SftpEndpoint:
    """Connections to one SFTP server: opened on demand, reused, shared with :meth:`child` endpoints."""

    def __init__(self, location: Location, options: SftpOptions, block: int = 256 * 1024, window: int = 16,
                 parent: SftpEndpoint | None = None) -> None:
        self.location = location
        self.options = options
        self._block, self._window = block, window
        self._owner = parent is None
        # Shared lists: a child endpoint checks connections in and out of its parent's pool.
        self._idle: list[Conn] = parent._idle if parent else []
        self._all: list[asyncssh.SSHClientConnection] = parent._all if parent else []
        self._link: _Link = parent._link if parent else _Link()

    @property
    def where(self) -> str:
        return str(self.location)

    def _connect_kwargs(self, password: str | None, passphrase: str | None = None) -> dict[str, object]:
        """asyncssh's options for :meth:`connect` and :meth:`target` (which must agree on where they go)."""
        opts = self.options
        kwargs: dict[str, object] = {
            "host": self.location.host,
            "config": (),  # ~/.ssh/config, as ssh reads it (asyncssh's default in connect() only)
            "encryption_algs": cipher_order(),
            "connect_timeout": opts.connect_timeout,
            "keepalive_interval": 15,
            "window": _SSH_WINDOW,
        }
        if self.location.port:
            kwargs["port"] = self.location.port
        if self.location.user:
            kwargs["username"] = self.location.user
        if opts.identity:
            for path in opts.identity:
                if not path.exists():
                    raise UsageError(f"--identity {path} does not exist")
            kwargs["client_keys"] = [str(p) for p in opts.identity]
        if opts.host_key:
            kwargs["known_hosts"] = ([], [], [])  # trust nothing but the pinned key
        elif opts.known_hosts is not None:
            if not opts.known_hosts.exists():
                raise UsageError(f"--known-hosts {opts.known_hosts} does not exist")
            kwargs["known_hosts"] = str(opts.known_hosts)
        if password is not None:
            kwargs["password"] = password
        if passphrase is not None:  # decrypts -i keys and IdentityFile keys alike
            kwargs["passphrase"] = passphrase
        if opts.jump:
            # The jump host is reached with OpenSSH's defaults (~/.ssh/config, keys, known_hosts).
            kwargs["tunnel"] = opts.jump
        return kwargs

    async def connect(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        pinned = self.options.host_key
        if pinned and not pinned.startswith("SHA256:"):
            raise UsageError("--host-key takes a fingerprint like SHA256:AbC... (see ssh-keygen -lf)")
        client = TrustingClient(pinned)
        password = await asyncio.to_thread(self.options.password)  # may read --password-file or run a command
        passphrase = await asyncio.to_thread(self.options.passphrase)
        kwargs = await asyncio.to_thread(self._connect_kwargs, password, passphrase)  # checks key / known_hosts
        host = self.location.host
        try:
            # kwargs: one dict of options of mixed types, which no single value type describes
            conn, _ = await asyncssh.create_connection(lambda: client, **kwargs)  # type: ignore[arg-type]
        except asyncssh.HostKeyNotVerifiable as exc:
            raise await self._host_key_error(client) from exc
        except asyncssh.PermissionDenied as exc:
            tried = await self._auth_tried(kwargs, client.methods)
            raise AuthError(f"authentication failed for {self._endpoint()}: wrong password or key not "
                            f"accepted ({tried})") from exc
        except socket.gaierror as exc:
            raise UsageError(f"cannot resolve host {host!r}: {exc.strerror}") from exc
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:  # no (or the wrong) passphrase
            raise AuthError(f"cannot load an SSH private key: {exc} (give its passphrase with "
                            "--identity-passphrase-file, -env or -command)") from exc
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            reason = exc.reason if isinstance(exc, asyncssh.Error) else None
            raise UnreachableError(f"cannot connect to {self._endpoint()}: {reason or exc}") from exc
        self._all.append(conn)
        try:
            sftp = await conn.start_sftp_client()
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self.where) from exc
        if self._link.rtt is None and self._link.measuring is None:
            # Timed beside the first use, not before it: a round trip less before the first request
            self._link.measuring = asyncio.ensure_future(self._measure(sftp))
        return conn, sftp

    async def _measured(self) -> None:
        """Wait for the round trip's measure, if one is under way (what depends on it is decided after it)."""
        if self._link.measuring is not None:
            await asyncio.shield(self._link.measuring)

    async def _auth_tried(self, kwargs: dict[str, object], offered: tuple[str, ...]) -> str:
        """``tried: publickey (id_ed25519, agent), password; the server offers: ...`` for an auth failure's
        line; logged at INFO (-v) too. The keys are the ones asyncssh loaded: -i, IdentityFile, the default
        files; an agent's keys are asked for at authentication time, so it is named as one."""
        try:
            opts = await asyncssh.SSHClientConnectionOptions.construct(None, **kwargs)
        except (asyncssh.Error, OSError, ValueError) as exc:  # connect() used the same options: not expected
            return f"the keys tried are unknown: {exc}"
        if self.options.identity:
            keys = [str(path) for path in self.options.identity]  # as the user named them
        else:
            keys = [key_label(pair) for pair in opts.client_keys or ()]
        if opts.agent_path:
            keys.append("agent")
        tried = []
        if "publickey" in offered or not offered:
            tried.append(f"publickey ({', '.join(keys) or 'no keys found'})")
        if "password" in kwargs and ("password" in offered or "keyboard-interactive" in offered or not offered):
            tried.append("password")
        detail = f"tried: {'; '.join(tried) or 'nothing the server offers'}"
        if offered:
            detail += f"; the server offers: {', '.join(offered)}"
        log.info("SSH authentication to %s failed: %s", self._endpoint(), detail)
        return detail

    async def _measure(self, sftp: asyncssh.SFTPClient) -> None:
        """Time one request (a round trip) on the first connection: requests in flight are sized from it."""
        times = []
        try:
            # Twice, the shorter kept: timed beside the first requests, one answer may wait for a busy loop
            # (making the S3 client takes ~60 ms), which on loopback would look like a long round trip
            for _ in range(2):
                started = time.monotonic()
                await sftp.realpath(".")
                times.append(time.monotonic() - started)
        except (TimeoutError, asyncssh.Error, OSError) as exc:  # the connection's users hear of it themselves
            log.debug("SFTP %s: the round trip could not be timed: %s", self._endpoint(), exc)
            return
        self._link.rtt = rtt = min(times)
        block = self._read_block(sftp)
        log.info("SFTP %s: round trip %.1f ms; reads: %d requests of %s in flight per stream (SSH window "
                 "%d MiB); writes: up to %d sessions on one connection", self._endpoint(), rtt * 1000,
                 self.read_window(block), human_bytes(block), _SSH_WINDOW // _MiB, self._sessions_wanted())

    def _read_block(self, sftp: asyncssh.SFTPClient) -> int:
        """The size of one read request: ours, or less if the server's limits say so."""
        return min(self._block, sftp.limits.max_read_len or self._block)

    def read_window(self, block: int) -> int:
        """Read requests of ``block`` bytes in flight per stream: enough to fill the round trip, at least the
        configured window. They cost no memory of their own: the replies land in the part buffer."""
        return max(self._window, _in_flight(self._link.rtt, 0, _MAX_READ_IN_FLIGHT) // block)

    def _sessions_wanted(self) -> int:
        """Write sessions to open on the shared connection: enough server windows to fill the round trip."""
        # 3/4: the server sends its window adjust only when half of it is used
        wanted = math.ceil(_in_flight(self._link.rtt, 0, _MAX_SESSIONS * SERVER_WINDOW) / (SERVER_WINDOW * 3 / 4))
        return max(1, min(wanted, self._link.session_cap))

    async def target(self) -> SshTarget:
        """Where :meth:`connect` goes: its own options, resolved by asyncssh as the connection resolves them."""
        kwargs = await asyncio.to_thread(self._connect_kwargs, None)  # checks key / known_hosts paths
        try:
            opts = await asyncssh.SSHClientConnectionOptions.construct(None, **kwargs)
        except (asyncssh.Error, OSError, ValueError) as exc:  # ValueError: a bad key file or config line
            raise UsageError(f"cannot use the SSH settings for {self.location.host}: {exc}") from exc
        via = None
        if opts.tunnel:
            via = f"ProxyJump {opts.tunnel}"
        elif opts.proxy_command:
            via = f"ProxyCommand {' '.join(opts.proxy_command)}"
        return SshTarget(str(opts.host), int(opts.port or 22), via, self._known_hosts_files(opts.known_hosts))

    def _known_hosts_files(self, configured: object) -> tuple[Path, ...]:
        """The files asyncssh reads host keys from: --known-hosts, else UserKnownHostsFile (and
        GlobalKnownHostsFile) from ~/.ssh/config, else ~/.ssh/known_hosts."""
        if self.options.host_key:
            return ()
        if self.options.known_hosts is not None:
            return (self.options.known_hosts,)
        if configured is None:  # UserKnownHostsFile none
            return ()
        if isinstance(configured, list) and configured:
            return tuple(Path(str(name)).expanduser() for name in configured)
        return (DEFAULT_KNOWN_HOSTS.expanduser(),)

    def _endpoint(self) -> str:
        user = f"{self.location.user}@" if self.location.user else ""
        return f"{user}{self.location.host}:{self.location.port or 22}"

    async def _host_key_error(self, client: TrustingClient) -> HostKeyError:
        if client.offered is None:
            # The target never offered a key: the check that failed was the jump host's.
            return self._jump_host_key_error()
        target = await self.target()
        # The host and port really reached, and the name typed when that differs (a Host alias)
        who = f"{target.host}:{target.port}"
        if self.location.host != target.host:
            who += f" ({self.location.host} in ~/.ssh/config)"
        offered = client.offered.get_fingerprint("sha256")
        if self.options.host_key:
            return HostKeyError(f"host key of {who} is {offered}, not the pinned {self.options.host_key}")
        name, addr, port = client.looked_up
        return unverified_key_error(who, KeyLookup(target.host, port, name, addr, target.known_hosts), offered)

    def _jump_host_key_error(self) -> HostKeyError:
        """The jump host is checked against ~/.ssh/known_hosts, like OpenSSH's ProxyJump."""
        if not self.options.jump:
            return HostKeyError("host key of the jump host (ProxyJump in ~/.ssh/config) is not known or has "
                                "changed; check it, then fix its entry in ~/.ssh/known_hosts")
        host, port = jump_address(self.options.jump)
        lookup = KeyLookup(host, port, host, "", (DEFAULT_KNOWN_HOSTS.expanduser(),))
        return unverified_key_error(f"jump host {host}:{port}", lookup)

    def warm_up(self) -> None:
        """Start opening the first connection now (see :class:`~s3ferry.core.storage.Connecting`): the
        other end's backend is imported and its client made meanwhile, ~0.5 s that no longer comes
        before the SSH set-up."""
        if self._owner and self._link.warming is None and not self._all:
            self._link.warming = asyncio.ensure_future(self._warm())

    async def _warm(self) -> None:
        self._checkin(await self._checkout_now())

    async def _warmed(self) -> None:
        """Wait for the connection :meth:`warm_up` is opening; if that failed, raise its error here."""
        warming = self._link.warming
        if warming is None:
            return
        try:
            await asyncio.shield(warming)  # one user's cancellation must not stop it for the others
        finally:
            if warming.done():
                self._link.warming = None  # a later use (after a failure: a retry) connects anew

    async def _checkout(self) -> Conn:
        """A connection to use, returned with :meth:`_checkin` (not when it failed); see :meth:`_checkout_now`."""
        await self._warmed()
        return await self._checkout_now()

    async def _checkout_now(self) -> Conn:
        """A connection to use, returned with :meth:`_checkin` (not when it failed).

        Across a long round trip every use shares one connection (it stays in the pool): a new one costs
        ~12 round trips (TCP, key exchange, authentication, session, SFTP) before its first byte, 1.8 s at
        150 ms, while one connection's window carries every stream. On a short one, each use gets a
        connection (an sshd process, a CPU) of its own, up to :data:`_MAX_CONNECTIONS`; beyond that uses
        share the open ones in turn (many small files at once must not start dozens of sshd processes,
        or meet the server's ``MaxStartups``). Connections are opened one at a time: the first measures
        the round trip, which decides for the others.
        """
        shared = self._shared_pair()
        if shared is not None:
            return shared
        while self._idle:
            conn, sftp = self._idle.pop()
            if not conn.is_closed():
                return conn, sftp
        await self._measured()  # a new connection or a shared one: the round trip decides
        async with self._link.opening:
            shared = self._shared_pair()
            if shared is not None:
                return shared
            live = [pair for pair in self._link.pairs if not pair[0].is_closed()]
            if live and self._shares():  # the first connection, lent before its round trip was known
                self._idle.append(live[0])
                return live[0]
            if len(live) >= _MAX_CONNECTIONS:
                self._link.turn += 1
                return live[self._link.turn % len(live)]
            pair = await self.connect()
            self._link.pairs[:] = [*live, pair]
            if self._shares():
                self._idle.append(pair)
            return pair

    async def _checkout_shared(self) -> Conn:
        """An open connection, lent in turn whoever uses it (a new one only if none is open), for what takes
        a few requests (a stat, a listing, a move, a short read): measured on loopback, 300 files of 64 KiB
        took 2.6 s through one connection and 3.0 s opening one per file in flight (8): each costs a key
        exchange and an sshd process, more CPU than a small file's whole read. Only long reads get a
        connection of their own on a short round trip (:meth:`_checkout`)."""
        await self._warmed()
        live = [pair for pair in self._link.pairs if not pair[0].is_closed()]
        if not live:
            return await self._checkout_now()
        self._link.turn += 1
        return live[self._link.turn % len(live)]

    def _shares(self) -> bool:
        return self._link.rtt is not None and self._link.rtt >= _SHARE_RTT

    def _shared_pair(self) -> Conn | None:
        """The one connection every use shares across a long round trip (None: not that, or none open)."""
        if self._shares():
            for conn, sftp in self._idle:
                if not conn.is_closed():
                    return conn, sftp
        return None

    def _checkin(self, pair: Conn) -> None:
        if pair not in self._idle:
            self._idle.append(pair)

    async def close(self) -> None:
        if not self._owner:
            return  # the parent owns the connections
        for pending in (self._link.warming, self._link.measuring):
            if pending is not None and not pending.done():  # never used (another error came first)
                pending.cancel()
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)
        self._link.warming = self._link.measuring = None
        if self._link.closing:
            await asyncio.gather(*self._link.closing, return_exceptions=True)
        growing, self._link.growing = self._link.growing, None
        if growing is not None and not growing.done():
            growing.cancel()
            await asyncio.gather(growing, return_exceptions=True)
        for conn in self._all:
            conn.close()
        for conn in self._all:
            with suppress(TimeoutError, asyncssh.Error, OSError):  # a dead connection: nothing to tell the user
                await asyncio.wait_for(conn.wait_closed(), 5)
        self._all.clear()
        self._idle.clear()
