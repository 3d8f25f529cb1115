"""A journal call cancelled while its thread still works (a sibling part failed, Ctrl-C) must not let the
next call into the same SQLite connection: it would start a transaction inside the running one, and the
journal would be reported damaged (seen once in `make test`: a copy onto a full disk, exit 2 instead of 1).
A local SQLite file; no servers."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from s3ferry.engine.journal import open_journal

SRC, DST = "s3://b/out/", "sftp://partner/in/"


def test_a_cancelled_write_finishes_before_the_next_one_starts(tmp_path: Path) -> None:
    async def main() -> set[str]:
        journal = await open_journal(tmp_path, required=True)
        # a long transaction in the journal's thread (~2 s here): one statement per key, the keys many
        keys = [f"gone/{n}" for n in range(1_000_000)]
        first = asyncio.create_task(journal.forget_deliveries(SRC, DST, keys))
        await asyncio.sleep(0.5)
        first.cancel()  # its thread cannot be stopped: it is still inside its transaction
        with contextlib.suppress(asyncio.CancelledError):
            await first
        # raised "the journal is damaged (cannot start a transaction within a transaction)"
        await journal.queue_failure(SRC, DST, "b.csv", "e2", "refused")
        keys = {q.key for q in await journal.queued(SRC, DST)}
        await journal.close()
        return keys

    assert asyncio.run(main()) == {"b.csv"}
