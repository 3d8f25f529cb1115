"""The skeleton every job run shares (pull, push): what differs is the work done under the job's lock.

A run opens the journal (a damaged one stops the job: it holds the job's
records), takes the job's lock on its (source, destination) pair, does its
work, and closes the journal and both ends whatever happened. A run that
finds the lock held (overlapping cron lines, two hosts' timers on one state
dir) does nothing and says so in its report: it is skipped, not failed.
Each run is timed and counted in the metrics, and recorded in the journal
(its result and counts, each file copied or failed: ``s3ferry status`` and
``s3ferry history``); dry runs and skipped runs change nothing and are not
recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from s3ferry.backends import close_all
from s3ferry.core.errors import S3FerryError
from s3ferry.core.storage import Sink, Source
from s3ferry.engine.journal import Journal, RunRecord, open_journal
from s3ferry.engine.locks import LockedError
from s3ferry.jobs import FLOW_NAME, JobReport, record
from s3ferry.observe import audit

log = logging.getLogger("s3ferry")

#: a job's own work, under its lock, with the journal open; it fills in the report
Work = Callable[[Journal], Awaitable[None]]


async def run_job(report: JobReport, state_dir: Path | None, source: Source, sink: Sink, work: Work) -> JobReport:
    """One run of the job ``report`` names (its kind, source and destination); never raises for one file's
    failure (``work`` records those in the report)."""
    started, wall = time.monotonic(), time.time()
    try:
        journal = await open_journal(state_dir, required=True)
    except BaseException:
        await asyncio.shield(close_all(source, sink))  # they may be connecting already (open_ends)
        raise
    op: audit.Op = "pull" if report.kind == "pull" else "push"
    audited = audit.CONTEXT.set((op, FLOW_NAME.get()))  # the audit trail's op and flow of this run's deliveries
    try:
        async with journal.lock(report.source, report.destination, kind=report.kind):
            try:
                await work(journal)
            except S3FerryError as exc:  # the run failed as a whole (no bucket, wrong key): recorded, then raised
                await save_run(journal, report, wall, exc)
                raise
            await save_run(journal, report, wall)
    except LockedError as exc:
        log.warning("%s: skipped", exc)
        report.locked = str(exc)
    finally:
        audit.CONTEXT.reset(audited)
        await asyncio.shield(close_all(journal, source, sink))
    report.seconds = time.monotonic() - started
    record(report)
    return report


async def save_run(journal: Journal, report: JobReport, started: float, error: S3FerryError | None = None) -> None:
    """Record a run in the journal (not a dry run: it changed nothing). A journal that cannot take it only
    costs the record: the run's work is done, and its outcome is reported anyway."""
    if report.dry_run:
        return
    error = error or report.error
    code = max(report.exit_code, error.exit_code if error is not None else 0)
    events: list[tuple[str, str, str | None]] = [(path, "copied", None) for path in report.copied]
    events += [(path, "failed", str(exc)) for path, exc in report.failed]
    if error is not None:
        events.append(("", "failed", str(error)))
    run = RunRecord(FLOW_NAME.get(), report.kind, report.source, report.destination, started, time.time(),
                    "failed" if code else "ok", code, len(report.copied), len(report.failed), len(report.waiting),
                    len(report.skipped), report.bytes, str(error) if error is not None else None, tuple(events))
    try:
        await journal.record_run(run)
    except S3FerryError as exc:
        log.warning("the run was not recorded in the journal: %s", exc)
