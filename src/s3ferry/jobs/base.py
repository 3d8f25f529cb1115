"""The skeleton every job run shares (pull, push): what differs is the work done under the job's lock.

A run opens the journal (a damaged one stops the job: it holds the job's
records), takes the job's lock on its (source, destination) pair, does its
work, and closes the journal and both ends whatever happened. A run that
finds the lock held (overlapping cron lines, two hosts' timers on one state
dir) does nothing and says so in its report: it is skipped, not failed.
Each run is timed and counted in the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from s3ferry.core.storage import Sink, Source
from s3ferry.core.urls import Location, parse
from s3ferry.engine.journal import Journal, open_journal
from s3ferry.engine.locks import LockedError
from s3ferry.jobs import JobReport, record

log = logging.getLogger("s3ferry")

#: a job's own work, under its lock, with the journal open; it fills in the report
Work = Callable[[Journal], Awaitable[None]]


def location(where: str | Location) -> Location:
    return where if isinstance(where, Location) else parse(where)


async def run_job(report: JobReport, state_dir: Path | None, source: Source, sink: Sink, work: Work) -> JobReport:
    """One run of the job ``report`` names (its kind, source and destination); never raises for one file's
    failure (``work`` records those in the report)."""
    started = time.monotonic()
    journal = await open_journal(state_dir, required=True)
    try:
        async with journal.lock(report.source, report.destination, kind=report.kind):
            await work(journal)
    except LockedError as exc:
        log.warning("%s: skipped", exc)
        report.locked = str(exc)
    finally:
        await asyncio.shield(close_all(journal, source, sink))
    report.seconds = time.monotonic() - started
    record(report)
    return report


async def close_all(journal: Journal, source: Source, sink: Sink) -> None:
    """Close a job's journal and both ends, each even if the one before failed."""
    try:
        await journal.close()
    finally:
        try:
            await source.close()
        finally:
            await sink.close()
