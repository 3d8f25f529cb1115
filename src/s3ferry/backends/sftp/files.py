"""What the source and the sink both do on an open SFTP session, whichever connection it is on.

* Reads are issued by us, not by ``SFTPClientFile.read()`` of a large range
  (which reassembles into a growing bytearray): a sliding window of
  single-request reads per stream, each copied once into the part buffer
  (:class:`SftpReader`; the sink reads its partial files back through it too).
* :func:`replace` renames a file over another (atomically where ``posix-rename@openssh.com`` is offered).
* Listings use bytes paths, so one name that is not UTF-8 cannot stop them;
  names are checked (:func:`walk`, :func:`list_folder`).
"""

from __future__ import annotations

import asyncio
import posixpath
import stat as statmod
from typing import cast

import asyncssh

from s3ferry.backends.sftp.errors import translate_error
from s3ferry.backends.sftp.window import sliding_window
from s3ferry.core.errors import SourceChangedError
from s3ferry.core.storage import Entry
from s3ferry.core.urls import UnsafeName

#: folder listings at once while a tree is walked
_LISTINGS = 16


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


async def replace(sftp: asyncssh.SFTPClient, old: str, new: str) -> bool:
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


def raw(path: str) -> bytes:
    """A path as the bytes SFTP sends (the inverse of :func:`text`)."""
    return path.encode("utf-8", "surrogateescape")


def text(raw: bytes) -> str:
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
    a name reaches :func:`~s3ferry.core.urls.safe_relative` surrogate-escaped and is
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
        path = f"{rel}/{text(raw)}" if rel else text(raw)
        mtime = float(name.attrs.mtime) if name.attrs.mtime is not None else None
        problem = _not_a_name(raw)
        if problem is not None:
            found.append((Entry(UnsafeName(path, problem), name.attrs.size or 0, mtime), False))
        else:
            found.append((Entry(path, name.attrs.size or 0, mtime), statmod.S_ISDIR(mode)))
    return found


async def walk(sftp: asyncssh.SFTPClient, top: str, where: str) -> list[Entry]:
    """Regular files below the folder ``top``, depth first, sorted (see :func:`_listing`); errors as
    :func:`translate_error` words them for ``where``.

    The subfolders of a folder are listed at the same time (:data:`_LISTINGS` at most): a listing costs
    ~3 round trips (open, read, close), which one after another would dominate a WAN tree's copy.
    """
    try:
        return await _walk_below(sftp, raw(top), "", asyncio.Semaphore(_LISTINGS))
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
        listed = await _listing(sftp, posixpath.join(top, raw(rel)) if rel else top, rel)
    async with asyncio.TaskGroup() as group:
        below = iter([group.create_task(_walk_below(sftp, top, entry.path, slots))
                      for entry, folder in listed if folder])
    found: list[Entry] = []
    for entry, folder in listed:
        found += next(below).result() if folder else [entry]
    return found


async def list_folder(sftp: asyncssh.SFTPClient, folder: str) -> list[Entry]:
    """Regular files directly in ``folder`` (a glob's folder), as :func:`walk` sees them."""
    return [entry for entry, is_folder in await _listing(sftp, raw(folder), "") if not is_folder]
