"""The engine's cross-process locks (s3ferry.engine.locks): real processes holding real ``flock``s."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3ferry.core.errors import UsageError
from s3ferry.engine.locks import FileLock, LockedError, TagLock, pair_lock

# A process that takes the lock the way s3ferry does, says so, and holds it until it is killed.
_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


def _hold(path: Path) -> subprocess.Popen[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)  # no clean-up of its own: the kernel must release the lock
    proc.wait(10)


def test_a_lock_held_by_another_process_is_refused_and_taken_once_that_process_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "flow-x.lock"
    holder = _hold(path)
    lock = FileLock(path, "busy")
    try:
        assert asyncio.run(lock.acquire()) is False
    finally:
        _kill(holder)
    assert asyncio.run(lock.acquire()) is True
    lock.release()


def test_async_with_raises_locked_error_naming_the_pair_and_the_file(tmp_path: Path) -> None:
    lock = pair_lock(tmp_path, "sftp://h/in", "s3://b/p", kind="pull")
    holder = _hold(lock.path)

    async def enter() -> None:
        async with pair_lock(tmp_path, "sftp://h/in", "s3://b/p", kind="pull"):
            pytest.fail("entered a lock another process holds")

    try:
        with pytest.raises(LockedError) as caught:
            asyncio.run(enter())
    finally:
        _kill(holder)
    message = str(caught.value)
    assert message == (f"another s3ferry process is running `pull` of sftp://h/in to s3://b/p right now "
                       f"(lock {lock.path})")
    assert lock.path.name.startswith("pull-") and lock.path.parent == tmp_path / "locks"


def test_pairs_and_kinds_get_separate_lock_files(tmp_path: Path) -> None:
    paths = {pair_lock(tmp_path, s, d, k).path for s, d, k in
             [("a", "b", ""), ("a", "b", "push"), ("a", "c", ""), ("b", "a", "")]}
    assert len(paths) == 4
    assert pair_lock(tmp_path, "a", "b").path == pair_lock(tmp_path, "a", "b").path


def test_two_holders_in_one_process_exclude_each_other_until_released(tmp_path: Path) -> None:
    first, second = FileLock(tmp_path / "l.lock", "busy"), FileLock(tmp_path / "l.lock", "busy")

    async def both() -> tuple[bool, bool, bool]:
        got_first = await first.acquire()
        got_second = await second.acquire()  # flock is per open file: a second open is refused too
        first.release()
        again = await second.acquire()
        second.release()
        return got_first, got_second, again

    assert asyncio.run(both()) == (True, False, True)


def test_the_pid_note_names_the_holder_and_files_are_private(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "locks" / "flow-n.lock", "busy", note_pid=True)
    assert asyncio.run(lock.acquire()) is True
    try:
        assert lock.path.read_text() == f"{os.getpid()}\n"
        assert (lock.path.stat().st_mode & 0o777, lock.path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    finally:
        lock.release()
    quiet = FileLock(tmp_path / "locks" / "copy.lock", "busy")
    assert asyncio.run(quiet.acquire()) is True
    quiet.release()
    assert quiet.path.read_text() == ""  # no write per copied file


def test_a_lock_that_cannot_be_created_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(UsageError, match="cannot create the lock"):
        asyncio.run(FileLock(tmp_path / "file" / "locks" / "x.lock", "busy").acquire())


def test_the_tag_lock_waits_for_another_process_then_enters(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "tags-x-1.lock"
    holder = _hold(path)

    async def enter_after_kill() -> float:
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, _kill, holder)
        started = time.monotonic()
        async with TagLock(asyncio.Lock(), path):
            return time.monotonic() - started

    try:
        waited = asyncio.run(enter_after_kill())
    finally:
        if holder.poll() is None:
            _kill(holder)
    assert waited >= 0.4  # it blocked until the holder died, then entered


def test_the_tag_lock_orders_this_process_tasks(tmp_path: Path) -> None:
    local = asyncio.Lock()
    inside: list[int] = []
    overlap: list[bool] = []

    async def one(n: int) -> None:
        async with TagLock(local, tmp_path / "t.lock"):
            overlap.append(bool(inside))
            inside.append(n)
            await asyncio.sleep(0.01)
            inside.remove(n)

    async def many() -> None:
        await asyncio.gather(*(one(n) for n in range(5)))

    asyncio.run(many())
    assert overlap == [False] * 5
