"""``s3ferry pull``: an SFTP (or local) drop folder into S3, then archived on the source.

Each run:

1. lists the source tree; files inside an archive folder (``.done`` by
   default, at any depth) are never pulled;
2. leaves alone files modified within ``--settle`` (still being written;
   judged by the file's mtime against this machine's clock);
3. copies every other selected file to ``prefix/<relative path>`` through the
   engine (verified end to end), ``--transfers`` at a time, and records the
   source's size and mtime in the object's metadata
   (``x-amz-meta-s3ferry-source-size`` / ``-mtime``);
4. moves each file whose object is verified into the archive folder beside it
   (created as needed, a same-name file replaced) and sets its mtime to now;
5. deletes archived files whose mtime (the archiving time) is older than
   ``--retention-days``.

A crash between 3 and 4 leaves a file that is already in S3. Healing it
(archiving without sending it again) needs proof, not a guess from metadata:
a partner may have re-sent a corrected file with the same name, size and
mtime (``scp -p``, ``rsync -t``). So a verified upload is recorded in the
journal before the file is archived, and forgotten once it is; the next run
heals a file only when such a record exists, the object still has the ETag
recorded, and the file's bytes, read again, give the checksum recorded.
Anything else is uploaded again. (An upload that S3 completed while the
process died is recognised by the engine from its own journal, and proven
the same way: the source is read again and compared part by part.)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from s3ferry.backends import as_location, close_all, open_ends
from s3ferry.core import checksums
from s3ferry.core.errors import S3FerryError, UsageError
from s3ferry.core.options import TransferOptions
from s3ferry.core.storage import Entry, Stat
from s3ferry.core.urls import Location, safe_relative
from s3ferry.engine.journal import Journal, PulledRecord
from s3ferry.engine.transfer import Executor, ProgressListener, TransferResult, source_checksum
from s3ferry.jobs import JobReport
from s3ferry.jobs.base import run_job
from s3ferry.operations.single import LocalExecutor
from s3ferry.operations.tree import Filter, child_path, for_each_file, renamed_path, selected

# The S3 backend (aiobotocore: a large import) is loaded by the run itself, not with this module:
# `s3ferry run --check` imports this module only to validate a flows file.
if TYPE_CHECKING:
    from s3ferry.backends.s3.sink import S3Sink

log = logging.getLogger("s3ferry")

SIZE_KEY, MTIME_KEY = "s3ferry-source-size", "s3ferry-source-mtime"


@dataclass(frozen=True)
class PullSettings:
    archive: str = ".done"  # folder created beside each pulled file; files inside are never pulled
    settle: float = 0.0  # seconds: files modified more recently are left for a later run
    retention_days: float = 0.0  # archived files older than this are deleted (0: never)
    filters: tuple[Filter, ...] = ()
    transfers: int = 4

    def __post_init__(self) -> None:
        if not self.archive or "/" in self.archive or self.archive in (".", ".."):
            raise UsageError(f"--archive must be a plain folder name, not {self.archive!r}")
        if self.settle < 0 or self.retention_days < 0:
            raise UsageError("--settle and --retention-days cannot be negative")
        if not 1 <= self.transfers <= 64:
            raise UsageError(f"--transfers must be between 1 and 64, not {self.transfers}")


def fingerprint(stat: Stat) -> dict[str, str]:
    return {SIZE_KEY: str(stat.size), MTIME_KEY: repr(stat.mtime)}


class _Pull:
    def __init__(self, source: Any, sink: S3Sink, options: TransferOptions, settings: PullSettings,
                 report: JobReport, journal: Journal, progress: ProgressListener | None,
                 executor: Executor | None, unarchived: dict[tuple[str, str], PulledRecord]) -> None:
        self.source, self.sink, self.options, self.settings = source, sink, options, settings
        self.report, self.journal, self.progress = report, journal, progress
        self.executor = executor or LocalExecutor()
        #: files an earlier run uploaded and did not archive (it died), read at the start: this job's lock
        #: keeps any other run of it from adding to them meanwhile
        self.unarchived = unarchived

    def in_archive(self, entry: Entry) -> bool:
        return self.settings.archive in entry.path.split("/")[:-1]

    def wanted(self, entry: Entry, now: float) -> bool:
        if not selected(entry.path, self.settings.filters):
            return False
        if self.settings.settle and entry.mtime is not None and now - entry.mtime < self.settings.settle:
            log.info("%s changed %.0f s ago: left to settle", entry.path, now - entry.mtime)
            self.report.skipped.append(entry.path)
            return False
        return True

    async def one_of_many(self, entry: Entry) -> None:
        """:meth:`one`, its failure recorded: one file's failure never stops the others."""
        try:
            await self.one(entry)
        except S3FerryError as exc:
            self.report.fail(entry.path, exc)

    async def one(self, entry: Entry) -> None:
        rel = safe_relative(entry.path)
        path = child_path(self.source.location.path, rel)
        source = self.source.child(path)
        sink = self.sink.child(child_path(self.sink.location.path, renamed_path(self.options, rel)))
        stat = Stat(entry.size, entry.mtime)
        if self.options.dry_run:
            self.report.copied.append(rel)
            self.report.archived.append(rel)
            return
        if await self._proven_there(source, sink, stat):
            self.report.healed.append(rel)
        else:
            done = await self._upload(source, sink, stat)
            if done.recovered:  # S3 had completed it as the earlier run died; proven, nothing sent
                self.report.healed.append(rel)
            else:
                self.report.copied.append(rel)
                self.report.bytes += done.size
        await self.source.archive(path, self.settings.archive)
        await self.journal.forget_pulled(str(source.location), str(sink.location))
        self.report.archived.append(rel)

    async def _upload(self, source: Any, sink: S3Sink, stat: Stat) -> TransferResult:
        """Upload and verify one file, then record it as uploaded-not-archived (what healing proves against)."""
        sink.metadata = fingerprint(stat)
        done = (await self.executor.copy_file(source, sink, self.options, self.progress, self.journal,
                                              stat if self.source.features.listing_is_stat else None)).result
        if done.checksum and done.destination_etag:
            await self.journal.record_pulled(PulledRecord(
                str(source.location), str(sink.location), done.size, stat.mtime, done.checksum_algorithm,
                done.part_size, done.checksum, done.destination_etag.strip('"'), time.time()))
        return done

    async def _proven_there(self, source: Any, sink: S3Sink, stat: Stat) -> bool:
        """An earlier run uploaded this file and died before archiving it, and the file still holds
        exactly those bytes (read again and checksummed): it is archived without a second upload."""
        record = self.unarchived.get((str(source.location), str(sink.location)))
        algorithm = checksums.ALGORITHMS.get(record.checksum_algorithm) if record else None
        if record is None or algorithm is None or (record.size, record.mtime) != (stat.size, stat.mtime):
            return False
        there = await sink.existing()
        if there is None or str(there.etag or "").strip('"') != record.etag:
            return False  # the object was replaced or removed since
        now = await source_checksum(source, stat.size, record.part_size, algorithm, self.options)
        if now != record.checksum:
            log.warning("%s holds other bytes than the upload an interrupted run left unarchived: sending it "
                        "again", source.location)
            return False
        log.info("%s was uploaded by an interrupted run and still holds those bytes: archiving it", source.location)
        return True

    async def expire(self, archived: list[Entry], now: float) -> None:
        cutoff = now - self.settings.retention_days * 86400
        for entry in archived:
            if entry.mtime is not None and entry.mtime < cutoff:
                if self.options.dry_run:
                    self.report.deleted.append(entry.path)
                    continue
                try:
                    await self.source.remove(child_path(self.source.location.path, safe_relative(entry.path)))
                except S3FerryError as exc:
                    self.report.failed.append((entry.path, exc))
                    continue
                self.report.deleted.append(entry.path)


async def pull(src: str | Location, dst: str | Location, options: TransferOptions, settings: PullSettings,
               progress: ProgressListener | None = None, executor: Executor | None = None) -> JobReport:
    """One run of a pull (see the module docstring); never raises for one file's failure."""
    src_loc, dst_loc = as_location(src), as_location(dst)
    if dst_loc.scheme != "s3":
        raise UsageError("pull copies into S3: the destination must be s3://bucket/prefix")
    source, sink = await open_ends(src_loc, dst_loc, options)
    if not source.features.archiving:
        await close_all(source, sink)
        raise UsageError(f"pull needs a source it can archive into {settings.archive}: sftp:// or a local folder")
    from s3ferry.backends.s3.sink import S3Sink

    assert isinstance(sink, S3Sink)
    report = JobReport("pull", str(src_loc), str(dst_loc), dry_run=options.dry_run)
    # The drop folder is the truth: a file in it is sent (healing covers re-runs), never "skipped".
    options = options.replace(overwrite="always", dry_run=False) if not options.dry_run else options
    now = time.time()

    async def work(journal: Journal) -> None:
        await sink.prepare()
        entries = [e async for e in source.walk()]
        job = _Pull(source, sink, options, settings, report, journal, progress, executor, await journal.unarchived())
        todo = [e for e in entries if not job.in_archive(e) and job.wanted(e, now)]
        await for_each_file(todo, job.one_of_many, lambda e: e.size, settings.transfers, options.max_memory)
        if settings.retention_days > 0:
            await job.expire([e for e in entries if job.in_archive(e)], now)

    return await run_job(report, options.state_dir, source, sink, work)
