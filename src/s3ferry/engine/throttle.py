"""``--bwlimit``: one byte rate for the whole process, shared fairly by every stream.

A virtual clock: each read of ``n`` bytes reserves the next ``n / rate``
seconds of the link and waits until its reservation ends. Reservations are
handed out in arrival order, so streams share the rate evenly and the total
over any stretch of a few seconds stays within one read of ``rate x time``.
"""

from __future__ import annotations

import asyncio
import time


class RateLimit:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._until = 0.0  # monotonic time at which the link is free again

    async def take(self, nbytes: int) -> None:
        now = time.monotonic()
        self._until = max(self._until, now) + nbytes / self.rate
        delay = self._until - now
        if delay > 0:
            await asyncio.sleep(delay)


_LIMITS: dict[float, RateLimit] = {}


def limit_for(rate: float | None) -> RateLimit | None:
    """The process-wide limiter for ``rate`` bytes/s (one per rate: files of a tree share it)."""
    if not rate:
        return None
    if rate not in _LIMITS:
        _LIMITS[rate] = RateLimit(rate)
    return _LIMITS[rate]
