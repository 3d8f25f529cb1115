"""The transfer engine: plan parts, stream them through a bounded window, complete, verify.

::

    source ──read_streams readers──> [part buffers: the byte budget] ──upload_streams──> sink
                                           ^                                      │
                                           └──────── buffer returned ─────────────┘

Readers take the next part in order, wait for a free buffer (the budget),
fill it from the source and checksum it; uploaders send full buffers and
return them. All of it runs in one ``TaskGroup``: the first failure cancels
every sibling, the upload is aborted, and the error propagates. The object
is completed only when a receipt exists for every planned part, and it is
kept only if the checksum S3 reports equals the one computed from the bytes
read from the source.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol, Sequence

from . import checksums
from .backends.base import ChunkWriter, Part, Receipt, Sink, Source, Stat
from .errors import IntegrityError, S3FerryError, SourceChangedError, TransferError
from .observe.resources import ResourceMeter
from .options import TransferOptions


class ProgressListener(Protocol):
    """Subscriber for progress events (the CLI's progress bar is one)."""

    def started(self, name: str, total: int) -> None: ...

    def advanced(self, nbytes: int) -> None: ...

    def finished(self) -> None: ...


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
            "checksum_algorithm": self.checksum_algorithm,
            "checksum": self.checksum,
            "peak_rss_bytes": self.peak_rss_bytes,
            "disk_write_bytes": self.disk_write_bytes,
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


async def _digest(algorithm: checksums.Algorithm | None, data: memoryview) -> checksums.PartDigest | None:
    if algorithm is None:
        return None
    # Hashing runs off the event loop: the loop keeps feeding sockets meanwhile.
    raw = await asyncio.to_thread(algorithm.part, data)
    return checksums.PartDigest(raw, len(data))


@dataclass
class _Job:
    """One transfer's moving parts, shared by its reader and uploader tasks."""

    source: Source
    writer: ChunkWriter
    parts: list[Part]
    pool: BufferPool
    algorithm: checksums.Algorithm | None
    progress: ProgressListener

    def __post_init__(self) -> None:
        self.next_part = iter(self.parts)
        self.ready: asyncio.Queue[tuple[Part, bytearray, checksums.PartDigest | None] | None] = asyncio.Queue()
        self.receipts: dict[int, Receipt] = {}

    async def read_worker(self) -> None:
        async with self.source.reader() as reader:
            for part in self.next_part:  # shared iterator: each part is taken once
                buf = await self.pool.get()
                view = memoryview(buf)[: part.length]
                await reader.read_into(part.offset, view)
                digest = await _digest(self.algorithm, view)
                await self.ready.put((part, buf, digest))

    async def upload_worker(self) -> None:
        while (item := await self.ready.get()) is not None:
            part, buf, digest = item
            receipt = await self.writer.write_part(part, memoryview(buf)[: part.length], digest)
            self.receipts[part.number] = receipt
            self.pool.put(buf)
            self.progress.advanced(part.length)

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


async def _pump(job: _Job, options: TransferOptions) -> None:
    readers_n = min(options.read_streams, len(job.parts))
    uploaders_n = min(options.upload_streams, len(job.parts))
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(uploaders_n):
                group.create_task(job.upload_worker())
            readers = [group.create_task(job.read_worker()) for _ in range(readers_n)]
            group.create_task(job.close_after(readers, uploaders_n))
    except BaseExceptionGroup as eg:
        raise _first_error(eg) from None


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
) -> TransferResult:
    """Copy one file from ``source`` to ``sink``; see the module docstring."""
    progress = progress or _NoProgress()
    meter = ResourceMeter()
    started = time.monotonic()
    stat = await source.stat()
    part_size = options.part_size_for(stat.size)
    parts = plan_parts(stat.size, part_size)
    algorithm = checksums.get(options.checksum)
    writer = await sink.open_writer(stat.size, part_size, algorithm)
    pool = BufferPool(min(options.buffer_count(part_size), len(parts) + 1), part_size)
    job = _Job(source, writer, parts, pool, algorithm, progress)
    progress.started(source.location.name, stat.size)
    try:
        await _pump(job, options)
        receipts = job.ordered_receipts()
        await _check_unchanged(source, stat)
        whole = algorithm.whole([r.digest for r in receipts if r.digest], single=len(parts) == 1) if algorithm else None
        completed = await writer.complete(receipts, whole)
    except BaseException:
        await asyncio.shield(_abort_quietly(writer))
        raise
    finally:
        progress.finished()
    await _verify(writer, completed.size, completed.checksum, stat.size, whole, str(sink.location))
    return TransferResult(
        source=str(source.location),
        destination=str(sink.location),
        size=stat.size,
        seconds=time.monotonic() - started,
        parts=len(parts),
        part_size=part_size,
        checksum_algorithm=options.checksum,
        checksum=whole,
        peak_rss_bytes=meter.peak_rss(),
        disk_write_bytes=meter.disk_writes(),
    )


async def _abort_quietly(writer: ChunkWriter) -> None:
    try:
        await writer.abort()
    except S3FerryError:
        # The transfer already failed with a better error; the upload stays
        # listed by `s3ferry uploads` for a later `cancel`.
        pass


async def _verify(writer: ChunkWriter, got_size: int, got_sum: str | None, size: int, whole: str | None,
                  where: str) -> None:
    problem = None
    if got_size != size:
        problem = f"{where} holds {got_size} bytes, the source {size}"
    elif whole is not None and got_sum != whole:
        problem = f"{where} checksum {got_sum} differs from the source's {whole}"
    if problem:
        await writer.discard()
        raise IntegrityError(f"integrity check failed, object removed: {problem}")
