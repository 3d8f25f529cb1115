"""An SFTP server whose folder listings lie: a real folder, plus names no honest server lists.

OpenSSH lists only what the file system holds, and a file system holds no
``a/b``, no empty name, no ``..`` that is a file. A partner's server may be
anything, though, so this one (asyncssh's :class:`asyncssh.SFTPServer` over a
real folder, chrooted there) adds such names to the listings of chosen
folders; everything else -- reading, renaming, ``statvfs`` -- is the real
folder's. It runs on a free loopback port in a thread of the test process,
with a generated host key and user key, and a known_hosts file written as
:mod:`s3ferry.testbed` writes it.
"""

from __future__ import annotations

import asyncio
import posixpath
import stat
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import asyncssh

from s3ferry.demo import servers as testbed

#: names no file system holds, listed as regular files (path -> size)
FILE_NAMES: dict[bytes, int] = {
    b"../evil": 5, b"a/b": 6, b"/abs": 7, b".": 8, b"..": 9, b"": 10, b"nul\x00name": 11,
}
#: a name listed as a folder, pointing above the listed one
FOLDER_NAMES: tuple[bytes, ...] = (b"../outside",)


def _attrs(mode: int, size: int) -> asyncssh.SFTPAttrs:
    now = int(time.time()) - 3600
    kind = asyncssh.FILEXFER_TYPE_DIRECTORY if stat.S_ISDIR(mode) else asyncssh.FILEXFER_TYPE_REGULAR
    return asyncssh.SFTPAttrs(type=kind, permissions=mode, size=size, uid=0, gid=0, atime=now, mtime=now)


def hostile_listing() -> list[asyncssh.SFTPName]:
    """The names injected into a listing: :data:`FILE_NAMES` as files, :data:`FOLDER_NAMES` as folders."""
    files = [asyncssh.SFTPName(name, attrs=_attrs(stat.S_IFREG | 0o644, size)) for name, size in FILE_NAMES.items()]
    folders = [asyncssh.SFTPName(name, attrs=_attrs(stat.S_IFDIR | 0o755, 0)) for name in FOLDER_NAMES]
    return files + folders


class LyingSFTPServer(asyncssh.SFTPServer):
    """The real folder, but the listings of the folders in ``inject`` also hold their extra names."""

    def __init__(self, chan: asyncssh.SSHServerChannel, root: Path,
                 inject: dict[str, list[asyncssh.SFTPName]]) -> None:
        super().__init__(chan, chroot=str(root).encode())
        self._inject = inject

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        extra = self._inject.get(posixpath.normpath(path.decode("utf-8", "surrogateescape")), [])
        replaced = {name.filename for name in extra}
        async for name in super().scandir(path):
            if name.filename not in replaced:  # "." and ".." become files when they are injected
                yield name
        for name in extra:
            yield name


class HostileSftpServer:
    """Serves ``root`` over SFTP on 127.0.0.1; ``inject`` maps a folder (as the client names it, e.g.
    ``/drop``) to the extra names its listing holds. Use as a context manager."""

    def __init__(self, base: Path, root: Path, inject: dict[str, list[asyncssh.SFTPName]]) -> None:
        self.base, self.root, self.inject = base, root, inject
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hostile-sftp", daemon=True)
        self._server: asyncssh.SSHAcceptor | None = None

    @property
    def user_key(self) -> Path:
        return self.base / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.base / "known_hosts"

    def flags(self) -> list[str]:
        return ["--identity", str(self.user_key), "--known-hosts", str(self.known_hosts)]

    def url(self, path: str) -> str:
        """An ``sftp://`` URL for ``path`` as the client sees it (``/`` is :attr:`root`)."""
        return f"sftp://tester@127.0.0.1:{self.port}{path}"

    def _keys(self) -> asyncssh.SSHKey:
        self.base.mkdir(parents=True, exist_ok=True)
        host = asyncssh.generate_private_key("ssh-ed25519", comment="hostile-sftp-host")
        user = asyncssh.generate_private_key("ssh-ed25519", comment="hostile-sftp-user")
        user.write_private_key(str(self.user_key))
        self.user_key.chmod(0o600)
        user.write_public_key(str(self.base / "authorized_keys"))
        self.port = testbed.free_port()
        public = host.export_public_key().decode().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n")
        return host

    def __enter__(self) -> HostileSftpServer:
        host = self._keys()

        def factory(chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
            return LyingSFTPServer(chan, self.root, self.inject)

        async def listen() -> asyncssh.SSHAcceptor:
            return await asyncssh.listen("127.0.0.1", self.port, server_host_keys=[host],
                                         authorized_client_keys=str(self.base / "authorized_keys"),
                                         sftp_factory=factory, allow_scp=False)

        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(20)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        server = self._server

        async def close() -> None:
            if server is not None:
                server.close()
                await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(20)
