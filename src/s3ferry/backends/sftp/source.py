"""An SFTP file or folder as the source (:class:`SftpSource`): stat, ranged reads, listings, archive, remove.

A read gets a connection of its own on a short round trip and shares one across a
long one (see :class:`~s3ferry.backends.sftp.endpoint.SftpEndpoint`); a file read in
full is closed in the background.
"""

from __future__ import annotations

import asyncio
import posixpath
import stat as statmod
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import asyncssh

from s3ferry.backends.sftp.endpoint import SHORT_READ, Conn, SftpEndpoint
from s3ferry.backends.sftp.errors import translate_error
from s3ferry.backends.sftp.files import SftpReader, list_folder, replace, walk
from s3ferry.core.errors import S3FerryError, UsageError
from s3ferry.core.storage import Entry, Features, Stat
from s3ferry.core.verification import StoredCheck


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
        is long (see :meth:`_checkout`); a short read (``length`` at most :data:`SHORT_READ`) shares an open
        one whatever the round trip."""
        short = length is not None and length <= SHORT_READ
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

    def _close_later(self, file: asyncssh.SFTPClientFile, pair: Conn) -> None:
        """Close a file read in full without waiting for the answer: the next request on the connection
        (the stat that checks the source did not change) goes right behind it, one round trip less per
        file. A close that fails drops the connection (the bytes were read: the copy goes on)."""
        closing = asyncio.ensure_future(_close_quietly(file))
        self._link.closing.add(closing)
        closing.add_done_callback(partial(self._closed, pair))

    def _closed(self, pair: Conn, closing: asyncio.Future[bool]) -> None:
        self._link.closing.discard(closing)
        if closing.cancelled() or not closing.result():
            self._drop(pair)

    def _drop(self, pair: Conn) -> None:
        """A connection that failed: closed, and not lent again (its other users fail too, and get a new one)."""
        if pair in self._idle:
            self._idle.remove(pair)
        pair[0].abort()

    async def list_folder(self) -> AsyncIterator[Entry]:
        conn, sftp = await self._checkout_shared()
        try:
            entries = await list_folder(sftp, self.location.path.rstrip("/") or "/")
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
            moving = asyncio.ensure_future(replace(sftp, path, target))
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
        run: ``makedirs`` would stat every level from ``/`` for every file, a round trip each. The files of
        a folder archived at the same moment wait for one ``mkdir`` (each sent its own, and all but one then
        a stat to see the folder there: two round trips and two requests per file); a failure is not kept,
        the next file tries again."""
        making = self._link.archives.get(archive)
        if making is None:
            making = self._link.archives[archive] = asyncio.ensure_future(_make_folder(sftp, archive))
            making.add_done_callback(lambda done: done.cancelled() or done.exception())  # seen, if all left
        try:
            await asyncio.shield(making)  # a caller cancelled does not cancel it for the others
        except BaseException:
            if making.done() and self._link.archives.get(archive) is making:
                del self._link.archives[archive]
            raise

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
            entries = await walk(sftp, top, self.where)
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


async def _make_folder(sftp: asyncssh.SFTPClient, folder: str) -> None:
    """``folder`` made, or there already as a folder."""
    try:
        await sftp.mkdir(folder)
    except (asyncssh.SFTPFailure, asyncssh.SFTPFileAlreadyExists):
        # OpenSSH answers a plain failure when it exists (made by an earlier run, or another process now)
        if not await sftp.isdir(folder):
            raise


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
