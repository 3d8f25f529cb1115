"""Local files as a source. Reads run in worker threads (``os.preadv``) so the
event loop never blocks on the disk."""

from __future__ import annotations

import asyncio
import os
import stat
from contextlib import asynccontextmanager
from typing import AsyncIterator

from ..errors import NotFoundError, PermissionError_, SourceChangedError, TransferError, UsageError
from ..urls import Location
from .base import Features, Stat


def _translate(exc: OSError, path: str) -> Exception:
    if isinstance(exc, FileNotFoundError):
        return NotFoundError(f"source not found: {path}")
    if isinstance(exc, PermissionError):
        return PermissionError_(f"permission denied reading {path}")
    if isinstance(exc, IsADirectoryError):
        return UsageError(f"{path} is a directory (copying trees comes with cp -r)")
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
    features = Features(ranged_reads=True)

    def __init__(self, location: Location) -> None:
        self.location = location
        self.path = location.path

    async def stat(self) -> Stat:
        try:
            st = await asyncio.to_thread(os.stat, self.path)
        except OSError as exc:
            raise _translate(exc, self.path) from exc
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{self.path} is a directory (copying trees comes with cp -r)")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{self.path} is not a regular file")
        return Stat(size=st.st_size, mtime=st.st_mtime)

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[LocalReader]:
        try:
            fd = await asyncio.to_thread(os.open, self.path, os.O_RDONLY)
        except OSError as exc:
            raise _translate(exc, self.path) from exc
        try:
            yield LocalReader(fd, self.path)
        finally:
            os.close(fd)

    async def close(self) -> None:
        return None
