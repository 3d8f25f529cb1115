"""Cross-process locks: ``flock`` on files under ``<state dir>/locks``.

The kernel releases a ``flock`` when its file is closed and when the process
ends, however it ends: a SIGKILL never leaves a stale lock, so no lock here
is ever "taken over". Every lock file is created as needed (its folder 0700,
the file 0600).

* :class:`FileLock`: non-blocking, held for a whole run (one copy of a
  (source, destination) pair, one pull or push job, one flow of a flows file).
  A lock found held is no failure of the caller: it is told (False, or
  :class:`LockedError`) and skips its work.
* :class:`TagLock`: blocking, around a short critical section (push's object
  tag read-modify-write), ordering this process's tasks and other processes.
* :func:`held`: blocking, synchronous, for a thread's short critical section
  (the journal's set-up when a process opens it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from s3ferry.core.errors import UsageError, UserError


class LockedError(UserError):
    """Another process holds the lock (a job that finds its lock held is skipped, not failed)."""


def _open_locked(path: Path, *, wait: bool) -> int | None:
    """An exclusive ``flock`` on ``path``: the open fd (closing it releases the lock), or None when held
    by someone else and not ``wait``."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


class FileLock:
    """An exclusive, non-blocking, cross-process lock held from :meth:`acquire` (or ``async with``) to release.

    ``busy`` is what :class:`LockedError` says when another process holds it.
    ``note_pid`` writes this process's id into the file, for people looking
    (who holds it); the locks taken per copied file leave it off, as that
    would be a disk write per copy.
    """

    def __init__(self, path: Path, busy: str, *, note_pid: bool = False) -> None:
        self.path, self._busy, self._note_pid = path, busy, note_pid
        self._fd: int | None = None

    def _take(self) -> bool:
        fd = _open_locked(self.path, wait=False)
        if fd is None:
            return False
        self._fd = fd  # held from here: release() closes it even if the note below fails
        if self._note_pid:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        return True

    async def acquire(self) -> bool:
        """True when this process now holds the lock; False when another process holds it."""
        try:
            return await asyncio.to_thread(self._take)
        except OSError as exc:
            raise UsageError(f"cannot create the lock {self.path}: {exc.strerror}") from exc

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    async def __aenter__(self) -> FileLock:
        if not await self.acquire():
            raise LockedError(f"{self._busy} (lock {self.path})")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


def pair_lock(state_dir: Path, source: str, destination: str, kind: str = "") -> FileLock:
    """The lock on one (source, destination) pair; ``kind`` separates locks of the same pair (a copy of one
    file, a pull or push job)."""
    digest = hashlib.sha256(f"{kind}\0{source}\0{destination}".encode()).hexdigest()[:32]
    doing = f"running `{kind}` of" if kind else "copying"
    return FileLock(state_dir / "locks" / f"{kind + '-' if kind else ''}{digest}.lock",
                    f"another s3ferry process is {doing} {source} to {destination} right now")


class TagLock:
    """A blocking, cross-process lock around a short critical section (push's tag read-modify-write).

    The asyncio lock orders this process's own tasks; the ``flock`` (taken in
    a thread, as it blocks) orders processes.
    """

    def __init__(self, local: asyncio.Lock, path: Path) -> None:
        self._local, self.path = local, path
        self._fd: int | None = None

    def _take(self) -> None:
        self._fd = _open_locked(self.path, wait=True)

    async def __aenter__(self) -> TagLock:
        await self._local.acquire()
        try:
            # Free, as it mostly is: taken here at once (an open and a flock that does not wait); held by
            # another process: waited for in a thread (a thread hop per object marked was ~1% of push's CPU).
            self._fd = _open_locked(self.path, wait=False)
            if self._fd is None:
                await asyncio.to_thread(self._take)
        except BaseException:
            self._local.release()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._local.release()


@contextlib.contextmanager
def held(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the ``with`` block, waiting for it (blocks: call from a thread)."""
    fd = _open_locked(path, wait=True)
    assert fd is not None  # a waiting flock returns only once held
    try:
        yield
    finally:
        os.close(fd)
