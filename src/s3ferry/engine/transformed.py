"""A copy through stages (issue 19): read ahead in parallel, transform in order, upload parts of unknown count.

::

    source ──read_streams readers, slabs in order──> stage chain ──cut into parts──> upload_streams ──> sink

The untransformed copy (:mod:`s3ferry.engine.transfer`) knows every part's
offset before it reads a byte; a transform does not: its output has a length
learned only at the end. So the source is read ahead as usual (several
ranges at once, the slabs handed on in order), fed through the chain, and the
output cut into parts as it comes; each part goes as soon as it is full, into
a multipart upload (S3) or at its offset into the temporary file (local,
SFTP), whose size is given at the end.

Memory: ``reads x SLAB`` of read-ahead, ``(uploads + 1) x part size`` of
output parts (in flight, being cut), plus the codec's own state (zstd's window: 8 MiB at level 19,
more at 20-22), all within ``--max-memory`` except the codec's. Nothing goes to
disk.

Verification: the stored bytes as usual (S3 checks every part's checksum and
the whole object's); the source's bytes are hashed on the way (SHA-256, kept
in the result and, for S3, in the object's metadata when the source's own
check was known before the upload started) and compared with the source's
stored check when it has one (an S3 source); each stage checks its own format
(gzip CRC, zstd XXH64). Any failure aborts the upload: nothing is published.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from functools import partial

from s3ferry.core import checksums
from s3ferry.core.errors import IntegrityError, S3FerryError, SourceChangedError, TransferError
from s3ferry.core.options import TransferOptions, parse_compress
from s3ferry.core.storage import (
    AnnotatingWriter,
    ChunkWriter,
    Completed,
    MetadataSink,
    Part,
    PinnedSource,
    Receipt,
    Sink,
    SizedWriter,
    Source,
    Stat,
)
from s3ferry.core.verification import StoredCheck, Tally, Verdict
from s3ferry.engine.journal import Journal, PartRecord
from s3ferry.engine.retry import RetryPolicy
from s3ferry.engine.stage_resume import Earlier, Shape, label, open_attempt
from s3ferry.engine.stages import Stage, deterministic, renamed
from s3ferry.engine.throttle import limit_for
from s3ferry.engine.transfer import ProgressListener, ReaderSlot, TransferResult
from s3ferry.observe.progress import NoProgress
from s3ferry.observe.resources import ResourceMeter

log = logging.getLogger("s3ferry")

#: bytes read from the source per request of the read-ahead (an SFTP read of it keeps 8 x 256 KiB in flight;
#: ``2 x --read-streams`` slabs are read at once). 2 MiB rather than 4: each slab is copied once into the bytes
#: the stages take, and a smaller slab halves that transient copy (docs/benchmarks.md, *Transforms in flight*)
SLAB = 2 * 1024 * 1024
MAX_PARTS = 10_000
#: the metadata key of the source's SHA-256 (S3 prepends x-amz-meta-)
SOURCE_SHA256_KEY = "s3ferry-source-sha256"
#: the metadata key naming the chain the object went through
STAGES_KEY = "s3ferry-stages"


def stages_for(options: TransferOptions) -> list[Stage]:
    """The chain ``options`` ask for, in the one order that makes sense: undo what the source carries
    (decrypt, then decompress), then do what the destination wants (compress, then encrypt)."""
    from s3ferry.engine.compression import Compress, Decompress  # zstandard: loaded only when asked for
    from s3ferry.engine.pgp import pgp_stages

    decrypt, encrypt = pgp_stages(options)
    decompress: list[Stage] = [Decompress(options.decompress)] if options.decompress else []
    compress: list[Stage] = []
    if options.compress:
        name, level = parse_compress(options.compress)
        compress.append(Compress("gzip" if name == "gzip" else "zstd", level))
    return [*decrypt, *decompress, *compress, *encrypt]


def transforms(options: TransferOptions) -> bool:
    """Whether ``options`` ask for any stage (the copy then goes through :func:`transfer_transformed`)."""
    return bool(options.compress or options.decompress or options.pgp.any)


def destination_name(options: TransferOptions, name: str) -> str:
    """The destination's file name for a source named ``name`` (``a.csv`` -> ``a.csv.zst``), unless --keep-name."""
    if options.keep_name or not transforms(options):
        return name
    return renamed(stages_for(options), name)


def describe(stages: list[Stage]) -> str:
    """The chain as the journal and the metadata record it: ``unzstd,gzip:6``."""
    return ",".join(stage.name for stage in stages)


@dataclass(frozen=True)
class Budget:
    """How the memory budget is split: read-ahead slabs, output parts in flight."""

    slab: int
    reads: int
    part_size: int
    uploads: int

    @classmethod
    def of(cls, options: TransferOptions, part_size: int) -> Budget:
        reads = max(1, min(2 * options.read_streams, options.max_memory // 4 // SLAB))  # default: 4 x 2 MiB
        left = options.max_memory - reads * SLAB
        # parts held: one per upload in flight, one being cut
        uploads = max(1, min(options.upload_streams, left // part_size - 1))
        return cls(SLAB, reads, part_size, uploads)


async def read_in_order(source: Source, size: int, budget: Budget, options: TransferOptions,
                        retry: RetryPolicy) -> AsyncIterator[bytes]:
    """The source's bytes in order, ``budget.reads`` slabs read ahead over ``read_streams`` streams."""
    streams = min(options.read_streams, budget.reads) if source.features.ranged_reads else 1
    slots: asyncio.Queue[ReaderSlot] = asyncio.Queue()
    for _ in range(streams):
        slots.put_nowait(ReaderSlot(source, limit_for(options.bwlimit)))

    async def read(offset: int, length: int) -> bytes:
        buf = bytearray(length)
        slot = await slots.get()  # FIFO: slabs are served in the order they were asked for
        try:
            await retry.run(lambda: slot.read_into(offset, memoryview(buf)), f"reading {length} bytes at {offset}")
        finally:
            slots.put_nowait(slot)
        return bytes(buf)  # stages take bytes (immutable: the hash thread and the stage read it at once)

    offsets = iter(range(0, size, budget.slab))
    ahead: collections.deque[asyncio.Future[bytes]] = collections.deque()
    try:
        for offset in offsets:
            ahead.append(asyncio.ensure_future(read(offset, min(budget.slab, size - offset))))
            if len(ahead) >= budget.reads:
                yield await ahead.popleft()
        while ahead:
            yield await ahead.popleft()
    finally:
        for task in ahead:
            task.cancel()
        await asyncio.gather(*ahead, return_exceptions=True)
        while not slots.empty():
            await slots.get_nowait().close()


class SourceTally:
    """The source's bytes as they pass: SHA-256 always, the source's own stored check when it has one."""

    def __init__(self, expected: StoredCheck | None, size: int) -> None:
        self.sha256 = hashlib.sha256()
        self.expected = expected
        self.tally = Tally(expected, size) if expected is not None else None
        self.offset = 0

    def add(self, data: bytes) -> None:
        self.sha256.update(data)
        if self.tally is not None:
            self.tally.add(self.offset, data)
        self.offset += len(data)

    def verdict(self, where: str) -> str:
        """What was checked of the source; raises IntegrityError when its stored check differs."""
        digest = self.sha256.hexdigest()
        if self.expected is None or self.tally is None:
            return f"source sha256 {digest}"
        got = self.tally.value()
        if not self.expected.equals(got):
            raise IntegrityError(f"integrity check failed: the bytes read from {where} give "
                                 f"{self.expected.describe()} {got}, the object stores {self.expected.value}; "
                                 "nothing was published")
        return f"source sha256 {digest}, its {self.expected.describe()} {got} equal to the one it stores"


async def _tallied(chunks: AsyncIterator[bytes], tally: SourceTally,
                   progress: ProgressListener) -> AsyncIterator[bytes]:
    """The chunks, hashed on the way: a chunk's hash runs in a thread while the stage works on it (both
    release the GIL, so two cores work), and is awaited before the next chunk is hashed (in order)."""
    hashing: asyncio.Future[None] | None = None
    try:
        async for chunk in chunks:
            if hashing is not None:
                await hashing
            hashing = asyncio.ensure_future(asyncio.to_thread(tally.add, chunk))
            progress.advanced(len(chunk))
            yield chunk  # bytes: the hash thread and the stage read it at once
        if hashing is not None:
            await hashing
    finally:
        if hashing is not None and not hashing.done():
            await asyncio.gather(hashing, return_exceptions=True)  # the thread runs to its end anyway


@dataclass
class Uploads:
    """The output parts: cut from the stream, checksummed, sent ``uploads`` at a time (or, resuming, proven
    stored already: :class:`~s3ferry.engine.stage_resume.Earlier`), each journaled once stored."""

    writer: ChunkWriter
    algorithm: checksums.Algorithm | None
    retry: RetryPolicy
    budget: Budget
    limit_parts: bool
    earlier: Earlier
    journal: Journal | None = None
    receipts: dict[int, Receipt] = field(default_factory=dict)
    #: uploads free to take a part (set by :meth:`run`)
    _free: asyncio.Semaphore = field(init=False, repr=False)
    total: int = 0  # output bytes
    sent: int = 0  # output bytes this attempt sent
    parts: int = 0
    resumed: int = 0  # parts an earlier attempt stored, proven by their re-derived bytes

    async def run(self, output: AsyncIterator[bytes]) -> None:
        # A part is cut only when an upload is free to take it: parts held are the uploads' and the one being cut.
        self._free = asyncio.Semaphore(self.budget.uploads)
        queue: asyncio.Queue[tuple[Part, bytearray] | None] = asyncio.Queue()
        async with asyncio.TaskGroup() as group:
            workers = [group.create_task(self._worker(queue)) for _ in range(self.budget.uploads)]
            try:
                await self._cut(output, queue)
            finally:
                for _ in workers:
                    await queue.put(None)

    async def _cut(self, output: AsyncIterator[bytes], queue: asyncio.Queue[tuple[Part, bytearray] | None]) -> None:
        """Whole parts from the output's chunks, each byte copied once, straight into its part's buffer (a
        part is never held twice over, as pieces and joined)."""
        size = self.budget.part_size
        await self._free.acquire()
        buf, filled = bytearray(size), 0
        async for chunk in output:
            view = memoryview(chunk)
            while view:
                n = min(size - filled, len(view))
                buf[filled:filled + n] = view[:n]
                filled, view = filled + n, view[n:]
                if filled == size:
                    await queue.put((self._next_part(size), buf))
                    await self._free.acquire()
                    buf, filled = bytearray(size), 0
        if filled or self.parts == 0:  # the last part (an empty output is one empty part)
            await queue.put((self._next_part(filled), buf))
        else:
            self._free.release()

    def _next_part(self, length: int) -> Part:
        self.parts += 1
        if self.limit_parts and self.parts > MAX_PARTS:
            raise TransferError(f"the transformed output needs more than {MAX_PARTS} parts of "
                                f"{self.budget.part_size} bytes: give a larger --part-size", retryable=False)
        part = Part(self.parts, self.total, length)
        self.total += length
        return part

    async def _worker(self, queue: asyncio.Queue[tuple[Part, bytearray] | None]) -> None:
        while (item := await queue.get()) is not None:
            part, buf = item
            data = memoryview(buf)[: part.length]
            digest = None
            if self.algorithm is not None:
                raw = await asyncio.to_thread(self.algorithm.part, data)
                digest = checksums.PartDigest(raw, len(data))
            receipt = await asyncio.to_thread(self.earlier.proven, part, data, digest) if self.earlier.listed else None
            if receipt is not None:
                self.resumed += 1
            else:
                receipt = await self.retry.run(partial(self.writer.write_part, part, data, digest),
                                               f"uploading part {part.number}")
                self.sent += len(data)
            self.receipts[part.number] = receipt
            del data, buf, item  # this part's memory is free before the next one is cut
            self._free.release()
            if self.journal is not None and self.earlier.transfer_id is not None:
                await self.journal.record_part(self.earlier.transfer_id, PartRecord(
                    part.number, part.length, receipt.etag, digest.b64 if digest else None))

    def ordered(self) -> list[Receipt]:
        return [self.receipts[n] for n in range(1, self.parts + 1)]


async def transfer_transformed(source: Source, sink: Sink, options: TransferOptions,
                               progress: ProgressListener | None = None, known: Stat | None = None,
                               journal: Journal | None = None) -> TransferResult:
    """Copy ``source`` to ``sink`` through the stages ``options`` ask for (see the module docstring).

    ``journal``: where an interrupted upload to S3 is kept, to be resumed (:mod:`s3ferry.engine.stage_resume`).
    """
    retry = RetryPolicy(retries=options.retries)
    stat = known if known is not None else await retry.run(source.stat, "reading the source's size")
    await sink.prepare()
    if journal is not None and journal.working and sink.features.resumable:
        # one process at a time on one upload (as for untransformed copies)
        async with journal.lock(str(source.location), str(sink.location)):
            return await _transformed(source, sink, options, progress or NoProgress(), stat, journal, retry)
    return await _transformed(source, sink, options, progress or NoProgress(), stat, journal, retry)


async def _transformed(source: Source, sink: Sink, options: TransferOptions, progress: ProgressListener, stat: Stat,
                       journal: Journal | None, retry: RetryPolicy) -> TransferResult:
    stages = stages_for(options)
    meter, started = ResourceMeter(), time.monotonic()
    sink.note_source(stat)
    expected = await retry.run(source.stored_check, "reading the source's checksum")
    if isinstance(sink, MetadataSink):
        sink.metadata[STAGES_KEY] = describe(stages)
    files = sink.features.offset_writes
    part_size = options.file_part_size()[0] if files else options.part_size_for(stat.size)
    budget = Budget.of(options, part_size)
    algorithm = checksums.get(options.checksum)
    shape = Shape(str(source.location), str(sink.location), stat, part_size,
                  label(options.checksum, describe(stages)), deterministic(stages), options.resume)
    # Size unknown: a file is opened empty (its size is given before the rename), S3 always multipart.
    writer, earlier = await open_attempt(shape, sink, journal, part_size, algorithm)
    tally = SourceTally(expected, stat.size)
    uploads = Uploads(writer, algorithm, retry, budget, limit_parts=not files, earlier=earlier, journal=journal)
    progress.started(source.location.name, stat.size)
    try:
        layers = _layers(stages, _tallied(read_in_order(source, stat.size, budget, options, retry), tally, progress))
        try:
            await uploads.run(layers[-1])
        except BaseExceptionGroup as group:
            raise _first(group) from None
        finally:
            await _close(layers)
        if tally.offset != stat.size:
            raise SourceChangedError(f"{source.location} gave {tally.offset} bytes, not {stat.size}")
        await _check_unchanged(source, stat, retry)
        source_check = tally.verdict(str(source.location))
        _expect_size(writer, uploads.total)
        receipts = uploads.ordered()
        whole = algorithm.whole([r.digest for r in receipts if r.digest], single=False) if algorithm else None
        if journal is not None:
            await journal.flush()
        completed = await writer.complete(receipts, whole)
    except BaseException as exc:
        await asyncio.shield(_after_failure(exc, writer, journal, earlier, shape, str(sink.location)))
        raise
    finally:
        progress.finished()
    if journal is not None and earlier.transfer_id is not None:
        await journal.forget(earlier.transfer_id)
    stored = await _check_stored(writer, completed, uploads.total, whole, algorithm, str(sink.location))
    if isinstance(writer, AnnotatingWriter) and not await _record_source(writer, completed, tally,
                                                                         str(sink.location)):
        source_check += " (not recorded in the object's tags: see the log)"
    checked = [stage.name for stage in stages if stage.checks_input]
    what = "; ".join([stored.what, source_check, f"through {describe(stages)}",
                      *([f"{', '.join(checked)} checked the format's own checksums"] if checked else [])])
    return TransferResult(
        source=str(source.location), destination=str(sink.location), size=stat.size,
        seconds=time.monotonic() - started, parts=uploads.parts, part_size=part_size,
        checksum_algorithm=options.checksum, checksum=whole, peak_rss_bytes=meter.peak_rss(),
        disk_write_bytes=meter.disk_writes(), resumed_parts=uploads.resumed, uploaded_bytes=uploads.sent,
        verified=stored.verified or tally.tally is not None, verification=what,
        destination_etag=completed.etag,
    )


def _layers(stages: list[Stage], source: AsyncIterator[bytes]) -> list[AsyncIterator[bytes]]:
    """The chain's iterators, from the source's to the last stage's (as :func:`chain` builds them)."""
    layers = [source]
    for stage in stages:
        layers.append(stage.apply(layers[-1]))
    return layers


async def _close(layers: list[AsyncIterator[bytes]]) -> None:
    """Every layer closed, outermost first, at once: ``async for`` does not close what it stopped reading, and
    the source's layer holds SFTP/S3 read streams (a stage's helper process, for OpenPGP)."""
    for layer in reversed(layers):
        if isinstance(layer, AsyncGenerator):
            await layer.aclose()


async def _after_failure(exc: BaseException, writer: ChunkWriter, journal: Journal | None, earlier: Earlier,
                         shape: Shape, where: str) -> None:
    """Kept for a resume when the failure may pass (lost connection, Ctrl-C, SIGTERM) and the chain can
    re-derive its output; otherwise aborted: nothing published, nothing left behind."""
    passing = isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)) or (
        isinstance(exc, S3FerryError) and exc.retryable)
    if passing and shape.deterministic and journal is not None and earlier.transfer_id is not None:
        await journal.flush()
        hint = f"the upload is kept: run the same command again to resume, or `s3ferry cancel {where}`"
        if isinstance(exc, S3FerryError):
            exc.hint = hint
        log.info(hint)
        return
    await _abort(writer, where)
    if journal is not None and earlier.transfer_id is not None:
        await journal.forget(earlier.transfer_id)


async def _record_source(writer: AnnotatingWriter, completed: Completed, tally: SourceTally, where: str) -> bool:
    """The source's SHA-256 as a tag of the object (S3), known only now; True when recorded. The object is
    already verified and published: if this fails it stays, without the record, and the log says so."""
    try:
        await writer.annotate({SOURCE_SHA256_KEY: tally.sha256.hexdigest()}, completed.etag)
    except S3FerryError as exc:
        log.warning("%s: the source's sha256 could not be recorded in its tags (%s)", where, exc)
        return False
    return True


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from the upload workers: ours first (a stage's IntegrityError)."""
    leaves = list(_leaves(group))
    ours = [e for e in leaves if isinstance(e, S3FerryError)]
    return ours[0] if ours else leaves[0]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _expect_size(writer: ChunkWriter, size: int) -> None:
    """A file writer checks the temporary file holds ``size`` bytes before its rename (learned only now)."""
    if isinstance(writer, SizedWriter):
        writer.size = size


async def _check_unchanged(source: Source, before: Stat, retry: RetryPolicy) -> None:
    if isinstance(source, PinnedSource) and source.pinned_etag is not None:
        return  # every read named the version stat() saw
    after = await retry.run(source.stat, "checking the source again")
    if after.fingerprint() != before.fingerprint():
        raise SourceChangedError(f"{source.location} changed during the transfer (size {before.size} -> "
                                 f"{after.size}, mtime {before.mtime} -> {after.mtime}); nothing was published")


async def _abort(writer: ChunkWriter, where: str) -> None:
    """Nothing published: the multipart upload aborted, the temporary file removed."""
    try:
        await writer.abort()
    except S3FerryError as abort_exc:
        log.warning("could not abort the upload to %s (%s); `s3ferry uploads` lists it", where, abort_exc)


async def _check_stored(writer: ChunkWriter, completed: Completed, size: int, whole: str | None,
                        algorithm: checksums.Algorithm | None, where: str) -> Verdict:
    """The destination against what was sent: its size, and S3's checksum of it against ours."""
    problem = None
    if completed.size != size:
        problem = f"{where} holds {completed.size} bytes, {size} were sent"
    elif completed.checksum is not None and completed.checksum != whole:
        problem = f"{where} checksum {completed.checksum} differs from the {whole} of the bytes sent"
    if problem:
        await writer.discard()
        raise IntegrityError(f"integrity check failed, object removed: {problem}")
    if algorithm is None:
        return Verdict(False, "stored bytes NOT verified (--checksum none)")
    if completed.checksum is not None:
        return Verdict(True, f"stored bytes {algorithm.name} {whole} (S3 checked every part and the whole object)")
    if completed.md5_verified:
        return Verdict(True, "stored bytes: every part's MD5 ETag equals the bytes sent")
    return Verdict(False, f"stored bytes: {size} (a file destination reports no checksum: sizes compared)")
