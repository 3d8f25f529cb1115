"""The one sliding window of SFTP requests (:func:`sliding_window`), shared by reads and writes.

It knows nothing of asyncssh, only a :data:`Request` (a range in, the bytes handled out), so the
source's reads, the sink's writes and the unit tests drive the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

#: one request of a sliding window: (position in the range, length) -> how many bytes it handled (1..length)
Request = Callable[[int, int], Awaitable[int]]


async def sliding_window(total: int, block: int, window: int, request: Request) -> None:
    """Cover ``[0, total)`` with requests of at most ``block`` bytes, ``window`` in flight, lowest positions first.

    The one window of parallel reads and writes (as asyncssh's ``_SFTPParallelIO``
    serves its readers, writers and copiers). A request that handles fewer
    bytes than asked (a short read, legal in SFTP) is followed by one for the
    rest. The first failure stops the window: the requests in flight are
    cancelled and every outcome is collected, so no failed sibling is left
    unretrieved.
    """
    running: dict[asyncio.Future[int], tuple[int, int]] = {}
    rest: list[tuple[int, int]] = []  # the remainders of short requests: asked again before new blocks
    pos = 0
    try:
        while pos < total or rest or running:
            while len(running) < window and (rest or pos < total):
                if rest:
                    start, length = rest.pop()
                else:
                    start, length = pos, min(block, total - pos)
                    pos += length
                running[asyncio.ensure_future(request(start, length))] = (start, length)
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                start, length = running.pop(task)
                got = task.result()  # the first failure stops the window
                if got < length:
                    rest.append((start + got, length - got))
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
