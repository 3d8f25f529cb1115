"""Local files as a source and as a destination.

Disk I/O runs in worker threads (``os.preadv`` / ``os.pwritev``) so the event
loop never blocks on the disk. A destination file is written at part offsets
into a temporary name beside it (``.NAME.s3ferry-XXXX.tmp``), fsync'ed and
renamed into place only when every part is there: readers never see half a
file.

Resume: the temporary name is the "upload id" the journal keeps. A failure
that may pass (a connection cut, SIGTERM) keeps the temporary file, and
running the same command again writes only the parts the journal does not
hold -- after reading each journaled part back from the file and checking its
checksum (a part whose bytes changed, or a checksum of ``none``, starts the
file over). Other failures remove it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from s3ferry.core.checksums import Algorithm, PartDigest
from s3ferry.core.errors import (
    IntegrityError,
    NotFoundError,
    PermissionError_,
    SourceChangedError,
    TransferError,
    UsageError,
)
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
from s3ferry.core.urls import Location
from s3ferry.core.verification import StoredCheck

log = logging.getLogger("s3ferry")


def _translate(exc: OSError, path: str) -> Exception:
    if isinstance(exc, FileNotFoundError):
        return NotFoundError(f"source not found: {path}")
    if isinstance(exc, PermissionError):
        return PermissionError_(f"permission denied reading {path}")
    if isinstance(exc, IsADirectoryError):
        return UsageError(f"{path} is a directory (use cp -r to copy a folder)")
    return TransferError(f"cannot read {path}: {exc.strerror or exc}", retryable=False)


class LocalReader:
    def __init__(self, fd: int, path: str) -> None:
        self._fd, self._path = fd, path

    def _fill(self, offset: int, buf: memoryview) -> None:
        done = 0
        while done < len(buf):
            got = os.preadv(self._fd, [buf[done:]], offset + done)
            if got == 0:
                raise SourceChangedError(f"{self._path} became shorter while it was being read")
            done += got

    async def read_into(self, offset: int, buf: memoryview) -> None:
        try:
            await asyncio.to_thread(self._fill, offset, buf)
        except OSError as exc:
            raise _translate(exc, self._path) from exc


class LocalSource:
    # change_window: the kernel stamps mtimes from a coarse clock (a few ms); no other clock is involved
    features = Features(ranged_reads=True, listing=True, listing_is_stat=True, archiving=True, change_window=0.05)

    def __init__(self, location: Location) -> None:
        self.location = location
        self.path = location.path

    async def stat(self) -> Stat:
        try:
            st = await asyncio.to_thread(os.stat, self.path)
        except OSError as exc:
            raise _translate(exc, self.path) from exc
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{self.path} is a directory (use cp -r to copy a folder)")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{self.path} is not a regular file")
        return Stat(size=st.st_size, mtime=st.st_mtime)

    async def stored_check(self) -> StoredCheck | None:
        return None  # a file stores no checksum of its own

    @asynccontextmanager
    async def reader(self, length: int | None = None) -> AsyncIterator[LocalReader]:
        try:
            fd = await asyncio.to_thread(os.open, self.path, os.O_RDONLY)
        except OSError as exc:
            raise _translate(exc, self.path) from exc
        try:
            yield LocalReader(fd, self.path)
        finally:
            os.close(fd)

    def child(self, path: str) -> LocalSource:
        return LocalSource(self.location.with_path(path))

    async def archive(self, path: str, folder: str) -> str:
        try:
            return await asyncio.to_thread(_archive, path, folder)
        except OSError as exc:
            raise _translate(exc, path) from exc

    async def remove(self, path: str) -> None:
        try:
            await asyncio.to_thread(Path(path).unlink, True)
        except OSError as exc:
            raise _translate(exc, path) from exc

    async def walk(self) -> AsyncIterator[Entry]:
        for entry in await asyncio.to_thread(_walk, self.location.path.rstrip("/") or "/"):
            yield entry

    async def list_folder(self) -> AsyncIterator[Entry]:
        path = self.location.path
        for entry in await asyncio.to_thread(_list_folder, path.rstrip("/") or ("/" if path else ".")):
            yield entry

    async def close(self) -> None:
        return None


def _list_folder(folder: str) -> list[Entry]:
    """Regular files directly in ``folder``, sorted by name; links skipped as by :func:`_walk`."""
    found: list[Entry] = []
    try:
        with os.scandir(folder) as items:
            for item in items:
                if item.is_file(follow_symlinks=False):
                    st = item.stat(follow_symlinks=False)
                    found.append(Entry(item.name, st.st_size, st.st_mtime))
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NotFoundError(f"source folder not found: {folder}") from exc
    except OSError as exc:
        raise _translate(exc, folder) from exc
    return sorted(found, key=lambda entry: entry.path)


def _walk(top: str) -> list[Entry]:
    """Regular files below ``top``; symbolic links are skipped (as rclone does without -L)."""
    if not os.path.isdir(top):
        if os.path.exists(top):
            raise UsageError(f"{top} is not a directory")
        raise NotFoundError(f"source folder not found: {top}")
    found: list[Entry] = []
    for folder, dirs, files in os.walk(top, onerror=_raise):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                log.warning("skipping symbolic link %s", full)
                continue
            if stat.S_ISREG(st.st_mode):
                found.append(Entry(os.path.relpath(full, top).replace(os.sep, "/"), st.st_size, st.st_mtime))
    return found


def _archive(path: str, folder: str) -> str:
    source = Path(path)
    target_dir = source.parent / folder
    target_dir.mkdir(exist_ok=True)
    target = target_dir / source.name
    os.replace(source, target)
    os.utime(target)  # now: retention counts from archiving
    return str(target)


def _raise(exc: OSError) -> None:
    raise _translate(exc, exc.filename or "?") from exc


class LocalWriter:
    """Writes parts at their offsets into a temporary file; renames it into place on completion.

    ``upload_id`` is the temporary file's name (in the destination's folder).
    A writer made to resume opens that file on first use.
    """

    def __init__(self, final: Path, fd: int, temp: Path | None, mtime: float | None = None,
                 algorithm: Algorithm | None = None, size: int | None = None) -> None:
        self._final, self._fd, self._temp = final, fd, temp
        self.mtime = mtime
        self.algorithm = algorithm
        self.size = size  # what the file must hold before it is renamed into place (None: unknown)
        self.upload_id = temp.name if temp is not None else None

    @property
    def partial(self) -> Path | None:
        """The temporary file a kept attempt leaves (what the user may delete instead of resuming)."""
        return self._temp

    def _opened(self) -> int:
        if self._fd < 0:
            if self._temp is None:
                raise NotFoundError(f"no earlier attempt to continue for {self._final}")
            try:
                self._fd = os.open(self._temp, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError as exc:
                raise TransferError(f"the partial file {self._temp} is gone", code="NoSuchUpload",
                                    retryable=False) from exc
        return self._fd

    def _pwrite(self, offset: int, data: memoryview) -> None:
        fd, done = self._opened(), 0
        while done < len(data):
            done += os.pwritev(fd, [data[done:]], offset + done)

    async def write_part(self, part: Part, data: memoryview, digest: PartDigest | None) -> Receipt:
        try:
            await asyncio.to_thread(self._pwrite, part.offset, data)
        except OSError as exc:
            raise _write_error(exc, self._final, self._temp) from exc
        return Receipt(part.number, part_etag(digest), digest)

    def _finish(self) -> int:
        fd = self._opened()
        os.fsync(fd)
        size = os.fstat(fd).st_size
        os.close(fd)
        self._fd = -1
        assert self._temp is not None
        if self.size is not None and size != self.size:
            # Checked before the rename: a wrong file never replaces the one already there.
            raise IntegrityError(f"the partial file {self._temp} holds {size} bytes, not {self.size}; "
                                 f"{self._final} was left as it was")
        if self.mtime is not None:
            os.utime(self._temp, (self.mtime, self.mtime))  # the source's mtime, as cp -p / rclone keep it
        os.replace(self._temp, self._final)
        _fsync_dir(self._final.parent)  # the rename itself must survive a crash
        return size

    async def complete(self, receipts: Sequence[Receipt], whole: str | None) -> Completed:
        try:
            size = await asyncio.to_thread(self._finish)
        except OSError as exc:
            raise _write_error(exc, self._final) from exc
        return Completed(size=size, checksum=None)

    def unverified(self) -> str | None:
        return None  # a file checks nothing itself: the engine compares the bytes before complete()

    def _pread(self, offset: int, buf: memoryview) -> None:
        fd, done = self._opened(), 0
        while done < len(buf):
            got = os.preadv(fd, [buf[done:]], offset + done)
            if got == 0:
                raise TransferError(f"the partial file {self._temp} ends before {offset + done}", retryable=False)
            done += got

    async def read_into(self, offset: int, buf: memoryview) -> None:
        """Bytes already written (a resumed copy replays its stored parts through an in-order check)."""
        try:
            await asyncio.to_thread(self._pread, offset, buf)
        except OSError as exc:
            raise _write_error(exc, self._final) from exc

    def _remove_temp(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)

    async def abort(self) -> None:
        await asyncio.to_thread(self._remove_temp)

    async def discard(self) -> None:
        await asyncio.to_thread(self._final.unlink, True)

    def _check(self, parts: Sequence[Part]) -> dict[int, ListedPart]:
        fd = self._opened()
        found: dict[int, ListedPart] = {}
        if self.algorithm is None:
            return found  # nothing to check the bytes against: the journal's parts are not trusted
        for part in parts:
            found[part.number] = read_back(part.number, os.pread(fd, part.length, part.offset), self.algorithm)
        return found

    async def list_parts(self, expected: Sequence[Part] = ()) -> dict[int, ListedPart]:
        """The ``expected`` parts as the file holds them now: read back, each with its checksum as ETag."""
        try:
            return await asyncio.to_thread(self._check, expected)
        except OSError as exc:
            raise _write_error(exc, self._final) from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(exc: OSError, path: Path, temp: Path | None = None) -> Exception:
    """``temp``: the temporary file being written, whose size (set up front) is the room the file needs."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _no_space(path, temp)
    if isinstance(exc, PermissionError):
        return PermissionError_(f"permission denied writing {path}")
    if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
        return UsageError(f"cannot write {path}: {exc.strerror}")
    return TransferError(f"cannot write {path}: {exc.strerror or exc}", retryable=False)


def _no_space(path: Path, temp: Path | None) -> Exception:
    """The disk (or the quota) is full: how much is free, how much the file needs (final: see no_space)."""
    try:
        vfs = os.statvfs(path.parent)
    except OSError:  # how much is free is then not known; that it is full is
        return TransferError(f"no space left on the destination {path}", retryable=False, code="NoSpace")
    try:
        needed: int | None = os.stat(temp).st_size if temp is not None else None
    except OSError:
        needed = None  # the temporary file is gone already: its size is not known
    return no_space(str(path), vfs.f_bavail * vfs.f_frsize, needed)


class LocalSink:
    """A local file as the destination (see the module docstring)."""

    features = Features(offset_writes=True, resumable=True)

    def __init__(self, location: Location, root: str | None = None) -> None:
        self.location = location
        self.path = Path(location.path)
        self.mtime: float | None = None
        #: the destination folder of a tree (None: a file the user named); see :meth:`_confine`
        self._root = root

    def note_source(self, stat: Stat) -> None:
        self.mtime = stat.mtime

    async def existing(self) -> Stat | None:
        try:
            await asyncio.to_thread(self._confine, False)
            st = await asyncio.to_thread(os.stat, self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _write_error(exc, self.path) from exc
        return Stat(size=st.st_size, mtime=st.st_mtime) if stat.S_ISREG(st.st_mode) else None

    def child(self, path: str) -> LocalSink:
        root = self._root if self._root is not None else tree_root(self.location.path, path)
        return LocalSink(self.location.with_path(path), root)

    def _confine(self, create: bool) -> None:
        """Refuse a symbolic link among the folders between the tree's root and this file; create missing ones.

        A link planted in the destination tree would lead the write outside
        it. Only folders below the root the user gave are checked: links in
        the path they typed are their choice. Each folder is looked at
        (``lstat``) before anything is created in it; a missing one is made
        with ``mkdir`` (which never follows a link) and looked at again, so a
        sibling file creating it meanwhile is fine.

        Limits (time of check to time of use): the temporary file is then
        created and renamed by path, so someone who can write into the
        destination tree and swaps a folder for a link right after this check
        still wins the race (only ``openat`` from a folder descriptor opened
        with ``O_NOFOLLOW`` would close it). This stops links that are there
        when the tree is copied.
        """
        folders = below_root(self._root, self.location.path)  # as given: Path() would drop a leading "./"
        if self._root is None or not folders:
            return
        if create:
            Path(self._root).mkdir(parents=True, exist_ok=True)
        for folder in folders:
            try:
                st = os.lstat(folder)
            except FileNotFoundError:
                if not create:
                    return  # nothing below exists yet: no link to go through
                with contextlib.suppress(FileExistsError):  # made meanwhile by a sibling file: looked at below
                    os.mkdir(folder)
                st = os.lstat(folder)
            if stat.S_ISLNK(st.st_mode):
                raise UsageError(f"refusing to write {self.path} through the symbolic link {folder}: "
                                 "a folder inside the destination must not lead outside it")
            if not stat.S_ISDIR(st.st_mode):
                raise UsageError(f"cannot write {self.path}: {folder} is in the way and not a folder")

    def _check(self) -> None:
        self._confine(True)
        if self.path.is_dir():
            raise UsageError(f"{self.path} is a directory; end the destination with / to copy into it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(self.path.parent, os.W_OK | os.X_OK):
            raise PermissionError_(f"permission denied writing into {self.path.parent}")

    async def prepare(self) -> None:
        try:
            await asyncio.to_thread(self._check)
        except OSError as exc:
            raise _write_error(exc, self.path) from exc

    def _open(self, size: int, algorithm: Algorithm | None) -> LocalWriter:
        temp = self.path.with_name(partial_name(self.path.name))
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            os.ftruncate(fd, size)  # the final size up front: parts land at their offsets
        except OSError:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        return LocalWriter(self.path, fd, temp, self.mtime, algorithm, size)

    async def open_writer(self, size: int, part_size: int, algorithm: Algorithm | None, *,
                          defer: bool = False) -> LocalWriter:
        try:
            return await asyncio.to_thread(self._open, size, algorithm)
        except OSError as exc:
            raise _write_error(exc, self.path) from exc

    def resume_writer(self, upload_id: str | None, algorithm: Algorithm | None,
                      size: int | None = None) -> LocalWriter:
        """A writer on an earlier attempt's temporary file (``upload_id``: its name, from the journal)."""
        check_partial_id(upload_id, self.path.name, str(self.path))
        temp = self.path.with_name(upload_id) if upload_id is not None else None
        return LocalWriter(self.path, -1, temp, self.mtime, algorithm, size)

    def _find(self) -> list[UploadInfo]:
        found = []
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return []
        for name in names:
            if is_partial_of(name, self.path.name):
                when = datetime.fromtimestamp(os.stat(self.path.parent / name).st_mtime, UTC)
                found.append(UploadInfo(str(self.path), name, when))
        return found

    async def find_uploads(self, prefix: str, exact: bool = True) -> list[UploadInfo]:
        """Temporary files of earlier attempts at this file (found when the journal lost their name)."""
        try:
            return await asyncio.to_thread(self._find)
        except OSError as exc:
            raise _write_error(exc, self.path) from exc

    async def close(self) -> None:
        return None
