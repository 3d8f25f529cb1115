"""The transfer engine: plan parts, stream them through a bounded window, complete, verify.

::

    source ──read_streams readers──> [part buffers: the byte budget] ──upload_streams──> sink
                                           ^                                      │
                                           └──────── buffer returned ─────────────┘

Readers take the next part in order, wait for a free buffer (the budget),
fill it from the source and checksum it; uploaders send full buffers and
return them. All of it runs in one ``TaskGroup``: the first failure cancels
every sibling. Reads and uploads are retried (backoff with jitter); a reader
whose connection broke gets a new one; SlowDown lowers the upload
concurrency (AIMD). The object is completed only when a receipt exists for
every planned part, and it is kept only if the checksum S3 reports equals
the one computed from the bytes read from the source.

On failure the upload is aborted, except when the failure may pass (a lost
connection after all retries, Ctrl-C, SIGTERM) and the attempt is
journaled: then it is kept, so that running the same command again sends
only the missing parts (see :mod:`s3ferry.engine.resume`).

Verification (:mod:`s3ferry.core.verification`): into S3, S3 checks every part's
checksum and the whole object's; into a file, the source object's own stored
check is recomputed from the bytes as they stream (:class:`Tally`) and
compared *before* the file is renamed into place, so a failed check never
touches the file already there. A source modified so recently that its mtime
could hide a same-size rewrite (``Features.change_window``) is read a second
time, and each part's checksum compared, before anything is published.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from s3ferry.core import checksums
from s3ferry.core.errors import IntegrityError, S3FerryError, SourceChangedError, TransferError, UsageError
from s3ferry.core.options import TransferOptions
from s3ferry.core.storage import (
    ChunkWriter,
    Completed,
    Part,
    PartialFile,
    PinnedSource,
    RangeReader,
    Receipt,
    Sink,
    Source,
    Stat,
)
from s3ferry.core.urls import Location
from s3ferry.core.verification import StoredCheck, Tally, Verdict
from s3ferry.engine.journal import Journal, PartRecord, open_journal
from s3ferry.engine.resume import Attempt, Plan, prepare
from s3ferry.engine.retry import AdaptiveLimit, RetryPolicy, is_throttle
from s3ferry.engine.streamed import StreamedPart, StreamingWriter
from s3ferry.engine.throttle import RateLimit, limit_for
from s3ferry.observe import metrics
from s3ferry.observe.progress import NoProgress
from s3ferry.observe.progress import ProgressListener as ProgressListener  # re-exported: the engine's callers use it
from s3ferry.observe.resources import ResourceMeter

log = logging.getLogger("s3ferry")


class Executor(Protocol):
    """Where a copy's bytes move: in this process (:class:`s3ferry.operations.single.LocalExecutor`)
    or on a cluster (:class:`s3ferry.operations.distributed.DaskExecutor`).

    A narrow interface, as s3transfer's executors are: callers hand it typed work and get typed
    results back, whichever executor runs it. Two grains: :meth:`pump` moves the remaining parts of
    one file the engine planned (stat, journal, completion and verification stay with the engine),
    :meth:`copy_file` moves one whole file (trees, pull, push).
    """

    #: parts are read and sent on other machines: the engine buffers and streams nothing itself, and
    #: pumps here only what the workers cannot reach (a file destination, a single PutObject)
    remote: bool

    async def pump(self, job: PartJob, options: TransferOptions, destination: Location) -> None:
        """Store every part ``job`` still needs; each receipt is recorded with :meth:`PartJob.sent`."""

    async def copy_file(self, source: Source, sink: Sink, options: TransferOptions,
                        progress: ProgressListener | None = None, journal: Journal | None = None,
                        known: Stat | None = None) -> FileCopied:
        """One file, routed as :func:`s3ferry.operations.single.copy_file` routes it. ``journal`` and
        ``known`` are hints a remote executor may drop (its workers stat and journal themselves)."""


@dataclass(frozen=True)
class TransferResult:
    """What a finished transfer reports: the same figures as the CLI summary."""

    source: str
    destination: str
    size: int
    seconds: float
    parts: int
    part_size: int
    checksum_algorithm: str
    checksum: str | None
    peak_rss_bytes: int
    disk_write_bytes: int
    resumed_parts: int = 0
    uploaded_bytes: int = 0
    skipped: bool = False  # the destination already matched (or --no-clobber): nothing was sent
    dry_run: bool = False  # --dry-run: decided, nothing done
    #: whether the destination was checked against an independent check, and which (or why not)
    verified: bool = False
    verification: str = ""
    destination_etag: str | None = None  # S3 destinations: the ETag of the object written
    #: an interrupted attempt had completed the object: proven against the source, nothing was sent
    recovered: bool = False

    @property
    def moved_bytes(self) -> int:
        """The bytes this run moved: a resumed copy sent only the parts it lacked (``uploaded_bytes``)."""
        return self.uploaded_bytes if self.resumed_parts or self.recovered else self.size

    @property
    def bytes_per_second(self) -> float:
        """The rate of this run: the bytes it moved, not the whole file's size, over its time."""
        return self.moved_bytes / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "destination": self.destination,
            "size": self.size,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.bytes_per_second / 1e6, 2),
            "parts": self.parts,
            "part_size": self.part_size,
            "resumed_parts": self.resumed_parts,
            "uploaded_bytes": self.uploaded_bytes,
            "checksum_algorithm": self.checksum_algorithm,
            "checksum": self.checksum,
            "peak_rss_bytes": self.peak_rss_bytes,
            "disk_write_bytes": self.disk_write_bytes,
            "skipped": self.skipped,
            "dry_run": self.dry_run,
            "verified": self.verified,
            "verification": self.verification,
            "destination_etag": self.destination_etag,
            "recovered": self.recovered,
        }


@dataclass(frozen=True)
class FileCopied:
    """One file an :class:`Executor` copied."""

    result: TransferResult
    #: the version that was read, where the source pins one (:class:`~s3ferry.core.storage.PinnedSource`:
    #: S3's ETag, which push marks delivered); None for other sources
    source_etag: str | None = None


@functools.cache
def _note_once(text: str) -> None:
    """A note said once per process (the files of a tree would each repeat it)."""
    log.warning("%s", text)


def plan_parts(size: int, part_size: int) -> list[Part]:
    """Consecutive parts covering ``size`` bytes; an empty file is one empty part."""
    if size == 0:
        return [Part(1, 0, 0)]
    return [Part(i + 1, off, min(part_size, size - off)) for i, off in enumerate(range(0, size, part_size))]


class BufferPool:
    """A fixed number of reusable part buffers: the engine's byte budget.

    Buffers are allocated on first use and reused, so the pages are touched
    once and no large allocation is repeated per part.
    """

    def __init__(self, count: int, size: int) -> None:
        self._free: asyncio.Queue[bytearray] = asyncio.Queue()
        self._unallocated = count
        self._size = size

    async def get(self) -> bytearray:
        if self._free.empty() and self._unallocated > 0:
            self._unallocated -= 1
            return bytearray(self._size)
        return await self._free.get()

    def put(self, buf: bytearray) -> None:
        self._free.put_nowait(buf)


class ReaderSlot:
    """One read stream's reader, reopened after it breaks (its connection is dropped)."""

    def __init__(self, source: Source, limit: RateLimit | None = None, length: int | None = None) -> None:
        self._source = source
        self._limit = limit
        self._length = length  # the bytes this slot reads at most, when known (see Source.reader)
        self._stack: AsyncExitStack | None = None
        self._reader: RangeReader | None = None

    async def read_into(self, offset: int, buf: memoryview) -> None:
        if self._reader is None:
            self._stack = AsyncExitStack()
            self._reader = await self._stack.enter_async_context(self._source.reader(self._length))
        try:
            await self._reader.read_into(offset, buf)
        except BaseException as exc:
            await self._drop(exc)
            raise
        if self._limit is not None:
            await self._limit.take(len(buf))  # --bwlimit: every payload byte is read once

    async def _drop(self, exc: BaseException) -> None:
        stack, self._stack, self._reader = self._stack, None, None
        if stack is not None:
            # Passing the exception tells the backend not to reuse the connection.
            await stack.__aexit__(type(exc), exc, exc.__traceback__)

    async def close(self) -> None:
        stack, self._stack, self._reader = self._stack, None, None
        if stack is not None:
            await stack.aclose()


def _checkpoint() -> None:
    """Raise CancelledError if this task is being cancelled.

    Python 3.11's ``asyncio.wait_for`` (asyncssh connects through it) can
    swallow a cancellation that arrives as the connection completes
    (CPython gh-86296, fixed in 3.12). A worker that carried on after that
    would wait forever for a buffer nobody returns, hanging the TaskGroup; so
    the workers check before every step that can block.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


_INLINE_HASH = 256 * 1024
#: bytes read at a time by the second read of a recently modified source (per read stream)
_RECHECK_SLAB = 4 * 1024 * 1024


async def _digest(algorithm: checksums.Algorithm | None, data: memoryview) -> checksums.PartDigest | None:
    if algorithm is None:
        return None
    if len(data) <= _INLINE_HASH:
        return checksums.PartDigest(algorithm.part(data), len(data))  # microseconds: a thread hop costs more
    # Hashing runs off the event loop: the loop keeps feeding sockets meanwhile.
    raw = await asyncio.to_thread(algorithm.part, data)
    return checksums.PartDigest(raw, len(data))


def _md5_hex(data: memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class _InOrder:
    """Feeds a :class:`Tally` that needs its bytes in order (MD5, SHA), whatever order parts are read in.

    A reader that finished early waits for the parts before its own. This
    cannot deadlock: readers take parts in order and the buffer pool serves
    them in the order they asked, so the lowest part not yet fed always holds
    a buffer and is being read.
    """

    def __init__(self, tally: Tally) -> None:
        self._tally = tally
        self._next = 1
        self._turn = asyncio.Condition()

    async def feed(self, part: Part, view: memoryview) -> None:
        async with self._turn:
            await self._turn.wait_for(lambda: self._next == part.number)
        if len(view) <= _INLINE_HASH:
            self._tally.add(part.offset, view)
        else:
            await asyncio.to_thread(self._tally.add, part.offset, view)
        async with self._turn:
            self._next += 1
            self._turn.notify_all()


@dataclass
class PartJob:
    """One transfer's moving parts, shared by its reader and uploader tasks."""

    source: Source
    attempt: Attempt
    parts: list[Part]
    pool: BufferPool
    algorithm: checksums.Algorithm | None
    progress: ProgressListener
    retry: RetryPolicy
    limit: AdaptiveLimit
    journal: Journal | None
    bwlimit: RateLimit | None = None
    #: recomputes the source's stored check from the bytes read (file destinations)
    tally: Tally | None = None
    #: read the source a second time before publishing (see :func:`_recheck`)
    recheck: bool = False
    #: ... and for a single buffered part, right after the first read, before it is sent (a single
    #: PutObject publishes at once)
    precheck: bool = False
    #: a file destination's writer, to read back stored parts an in-order tally must see again
    replay: PartialFile | None = None
    #: the writer, when parts are streamed while read (``Features.streamed_parts``); else None
    streamer: StreamingWriter | None = None
    uploaded_bytes: int = 0
    adopted: int = 0  # stored parts reused after checking their bytes
    receipts: dict[int, Receipt] = field(default_factory=dict)
    #: the first read's CRC32C per part, when there is no --checksum to compare the second read with
    first_crcs: dict[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.receipts.update(self.attempt.done)
        # The tally must see every byte, the stored parts' too (a CRC tally combines every part's CRC, an
        # MD5/SHA one hashes in order): they are read back from the partial file. Fed only the new parts,
        # a resumed download failed its whole-object check with a false integrity error.
        replaying = self.replay is not None and self.tally is not None
        #: parts the readers take, in order: the missing ones, and the stored ones the tally replays
        self.to_read = [p for p in self.parts if replaying or p.number not in self.attempt.done]
        self.next_part = iter(self.to_read)
        self.ready: asyncio.Queue[tuple[Part, bytearray, checksums.PartDigest | None] | None] = asyncio.Queue()
        self.in_order = _InOrder(self.tally) if self.tally is not None and self.tally.ordered else None

    async def read_worker(self) -> None:
        slot = ReaderSlot(self.source, self.bwlimit, sum(p.length for p in self.to_read))
        try:
            for part in self.next_part:  # shared iterator: each part is taken once
                _checkpoint()
                buf = await self.pool.get()
                view = memoryview(buf)[: part.length]
                if part.number in self.attempt.done:
                    await self._replay(part, view)
                    self.pool.put(buf)
                    continue
                await self.retry.run(partial(slot.read_into, part.offset, view), f"reading part {part.number}")
                _checkpoint()
                digest = await _digest(self.algorithm, view)
                if self.recheck and self.algorithm is None:
                    self.first_crcs[part.number] = checksums.CRC32C.part(view)
                if self.precheck:
                    await self._read_again(slot, part, digest.digest if digest else self.first_crcs[part.number])
                await self._tally(part, view)
                if await self._already_stored(part, view, digest):
                    self.pool.put(buf)
                    continue
                await self.ready.put((part, buf, digest))
        finally:
            await slot.close()

    async def _read_again(self, slot: ReaderSlot, part: Part, first: bytes) -> None:
        """The part read a second time, its checksum compared with the first read's (see :func:`_recheck`)."""
        scratch = memoryview(bytearray(min(_RECHECK_SLAB, part.length)))
        again = await _read_digest(slot, part, self.algorithm or checksums.CRC32C, scratch, self.retry)
        _compare_reads(self.source, part, first, again)

    async def _replay(self, part: Part, view: memoryview) -> None:
        """A part stored by an earlier attempt, read back from the partial file for the in-order tally."""
        assert self.replay is not None
        replay = self.replay
        await self.retry.run(partial(replay.read_into, part.offset, view), f"reading back part {part.number}")
        await self._tally(part, view)

    async def _tally(self, part: Part, view: memoryview) -> None:
        if self.tally is None:
            return
        if self.in_order is not None:
            await self.in_order.feed(part, view)
        elif len(view) <= _INLINE_HASH:
            self.tally.add(part.offset, view)
        else:
            await asyncio.to_thread(self.tally.add, part.offset, view)

    async def stream_worker(self) -> None:
        """Streamed mode: take a part, send it while reading it (see :mod:`s3ferry.engine.streamed`)."""
        slot = ReaderSlot(self.source, self.bwlimit, sum(p.length for p in self.to_read))
        try:
            for part in self.next_part:
                _checkpoint()
                try:
                    receipt = await self.retry.run(partial(self._stream, slot, part),
                                                   f"uploading part {part.number}", on_retry=self._on_retry)
                except S3FerryError:
                    metrics.PARTS.labels("failed").inc()
                    raise
                await self.sent(receipt, part.length)
        finally:
            await slot.close()

    async def _stream(self, slot: ReaderSlot, part: Part) -> Receipt:
        assert self.algorithm is not None and self.streamer is not None  # set together with streamed mode
        body = StreamedPart(slot, part, self.algorithm)  # a retry reads the range from the source again
        async with self.limit:
            receipt = await self.streamer.write_stream(part, body)
        await self.limit.succeeded()
        return receipt

    async def _already_stored(self, part: Part, view: memoryview, digest: checksums.PartDigest | None) -> bool:
        """A stored part the journal did not know is reused only if its ETag is the MD5 of these bytes."""
        etag = self.attempt.candidates.get(part.number)
        if etag is None or await asyncio.to_thread(_md5_hex, view) != etag.strip('"'):
            return False
        await self._stored(Receipt(part.number, etag, digest), part.length)
        self.adopted += 1
        return True

    async def upload_worker(self) -> None:
        while (item := await self.ready.get()) is not None:
            _checkpoint()
            part, buf, digest = item
            try:
                receipt = await self.retry.run(partial(self._upload, part, buf, digest),
                                               f"uploading part {part.number}", on_retry=self._on_retry)
            except S3FerryError:
                metrics.PARTS.labels("failed").inc()
                raise
            self.pool.put(buf)
            await self.sent(receipt, part.length)

    async def _upload(self, part: Part, buf: bytearray, digest: checksums.PartDigest | None) -> Receipt:
        async with self.limit:
            receipt = await self.attempt.writer.write_part(part, memoryview(buf)[: part.length], digest)
        await self.limit.succeeded()
        return receipt

    async def _on_retry(self, exc: S3FerryError) -> None:
        if is_throttle(exc):
            await self.limit.throttled()

    async def sent(self, receipt: Receipt, length: int) -> None:
        """A part this attempt sent is stored (by this process or an executor's worker)."""
        self.uploaded_bytes += length
        await self._stored(receipt, length)

    async def _stored(self, receipt: Receipt, length: int) -> None:
        metrics.PARTS.labels("stored").inc()
        self.receipts[receipt.number] = receipt
        self.progress.advanced(length)
        if self.journal is not None and self.attempt.transfer_id is not None:
            digest = receipt.digest.b64 if receipt.digest else None
            await self.journal.record_part(self.attempt.transfer_id,
                                           PartRecord(receipt.number, length, receipt.etag, digest))

    async def close_after(self, readers: Sequence[asyncio.Task[None]], uploaders: int) -> None:
        await asyncio.gather(*readers)
        for _ in range(uploaders):
            await self.ready.put(None)

    def ordered_receipts(self) -> list[Receipt]:
        missing = [p.number for p in self.parts if p.number not in self.receipts]
        if missing:  # never complete an object with a hole in it
            raise TransferError(f"parts {missing[:5]} were not stored; not completing the upload", retryable=False)
        return [self.receipts[p.number] for p in self.parts]

    def first_read(self, number: int) -> bytes | None:
        """The checksum the first read gave part ``number`` (what :func:`_recheck` compares with)."""
        if self.algorithm is None:
            return self.first_crcs.get(number)
        digest = self.receipts[number].digest
        return digest.digest if digest is not None else None


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception to report from a TaskGroup failure: ours first, then anything else."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    ours = [e for e in leaves if isinstance(e, S3FerryError)]
    return ours[0] if ours else leaves[0]


async def pump_parts(job: PartJob, options: TransferOptions) -> None:
    """Read and send the parts ``job`` still needs, here (streamed when ``job.streamer`` is set)."""
    uploads = len(job.parts) - len(job.attempt.done)
    if not job.to_read:
        return
    if job.streamer is not None:
        await _pump_streamed(job, options, uploads)
        return
    # A source without ranged reads (an HTTP server ignoring Range) is read by
    # one stream, in order; the shared part iterator already hands parts out in order.
    readers_n = min(options.read_streams, len(job.to_read)) if job.source.features.ranged_reads else 1
    uploaders_n = min(options.upload_streams, uploads)
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(uploaders_n):
                group.create_task(job.upload_worker())
            readers = [group.create_task(job.read_worker()) for _ in range(readers_n)]
            group.create_task(job.close_after(readers, uploaders_n))
    except BaseExceptionGroup as eg:
        raise _first_error(eg) from None


async def _pump_streamed(job: PartJob, options: TransferOptions, todo: int) -> None:
    workers = min(options.upload_streams, todo) if job.source.features.ranged_reads else 1
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(job.stream_worker())
    except BaseExceptionGroup as eg:
        raise _first_error(eg) from None


class _ReadAgainDiffers(SourceChangedError):
    """The second read of a part gave other bytes than the first."""


async def _recheck(job: PartJob, options: TransferOptions) -> None:
    """Read the whole source again and compare every part's checksum with the first read's.

    For a source modified so recently that a same-size rewrite would not change
    what stat() shows (whole-second mtimes): a copy mixing two versions is
    never published. Also proves an object an interrupted attempt completed
    against the source as it is now.
    """
    algorithm = job.algorithm or checksums.CRC32C
    again = await read_digests(job.source, job.parts, algorithm, options, job.retry, job.bwlimit)
    for part in job.parts:
        _compare_reads(job.source, part, job.first_read(part.number), again[part.number])


def _compare_reads(source: Source, part: Part, first: bytes | None, again: bytes) -> None:
    if first is not None and again != first:
        raise _ReadAgainDiffers(f"{source.location} changed while it was read (same size and mtime, other "
                                f"bytes in part {part.number}); nothing was published")


async def read_digests(source: Source, parts: Sequence[Part], algorithm: checksums.Algorithm,
                       options: TransferOptions, retry: RetryPolicy,
                       bwlimit: RateLimit | None = None) -> dict[int, bytes]:
    """Every part's checksum from a read of the source alone (nothing is written).

    ``read_streams`` readers in parallel (one for a source without ranged
    reads); memory: one slab of at most 4 MiB per reader.
    """
    todo = iter(parts)
    found: dict[int, bytes] = {}
    workers = min(options.read_streams, len(parts)) if source.features.ranged_reads else 1

    async def worker() -> None:
        slot = ReaderSlot(source, bwlimit, sum(p.length for p in parts))
        scratch = memoryview(bytearray(min(_RECHECK_SLAB, max(p.length for p in parts) or 1)))
        try:
            for part in todo:  # shared iterator: each part is read once
                _checkpoint()
                found[part.number] = await _read_digest(slot, part, algorithm, scratch, retry)
        finally:
            await slot.close()

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())
    except BaseExceptionGroup as eg:
        raise _first_error(eg) from None
    return found


async def _read_digest(slot: ReaderSlot, part: Part, algorithm: checksums.Algorithm, scratch: memoryview,
                       retry: RetryPolicy) -> bytes:
    """One part's checksum, read a slab at a time; a failed slab is read again (retried)."""
    hasher = algorithm.hasher()
    for start in range(part.offset, part.offset + part.length, len(scratch)):
        view = scratch[: min(len(scratch), part.offset + part.length - start)]
        await retry.run(partial(slot.read_into, start, view), f"reading part {part.number} again")
        if len(view) <= _INLINE_HASH:
            hasher.update(view)
        else:
            await asyncio.to_thread(hasher.update, view)
    return hasher.digest()


async def source_checksum(source: Source, size: int, part_size: int, algorithm: checksums.Algorithm,
                          options: TransferOptions) -> str:
    """The whole-object checksum of the source's bytes as they are now, in the layout ``part_size`` gives
    (what an upload of it reported): read only, nothing written. Proves a healed pull."""
    parts = plan_parts(size, part_size)
    digests = await read_digests(source, parts, algorithm, options, RetryPolicy(retries=options.retries),
                                 limit_for(options.bwlimit))
    return algorithm.whole([checksums.PartDigest(digests[p.number], p.length) for p in parts],
                           single=len(parts) == 1)


def _streams_parts(sink: Sink, options: TransferOptions, largest: int, algorithm: object) -> bool:
    """Stream parts when the byte budget cannot hold two whole ones (of ``largest`` bytes, the biggest
    part) and the sink can take them so.

    A file smaller than its share of the budget is read whole first and sent in one request: streamed,
    its request would stay open (holding a connection of the pool) for every round trip of the read.
    """
    return algorithm is not None and sink.features.streamed_parts and 2 * largest > options.max_memory


def _read_pinned(source: Source, executor: Executor | None) -> bool:
    """Every read here named the version stat() saw (S3: If-Match its ETag): the bytes are that version's,
    whatever happened since, so a second stat proves nothing (and costs a request per file)."""
    return isinstance(source, PinnedSource) and source.pinned_etag is not None and not _remote(executor)


async def _check_unchanged(source: Source, before: Stat) -> None:
    after = await source.stat()
    if after.fingerprint() != before.fingerprint():
        raise SourceChangedError(
            f"{source.location} changed during the transfer (size {before.size} -> {after.size}, "
            f"mtime {before.mtime} -> {after.mtime}); nothing was written"
        )


def recently_modified(source: Source, stat: Stat) -> float | None:
    """Seconds since the source's last change when a same-size rewrite could still hide from stat()
    (its mtime has whole seconds, the server's clock may differ a little), else None."""
    window = source.features.change_window
    if window <= 0 or stat.mtime is None or stat.size == 0:
        return None
    age = time.time() - stat.mtime
    return age if age < window else None


async def transfer(
    source: Source,
    sink: Sink,
    options: TransferOptions,
    progress: ProgressListener | None = None,
    journal: Journal | None = None,
    known: Stat | None = None,
    executor: Executor | None = None,
) -> TransferResult:
    """Copy one file from ``source`` to ``sink``; see the module docstring.

    ``journal``: a journal shared by the files of a tree (else one is opened
    and closed here). ``known``: the source's stat from a listing, when the
    backend's listing is as good as a stat (the check before completion stays).
    ``executor``: runs the parts elsewhere when it is ``remote`` (Dask, :mod:`s3ferry.operations.distributed`);
    None: here.
    """
    own = journal is None
    # read even with --no-resume, to refuse an earlier attempt
    journal = journal or await open_journal(options.state_dir, required=False)
    try:
        return await _transfer(source, sink, options, progress or NoProgress(), journal, known, executor)
    finally:
        if own:
            await asyncio.shield(journal.close())


async def _transfer(source: Source, sink: Sink, options: TransferOptions, progress: ProgressListener,
                    journal: Journal, known: Stat | None, executor: Executor | None) -> TransferResult:
    meter = ResourceMeter()
    retry = RetryPolicy(retries=options.retries)
    stat = known if known is not None else await retry.run(source.stat, "reading the source's size")
    await sink.prepare()
    sink.note_source(stat)  # the source's mtime goes with the copy (S3 metadata, a file's mtime)
    expected = await _expected_check(source, sink, options, retry)
    part_size = options.part_size_for(stat.size)
    if sink.features.offset_writes:
        # A file destination has no part-count limit: parts as asked, as far as the memory budget allows.
        part_size, why = options.file_part_size()
        if why is not None and stat.size > part_size:  # a file of one smaller part: the limit changed nothing
            _note_once(why)
    parts = plan_parts(stat.size, part_size)
    age = recently_modified(source, stat)
    if age is not None:
        log.info("%s was modified %.1f s ago and its mtime has whole seconds: it is read a second time "
                 "before the copy is published", source.location, max(age, 0.0))
    algorithm = checksums.get(options.checksum)
    # A single part is read twice before it is sent; a single part streamed while read cannot be, so
    # it goes as a multipart upload of one part, which completion publishes after the second read.
    defer = age is not None and len(parts) == 1 and not _remote(executor) and _streams_parts(
        sink, options, min(part_size, stat.size), algorithm)
    plan = Plan(str(source.location), str(sink.location), stat, parts, part_size, algorithm, options.resume,
                fresh=age is not None, defer=defer)
    if sink.features.resumable and len(parts) > 1:
        # Only a multipart upload is journaled; two processes must not share one.
        async with journal.lock(plan.source, plan.destination):
            return await _run(source, sink, options, progress, journal, plan, meter, expected, executor)
    return await _run(source, sink, options, progress, journal, plan, meter, expected, executor)


async def _expected_check(source: Source, sink: Sink, options: TransferOptions,
                          retry: RetryPolicy) -> StoredCheck | None:
    """What a destination that checks nothing itself (a file) is verified against: the source's own check.

    With ``--require-verified``, a copy that could not be verified is refused here, before any byte moves.
    """
    if sink.features.verifies_checksum:
        if options.require_verified and options.checksum == "none":
            raise UsageError("--require-verified needs a checksum: drop --checksum none")
        return None
    expected = await retry.run(source.stored_check, "reading the source's checksum")
    if expected is None and options.require_verified:
        raise IntegrityError(f"cannot verify a copy of {source.location} to {sink.location}: "
                             f"{_no_check_reason(source)}; nothing was copied (--require-verified)")
    return expected


def _no_check_reason(source: Source) -> str:
    if source.location.scheme == "s3":
        return "the object carries no checksum and its ETag is not an MD5 (SSE-KMS or SSE-C)"
    return f"a {source.location.scheme} source stores no checksum and a file destination reports none"


def _remote(executor: Executor | None) -> bool:
    return executor is not None and executor.remote


async def _run(source: Source, sink: Sink, options: TransferOptions, progress: ProgressListener, journal: Journal,
               plan: Plan, meter: ResourceMeter, expected: StoredCheck | None,
               executor: Executor | None = None) -> TransferResult:
    started = time.monotonic()
    retry = RetryPolicy(retries=options.retries)
    stat, parts, part_size, algorithm = plan.stat, plan.parts, plan.part_size, plan.algorithm
    attempt = await prepare(plan, sink, journal if journal.working else None)
    writer = attempt.writer
    # With a remote executor the parts are read on the workers: nothing is buffered or streamed here.
    streams = not _remote(executor) and _streams_parts(sink, options, min(part_size, stat.size), algorithm)
    streamer = writer if streams and isinstance(writer, StreamingWriter) else None
    # A file smaller than a part gets a buffer of its own size: a tree of small
    # files must not cost a full part buffer each. Streamed parts need none.
    pool = BufferPool(0 if streamer else min(options.buffer_count(part_size), len(parts) + 1),
                      min(part_size, stat.size))
    # A file destination's writer can read back what it stored.
    replay = writer if isinstance(writer, PartialFile) else None
    job = PartJob(source, attempt, parts, pool, algorithm, progress, retry, AdaptiveLimit(options.upload_streams),
               journal, limit_for(options.bwlimit), tally=Tally(expected, stat.size) if expected else None,
               recheck=plan.fresh or attempt.prove, replay=replay, streamer=streamer)
    job.precheck = job.recheck and len(parts) == 1 and streamer is None
    progress.started(source.location.name, stat.size)
    progress.advanced(sum(p.length for p in parts if p.number in attempt.done))
    try:
        # Parts go to other machines only for an object store every worker reaches: a file destination
        # (a local disk, one shared SFTP connection) is written by this process.
        if executor is not None and executor.remote and writer.upload_id and not sink.features.offset_writes:
            await executor.pump(job, options, sink.location)  # parts on other machines; receipts come back
        else:
            await pump_parts(job, options)
        receipts = job.ordered_receipts()
        if not _read_pinned(source, executor):
            await retry.run(lambda: _check_unchanged(source, stat), "checking the source again")
        if job.recheck and not job.precheck:
            await _recheck(job, options)
        whole = algorithm.whole([r.digest for r in receipts if r.digest], single=len(parts) == 1) if algorithm else None
        verdict = _before_publish(job, expected, source, sink, options)
        if journal is not None:
            # Every part on record before S3 may finish the object: a crash
            # during completion can then be recognised instead of redone.
            await journal.flush()
        completed = await attempt.writer.complete(receipts, whole)
    except _ReadAgainDiffers as exc:
        await asyncio.shield(_after_failure(exc, attempt, journal, str(sink.location)))
        if not attempt.prove:
            raise
        # The interrupted attempt's object holds other bytes than the source has now: send them again.
        log.warning("%s; the object of the interrupted attempt is replaced", exc)
        return await _run(source, sink, options, progress, journal, plan, meter, expected, executor)
    except BaseException as exc:
        await asyncio.shield(_after_failure(exc, attempt, journal, str(sink.location)))
        raise
    finally:
        progress.finished()
    try:
        if verdict is None:
            verdict = await _after_publish(attempt.writer, completed, stat.size, whole, algorithm, len(parts),
                                           str(sink.location), options)
    finally:
        if journal is not None and attempt.transfer_id is not None:
            await journal.forget(attempt.transfer_id)
    return TransferResult(
        source=str(source.location), destination=str(sink.location), size=stat.size,
        seconds=time.monotonic() - started, parts=len(parts), part_size=part_size,
        checksum_algorithm=options.checksum, checksum=whole, peak_rss_bytes=meter.peak_rss(),
        disk_write_bytes=meter.disk_writes(), resumed_parts=len(attempt.done) + job.adopted,
        uploaded_bytes=job.uploaded_bytes, verified=verdict.verified, verification=verdict.what,
        destination_etag=completed.etag, recovered=attempt.prove,
    )


def _keep_for_resume(exc: BaseException, attempt: Attempt) -> bool:
    if attempt.transfer_id is None:
        return False
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
        return True
    return isinstance(exc, S3FerryError) and exc.retryable


async def _after_failure(exc: BaseException, attempt: Attempt, journal: Journal | None, where: str) -> None:
    if _keep_for_resume(exc, attempt) and journal is not None:
        await journal.flush()
        writer = attempt.writer
        partial = writer.partial if isinstance(writer, PartialFile) else None  # a file destination's temporary file
        hint = (f"the partial file {partial} is kept: run the same command again to resume, or delete it"
                if partial is not None else
                f"the upload is kept: run the same command again to resume, or `s3ferry cancel {where}`")
        if isinstance(exc, S3FerryError):
            exc.hint = hint
        log.info(hint)
        return
    try:
        await attempt.writer.abort()
    except S3FerryError as abort_exc:
        log.warning("could not abort the upload to %s (%s); `s3ferry uploads` lists it", where, abort_exc)
    if journal is not None and attempt.transfer_id is not None:
        await journal.forget(attempt.transfer_id)


def _before_publish(job: PartJob, expected: StoredCheck | None, source: Source, sink: Sink,
                    options: TransferOptions) -> Verdict | None:
    """The verdict for a file destination, decided before it is renamed into place (None: decided after
    completion, by S3). A failed check raises: the file already at the destination is left as it was."""
    if sink.features.verifies_checksum:
        reason = job.attempt.writer.unverified()
        if reason and options.require_verified:
            raise IntegrityError(f"cannot verify {sink.location}: {reason}; nothing was published "
                                 "(--require-verified)")
        return None
    if expected is None or job.tally is None:
        return Verdict(False, f"{_no_check_reason(source)} (sizes compared)")
    got = job.tally.value()
    if not expected.equals(got):
        raise IntegrityError(f"integrity check failed: the bytes read from {source.location} give "
                             f"{expected.describe()} {got}, the object stores {expected.value}; "
                             f"{sink.location} was left as it was")
    return Verdict(True, f"{expected.describe()} {expected.value}, the source object's own, recomputed from the "
                         "bytes written")


async def _after_publish(writer: ChunkWriter, completed: Completed, size: int, whole: str | None,
                         algorithm: checksums.Algorithm | None, parts: int, where: str,
                         options: TransferOptions) -> Verdict:
    """An S3 destination: its size, and the checksum it computed itself against ours (or MD5 ETags)."""
    problem = None
    if completed.size != size:
        problem = f"{where} holds {completed.size} bytes, the source {size}"
    elif completed.checksum is not None and completed.checksum != whole:
        problem = f"{where} checksum {completed.checksum} differs from the source's {whole}"
    verdict = _s3_verdict(writer, completed, whole, algorithm, parts)
    if problem is None and not verdict.verified and options.require_verified:
        problem = f"{where} could not be verified ({verdict.what}) (--require-verified)"
    if problem:
        await writer.discard()
        raise IntegrityError(f"integrity check failed, object removed: {problem}")
    return verdict


def _s3_verdict(writer: ChunkWriter, completed: Completed, whole: str | None, algorithm: checksums.Algorithm | None,
                parts: int) -> Verdict:
    if algorithm is None:
        return Verdict(False, "--checksum none")
    if completed.checksum is not None:
        checked = "every part and the whole object" if parts > 1 else "the object"
        return Verdict(True, f"{algorithm.name} {whole}, computed from the bytes read; S3 checked {checked}")
    if completed.md5_verified:
        etag = str(completed.etag or "").strip('"')
        return Verdict(True, f"md5 etag {etag}: the store returns no checksums, and its MD5 of every part and "
                             "of the object equal the bytes sent")
    return Verdict(False, writer.unverified() or "S3 reported no checksum for the object")
