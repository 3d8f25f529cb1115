"""``s3ferry push``: objects under an S3 prefix delivered to an SFTP (or local) folder.

Each object goes to ``folder/<key relative to the prefix>`` through a
temporary name and a rename. After delivery it is *marked* with an object
tag ``s3ferry-pushed-<id of the destination>`` whose value is the ETag that
was delivered. A tag rather than metadata: metadata can only be changed by
copying the object onto itself, which gives it a new ETag and LastModified
(and fires the bucket's notifications again); a tag changes nothing else,
several destinations can each have their own, and S3 drops tags when an
object is overwritten. An object counts as delivered only while the tag's
ETag equals the object's current one, so a mark that races with an
overwrite can never hide the new version.

A delivery that fails goes into the retry queue in the journal (the key,
the ETag that failed, attempts, last error). ``push`` leaves queued objects
to ``push --retry-failed`` unless they have changed since (a new version is
a new delivery); ``--retry-failed`` works through the queue, dropping
objects deleted or delivered since. Every transition of the sftp-lambda push
state table is covered by tests/test_push.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from ..api import copy_file
from ..backends import open_sink, open_source
from ..backends.base import Entry
from ..engine import ProgressListener
from ..errors import NotFoundError, S3FerryError, UsageError
from ..journal import Journal
from ..options import TransferOptions
from ..tree import Filter, child_path, for_each, selected
from ..urls import Location, parse, safe_relative
from ..observe import metrics
from . import JobReport, close_all, record

# The S3 backend (aiobotocore: a large import) is loaded by the run itself, not with this module:
# `s3ferry run --check` imports this module only to validate a flows file.
if TYPE_CHECKING:
    from ..backends.s3_source import S3Source

log = logging.getLogger("s3ferry")


@dataclass(frozen=True)
class PushSettings:
    retry_failed: bool = False  # work through the retry queue instead of looking for new objects
    filters: tuple[Filter, ...] = ()
    transfers: int = 4


def mark_key(destination: str) -> str:
    """The tag that marks delivery to ``destination`` (one per destination: flows may share a bucket)."""
    return "s3ferry-pushed-" + hashlib.sha256(destination.encode()).hexdigest()[:12]


class _Push:
    def __init__(self, source: S3Source, sink: Any, options: TransferOptions, report: JobReport,
                 journal: Journal, progress: ProgressListener | None, executor: Any = None) -> None:
        self.source, self.sink, self.options = source, sink, options
        self.executor = executor
        self.report, self.journal, self.progress = report, journal, progress
        self.src, self.dst = str(source.location), str(sink.location)
        self.tag = mark_key(self.dst)

    def key_of(self, rel: str) -> str:
        return child_path(self.source.location.path, rel)

    async def current_etag(self, key: str) -> str | None:
        try:
            head = await self.source.call("head_object", **{**self.source.child(key).key_args()})
        except NotFoundError:
            return None
        return str(head.get("ETag"))

    async def tags(self, key: str) -> dict[str, str]:
        answer = await self.source.call("get_object_tagging", Bucket=self.source.location.bucket, Key=key)
        return {t["Key"]: t["Value"] for t in answer.get("TagSet", [])}

    async def delivered(self, key: str, etag: str) -> bool:
        return (await self.tags(key)).get(self.tag) == _tag_value(etag)

    async def deliver(self, rel: str, from_queue: bool = False) -> None:
        """Copy one object; mark it if it still is the version delivered; queue it on failure.

        Only a retry takes the object off the queue: a push of a newer version
        leaves the old entry for ``--retry-failed`` to drop as delivered
        (state 4 -> 6 -> 5 of the table).
        """
        key = self.key_of(rel)
        if self.options.dry_run:
            self.report.copied.append(rel)  # would be delivered and marked
            return
        child = self.source.child(key)
        try:
            safe_relative(rel)
            target = self.sink.child(child_path(self.sink.location.path, rel))
            if self.executor is not None:  # the object is one task on a Dask worker
                result = await self.executor.copy_one(child.location, target.location, self.options)
                etag, size = str(result["source_etag"]), int(result["size"])  # type: ignore[call-overload]
            else:
                done = await copy_file(child, target, self.options, self.progress, self.journal)
                etag, size = str(child.pinned_etag), done.size  # the version read (pinned by If-Match)
            await self._mark(key, etag, from_queue)
        except S3FerryError as exc:
            log.error("error: %s: %s", rel, exc)
            self.report.failed.append((rel, exc))
            await self.journal.queue_failure(self.src, self.dst, key, child.pinned_etag or "", str(exc))
            return
        self.report.copied.append(rel)
        self.report.bytes += size

    async def _mark(self, key: str, etag: str, dequeue: bool) -> None:
        tags = await self.tags(key)
        if await self.current_etag(key) != etag:
            log.warning("%s changed during the push: not marked, it goes again", key)
            return
        tags[self.tag] = _tag_value(etag)
        await self.source.call("put_object_tagging", Bucket=self.source.location.bucket, Key=key,
                               Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
        if dequeue:
            await self.journal.dequeue(self.src, self.dst, key)

    async def scan(self, filters: tuple[Filter, ...], transfers: int) -> None:
        queued = {q.key: q.etag for q in await self.journal.queued(self.src, self.dst)}
        todo: list[str] = []
        async for entry in _objects(self.source):
            if not selected(entry.path, filters):
                continue
            try:
                safe_relative(entry.path)  # a name from the bucket must stay inside the destination
            except UsageError as exc:
                log.error("error: %s: %s", entry.path, exc)
                self.report.failed.append((entry.path, exc))  # not queued: retrying cannot make it safe
                continue
            key = self.key_of(entry.path)
            if await self.delivered(key, str(entry.etag)) or queued.get(key) == entry.etag:
                self.report.skipped.append(entry.path)  # delivered, or failed and left to --retry-failed
            else:
                todo.append(entry.path)
        await for_each(todo, self.deliver, transfers)

    async def retry(self, transfers: int) -> None:
        todo: list[str] = []
        for item in await self.journal.queued(self.src, self.dst):
            rel = item.key[len(self.source.location.path.rstrip("/")) + 1:] if self.source.location.path else item.key
            etag = await self.current_etag(item.key)
            if etag is None or await self.delivered(item.key, etag):
                log.info("%s: %s since it failed; dropped from the retry queue", item.key,
                         "deleted" if etag is None else "delivered")
                if not self.options.dry_run:
                    await self.journal.dequeue(self.src, self.dst, item.key)
                self.report.skipped.append(rel)
            else:
                todo.append(rel)
        await for_each(todo, partial(self.deliver, from_queue=True), transfers)


def _tag_value(etag: str) -> str:
    return etag.strip('"')  # tag values may not hold quotes; an ETag is hex (and "-N")


async def _objects(source: S3Source) -> Any:
    try:
        async for entry in source.walk():
            yield entry
    except NotFoundError:
        return  # an empty outbox is not an error


async def push(src: str | Location, dst: str | Location, options: TransferOptions, settings: PushSettings,
               progress: ProgressListener | None = None, executor: Any = None) -> JobReport:
    """One run of a push (see the module docstring); never raises for one object's failure."""
    src_loc = src if isinstance(src, Location) else parse(src)
    dst_loc = dst if isinstance(dst, Location) else parse(dst)
    if src_loc.scheme != "s3" or dst_loc.scheme not in ("sftp", "file"):
        raise UsageError("push delivers from s3://bucket/prefix to sftp://host/folder (or a local folder)")
    source, sink = open_source(src_loc, options), open_sink(dst_loc, options)
    from ..backends.s3_source import S3Source

    assert isinstance(source, S3Source)
    report = JobReport("push", str(src_loc), str(dst_loc), dry_run=options.dry_run)
    # The marks decide what goes; an existing file at the destination is always replaced.
    options = options.replace(overwrite="always") if not options.dry_run else options
    started = time.monotonic()
    journal = Journal(options.state_dir)
    try:
        job = _Push(source, sink, options, report, journal, progress, executor)
        if settings.retry_failed:
            await job.retry(settings.transfers)
        else:
            await job.scan(settings.filters, settings.transfers)
        metrics.QUEUE.labels(metrics.FLOW.get()).set(len(await journal.queued(job.src, job.dst)))
    finally:
        await asyncio.shield(close_all(journal, source, sink))
    report.seconds = time.monotonic() - started
    record(report)
    return report



__all__ = ["PushSettings", "push", "mark_key", "Entry"]
