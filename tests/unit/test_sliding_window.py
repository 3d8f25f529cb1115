"""The one sliding window of SFTP reads and writes (s3ferry.backends.sftp.window.sliding_window), driven by plain
coroutines: which ranges it asks for, how many at once, what a short answer and a failure do."""

from __future__ import annotations

import asyncio

import pytest

from s3ferry.backends.sftp import sliding_window


class Recorder:
    """Requests that take a little time, remember what was asked and how many ran at once."""

    def __init__(self, short: dict[int, int] | None = None, fail_at: int | None = None) -> None:
        self.asked: list[tuple[int, int]] = []
        self.running = self.most = 0
        self.short = short or {}  # position -> bytes handled the first time it is asked
        self.fail_at = fail_at
        self.cancelled = 0
        self.covered = bytearray()

    async def __call__(self, pos: int, length: int) -> int:
        self.asked.append((pos, length))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if pos == self.fail_at:
                raise OSError("request failed")
            # finish out of order; with a failure to come, never before it
            await asyncio.sleep(0.001 * (1 + pos % 3) + (10 if self.fail_at is not None else 0))
            got = self.short.pop(pos, length)
            self.covered[pos : pos + got] = b"x" * got
            return got
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


def test_blocks_cover_the_range_in_order_with_at_most_window_in_flight() -> None:
    rec = Recorder()
    rec.covered = bytearray(10_000)
    asyncio.run(sliding_window(10_000, 1024, 3, rec))
    assert rec.asked == [(p, min(1024, 10_000 - p)) for p in range(0, 10_000, 1024)]
    assert rec.most == 3
    assert rec.covered == b"x" * 10_000


def test_a_short_answer_is_followed_by_a_request_for_the_rest_before_new_blocks() -> None:
    rec = Recorder(short={0: 100})
    rec.covered = bytearray(4096)
    asyncio.run(sliding_window(4096, 1024, 1, rec))
    assert rec.asked == [(0, 1024), (100, 924), (1024, 1024), (2048, 1024), (3072, 1024)]
    assert rec.covered == b"x" * 4096


def test_the_first_failure_stops_the_window_and_cancels_the_requests_in_flight() -> None:
    rec = Recorder(fail_at=2048)
    rec.covered = bytearray(64 * 1024)

    async def run() -> tuple[int, int]:
        with pytest.raises(OSError, match="request failed"):
            await asyncio.wait_for(sliding_window(64 * 1024, 1024, 4, rec), 5)
        return rec.cancelled, rec.running  # before asyncio.run cancels what is left over

    assert asyncio.run(run()) == (3, 0)  # the others were cancelled and awaited by the window itself
    assert rec.asked == [(p, 1024) for p in range(0, 4096, 1024)]  # no new requests after the failure


def test_an_empty_range_asks_nothing() -> None:
    rec = Recorder()
    asyncio.run(sliding_window(0, 1024, 4, rec))
    assert rec.asked == []
