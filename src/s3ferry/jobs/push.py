"""``s3ferry push``: objects under an S3 prefix delivered to an SFTP (or local) folder.

Each object goes to ``folder/<key relative to the prefix>`` through a
temporary name and a rename, verified against the object's own stored check
(its checksum, else its MD5 ETag) before the rename; an object that cannot be
verified is refused unless ``--no-require-verified``.

What was delivered is recorded twice. The journal's *delivery ledger* (key,
ETag delivered, per destination) is the record this machine trusts; the
object tag ``s3ferry-pushed-<id of the destination>`` (value: the ETag
delivered) is a copy of it on the object, for other state dirs and for
people. A tag rather than metadata: metadata can only be changed by copying
the object onto itself, which gives it a new ETag and LastModified (and fires
the bucket's notifications again); a tag changes nothing else, and S3 drops
tags when an object is overwritten. S3 has no conditional tag write, so the
tag set is read, changed and written back under a lock shared by every
s3ferry process of this state dir (flows pushing one bucket to several
destinations never drop each other's tags), and read again to check. An
object counts as delivered only while the recorded ETag equals its current
one, so a mark that races with an overwrite can never hide the new version.

A delivery that fails goes into the retry queue in the journal (the key,
the ETag that failed, attempts, last error). ``push`` leaves queued objects
to ``push --retry-failed`` unless they have changed since (a new version is
a new delivery), and reports them as *waiting* (the run is not ok while any
wait); ``--retry-failed`` works through the queue, dropping objects deleted
or delivered since. A destination that cannot be reached at all is one
error for the run: the objects not delivered wait in the queue, and are not
each tried (and reported) again. Two runs of one push never overlap: the
second finds the job's lock held and is skipped. Every transition of the
sftp-lambda push state table is covered by tests/integration/test_push.py.

:func:`push_objects` is the same delivery for named objects only, without a
listing: ``s3ferry serve`` calls it when an S3 event says an object landed
(service/dispatch.py); it delivers the version S3 holds when it looks, so a
late or repeated event is a no-op.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from s3ferry.backends import as_location, open_ends, open_sink, open_source
from s3ferry.core.errors import NotFoundError, S3FerryError, UnreachableError, UsageError
from s3ferry.core.options import TransferOptions
from s3ferry.core.storage import Entry, Sink, Source
from s3ferry.core.urls import Location, safe_relative
from s3ferry.engine.journal import Journal, QueuedPush
from s3ferry.engine.locks import TagLock
from s3ferry.engine.transfer import Executor, ProgressListener
from s3ferry.jobs import JobReport, flow_prefix
from s3ferry.jobs.base import run_job
from s3ferry.observe import metrics
from s3ferry.operations.single import LocalExecutor
from s3ferry.operations.tree import Filter, child_path, for_each, for_each_file, renamed_path, selected

# The S3 backend (aiobotocore: a large import) is loaded by the run itself, not with this module:
# `s3ferry run --check` imports this module only to validate a flows file.
if TYPE_CHECKING:
    from s3ferry.backends.s3.source import S3Source

log = logging.getLogger("s3ferry")


@dataclass(frozen=True)
class PushSettings:
    retry_failed: bool = False  # work through the retry queue instead of looking for new objects
    #: with retry_failed: only these keys of the queue (empty: all of it); "retry now" on one object
    retry_keys: frozenset[str] = frozenset()
    filters: tuple[Filter, ...] = ()
    transfers: int = 4


def mark_key(destination: str) -> str:
    """The tag that marks delivery to ``destination`` (one per destination: flows may share a bucket)."""
    return "s3ferry-pushed-" + hashlib.sha256(destination.encode()).hexdigest()[:12]


class _Push:
    def __init__(self, source: S3Source, sink: Any, options: TransferOptions, report: JobReport,
                 journal: Journal, progress: ProgressListener | None, executor: Executor | None = None) -> None:
        self.source, self.sink, self.options = source, sink, options
        self.executor = executor or LocalExecutor()
        self.report, self.journal, self.progress = report, journal, progress
        self.src, self.dst = str(source.location), str(sink.location)
        self.tag = mark_key(self.dst)
        self.ledger: dict[str, str] = {}  # key -> ETag delivered (the journal's record, loaded per run)
        self.etags: dict[str, str] = {}  # rel -> the ETag listed (what a delivery not even tried is queued at)
        self.sizes: dict[str, int] = {}  # rel -> the size listed (small objects go more at a time)
        self.started: dict[str, str] = {}  # key -> ETag of a delivery under way when a process died

    def key_of(self, rel: str) -> str:
        return child_path(self.source.location.path, rel)

    async def current_etag(self, key: str) -> str | None:
        there = await self.source.child(key).current()
        return None if there is None else str(there.etag)

    async def delivered(self, key: str, etag: str) -> bool:
        """Delivered at this version: by the ledger, else by the tag (written from another state dir). One the
        ledger has that a run recorded and died before tagging (still started) is tagged now."""
        if self.ledger.get(key) == _tag_value(etag):
            if self.started.pop(key, None) == _tag_value(etag) and not self.options.dry_run:
                await self._tag_then_end(key, _tag_value(etag))
            return True
        if (await self.source.tags(key)).get(self.tag) != _tag_value(etag):
            return False
        await self.journal.record_delivery(self.src, self.dst, key, _tag_value(etag))
        self.ledger[key] = _tag_value(etag)
        return True

    async def _done_before(self, entry: Entry) -> bool:
        """Delivered at the listed version already (the ledger, the tag) or found in place after a crash."""
        key = self.key_of(entry.path)
        return (await self.delivered(key, str(entry.etag))
                or await self.in_place(entry.path, key, str(entry.etag), entry.size, entry.mtime))

    async def deliver(self, rel: str, from_queue: bool = False) -> None:
        """Copy one object; mark the version read as delivered (:meth:`_mark`); queue it on failure.

        Only a retry takes the object off the queue: a push of a newer version
        leaves the old entry for ``--retry-failed`` to drop as delivered
        (state 4 -> 6 -> 5 of the table).
        """
        key = self.key_of(rel)
        if self.options.dry_run:
            self.report.copied.append(rel)  # would be delivered and marked
            return
        if self.report.error is not None:  # the destination is down: queued without trying again
            await self._wait(rel, key, self.etags.get(rel, ""), self.report.error)
            return
        child = self.source.child(key)
        try:
            safe_relative(rel)
            target = self.sink.child(child_path(self.sink.location.path, renamed_path(self.options, rel)))
            await self.journal.delivery_started(self.src, self.dst, key, _tag_value(self.etags.get(rel, "")))
            copied = await self.executor.copy_file(child, target, self.options, self.progress, self.journal)
            etag, size = str(copied.source_etag), copied.result.size  # the version read (pinned by If-Match)
            await self._mark(key, etag, from_queue)
        except UnreachableError as exc:  # not this object's failure: the run's, said once
            self.report.fail_run(exc)
            await self._wait(rel, key, child.pinned_etag or self.etags.get(rel, ""), exc)
            await self.journal.delivery_ended(self.src, self.dst, key)
            return
        except S3FerryError as exc:
            self.report.fail(rel, exc)
            await self.journal.queue_failure(self.src, self.dst, key, child.pinned_etag or "", str(exc))
            await self.journal.delivery_ended(self.src, self.dst, key)
            return
        self.report.copied.append(rel)
        self.report.bytes += size

    async def _wait(self, rel: str, key: str, etag: str, exc: S3FerryError) -> None:
        self.report.waiting.append(rel)
        await self.journal.queue_failure(self.src, self.dst, key, etag, str(exc))

    async def in_place(self, rel: str, key: str, etag: str, size: int, mtime: float | None) -> bool:
        """Whether a delivery of this version, under way when a process died (kill -9, power), had already
        put the file in place: then it is recorded and marked now, not sent a second time.

        The engine renames only a verified copy into place, stamped with the
        object's time: a file there of this version's size and modification
        time (whole seconds) is that copy. Anything else (no file, another
        size or time, a transformed copy whose size differs) goes again.
        """
        if self.started.get(key) != _tag_value(etag) or self.options.dry_run or mtime is None:
            return False
        target = self.sink.child(child_path(self.sink.location.path, renamed_path(self.options, rel)))
        try:
            there = await target.existing()
        except S3FerryError as exc:  # the destination cannot tell now: the delivery goes, and meets it there
            log.debug("%s: cannot look for the copy of an interrupted delivery (%s)", key, exc)
            return False
        if there is None or there.size != size or there.mtime is None or abs(there.mtime - mtime) >= 1.0:
            return False
        log.info("%s: delivered before the last run ended abruptly (the file is in place, same size and time); "
                 "marked now, not sent again", key)
        await self._mark(key, etag, dequeue=False)
        return True

    async def _mark(self, key: str, etag: str, dequeue: bool) -> None:
        """Record and tag ``key`` as delivered at version ``etag`` (the one read: pinned by If-Match).

        The object is not looked at again first: a mark says which version was
        delivered, and one overwritten since has another ETag, so the mark never
        says the new version was delivered (the ledger and the tag are compared
        with the ETag listed); the next run delivers it. One request fewer per
        object than a HEAD before marking.
        """
        await self.journal.record_delivery(self.src, self.dst, key, _tag_value(etag), tag_next=True)
        self.ledger[key] = _tag_value(etag)
        if dequeue:
            await self.journal.dequeue(self.src, self.dst, key)
        await self._tag_then_end(key, _tag_value(etag))

    async def _tag_then_end(self, key: str, value: str) -> None:
        """The tag of a recorded delivery written, then the delivery ended in the journal. Until then it stays
        started: a run that dies in between (or cannot reach S3 for the tag) leaves the next run to write the
        tag; without that the ledger would skip the object for good, untagged, and another state dir would
        deliver it again."""
        try:
            await self._tag(key, value)
        except NotFoundError:  # deleted since it was read: delivered all the same, nothing left to tag
            log.info("%s was deleted from the bucket after its delivery; not tagged", key)
        except S3FerryError as exc:
            log.warning("%s was delivered, but its delivery tag could not be written (%s); the next run writes "
                        "it", key, exc)
            return
        await self.journal.delivery_ended(self.src, self.dst, key)

    async def _tag(self, key: str, value: str) -> None:
        """Add this destination's tag to the object's tag set, keeping everyone else's.

        Read-modify-write under a lock every s3ferry process of this state dir
        takes for the object (striped by key), then read back: a writer
        elsewhere that raced us is noticed and the write done again.
        """
        bucket = self.source.location.bucket
        stripe = int(hashlib.sha256(key.encode()).hexdigest()[:4], 16) % _TAG_STRIPES
        for _ in range(_TAG_ATTEMPTS):
            async with _tag_lock(self.journal, bucket, stripe):
                tags = await self.source.tags(key)
                if tags.get(self.tag) != value:
                    await self.source.put_tags(key, {**tags, self.tag: value})
            if (await self.source.tags(key)).get(self.tag) == value:
                return
        log.warning("%s: its delivery tag keeps being overwritten by another writer; the journal keeps the "
                    "delivery", key)

    async def scan(self, filters: tuple[Filter, ...], transfers: int) -> None:
        queued = {q.key: q.etag for q in await self.journal.queued(self.src, self.dst)}
        self.ledger = await self.journal.deliveries(self.src, self.dst)
        self.started = await self.journal.deliveries_started(self.src, self.dst)
        todo: list[str] = []
        listed: set[str] = set()
        candidates: list[Entry] = []
        async for entry in _objects(self.source):
            listed.add(self.key_of(entry.path))
            if not selected(entry.path, filters):
                continue
            try:
                safe_relative(entry.path)  # a name from the bucket must stay inside the destination
            except UsageError as exc:
                self.report.fail(entry.path, exc)  # not queued: retrying cannot make it safe
                continue
            candidates.append(entry)
        # Looked at many at a time (a tag read each for what the ledger does not know), judged in order
        done = await _many(self._done_before, candidates)
        going: list[Entry] = []
        for entry, delivered in zip(candidates, done, strict=True):
            if delivered:
                self.report.skipped.append(entry.path)
            elif queued.get(self.key_of(entry.path)) == entry.etag:
                self.report.waiting.append(entry.path)  # failed before, left to --retry-failed
            else:
                self.etags[entry.path] = entry.etag or ""
                self.sizes[entry.path] = entry.size
                todo.append(entry.path)
                going.append(entry)
        if not self.options.dry_run:
            self.source.read_ahead(going)  # each is delivered next: a small one read by one request
        # Records of objects deleted from the bucket would only grow the journal.
        await self.journal.forget_deliveries(self.src, self.dst, [k for k in self.ledger if k not in listed])
        await for_each_file(todo, self.deliver, self.sizes.__getitem__, transfers, self.options.max_memory)

    async def pick(self, rels: Sequence[str], filters: tuple[Filter, ...], transfers: int) -> None:
        """Deliver these objects now (an event said they landed), each at the version S3 holds *now*.

        The event's own ETag is not trusted for what goes: events come late,
        twice and out of order, and the current version is the one a scan
        would deliver. One already delivered at its current ETag, deleted
        since, or waiting in the retry queue at that ETag is left as a scan
        leaves it.
        """
        queued = {q.key: q.etag for q in await self.journal.queued(self.src, self.dst)}
        self.ledger = await self.journal.deliveries(self.src, self.dst)
        self.started = await self.journal.deliveries_started(self.src, self.dst)
        todo: list[str] = []
        for rel in dict.fromkeys(rels):  # once each, in the order given
            if not selected(rel, filters):
                self.report.skipped.append(rel)
                continue
            try:
                safe_relative(rel)
            except UsageError as exc:
                self.report.fail(rel, exc)
                continue
            key = self.key_of(rel)
            there = await self.source.child(key).current()
            if there is None or (await self.delivered(key, str(there.etag))
                                 or await self.in_place(rel, key, str(there.etag), there.size, there.mtime)):
                self.report.skipped.append(rel)
            elif queued.get(key) == there.etag:
                self.report.waiting.append(rel)
            else:
                self.etags[rel], self.sizes[rel] = there.etag or "", there.size
                todo.append(rel)
        await for_each_file(todo, self.deliver, self.sizes.__getitem__, transfers, self.options.max_memory)

    async def retry(self, transfers: int, only: frozenset[str] = frozenset()) -> None:
        self.ledger = await self.journal.deliveries(self.src, self.dst)
        todo: list[str] = []
        for item in await self.journal.queued(self.src, self.dst):
            if only and item.key not in only:
                continue
            rel = item.key[len(self.source.location.path.rstrip("/")) + 1:] if self.source.location.path else item.key
            etag = await self.current_etag(item.key)
            if etag is None or await self.delivered(item.key, etag):
                log.info("%s: %s since it failed; dropped from the retry queue", item.key,
                         "deleted" if etag is None else "delivered")
                if not self.options.dry_run:
                    await self.journal.dequeue(self.src, self.dst, item.key)
                self.report.skipped.append(rel)
            else:
                self.etags[rel] = etag
                todo.append(rel)
        await for_each(todo, partial(self.deliver, from_queue=True), transfers)


#: tag writes to one bucket are serialised by key stripe: parallel within a run, never two on one object
_TAG_STRIPES = 16
_TAG_ATTEMPTS = 3
_TAG_LOCKS: dict[tuple[str, str, int], asyncio.Lock] = {}


def _tag_lock(journal: Journal, bucket: str, stripe: int) -> TagLock:
    lock = _TAG_LOCKS.setdefault((str(journal.state_dir), bucket, stripe), asyncio.Lock())
    return TagLock(lock, journal.state_dir / "locks" / f"tags-{hashlib.sha256(bucket.encode()).hexdigest()[:16]}"
                                                        f"-{stripe}.lock")


def _tag_value(etag: str) -> str:
    return etag.strip('"')  # tag values may not hold quotes; an ETag is hex (and "-N")


#: objects looked at (their tags read) at a time while a scan decides what goes
_LOOKS = 32


async def _many(look: Callable[[Entry], Awaitable[bool]], entries: Sequence[Entry]) -> list[bool]:
    """``look`` at every entry, :data:`_LOOKS` at a time; the answers in the entries' order."""
    slots = asyncio.Semaphore(_LOOKS)

    async def one(entry: Entry) -> bool:
        async with slots:
            return await look(entry)

    return list(await asyncio.gather(*(one(e) for e in entries)))


async def _objects(source: S3Source) -> AsyncIterator[Entry]:
    try:
        async for entry in source.walk():
            yield entry
    except NotFoundError:
        return  # an empty outbox is not an error


def _say_waiting(report: JobReport, oldest: QueuedPush) -> None:
    """The one line that says why a run with nothing new failing still exits non-zero."""
    count = len(report.waiting)
    since = datetime.fromtimestamp(oldest.first_failed or oldest.updated, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    log.error("error: %s%d object%s wait%s in the retry queue (oldest: %s, failing since %s: %s); "
              "push --retry-failed (retry_failed = true in a flow) delivers them", flow_prefix(), count,
              "s" if count > 1 else "", "" if count > 1 else "s", oldest.key, since, oldest.last_error)


async def push_objects(src: str | Location, dst: str | Location, options: TransferOptions, settings: PushSettings,
                       rels: Sequence[str], executor: Executor | None = None) -> JobReport:
    """Deliver the named objects of a push at once (paths relative to ``src``; the event intake of ``serve``).

    The same delivery as a scan's (temporary name, verification, ETag mark,
    retry queue) under the same job lock: a run of this push already going
    makes this one skipped (``report.locked``), for the caller to try again.
    ``settings.filters`` still decide; ``settings.retry_failed`` is ignored.
    """
    # Not connected ahead (open_ends): a batch meeting a run of this push is skipped and tried again by the
    # caller, and each try would log in to the partner's server for nothing
    src_loc, dst_loc = _check_ends(src, dst)
    source, sink, report, options = _start(options, open_source(src_loc, options), open_sink(dst_loc, options))

    async def work(journal: Journal) -> None:
        job = _Push(source, sink, options, report, journal, None, executor)
        await job.pick(rels, settings.filters, settings.transfers)

    return await run_job(report, options.state_dir, source, sink, work)


def _check_ends(src: str | Location, dst: str | Location) -> tuple[Location, Location]:
    src_loc, dst_loc = as_location(src), as_location(dst)
    if src_loc.scheme != "s3" or dst_loc.scheme not in ("sftp", "file"):
        raise UsageError("push delivers from s3://bucket/prefix to sftp://host/folder (or a local folder)")
    return src_loc, dst_loc


def _start(options: TransferOptions, source: Source, sink: Sink) -> tuple[S3Source, Sink, JobReport, TransferOptions]:
    """A push's two ends (made from locations :func:`_check_ends` passed), its report, and its options: the
    marks decide what goes, so an existing file at the destination is always replaced."""
    from s3ferry.backends.s3.source import S3Source

    assert isinstance(source, S3Source)
    report = JobReport("push", str(source.location), str(sink.location), dry_run=options.dry_run)
    return source, sink, report, options.replace(overwrite="always") if not options.dry_run else options


async def push(src: str | Location, dst: str | Location, options: TransferOptions, settings: PushSettings,
               progress: ProgressListener | None = None, executor: Executor | None = None) -> JobReport:
    """One run of a push (see the module docstring); never raises for one object's failure."""
    source, sink, report, options = _start(options, *await open_ends(*_check_ends(src, dst), options))

    async def work(journal: Journal) -> None:
        job = _Push(source, sink, options, report, journal, progress, executor)
        if settings.retry_failed:
            await job.retry(settings.transfers, settings.retry_keys)
        else:
            await job.scan(settings.filters, settings.transfers)
        queue = await journal.queue_summary(job.src, job.dst)
        metrics.QUEUE.labels(metrics.FLOW.get()).set(queue.depth)
        if report.waiting and report.error is None and queue.oldest is not None and not options.dry_run:
            _say_waiting(report, queue.oldest)

    return await run_job(report, options.state_dir, source, sink, work)


__all__ = ["Entry", "PushSettings", "mark_key", "push", "push_objects"]
