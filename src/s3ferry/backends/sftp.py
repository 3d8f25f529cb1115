"""SFTP source and destination over asyncssh, with OpenSSH's defaults and trust rules.

* Settings come from ``~/.ssh/config`` (Host, HostName, Port, User, HostKeyAlias,
  IdentityFile, UserKnownHostsFile), default key files and the agent, as with
  ``ssh``; ``--identity``, ``--known-hosts``, ``--host-key`` override them.
* Host keys are always verified: against known_hosts, or against one pinned
  ``SHA256:`` fingerprint. A missing known_hosts file trusts nothing.
* Reads are issued by us, not by ``SFTPClientFile.read()`` of a large range
  (which reassembles into a growing bytearray): a sliding window of
  single-request reads per stream, each copied once into the part buffer.
* As a destination, parts are written at their offsets (a sliding window of
  write requests) into a temporary name beside the target, which is renamed
  into place (``posix-rename@openssh.com`` where offered, so an existing file
  is replaced atomically) once every part is there. All writers share one SSH
  connection: partner servers often cap connections per user. A failure that
  may pass keeps the temporary file for the journal: the same command run
  again reads the journaled parts back, checks their checksums and writes
  only the rest (as for local files). A full disk is not such a failure
  (OpenSSH reports ENOSPC as a bare failure: ``statvfs@openssh.com`` tells).
* Listings use bytes paths, so one name that is not UTF-8 cannot stop them;
  names are checked (:func:`_walk`), and a tree is never written through a
  symbolic link to a folder inside its destination (:meth:`SftpSink._confine`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import posixpath
import shlex
import socket
import stat as statmod
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import cast

import asyncssh

from s3ferry.core.checksums import Algorithm, PartDigest
from s3ferry.core.errors import (
    AuthError,
    HostKeyError,
    IntegrityError,
    NotFoundError,
    PermissionError_,
    S3FerryError,
    SourceChangedError,
    TransferError,
    UnreachableError,
    UsageError,
)
from s3ferry.core.options import SftpOptions
from s3ferry.core.storage import (
    Completed,
    Entry,
    Features,
    ListedPart,
    Part,
    Receipt,
    Stat,
    UploadInfo,
    below_root,
    check_partial_id,
    is_partial_of,
    no_space,
    part_etag,
    partial_name,
    read_back,
    tree_root,
)
from s3ferry.core.units import human_bytes
from s3ferry.core.urls import Location, UnsafeName
from s3ferry.core.verification import StoredCheck

_Conn = tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]

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
_SERVER_WINDOW = 2 * _MiB
#: From this round trip on (seconds), readers share one connection rather than open one each.
_SHARE_RTT = 0.01
#: Reads of at most this many bytes share an open connection on any round trip (see ``_checkout_shared``)
_SHORT_READ = 1024 * 1024
#: Sessions per connection at most (OpenSSH's MaxSessions is 10 by default; refusals are backed off).
_MAX_SESSIONS = 8
#: connections to one server on a short round trip (each is an sshd process; OpenSSH's MaxStartups
#: starts refusing at 10 unauthenticated ones)
_MAX_CONNECTIONS = 8
#: folder listings at once while a tree is walked
_LISTINGS = 16

# AES-GCM costs ~30% less CPU than asyncssh's default chacha20-poly1305 (measured
# here); OpenSSH offers both, so put GCM first and keep the rest as fallbacks.
_PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _cipher_order() -> list[str]:
    from asyncssh.encryption import get_default_encryption_algs

    default = [alg.decode() for alg in get_default_encryption_algs()]
    return [c for c in _PREFERRED_CIPHERS if c in default] + [c for c in default if c not in _PREFERRED_CIPHERS]


class _TrustingClient(asyncssh.SSHClient):
    """Records the host key offered, and the name it was looked up as; accepts it only when it matches the pin.

    asyncssh asks only after known_hosts did not vouch for the key, with the name it looked up there
    (``HostKeyAlias`` or the host after ``HostName``), the peer's address and the port.
    """

    def __init__(self, pinned: str | None) -> None:
        self.pinned = pinned
        self.offered: asyncssh.SSHKey | None = None
        self.looked_up: tuple[str, str, int] = ("", "", 22)

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.offered = key
        self.looked_up = (host, addr, port)
        return self.pinned is not None and key.get_fingerprint("sha256") == self.pinned

    # What the server offered for authentication, for the message of a failure: asyncssh asks the client for
    # a key once its own keys are all refused (or it has none), and for a password when it was given none.
    # Both answers stay asyncssh's defaults (None: nothing more to try).
    conn: asyncssh.SSHClientConnection | None = None
    methods: tuple[str, ...] = ()

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn

    def _note_methods(self) -> None:
        if self.conn is not None and not self.methods:
            self.methods = tuple(self.conn.get_server_auth_methods())

    def public_key_auth_requested(self) -> None:
        self._note_methods()

    def password_auth_requested(self) -> None:
        self._note_methods()


def _key_label(pair: asyncssh.SSHKeyPair) -> str:
    """A loaded key as a failure names it: its file's name (asyncssh shows a key's comment, else its file)."""
    comment = pair.get_comment() or pair.get_algorithm()
    return Path(comment).name if "/" in comment else comment


log = logging.getLogger("s3ferry")


#: why an SFTP path is most often "not found" (doctor gives the same advice)
PATH_HINT = "the path in an sftp:// URL is absolute: sftp://host/home/me/x, not ~/x or x"


def translate_error(exc: BaseException, where: str) -> S3FerryError:
    """Map asyncssh / OS errors on an open connection to the s3ferry tree."""
    if isinstance(exc, (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)):
        return TransferError(f"SFTP connection lost at {where}: {exc.reason}")
    if isinstance(exc, asyncssh.SFTPNoSuchFile):
        missing = NotFoundError(f"source not found: {where}")
        missing.hint = PATH_HINT
        return missing
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return PermissionError_(f"permission denied: {where}")
    if isinstance(exc, asyncssh.SFTPError):
        return TransferError(f"SFTP error at {where}: {exc.reason}")
    if isinstance(exc, (asyncssh.DisconnectError, asyncssh.ConnectionLost, asyncssh.ChannelOpenError)):
        return TransferError(f"SFTP connection lost at {where}: {exc.reason}")
    if isinstance(exc, (OSError, asyncio.TimeoutError, EOFError)):
        return TransferError(f"SFTP connection lost at {where}: {exc or type(exc).__name__}")
    raise exc


#: one request of a sliding window: (position in the range, length) -> how many bytes it handled (1..length)
Request = Callable[[int, int], Awaitable[int]]


async def sliding_window(total: int, block: int, window: int, request: Request) -> None:
    """Cover ``[0, total)`` with requests of at most ``block`` bytes, ``window`` in flight, lowest positions first.

    The one window of parallel reads and writes (as asyncssh's ``_SFTPParallelIO``
    serves its readers, writers and copiers). A request that handles fewer
    bytes than asked (a short read, legal in SFTP) is followed by one for the
    rest. The first failure stops the window: the requests in flight are
    cancelled and every outcome is collected, so no failed sibling is left
    unretrieved.
    """
    running: dict[asyncio.Future[int], tuple[int, int]] = {}
    rest: list[tuple[int, int]] = []  # the remainders of short requests: asked again before new blocks
    pos = 0
    try:
        while pos < total or rest or running:
            while len(running) < window and (rest or pos < total):
                if rest:
                    start, length = rest.pop()
                else:
                    start, length = pos, min(block, total - pos)
                    pos += length
                running[asyncio.ensure_future(request(start, length))] = (start, length)
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                start, length = running.pop(task)
                got = task.result()  # the first failure stops the window
                if got < length:
                    rest.append((start + got, length - got))
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)


class SftpReader:
    """Reads ranges through one SFTP session with a sliding window of requests."""

    def __init__(self, file: asyncssh.SFTPClientFile, where: str, block: int, window: int) -> None:
        self._file, self._where, self._block, self._window = file, where, block, window

    async def read_into(self, offset: int, buf: memoryview) -> None:
        async def one(pos: int, length: int) -> int:
            data: bytes = await self._file.read(length, offset + pos)
            if not data:
                raise SourceChangedError(f"{self._where} became shorter while it was being read")
            buf[pos : pos + len(data)] = data  # the one copy: into the part buffer
            return len(data)

        try:
            await sliding_window(len(buf), self._block, self._window, one)
        except (TimeoutError, asyncssh.Error, OSError, EOFError) as exc:
            raise translate_error(exc, self._where) from exc


_DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")


def _jump_address(jump: str) -> tuple[str, int]:
    """``[user@]host[:port]`` (the first hop of ``a,b``) -> (host, port)."""
    hop = jump.split(",", 1)[0].rpartition("@")[2]
    if hop.startswith("["):  # [v6 address]:port
        host, _, rest = hop[1:].partition("]")
        return host, int(rest[1:]) if rest[1:].isdigit() else 22
    host, _, port = hop.partition(":")
    return host, int(port) if port.isdigit() else 22


@dataclass(frozen=True)
class SshTarget:
    """Where :meth:`SftpEndpoint.connect` really goes, once ``~/.ssh/config`` is applied."""

    host: str  #: after HostName
    port: int  #: after Port
    via: str | None  #: "ProxyJump …" or "ProxyCommand …" when the host is not reached directly
    known_hosts: tuple[Path, ...]  #: the files its host key is looked up in (none when a key is pinned)


@dataclass(frozen=True)
class _KeyLookup:
    """A host key check as asyncssh made it: known_hosts lines for ``name`` (HostKeyAlias, or the host
    after HostName) or the peer's address, written ``[name]:port`` (or bare, also tried) in ``files``."""

    host: str  # the host reached, for ssh-keyscan
    port: int
    name: str
    addr: str
    files: tuple[Path, ...]

    def patterns(self) -> list[str]:
        """The names known_hosts lines may carry for this check, the most specific first."""
        found: list[str] = []
        for name in dict.fromkeys(n for n in (self.name, self.addr) if n):
            found += [f"[{name}]:{self.port}", name] if self.port != 22 else [name]
        return found

    def entry(self) -> tuple[str, Path] | None:
        """The first (pattern, file) with a key recorded for this host: its key has changed."""
        for path in self.files:
            try:
                known = asyncssh.import_known_hosts(path.expanduser().read_text())
            except (OSError, ValueError, asyncssh.Error):
                continue  # unreadable or damaged: asyncssh did not take a key from it either
            for pattern in self.patterns():
                # Matched as written, port included: one pattern per call (match() would also try bare names)
                if known.match(pattern, "", None)[0]:
                    return pattern, path
        return None


def _shown(path: Path) -> str:
    """A known_hosts path as a shell command line takes it."""
    return "~/.ssh/known_hosts" if path.expanduser() == _DEFAULT_KNOWN_HOSTS.expanduser() else shlex.quote(str(path))


def _unverified_key_error(who: str, lookup: _KeyLookup, offered: str | None = None) -> HostKeyError:
    """Unknown or changed, with the command that fixes it (as OpenSSH words it).

    A changed key is never answered with "add the new one": that would trust an impostor beside the
    real key. It is removed (``ssh-keygen -R``) only once the change is known to be expected.
    """
    found = lookup.entry()
    if found:
        pattern, path = found
        now = f"it now offers {offered}, " if offered else ""
        return HostKeyError(
            f"REMOTE HOST IDENTIFICATION HAS CHANGED for {who}: {now}not the key {_shown(path)} holds for "
            f"{pattern}. Someone may be intercepting the connection, or the server's key was replaced: ask its "
            f"administrators; only if the change is expected, remove the old key with "
            f"`ssh-keygen -R {shlex.quote(pattern)} -f {_shown(path)}` and connect again")
    pin = f"pin it with --host-key {offered}" if offered else "pin it with --host-key"
    if not lookup.files:
        return HostKeyError(f"host key of {who} is not known ({offered}) and no known_hosts file is read "
                            f"(UserKnownHostsFile none); {pin}")
    keyscan = f"ssh-keyscan -p {lookup.port} {lookup.host}" if lookup.port != 22 else f"ssh-keyscan {lookup.host}"
    if lookup.name != lookup.host:  # HostKeyAlias: the line must carry the name that is looked up
        keyscan += f" | sed 's/^[^ ]*/{lookup.patterns()[0]}/'"
    fix = f"check it, then add it with `{keyscan} >> {_shown(lookup.files[0])}`"
    if offered:
        return HostKeyError(f"host key of {who} is not known ({offered}); {fix} or {pin}")
    return HostKeyError(f"host key of {who} is not known; {fix}")


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
    pairs: list[_Conn] = field(default_factory=list)
    turn: int = 0
    #: archive folders made (or found) this run (see :meth:`SftpSource.archive`)
    archives: set[str] = field(default_factory=set)
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


@dataclass
class _Folders:
    """The folders of one tree's destination, shared by its files (see :meth:`SftpSink._confine`)."""

    checked: set[str] = field(default_factory=set)  #: seen to be real folders (the root: there or made)
    made: set[str] = field(default_factory=set)  #: made by this run
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)  #: one per folder being looked at

    def lock(self, folder: str) -> asyncio.Lock:
        return self.locks.setdefault(folder, asyncio.Lock())


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
        self._idle: list[_Conn] = parent._idle if parent else []
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
            "encryption_algs": _cipher_order(),
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
        client = _TrustingClient(pinned)
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
            keys = [_key_label(pair) for pair in opts.client_keys or ()]
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
        wanted = math.ceil(_in_flight(self._link.rtt, 0, _MAX_SESSIONS * _SERVER_WINDOW) / (_SERVER_WINDOW * 3 / 4))
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
        return (_DEFAULT_KNOWN_HOSTS.expanduser(),)

    def _endpoint(self) -> str:
        user = f"{self.location.user}@" if self.location.user else ""
        return f"{user}{self.location.host}:{self.location.port or 22}"

    async def _host_key_error(self, client: _TrustingClient) -> HostKeyError:
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
        return _unverified_key_error(who, _KeyLookup(target.host, port, name, addr, target.known_hosts), offered)

    def _jump_host_key_error(self) -> HostKeyError:
        """The jump host is checked against ~/.ssh/known_hosts, like OpenSSH's ProxyJump."""
        if not self.options.jump:
            return HostKeyError("host key of the jump host (ProxyJump in ~/.ssh/config) is not known or has "
                                "changed; check it, then fix its entry in ~/.ssh/known_hosts")
        host, port = _jump_address(self.options.jump)
        lookup = _KeyLookup(host, port, host, "", (_DEFAULT_KNOWN_HOSTS.expanduser(),))
        return _unverified_key_error(f"jump host {host}:{port}", lookup)

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

    async def _checkout(self) -> _Conn:
        """A connection to use, returned with :meth:`_checkin` (not when it failed); see :meth:`_checkout_now`."""
        await self._warmed()
        return await self._checkout_now()

    async def _checkout_now(self) -> _Conn:
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

    async def _checkout_shared(self) -> _Conn:
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

    def _shared_pair(self) -> _Conn | None:
        """The one connection every use shares across a long round trip (None: not that, or none open)."""
        if self._shares():
            for conn, sftp in self._idle:
                if not conn.is_closed():
                    return conn, sftp
        return None

    def _checkin(self, pair: _Conn) -> None:
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


class SftpSource(SftpEndpoint):
    # change_window: SFTP (version 3, what OpenSSH speaks) has whole-second mtimes, and the server's
    # clock may differ a little from ours
    features = Features(ranged_reads=True, listing=True, listing_is_stat=True, archiving=True, change_window=2.0,
                        connects_ahead=True)

    def child(self, path: str) -> SftpSource:
        return SftpSource(self.location.with_path(path), self.options, self._block, self._window, parent=self)

    async def stat(self) -> Stat:
        conn, sftp = await self._checkout_shared()
        try:
            attrs = await sftp.stat(self.location.path)
        except (asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self.where) from exc
        self._checkin((conn, sftp))
        if attrs.permissions is not None and statmod.S_ISDIR(attrs.permissions):
            raise UsageError(f"{self.where} is a directory (use cp -r to copy a folder)")
        return Stat(size=attrs.size or 0, mtime=float(attrs.mtime) if attrs.mtime is not None else None)

    async def stored_check(self) -> StoredCheck | None:
        return None  # SFTP (version 3) has no checksum request OpenSSH answers

    @asynccontextmanager
    async def reader(self, length: int | None = None) -> AsyncIterator[SftpReader]:
        """A reader of the file, on a connection of its own, or one shared by all readers when the round trip
        is long (see :meth:`_checkout`); a short read (``length`` at most :data:`_SHORT_READ`) shares an open
        one whatever the round trip."""
        short = length is not None and length <= _SHORT_READ
        conn, sftp = await (self._checkout_shared() if short else self._checkout())
        await self._measured()  # the requests in flight are sized from the round trip
        block = self._read_block(sftp)
        try:
            file = await sftp.open(self.location.path, "rb", block_size=0)
        except (asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self.where) from exc
        healthy = True
        try:
            yield SftpReader(file, self.where, block, self.read_window(block))
        except BaseException:
            healthy = False
            raise
        finally:
            if healthy:
                self._close_later(file, (conn, sftp))
                self._checkin((conn, sftp))
            else:
                self._drop((conn, sftp))

    def _close_later(self, file: asyncssh.SFTPClientFile, pair: _Conn) -> None:
        """Close a file read in full without waiting for the answer: the next request on the connection
        (the stat that checks the source did not change) goes right behind it, one round trip less per
        file. A close that fails drops the connection (the bytes were read: the copy goes on)."""
        closing = asyncio.ensure_future(_close_quietly(file))
        self._link.closing.add(closing)
        closing.add_done_callback(partial(self._closed, pair))

    def _closed(self, pair: _Conn, closing: asyncio.Future[bool]) -> None:
        self._link.closing.discard(closing)
        if closing.cancelled() or not closing.result():
            self._drop(pair)

    def _drop(self, pair: _Conn) -> None:
        """A connection that failed: closed, and not lent again (its other users fail too, and get a new one)."""
        if pair in self._idle:
            self._idle.remove(pair)
        pair[0].abort()

    async def list_folder(self) -> AsyncIterator[Entry]:
        conn, sftp = await self._checkout_shared()
        try:
            entries = await _list_folder(sftp, self.location.path.rstrip("/") or "/")
        except (asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self.where) from exc
        self._checkin((conn, sftp))
        for entry in entries:
            yield entry

    async def archive(self, path: str, folder: str) -> str:
        parent, name = posixpath.split(path)
        target = posixpath.join(parent, folder, name)
        conn, sftp = await self._checkout_shared()
        try:
            await self._archive_folder(sftp, posixpath.join(parent, folder))
            now = time.time()
            # The time (retention counts from archiving, not from the file's mtime) is set by a request sent
            # right behind the move's, a round trip for both: a server answers one session's requests in order
            moving = asyncio.ensure_future(_replace(sftp, path, target))
            stamping = asyncio.ensure_future(sftp.utime(target, (now, now)))
            try:
                atomic = await moving
            finally:
                stamped = (await asyncio.gather(stamping, return_exceptions=True))[0]
            if not atomic or isinstance(stamped, BaseException):
                await sftp.utime(target, (now, now))  # moved in several requests (no posix-rename): stamped now
        except (asyncssh.Error, OSError) as exc:
            raise translate_error(exc, f"{self.where} (archiving {path})") from exc
        self._checkin((conn, sftp))
        return target

    async def _archive_folder(self, sftp: asyncssh.SFTPClient, archive: str) -> None:
        """The archive folder beside a file (its parent exists: the file was listed in it), created once per
        run: ``makedirs`` would stat every level from ``/`` for every file, a round trip each."""
        if archive in self._link.archives:
            return
        try:
            await sftp.mkdir(archive)
        except (asyncssh.SFTPFailure, asyncssh.SFTPFileAlreadyExists):
            # OpenSSH answers a plain failure when it exists (made by an earlier run, or a sibling file now)
            if not await sftp.isdir(archive):
                raise
        self._link.archives.add(archive)

    async def remove(self, path: str) -> None:
        conn, sftp = await self._checkout_shared()
        try:
            await sftp.remove(path)
        except asyncssh.SFTPNoSuchFile:
            pass  # gone already
        except (asyncssh.Error, OSError) as exc:
            raise translate_error(exc, f"{self.where} (removing {path})") from exc
        self._checkin((conn, sftp))

    async def walk(self) -> AsyncIterator[Entry]:
        conn, sftp = await self._checkout_shared()
        top = self.location.path.rstrip("/") or "/"
        try:
            entries = await _walk(sftp, top, self.where)
        except S3FerryError as exc:
            # Looked at only now, a round trip less for every tree: a file there says it in plainer words
            if await self._is_file(sftp, top):  # OpenSSH answers "no such file" for a file too
                raise UsageError(f"{self.where} is not a directory") from exc
            raise
        self._checkin((conn, sftp))
        for entry in entries:
            yield entry


    async def _is_file(self, sftp: asyncssh.SFTPClient, path: str) -> bool:
        try:
            attrs = await sftp.stat(path)
        except (asyncssh.Error, OSError):
            return False  # the listing's own error says more
        return attrs.permissions is not None and not statmod.S_ISDIR(attrs.permissions)


async def _replace(sftp: asyncssh.SFTPClient, old: str, new: str) -> bool:
    """Rename ``old`` to ``new``, replacing ``new``: atomically (True) where posix-rename@openssh.com is
    offered, else in three requests (False)."""
    try:
        await sftp.posix_rename(old, new)
        return True
    except asyncssh.SFTPOpUnsupported:
        # Plain SFTP rename refuses to replace: remove the old file first.
        if await sftp.exists(new):
            await sftp.remove(new)
        await sftp.rename(old, new)
        return False


async def _close_quietly(file: asyncssh.SFTPClientFile) -> bool:
    """Close a remote file after the reads succeeded; False if the connection died meanwhile.

    The data was already read in full, so a connection lost at this point is
    not the transfer's failure: the connection is just not reused.
    """
    try:
        await file.close()
    except (TimeoutError, asyncssh.Error, OSError):
        return False
    return True


def _raw(path: str) -> bytes:
    """A path as the bytes SFTP sends (the inverse of :func:`_text`)."""
    return path.encode("utf-8", "surrogateescape")


def _text(raw: bytes) -> str:
    """A name from the server as text; bytes that are not UTF-8 become surrogates, as Python lists local names."""
    return raw.decode("utf-8", "surrogateescape")


def _not_a_name(raw: bytes) -> str | None:
    """Why a name from a folder listing cannot be one file's name (the server is hostile or broken), or None."""
    if raw == b"":
        return "the listing gives a file an empty name"
    if raw in (b".", b".."):
        return "'.' and '..' name folders, never a file"
    if b"/" in raw:
        return "a name in a folder listing cannot hold '/'"
    if b"\0" in raw:
        return "a name cannot hold NUL"
    return None


async def _listing(sftp: asyncssh.SFTPClient, folder: bytes, rel: str) -> list[tuple[Entry, bool]]:
    """One folder's files and folders as ``(entry, is a folder)``, sorted; links and specials are skipped.

    Folders are listed by bytes paths: given a str, asyncssh decodes every name
    strictly, and one name that is not UTF-8 would stop the whole listing. Such
    a name reaches :func:`~s3ferry.urls.safe_relative` surrogate-escaped and is
    refused there by name while the others go on. A name that cannot be one
    file's (see :func:`_not_a_name`) comes as an :class:`UnsafeName` file,
    never as a folder to follow.
    """
    names = sorted([n async for n in sftp.scandir(folder)], key=lambda n: cast(bytes, n.filename))
    found: list[tuple[Entry, bool]] = []
    for name in names:
        raw = cast(bytes, name.filename)  # bytes: the folder was given as bytes
        mode = name.attrs.permissions or 0
        if not (statmod.S_ISDIR(mode) or statmod.S_ISREG(mode)):
            continue  # links, specials, entries without a type
        if raw in (b".", b"..") and statmod.S_ISDIR(mode):
            continue  # the folder itself and its parent
        path = f"{rel}/{_text(raw)}" if rel else _text(raw)
        mtime = float(name.attrs.mtime) if name.attrs.mtime is not None else None
        problem = _not_a_name(raw)
        if problem is not None:
            found.append((Entry(UnsafeName(path, problem), name.attrs.size or 0, mtime), False))
        else:
            found.append((Entry(path, name.attrs.size or 0, mtime), statmod.S_ISDIR(mode)))
    return found


async def _walk(sftp: asyncssh.SFTPClient, top: str, where: str) -> list[Entry]:
    """Regular files below the folder ``top``, depth first, sorted (see :func:`_listing`); errors as
    :func:`translate_error` words them for ``where``.

    The subfolders of a folder are listed at the same time (:data:`_LISTINGS` at most): a listing costs
    ~3 round trips (open, read, close), which one after another would dominate a WAN tree's copy.
    """
    try:
        return await _walk_below(sftp, _raw(top), "", asyncio.Semaphore(_LISTINGS))
    except (asyncssh.Error, OSError) as exc:
        raise translate_error(exc, where) from exc
    except BaseExceptionGroup as group:  # a listing below failed: its error, as one listing's would be
        first = _first_leaf(group)
        if isinstance(first, (asyncssh.Error, OSError)):
            raise translate_error(first, where) from first
        raise first from None


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a (nested) group of failed tasks."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


async def _walk_below(sftp: asyncssh.SFTPClient, top: bytes, rel: str, slots: asyncio.Semaphore) -> list[Entry]:
    async with slots:  # held for the one listing only: the subfolders below wait for slots of their own
        listed = await _listing(sftp, posixpath.join(top, _raw(rel)) if rel else top, rel)
    async with asyncio.TaskGroup() as group:
        below = iter([group.create_task(_walk_below(sftp, top, entry.path, slots))
                      for entry, folder in listed if folder])
    found: list[Entry] = []
    for entry, folder in listed:
        found += next(below).result() if folder else [entry]
    return found


async def _list_folder(sftp: asyncssh.SFTPClient, folder: str) -> list[Entry]:
    """Regular files directly in ``folder`` (a glob's folder), as :func:`_walk` sees them."""
    return [entry for entry, is_folder in await _listing(sftp, _raw(folder), "") if not is_folder]


class SftpWriter:
    """Parts written at their offsets into a temporary file, renamed into place on completion.

    ``upload_id`` is the temporary file's name (in the destination's folder),
    which the journal keeps: a resumed attempt reads the journaled parts back
    and checks them (:meth:`list_parts`) before it trusts them.
    """

    def __init__(self, sink: SftpSink, temp: str | None, algorithm: Algorithm | None,
                 size: int | None = None, created: asyncssh.SFTPClientFile | None = None) -> None:
        self._sink, self._temp, self.algorithm = sink, temp, algorithm
        self._final = sink.location.path
        self.size = size  # what the file must hold before it is renamed into place (None: unknown)
        self.upload_id = posixpath.basename(temp) if temp is not None else None
        #: the temporary file opened in each write session, for every part (None: not open)
        self._files: list[asyncssh.SFTPClientFile] | None = None
        self._opening = asyncio.Lock()
        #: the handle that created the file (in the first session), the first of :attr:`_files`
        self._created = created
        #: handles dropped after a failed write: closed at the end all the same (an open handle keeps a
        #: removed file's blocks on the server's disk)
        self._dropped: list[asyncssh.SFTPClientFile] = []

    @property
    def partial(self) -> str | None:
        """The temporary file a kept attempt leaves, as a URL (what the user may delete instead of resuming)."""
        return str(self._sink.location.with_path(self._temp)) if self._temp is not None else None

    def _temp_path(self) -> str:
        if self._temp is None:
            raise NotFoundError(f"no earlier attempt to continue for {self._sink.where}")
        return self._temp

    async def write_part(self, part: Part, data: memoryview, digest: PartDigest | None) -> Receipt:
        """The part's write requests, dealt over the sink's sessions: each session's server window holds only
        2 MiB in flight (OpenSSH), so across a long round trip one session would cap the rate."""
        sftp, temp = await self._sink._shared(), self._temp_path()
        # OpenSSH's sftp-server drops the session on a request above its limit (256 KiB in all).
        block = min(self._sink.block, sftp.limits.max_write_len or self._sink.block)
        files: list[asyncssh.SFTPClientFile] = []
        try:
            files = await self._open_files(temp)
            slots, count = self._sink.write_slots()
            turn = part.number % len(files)  # parts in flight together start in different sessions
            await sliding_window(len(data), block, count,
                                 partial(_write, files[turn:] + files[:turn], slots, block, part.offset, data))
        except (TimeoutError, asyncssh.Error, OSError, EOFError) as exc:
            if self._files is files:
                self._files, self._dropped = None, self._dropped + files  # a retry opens them again
            full = await _out_of_space(sftp, exc, temp, block, self._sink)
            raise (full or translate_error(exc, self._sink.where)) from exc
        return Receipt(part.number, part_etag(digest), digest)

    async def _open_files(self, temp: str) -> list[asyncssh.SFTPClientFile]:
        """The temporary file open in the write sessions (all at once: one round trip), kept for every part.

        A file smaller than a server window needs one session: the handle that created it, if it is still open.
        """
        async with self._opening:
            if self._files is None:
                sessions = await self._sink.write_sessions()
                if self.size is not None:
                    sessions = sessions[: max(1, -(-self.size // _SERVER_WINDOW))]
                created, self._created = self._created, None
                if created is not None:  # opened in the first session (the one _shared() returns)
                    self._files = [created, *await _open_everywhere(sessions[1:], temp)]
                else:
                    self._files = await _open_everywhere(sessions, temp)
            return self._files

    def _take_files(self) -> list[asyncssh.SFTPClientFile]:
        """Every handle on the temporary file in use (they are closed by the caller)."""
        files, self._files, created, self._created = self._files or [], None, self._created, None
        return files + ([created] if created is not None else [])

    async def _close_dropped(self) -> None:
        dropped, self._dropped = self._dropped, []
        if dropped:
            with suppress(TimeoutError, asyncssh.Error, OSError):  # mostly on a connection that is gone
                await _close_all(dropped)

    async def complete(self, receipts: Sequence[Receipt], whole: str | None) -> Completed:
        sftp, temp = await self._sink._shared(), self._temp_path()
        try:
            await self._close_dropped()
            attrs = await self._close_stat_and_stamp(sftp, temp)
            if self.size is not None and attrs.size != self.size:
                # Checked before the rename: a wrong file never replaces the one already there.
                raise IntegrityError(f"the partial file {self.partial} holds {attrs.size} bytes, not {self.size}; "
                                     f"{self._sink.where} was left as it was")
            await self._rename(sftp, temp)
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self._sink.where) from exc
        return Completed(size=attrs.size or 0, checksum=None)

    async def _close_stat_and_stamp(self, sftp: asyncssh.SFTPClient, temp: str) -> asyncssh.SFTPAttrs:
        """The temporary file closed, its attributes, and the source's mtime set on it: together, one round
        trip. Every write was answered before this, so the size seen is the whole file's."""
        mtime = self._sink.mtime
        stamp = sftp.utime(temp, (mtime, mtime)) if mtime is not None else asyncio.sleep(0)
        closed, attrs, stamped = await asyncio.gather(_close_all(self._take_files()), sftp.stat(temp), stamp,
                                                      return_exceptions=True)
        for outcome in (closed, attrs, stamped):
            if isinstance(outcome, BaseException):
                raise outcome
        assert isinstance(attrs, asyncssh.SFTPAttrs)
        return attrs

    async def _rename(self, sftp: asyncssh.SFTPClient, temp: str) -> None:
        """The finished file into place; a folder there (not looked for before: a round trip per file) is
        explained rather than reported as the server's bare failure."""
        try:
            await _replace(sftp, temp, self._final)
        except asyncssh.SFTPFailure as exc:
            attrs = await self._sink._stat(sftp)
            if attrs is not None and attrs.permissions is not None and statmod.S_ISDIR(attrs.permissions):
                raise _folder_in_the_way(self._sink.where) from exc
            raise

    def unverified(self) -> str | None:
        return None  # a file checks nothing itself: the engine compares the bytes before complete()

    async def read_into(self, offset: int, buf: memoryview) -> None:
        """Bytes already written (a resumed copy replays its stored parts through an in-order check)."""
        sftp, temp = await self._sink._shared(), self._temp_path()
        block = min(self._sink.block, sftp.limits.max_read_len or self._sink.block)
        try:
            async with sftp.open(temp, "rb", block_size=0) as file:
                await SftpReader(file, self.partial or temp, block, self._sink.window).read_into(offset, buf)
        except SourceChangedError as exc:
            raise TransferError(f"the partial file {self.partial} is shorter than the journal says",
                                retryable=False) from exc
        except (TimeoutError, asyncssh.Error, OSError, EOFError) as exc:
            raise translate_error(exc, self._sink.where) from exc

    async def abort(self) -> None:
        await self._close_dropped()
        files = self._take_files()
        if files:
            with suppress(TimeoutError, asyncssh.Error, OSError):  # the file is removed anyway
                await _close_all(files)
        if self._temp is not None:
            await self._remove(self._temp)

    async def discard(self) -> None:
        await self._remove(self._final)

    async def _remove(self, path: str) -> None:
        sftp = await self._sink._shared()
        try:
            await sftp.remove(path)
        except asyncssh.SFTPNoSuchFile:
            pass  # already gone: nothing is left behind, which is the point
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self._sink.where) from exc

    async def list_parts(self, expected: Sequence[Part] = ()) -> dict[int, ListedPart]:
        """The ``expected`` parts as the temporary file holds them: read back, each with its checksum as ETag."""
        sftp, temp = await self._sink._shared(), self._temp_path()
        if self.algorithm is None:
            return {}  # nothing to check the bytes against: the journal's parts are not trusted
        found: dict[int, ListedPart] = {}
        try:
            async with sftp.open(temp, "rb", block_size=0) as file:
                block = min(self._sink.block, sftp.limits.max_read_len or self._sink.block)
                reader = SftpReader(file, self._sink.where, block, self._sink.window)
                for part in expected:
                    found[part.number] = await self._read_back(reader, part)
        except asyncssh.SFTPNoSuchFile as exc:
            raise TransferError(f"the partial file {self.partial} is gone", code="NoSuchUpload",
                                retryable=False) from exc
        except (TimeoutError, asyncssh.Error, OSError, EOFError) as exc:
            raise translate_error(exc, self._sink.where) from exc
        return found

    async def _read_back(self, reader: SftpReader, part: Part) -> ListedPart:
        assert self.algorithm is not None
        buf = bytearray(part.length)  # one part at a time: a file destination's parts are small (max_memory / 4)
        try:
            await reader.read_into(part.offset, memoryview(buf))
        except SourceChangedError:
            return ListedPart(part.number, 0, "")  # the file ends before this part: not stored
        return await asyncio.to_thread(read_back, part.number, buf, self.algorithm)


async def _out_of_space(sftp: asyncssh.SFTPClient, exc: BaseException, path: str, block: int,
                        sink: SftpSink) -> TransferError | None:
    """The no-space error when a failed write is explained by a full file system, else None.

    OpenSSH's sftp-server reports ENOSPC only as a generic SSH_FX_FAILURE, so
    the file system is asked (``statvfs@openssh.com``) whether one more write
    request would have fit. Without the extension the plain failure stands.
    """
    if not isinstance(exc, (asyncssh.SFTPFailure, asyncssh.SFTPNoSpaceOnFilesystem, asyncssh.SFTPQuotaExceeded)):
        return None
    try:
        vfs = await sftp.statvfs(posixpath.dirname(path) or ".")
    except (TimeoutError, asyncssh.Error, OSError):
        return None  # no statvfs@openssh.com, or the session is gone too
    free = vfs.bavail * (vfs.frsize or vfs.bsize)
    if free >= block and isinstance(exc, asyncssh.SFTPFailure):
        return None  # room for the request: not why it failed
    return no_space(sink.where, free, sink.size)


async def _open_everywhere(sessions: Sequence[asyncssh.SFTPClient], path: str) -> list[asyncssh.SFTPClientFile]:
    """``path`` opened for writing in every session at once (one round trip)."""
    opened = await asyncio.gather(*(s.open(path, "r+b", block_size=0) for s in sessions), return_exceptions=True)
    files = [f for f in opened if isinstance(f, asyncssh.SFTPClientFile)]
    for outcome in opened:
        if isinstance(outcome, BaseException):
            with suppress(TimeoutError, asyncssh.Error, OSError):  # the failure that matters is raised below
                await _close_all(files)
            raise outcome
    return files


async def _close_all(files: Sequence[asyncssh.SFTPClientFile]) -> None:
    closed = await asyncio.gather(*(f.close() for f in files), return_exceptions=True)
    for outcome in closed:
        if isinstance(outcome, BaseException):
            raise outcome


async def _write(files: Sequence[asyncssh.SFTPClientFile], slots: asyncio.Semaphore, block: int, offset: int,
                 data: memoryview, pos: int, length: int) -> int:
    """One write request of a part (``data`` at ``offset``): its block at ``pos``, in the next session."""
    async with slots:
        # A view, not a copy: asyncssh packs it into the request (one copy, made when the request is sent);
        # the part buffer outlives the request (write_part waits for every answer).
        block_view = data[pos : pos + length]
        return await files[(pos // block) % len(files)].write(block_view, offset + pos)  # type: ignore[type-var]  # asyncssh takes any buffer


def _folder_in_the_way(where: str) -> UsageError:
    return UsageError(f"{where} is a directory; end the destination with / to copy into it")


def _utc(mtime: int | None) -> datetime | None:
    return datetime.fromtimestamp(mtime, UTC) if mtime is not None else None


class SftpSink(SftpEndpoint):
    """An SFTP file as the destination (see the module docstring)."""

    features = Features(offset_writes=True, resumable=True, connects_ahead=True)

    @property
    def block(self) -> int:
        return self._block

    @property
    def window(self) -> int:
        return self._window

    def __init__(self, location: Location, options: SftpOptions, block: int = 256 * 1024, window: int = 16,
                 parent: SftpSink | None = None) -> None:
        super().__init__(location, options, block, window, parent)
        self.mtime: float | None = None
        self.size: int | None = None  # the source's, for a message when the disk is full
        #: what :meth:`existing` found (None in the tuple: nothing), until :meth:`prepare` takes it
        self._seen: tuple[asyncssh.SFTPAttrs | None] | None = None
        #: the destination folder of a tree (None: a file the user named); see :meth:`_confine`
        self._root: str | None = None
        #: the folders of the tree seen to be real folders (the root: made), shared by the files of one tree
        self._folders = _Folders()
        if parent is not None:
            self._root = parent._root if parent._root is not None else tree_root(parent.location.path, location.path)
            self._folders = parent._folders

    def note_source(self, stat: Stat) -> None:
        self.mtime, self.size = stat.mtime, stat.size

    async def existing(self) -> Stat | None:
        sftp = await self._shared()
        await self._confine(sftp, create=False)
        attrs = await self._stat(sftp)
        self._seen = (attrs,)  # prepare(), which comes next, needs no round trip of its own
        if attrs is None:
            return None
        if attrs.permissions is not None and not statmod.S_ISREG(attrs.permissions):
            return None
        return Stat(size=attrs.size or 0, mtime=float(attrs.mtime) if attrs.mtime is not None else None)

    async def sizes_below(self) -> dict[str, int]:
        """Every file below this folder by relative path, listed once for a tree ({} when the folder is not
        there): a stat per file would cost a round trip each across a WAN."""
        sftp = await self._shared()
        top = self.location.path.rstrip("/") or "/"
        try:
            return {entry.path: entry.size for entry in await _walk(sftp, top, self.where)}
        except NotFoundError:
            return {}  # nothing there yet (or a folder removed while it was listed): what is copied is new

    def child(self, path: str) -> SftpSink:
        return SftpSink(self.location.with_path(path), self.options, self._block, self._window, parent=self)

    async def _confine(self, sftp: asyncssh.SFTPClient, create: bool) -> None:
        """Refuse a symbolic link among the folders between the tree's root and this file; create missing ones.

        A link planted in the destination tree (the partner's server, a shared
        inbound folder) would lead the write outside the destination. Only
        folders below the root the user gave are checked: links in the path
        they typed are their choice. Each folder is looked at (``lstat``)
        before anything is created in it, and a missing one is created with
        ``mkdir`` (which never follows a link) and looked at again, so a
        sibling file creating it meanwhile is fine. Verdicts are cached for the
        tree's other files.

        Limits (time of check to time of use): SFTP has no handle-relative
        operations, so a folder swapped for a link after it was checked is
        written through. This stops links present when the tree is copied; a
        server that lies about its folders can write anywhere on its own disks
        anyway.
        """
        if self._root is None:
            return
        folders = below_root(self._root, self.location.path)
        if create:
            folders.insert(0, self._root)  # the root the user named: made as mkdir -p would, links allowed
        known = self._folders
        for folder in folders:
            if folder in known.checked:
                continue
            # One file per folder looks and creates, the others wait for it; files in other folders go on
            async with known.lock(folder):
                if folder in known.checked:
                    continue
                if folder == self._root:
                    if await self._makedirs(sftp, folder):
                        known.made.add(folder)
                elif not await self._confine_folder(sftp, folder, create):
                    return  # nothing below exists yet: no link to go through
                known.checked.add(folder)

    async def _confine_folder(self, sftp: asyncssh.SFTPClient, folder: str, create: bool) -> bool:
        """Check (and with ``create``, make) one folder below the root; False: it is missing (not created).

        In a folder made in this run nothing can be there yet but what a racing process put: ``mkdir`` goes
        first (it never follows a link; a link there makes it fail, and the ``lstat`` after it refuses it),
        one round trip less per new folder; elsewhere the folder is looked at first (one round trip when it
        is there, as it is for every push into an existing tree)."""
        attrs = None
        if not (create and posixpath.dirname(folder) in self._folders.made):
            attrs = await self._lstat(sftp, folder)
        if attrs is None:
            if not create:
                return False
            attrs = await self._mkdir(sftp, folder)
            self._folders.made.add(folder)
        if attrs.type == asyncssh.FILEXFER_TYPE_SYMLINK or statmod.S_ISLNK(attrs.permissions or 0):
            raise UsageError(f"refusing to write {self.where} through the symbolic link {folder}: "
                             "a folder inside the destination must not lead outside it")
        if not (attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY or statmod.S_ISDIR(attrs.permissions or 0)):
            raise UsageError(f"cannot write {self.where}: {folder} is in the way and not a folder")
        return True

    async def _lstat(self, sftp: asyncssh.SFTPClient, path: str) -> asyncssh.SFTPAttrs | None:
        try:
            return await sftp.lstat(path)
        except asyncssh.SFTPNoSuchFile:
            return None
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self.where) from exc

    async def _mkdir(self, sftp: asyncssh.SFTPClient, folder: str) -> asyncssh.SFTPAttrs:
        """Create ``folder`` (its parent exists) and return what is there now."""
        try:
            await sftp.mkdir(folder)
        except asyncssh.SFTPError as exc:
            # OpenSSH answers a plain failure when the folder exists (made by a sibling file meanwhile).
            attrs = await self._lstat(sftp, folder)
            if attrs is None:
                raise UsageError(f"cannot create the folder {folder} on {self.location.host}: {exc.reason}") from exc
            return attrs
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self.where) from exc
        attrs = await self._lstat(sftp, folder)
        if attrs is None:
            raise TransferError(f"the folder {folder} on {self.location.host} vanished right after it was created")
        return attrs

    async def _shared(self) -> asyncssh.SFTPClient:
        """The SFTP session of the one connection every writer of this server uses (created on first use)."""
        return (await self._shared_connection())[1]

    async def _warm(self) -> None:
        await self._shared_connection_now()

    async def _shared_connection(self) -> _Conn:
        await self._warmed()
        return await self._shared_connection_now()

    async def _shared_connection_now(self) -> _Conn:
        for conn, sftp in self._idle:
            if not conn.is_closed():
                return conn, sftp
        async with self._link.opening:  # the files starting together wait for one connection, not open one each
            for conn, sftp in self._idle:
                if not conn.is_closed():
                    return conn, sftp
            conn, sftp = await self.connect()
            self._idle.append((conn, sftp))
            # the sessions of a connection that closed went with it
            self._link.sessions, self._link.growing = [sftp], None
        return conn, sftp

    async def write_sessions(self) -> list[asyncssh.SFTPClient]:
        """Sessions of the shared connection to write through: as many as the round trip needs
        (:meth:`_sessions_wanted`), opened together (see :meth:`_open_sessions`)."""
        link = self._link
        conn, _ = await self._shared_connection()
        if link.growing is None:
            self._open_sessions(conn)
        assert link.growing is not None
        await asyncio.shield(link.growing)  # shared: one writer's cancellation must not stop it for all
        if link.write_slots is None:
            # Measured here: the server's windows fill only when more is asked than they hold; a quarter
            # more keeps them full (512 MiB at 50 ms: 1.5x asked 6.8 s, 168 MB peak; 1.25x 6.6-7.0 s,
            # 145 MB: what waits beyond the windows is only memory); the floor: two parts' windows (more
            # only fills memory on a short round trip: measured)
            link.write_slot_count = max(2 * self._window, math.ceil(
                len(link.sessions) * _SERVER_WINDOW * 5 / 4 / self._block))
            link.write_slots = asyncio.Semaphore(link.write_slot_count)
        return list(link.sessions)

    def _open_sessions(self, conn: asyncssh.SSHClientConnection) -> None:
        """Start opening the write sessions in the background (four round trips, overlapping the
        destination's checks and the first part's read)."""
        if self._link.growing is None:
            self._link.growing = asyncio.ensure_future(self._grow(conn))

    async def _grow(self, conn: asyncssh.SSHClientConnection) -> None:
        link = self._link
        await self._measured()
        missing = self._sessions_wanted() - len(link.sessions)
        if missing <= 0:
            return
        opened = await asyncio.gather(*(conn.start_sftp_client() for _ in range(missing)), return_exceptions=True)
        link.sessions += [s for s in opened if isinstance(s, asyncssh.SFTPClient)]
        failures = [e for e in opened if isinstance(e, BaseException)]
        if failures:
            # MaxSessions (an administratively prohibited channel), or the connection going: the writes go
            # through the sessions there are (and report a lost connection themselves)
            link.session_cap = len(link.sessions)
            log.info("SFTP %s opened %d of %d write sessions (%s): writing through those", self._endpoint(),
                     len(link.sessions), len(link.sessions) + len(failures), failures[0])

    def write_slots(self) -> tuple[asyncio.Semaphore, int]:
        """The shared limit on write requests in flight, and its size (after :meth:`write_sessions`)."""
        assert self._link.write_slots is not None, "write_sessions() sizes the slots"
        return self._link.write_slots, self._link.write_slot_count

    async def _stat(self, sftp: asyncssh.SFTPClient) -> asyncssh.SFTPAttrs | None:
        try:
            return await sftp.stat(self.location.path)
        except asyncssh.SFTPNoSuchFile:
            return None
        except (asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self.where) from exc

    async def prepare(self) -> None:
        conn, sftp = await self._shared_connection()
        self._open_sessions(conn)
        await self._confine(sftp, create=True)
        seen, self._seen = self._seen, None
        # Not looked at when existing() was not asked (--overwrite, a tree's listing showed no file there):
        # a folder in the way is found when the copy is renamed onto it (see SftpWriter._rename).
        attrs = seen[0] if seen is not None else None
        if attrs is not None and attrs.permissions is not None and statmod.S_ISDIR(attrs.permissions):
            raise _folder_in_the_way(self.where)

    async def open_writer(self, size: int, part_size: int, algorithm: Algorithm | None, *,
                          defer: bool = False) -> SftpWriter:
        sftp = await self._shared()
        folder, name = posixpath.split(self.location.path)
        temp = posixpath.join(folder, partial_name(name))
        try:
            try:
                created = await sftp.open(temp, "wb", block_size=0)  # kept open for the parts
            except asyncssh.SFTPNoSuchFile:
                # The folder is missing: created only now
                await self._makedirs(sftp, folder or ".")
                created = await sftp.open(temp, "wb", block_size=0)
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self.where) from exc
        return SftpWriter(self, temp, algorithm, size, created)

    async def _makedirs(self, sftp: asyncssh.SFTPClient, folder: str) -> bool:
        """``mkdir -p folder``, from the deepest folder there: one round trip when it exists, two when only it
        is missing (asyncssh's ``makedirs`` tries every level from ``/``, two round trips each). True: made."""
        try:
            attrs = await sftp.stat(folder)
        except asyncssh.SFTPNoSuchFile:
            attrs = None
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self.where) from exc
        if attrs is None:
            await self._mkdir_p(sftp, folder)
            return True
        if attrs.permissions is not None and not statmod.S_ISDIR(attrs.permissions):
            raise UsageError(f"cannot create the folder {folder} on {self.location.host}: "
                             "a file is in the way (not a directory)")
        return False

    async def _mkdir_p(self, sftp: asyncssh.SFTPClient, folder: str) -> None:
        try:
            try:
                await sftp.mkdir(folder)
            except asyncssh.SFTPNoSuchFile:
                parent = posixpath.dirname(folder.rstrip("/"))
                if parent in ("", "/", folder):
                    raise
                await self._mkdir_p(sftp, parent)
                await sftp.mkdir(folder)
        except asyncssh.SFTPFailure as exc:
            # OpenSSH answers a plain failure when it exists: made by a racing process, or a file in the way
            if not await sftp.isdir(folder):
                raise UsageError(f"cannot create the folder {folder} on {self.location.host}: "
                                 "a file is in the way (not a directory)") from exc
        except (asyncssh.SFTPPermissionDenied, asyncssh.SFTPNoSuchFile) as exc:
            # Not a passing fault: a missing permission, a file in the way of a parent
            raise UsageError(f"cannot create the folder {folder} on {self.location.host}: {exc.reason}") from exc
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self.where) from exc

    def resume_writer(self, upload_id: str | None, algorithm: Algorithm | None,
                      size: int | None = None) -> SftpWriter:
        """A writer on an earlier attempt's temporary file (``upload_id``: its name, from the journal)."""
        folder, name = posixpath.split(self.location.path)
        check_partial_id(upload_id, name, self.where)
        return SftpWriter(self, posixpath.join(folder, upload_id) if upload_id is not None else None, algorithm,
                          size)

    async def find_uploads(self, prefix: str, exact: bool = True) -> list[UploadInfo]:
        """Temporary files of earlier attempts at this file (found when the journal lost their name)."""
        sftp = await self._shared()
        folder, name = posixpath.split(self.location.path)
        try:
            listing = await sftp.readdir(_raw(folder or "."))  # bytes: a name that is not UTF-8 must not stop it
        except asyncssh.SFTPNoSuchFile:
            return []
        except (asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self.where) from exc
        found = [(_text(cast(bytes, entry.filename)), entry.attrs.mtime) for entry in listing]
        return [UploadInfo(self.location.path, listed, _utc(mtime)) for listed, mtime in found
                if is_partial_of(listed, name)]
