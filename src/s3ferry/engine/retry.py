"""Retries with exponential backoff and full jitter, and an AIMD concurrency limit.

Only errors flagged ``retryable`` (connection lost, S3 5xx / SlowDown /
RequestTimeout) are retried; auth, not-found and permission errors fail at
once. The upload concurrency halves on every SlowDown and grows back by one
after a run of successes, like TCP congestion control.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from s3ferry.core.errors import S3FerryError
from s3ferry.observe.metrics import RETRIES, retry_reason

T = TypeVar("T")
log = logging.getLogger("s3ferry.engine.retry")

THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503"})


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts; the n-th waits ``uniform(0, min(cap, base * 2**n))`` seconds."""

    retries: int = 5
    base: float = 0.25
    cap: float = 10.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2**attempt))

    async def run(
        self,
        operation: Callable[[], Awaitable[T]],
        what: str,
        on_retry: Callable[[S3FerryError], Awaitable[None]] | None = None,
    ) -> T:
        for attempt in range(self.retries + 1):
            try:
                return await operation()
            except S3FerryError as exc:
                if not exc.retryable or attempt == self.retries or _being_cancelled():
                    raise
                log.info("retrying %s (attempt %d of %d): %s", what, attempt + 2, self.retries + 1, exc)
                RETRIES.labels(retry_reason(exc.code, str(exc))).inc()
                if on_retry is not None:
                    await on_retry(exc)
                await asyncio.sleep(self.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


class AdaptiveLimit:
    """At most ``limit`` holders at once; ``limit`` moves between 1 and ``maximum`` (AIMD)."""

    def __init__(self, maximum: int, grow_after: int = 8) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.active = 0
        self._grow_after = grow_after
        self._successes = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> AdaptiveLimit:
        async with self._changed:
            await self._changed.wait_for(lambda: self.active < self.limit)
            self.active += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._changed:
            self.active -= 1
            self._changed.notify_all()

    async def throttled(self) -> None:
        async with self._changed:
            self.limit = max(1, self.limit // 2)
            self._successes = 0
        log.info("S3 asked to slow down: upload concurrency now %d", self.limit)

    async def succeeded(self) -> None:
        if self.limit >= self.maximum:
            return
        async with self._changed:
            self._successes += 1
            if self._successes >= self._grow_after:
                self._successes = 0
                self.limit += 1
                self._changed.notify_all()


def _being_cancelled() -> bool:
    """True while this task is being cancelled: an error raised on the way out is not retried.

    (A connection torn down by the cancellation surfaces as "connection
    lost"; retrying it would swallow the cancellation and hang the TaskGroup.)
    """
    task = asyncio.current_task()
    cancelling = task is not None and task.cancelling() > 0
    if cancelling:
        log.debug("not retrying: the task is being cancelled")
    return cancelling


def is_throttle(exc: S3FerryError) -> bool:
    return exc.code in THROTTLE_CODES
