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
only the missing parts (see :mod:`s3ferry.resume`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, Sequence

from . import checksums
from .backends.base import ChunkWriter, Part, RangeReader, Receipt, Sink, Source, Stat
from .errors import IntegrityError, S3FerryError, SourceChangedError, TransferError
from .journal import Journal, PartRecord
from .observe import metrics
from .observe.resources import ResourceMeter
from .options import MIN_PART_SIZE, TransferOptions
from .resume import Attempt, Plan, prepare
from .retry import AdaptiveLimit, RetryPolicy, is_throttle
from .streamed import StreamedPart
from .throttle import RateLimit, limit_for
from .urls import Location

log = logging.getLogger("s3ferry")


class ProgressListener(Protocol):
    """Subscriber for progress events (the CLI's progress bar is one)."""

    def started(self, name: str, total: int) -> None: ...

    def advanced(self, nbytes: int) -> None: ...

    def finished(self) -> None: ...


class PartExecutor(Protocol):
    """Runs a job's remaining parts somewhere else and records each receipt with ``job._stored``."""

    async def pump(self, job: "_Job", options: TransferOptions, destination: "Location") -> None: ...


class _NoProgress:
    def started(self, name: str, total: int) -> None:
        return None

    def advanced(self, nbytes: int) -> None:
        return None

    def finished(self) -> None:
        return None


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

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> "TransferResult":
        """The inverse of :meth:`as_dict` (results that come back from Dask workers)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})  # type: ignore[arg-type]

    @property
    def bytes_per_second(self) -> float:
        return self.size / self.seconds if self.seconds > 0 else 0.0

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
        }


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

    def __init__(self, source: Source, limit: RateLimit | None = None) -> None:
        self._source = source
        self._limit = limit
        self._stack: AsyncExitStack | None = None
        self._reader: RangeReader | None = None

    async def read_into(self, offset: int, buf: memoryview) -> None:
        if self._reader is None:
            self._stack = AsyncExitStack()
            self._reader = await self._stack.enter_async_context(self._source.reader())
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


@dataclass
class _Job:
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
    uploaded_bytes: int = 0
    adopted: int = 0  # stored parts reused after checking their bytes
    receipts: dict[int, Receipt] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.receipts.update(self.attempt.done)
        self.next_part = iter([p for p in self.parts if p.number not in self.attempt.done])
        self.ready: asyncio.Queue[tuple[Part, bytearray, checksums.PartDigest | None] | None] = asyncio.Queue()

    async def read_worker(self) -> None:
        slot = ReaderSlot(self.source, self.bwlimit)
        try:
            for part in self.next_part:  # shared iterator: each part is taken once
                _checkpoint()
                buf = await self.pool.get()
                view = memoryview(buf)[: part.length]
                await self.retry.run(partial(slot.read_into, part.offset, view), f"reading part {part.number}")
                _checkpoint()
                digest = await _digest(self.algorithm, view)
                if await self._already_stored(part, view, digest):
                    self.pool.put(buf)
                    continue
                await self.ready.put((part, buf, digest))
        finally:
            await slot.close()

    async def stream_worker(self) -> None:
        """Streamed mode: take a part, send it while reading it (see :mod:`s3ferry.streamed`)."""
        slot = ReaderSlot(self.source, self.bwlimit)
        try:
            for part in self.next_part:
                _checkpoint()
                try:
                    receipt = await self.retry.run(partial(self._stream, slot, part),
                                                   f"uploading part {part.number}", on_retry=self._on_retry)
                except S3FerryError:
                    metrics.PARTS.labels("failed").inc()
                    raise
                self.uploaded_bytes += part.length
                await self._stored(receipt, part.length)
        finally:
            await slot.close()

    async def _stream(self, slot: ReaderSlot, part: Part) -> Receipt:
        assert self.algorithm is not None
        body = StreamedPart(slot, part, self.algorithm)  # a retry reads the range from the source again
        async with self.limit:
            receipt = await self.attempt.writer.write_stream(part, body)  # type: ignore[attr-defined]
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
            self.uploaded_bytes += part.length
            await self._stored(receipt, part.length)

    async def _upload(self, part: Part, buf: bytearray, digest: checksums.PartDigest | None) -> Receipt:
        async with self.limit:
            receipt = await self.attempt.writer.write_part(part, memoryview(buf)[: part.length], digest)
        await self.limit.succeeded()
        return receipt

    async def _on_retry(self, exc: S3FerryError) -> None:
        if is_throttle(exc):
            await self.limit.throttled()

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


async def _pump(job: _Job, options: TransferOptions, streamed: bool = False) -> None:
    todo = len(job.parts) - len(job.attempt.done)
    if todo == 0:
        return
    if streamed:
        await _pump_streamed(job, options, todo)
        return
    # A source without ranged reads (an HTTP server ignoring Range) is read by
    # one stream, in order; the shared part iterator already hands parts out in order.
    readers_n = min(options.read_streams, todo) if job.source.features.ranged_reads else 1
    uploaders_n = min(options.upload_streams, todo)
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(uploaders_n):
                group.create_task(job.upload_worker())
            readers = [group.create_task(job.read_worker()) for _ in range(readers_n)]
            group.create_task(job.close_after(readers, uploaders_n))
    except BaseExceptionGroup as eg:
        raise _first_error(eg) from None


async def _pump_streamed(job: _Job, options: TransferOptions, todo: int) -> None:
    workers = min(options.upload_streams, todo) if job.source.features.ranged_reads else 1
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(job.stream_worker())
    except BaseExceptionGroup as eg:
        raise _first_error(eg) from None


def _streams_parts(sink: Sink, options: TransferOptions, part_size: int, algorithm: object) -> bool:
    """Stream parts when the byte budget cannot hold two whole ones and the sink can take them so."""
    return algorithm is not None and sink.features.streamed_parts and 2 * part_size > options.max_memory


async def _check_unchanged(source: Source, before: Stat) -> None:
    after = await source.stat()
    if after.fingerprint() != before.fingerprint():
        raise SourceChangedError(
            f"{source.location} changed during the transfer (size {before.size} -> {after.size}, "
            f"mtime {before.mtime} -> {after.mtime}); nothing was written"
        )


async def transfer(
    source: Source,
    sink: Sink,
    options: TransferOptions,
    progress: ProgressListener | None = None,
    journal: Journal | None = None,
    known: Stat | None = None,
    executor: "PartExecutor | None" = None,
) -> TransferResult:
    """Copy one file from ``source`` to ``sink``; see the module docstring.

    ``journal``: a journal shared by the files of a tree (else one is opened
    and closed here). ``known``: the source's stat from a listing, when the
    backend's listing is as good as a stat (the check before completion stays).
    ``executor``: runs the parts elsewhere (Dask, :mod:`s3ferry.distributed`).
    """
    own = journal is None
    journal = journal or Journal(options.state_dir)  # read even with --no-resume, to refuse an earlier attempt
    try:
        return await _transfer(source, sink, options, progress or _NoProgress(), journal, known, executor)
    finally:
        if own:
            await asyncio.shield(journal.close())


async def _transfer(source: Source, sink: Sink, options: TransferOptions, progress: ProgressListener,
                    journal: Journal, known: Stat | None, executor: "PartExecutor | None") -> TransferResult:
    meter = ResourceMeter()
    retry = RetryPolicy(retries=options.retries)
    stat = known or await retry.run(source.stat, "reading the source's size")
    await sink.prepare()
    note = getattr(sink, "note_source", None)
    if note is not None:
        note(stat)  # the source's mtime goes with the copy (S3 metadata, a file's mtime)
    part_size = options.part_size_for(stat.size)
    if sink.features.offset_writes:
        # A file destination has no part-count limit: parts sized to the budget.
        part_size = min(part_size, max(MIN_PART_SIZE, options.max_memory // 4))
    parts = plan_parts(stat.size, part_size)
    plan = Plan(str(source.location), str(sink.location), stat, parts, part_size, checksums.get(options.checksum),
                options.resume)
    if sink.features.resumable and len(parts) > 1:
        # Only a multipart upload is journaled; two processes must not share one.
        async with journal.lock(plan.source, plan.destination):
            return await _run(source, sink, options, progress, journal, plan, meter, executor)
    return await _run(source, sink, options, progress, journal, plan, meter, executor)


async def _run(source: Source, sink: Sink, options: TransferOptions, progress: ProgressListener, journal: Journal,
               plan: Plan, meter: ResourceMeter, executor: "PartExecutor | None" = None) -> TransferResult:
    started = time.monotonic()
    retry = RetryPolicy(retries=options.retries)
    stat, parts, part_size, algorithm = plan.stat, plan.parts, plan.part_size, plan.algorithm
    attempt = await prepare(plan, sink, journal)
    # With an executor the parts are read on the workers: nothing is buffered here.
    streamed = executor is None and _streams_parts(sink, options, part_size, algorithm)
    # A file smaller than a part gets a buffer of its own size: a tree of small
    # files must not cost a full part buffer each. Streamed parts need none.
    pool = BufferPool(0 if streamed else min(options.buffer_count(part_size), len(parts) + 1),
                      min(part_size, stat.size))
    job = _Job(source, attempt, parts, pool, algorithm, progress, retry, AdaptiveLimit(options.upload_streams),
               journal, limit_for(options.bwlimit))
    progress.started(source.location.name, stat.size)
    progress.advanced(sum(p.length for p in parts if p.number in attempt.done))
    try:
        # Parts go to other machines only for an object store every worker reaches: a file destination
        # (a local disk, one shared SFTP connection) is written by this process.
        if executor is not None and attempt.writer.upload_id and not sink.features.offset_writes:
            await executor.pump(job, options, sink.location)  # parts on other machines; receipts come back
        else:
            await _pump(job, options, streamed)
        receipts = job.ordered_receipts()
        await retry.run(lambda: _check_unchanged(source, stat), "checking the source again")
        whole = algorithm.whole([r.digest for r in receipts if r.digest], single=len(parts) == 1) if algorithm else None
        if journal is not None:
            # Every part on record before S3 may finish the object: a crash
            # during completion can then be recognised instead of redone.
            await journal.flush()
        completed = await attempt.writer.complete(receipts, whole)
    except BaseException as exc:
        await asyncio.shield(_after_failure(exc, attempt, journal, str(sink.location)))
        raise
    finally:
        progress.finished()
    try:
        if sink.features.verifies_checksum:
            await _verify(attempt.writer, completed.size, completed.checksum, stat.size, whole, str(sink.location))
        else:
            # A file destination reports no checksum: check against the source's own, where it has one.
            known = _source_checksum(stat, algorithm)
            await _verify(attempt.writer, completed.size, known, stat.size, whole if known else None,
                          str(sink.location))
    finally:
        if journal is not None and attempt.transfer_id is not None:
            await journal.forget(attempt.transfer_id)
    return TransferResult(
        source=str(source.location), destination=str(sink.location), size=stat.size,
        seconds=time.monotonic() - started, parts=len(parts), part_size=part_size,
        checksum_algorithm=options.checksum, checksum=whole, peak_rss_bytes=meter.peak_rss(),
        disk_write_bytes=meter.disk_writes(), resumed_parts=len(attempt.done) + job.adopted,
        uploaded_bytes=job.uploaded_bytes,
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
        partial = getattr(attempt.writer, "partial", None)  # a file destination's temporary file
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


def _source_checksum(stat: Stat, algorithm: checksums.Algorithm | None) -> str | None:
    """The source's own stored checksum, when it is of the algorithm we computed (else None: not checked)."""
    if algorithm is None or stat.checksum is None or not algorithm.full_object:
        return None
    name, value = stat.checksum
    return value if name == algorithm.s3_name else None


async def _verify(writer: ChunkWriter, got_size: int, got_sum: str | None, size: int, whole: str | None,
                  where: str) -> None:
    """Size always; the checksum when the destination (or the source's own record) reports one."""
    problem = None
    if got_size != size:
        problem = f"{where} holds {got_size} bytes, the source {size}"
    elif whole is not None and got_sum != whole:
        problem = f"{where} checksum {got_sum} differs from the source's {whole}"
    if problem:
        await writer.discard()
        raise IntegrityError(f"integrity check failed, object removed: {problem}")
