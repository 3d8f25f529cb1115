"""The SSH side of a connection, before any SFTP: which host keys are trusted, and the client's set-up.

* Host keys are always verified: against known_hosts, or against one pinned
  ``SHA256:`` fingerprint (:class:`TrustingClient`). A missing known_hosts file trusts nothing.
* An unknown or changed key is reported as OpenSSH words it, with the command that
  fixes it (:func:`unverified_key_error`, from the :class:`KeyLookup` asyncssh made).
* :class:`SshTarget`: where a connection really goes once ``~/.ssh/config`` is applied;
  :func:`jump_address`: a ProxyJump's first hop; :func:`cipher_order`: AES-GCM first;
  :func:`key_label`: a key as an authentication failure names it.

The connection itself is opened by :class:`~s3ferry.backends.sftp.endpoint.SftpEndpoint`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from s3ferry.core.errors import HostKeyError

# AES-GCM costs ~30% less CPU than asyncssh's default chacha20-poly1305 (measured
# here); OpenSSH offers both, so put GCM first and keep the rest as fallbacks.
_PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def cipher_order() -> list[str]:
    from asyncssh.encryption import get_default_encryption_algs

    default = [alg.decode() for alg in get_default_encryption_algs()]
    return [c for c in _PREFERRED_CIPHERS if c in default] + [c for c in default if c not in _PREFERRED_CIPHERS]


class TrustingClient(asyncssh.SSHClient):
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


def key_label(pair: asyncssh.SSHKeyPair) -> str:
    """A loaded key as a failure names it: its file's name (asyncssh shows a key's comment, else its file)."""
    comment = pair.get_comment() or pair.get_algorithm()
    return Path(comment).name if "/" in comment else comment

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")


def jump_address(jump: str) -> tuple[str, int]:
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
class KeyLookup:
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
    return "~/.ssh/known_hosts" if path.expanduser() == DEFAULT_KNOWN_HOSTS.expanduser() else shlex.quote(str(path))


def unverified_key_error(who: str, lookup: KeyLookup, offered: str | None = None) -> HostKeyError:
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
