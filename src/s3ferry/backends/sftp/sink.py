"""An SFTP file as the destination (:class:`SftpSink`, whose :class:`SftpWriter` writes one file).

Parts are written at their offsets (a sliding window of write requests) into a
temporary name beside the target, which is renamed into place
(``posix-rename@openssh.com`` where offered, so an existing file is replaced
atomically) once every part is there. All writers share one SSH connection:
partner servers often cap connections per user. A failure that may pass keeps
the temporary file for the journal: the same command run again reads the
journaled parts back, checks their checksums and writes only the rest (as for
local files). A full disk is not such a failure (OpenSSH reports ENOSPC as a
bare failure: ``statvfs@openssh.com`` tells). A tree is never written through a
symbolic link to a folder inside its destination (:meth:`SftpSink._confine`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import posixpath
import stat as statmod
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import cast

import asyncssh

from s3ferry.backends.sftp.endpoint import SERVER_WINDOW, Conn, SftpEndpoint
from s3ferry.backends.sftp.errors import translate_error
from s3ferry.backends.sftp.files import SftpReader, raw, replace, text, walk
from s3ferry.backends.sftp.window import sliding_window
from s3ferry.core.checksums import Algorithm, PartDigest
from s3ferry.core.errors import IntegrityError, NotFoundError, SourceChangedError, TransferError, UsageError
from s3ferry.core.options import SftpOptions
from s3ferry.core.storage import (
    Completed,
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
from s3ferry.core.urls import Location

log = logging.getLogger("s3ferry")


@dataclass
class _Folders:
    """The folders of one tree's destination, shared by its files (see :meth:`SftpSink._confine`)."""

    checked: set[str] = field(default_factory=set)  #: seen to be real folders (the root: there or made)
    made: set[str] = field(default_factory=set)  #: made by this run
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)  #: one per folder being looked at

    def lock(self, folder: str) -> asyncio.Lock:
        return self.locks.setdefault(folder, asyncio.Lock())


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
                    sessions = sessions[: max(1, -(-self.size // SERVER_WINDOW))]
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
            await replace(sftp, temp, self._final)
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
            return {entry.path: entry.size for entry in await walk(sftp, top, self.where)}
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

    async def _shared_connection(self) -> Conn:
        await self._warmed()
        return await self._shared_connection_now()

    async def _shared_connection_now(self) -> Conn:
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
                len(link.sessions) * SERVER_WINDOW * 5 / 4 / self._block))
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
            listing = await sftp.readdir(raw(folder or "."))  # bytes: a name that is not UTF-8 must not stop it
        except asyncssh.SFTPNoSuchFile:
            return []
        except (asyncssh.Error, OSError) as exc:
            raise translate_error(exc, self.where) from exc
        found = [(text(cast(bytes, entry.filename)), entry.attrs.mtime) for entry in listing]
        return [UploadInfo(self.location.path, listed, _utc(mtime)) for listed, mtime in found
                if is_partial_of(listed, name)]
