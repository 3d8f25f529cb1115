"""Scale-out on Dask: the parts of one file, or the files of a tree, run on Dask workers.

One file (``cp``): this process (the coordinator) does everything the local
engine does -- stat, plan, journal, create the multipart upload, complete,
verify -- except moving bytes: each part (ranged read, checksum, UploadPart)
is one Dask task. Receipts come back as tasks finish and are journaled at
once, so ``--resume`` works exactly as locally, and progress and metrics stay
on the coordinator.

A tree (``cp -r``): each file is one task that runs the whole local engine
on a worker.

Workers keep their connections (SSH sessions, the S3 client) per process
across tasks, on one event loop thread per worker process. Secrets never
travel in the task graph: a task carries locations and options -- key *file
paths*, never passwords or keys -- and each worker resolves credentials from
its own environment and files (``AWS_*``, ``S3FERRY_SFTP_PASSWORD``, the key
files at the same paths). A lost worker costs only its tasks in flight:
Dask runs them again elsewhere (re-sending a part replaces it), and the
result is byte-identical.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import socket
import threading
from collections.abc import Generator
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from s3ferry.backends import open_sink, open_source
from s3ferry.core import checksums
from s3ferry.core.errors import S3FerryError, TransferError, UsageError
from s3ferry.core.options import TransferOptions
from s3ferry.core.storage import MetadataSink, Part, PinnedSource, Receipt, Sink, Source, Stat
from s3ferry.core.urls import Location
from s3ferry.engine.journal import Journal
from s3ferry.engine.retry import RetryPolicy
from s3ferry.engine.transfer import FileCopied, PartJob
from s3ferry.observe import audit
from s3ferry.observe.progress import ProgressListener
from s3ferry.operations.single import copy_file, record_copy

R = TypeVar("R")

# -- worker side -------------------------------------------------------------------

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()
_SOURCES: dict[tuple[Location, TransferOptions], Source] = {}
_SINKS: dict[tuple[Location, TransferOptions], Sink] = {}
log = logging.getLogger(__name__)

# glibc mallopt() parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Largest block glibc takes from the heap instead of mmap (its own ceiling for this setting: 32 MiB).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory glibc keeps at the top of the heap before giving it back to the system.
TRIM_THRESHOLD = 64 * 1024 * 1024


def _tune_malloc() -> None:
    """Undo the malloc setting Dask's nanny gives workers, which triples s3ferry's CPU per byte.

    The nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (so freed
    memory goes back to the system). Setting any malloc threshold switches off
    glibc's *dynamic* mmap threshold, so every buffer above 128 KiB -- each
    slice asyncssh cuts from its input buffer, each part buffer -- becomes an
    mmap/munmap pair whose pages the kernel faults in and zeroes again: 1 GiB
    through SFTP costs ~9 CPU-seconds instead of ~2.6. Thresholds like the ones
    glibc would have reached on its own bring it back; the cost is at most
    ``TRIM_THRESHOLD`` of freed memory kept per worker process. Set
    ``S3FERRY_WORKER_MALLOC=keep`` to leave the worker's malloc alone.
    """
    if os.environ.get("S3FERRY_WORKER_MALLOC", "").lower() == "keep":
        return
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc (musl, macOS): nothing to undo
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        log.debug("mallopt refused the thresholds; the worker keeps its malloc settings")


def _loop() -> asyncio.AbstractEventLoop:
    """This worker process's event loop (a daemon thread): connections live on it across tasks."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            _tune_malloc()
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="s3ferry-worker-loop", daemon=True).start()
            _LOOP = loop
    return _LOOP


def _root(location: Location, options: TransferOptions) -> tuple[Location, TransferOptions]:
    """The key of the endpoint a location's server shares in this process (its root, and the options)."""
    return (location.with_path("/") if location.scheme != "s3" else location.with_path(""), options)


def _source_at(location: Location, options: TransferOptions) -> Source:
    """A source kept open in this process, one per server and options (children share it)."""
    key = _root(location, options)
    if key not in _SOURCES:
        _SOURCES[key] = open_source(key[0], options)
    return _SOURCES[key].child(location.path)


def _sink_at(location: Location, options: TransferOptions) -> Sink:
    """A sink kept open in this process, one per server and options (children share it)."""
    key = _root(location, options)
    if key not in _SINKS:
        _SINKS[key] = open_sink(key[0], options)
    return _SINKS[key].child(location.path)


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class PartTask:
    """Everything a worker needs for one part: no secret, no payload."""

    source: Location
    destination: Location
    options: TransferOptions
    upload_id: str
    checksum: str
    part: Part


@dataclass(frozen=True)
class PartDone:
    """What a part's task returns: its receipt, and the worker that ran it."""

    receipt: Receipt
    worker: str


@dataclass(frozen=True)
class FileDone:
    """What a file's task returns: the copy, and the worker that ran it."""

    copied: FileCopied
    worker: str


async def _run_part(task: PartTask) -> PartDone:
    algorithm = checksums.get(task.checksum)
    source = _source_at(task.source, task.options)
    sink = _sink_at(task.destination, task.options)
    # The same backoff as the local engine: Dask's own retries come at once, which S3's SlowDown punishes.
    retry = RetryPolicy(retries=task.options.retries)
    view = memoryview(bytearray(task.part.length))

    async def read() -> None:
        async with source.reader() as reader:  # a failed reader drops its connection: a retry gets a new one
            await reader.read_into(task.part.offset, view)

    await retry.run(read, f"reading part {task.part.number}")
    digest = None
    if algorithm is not None:
        digest = checksums.PartDigest(await asyncio.to_thread(algorithm.part, view), task.part.length)
    writer = sink.resume_writer(task.upload_id, algorithm)
    receipt = await retry.run(partial(writer.write_part, task.part, view, digest), f"uploading part {task.part.number}")
    return PartDone(receipt, _where())


def run_part(task: PartTask) -> PartDone:
    """Dask task: read, checksum and upload one part; returns its receipt and where it ran."""
    return asyncio.run_coroutine_threadsafe(_run_part(task), _loop()).result()


@dataclass(frozen=True)
class FileTask:
    """Everything a worker needs for one file: no secret, no payload."""

    source: Location
    destination: Location
    options: TransferOptions
    #: user metadata for the object (pull's source fingerprint), as the coordinator's sink holds it
    metadata: tuple[tuple[str, str], ...] = ()


async def _run_file(task: FileTask) -> FileDone:
    source = _source_at(task.source, task.options)
    sink = _sink_at(task.destination, task.options)
    if task.metadata and isinstance(sink, MetadataSink):
        sink.metadata = dict(task.metadata)
    # the coordinator records the delivery in its own audit trail (record_copy): the worker's has none of it
    result = await copy_file(source, sink, task.options.replace(audit_log=audit.OFF))
    etag = source.pinned_etag if isinstance(source, PinnedSource) else None
    return FileDone(FileCopied(result, etag), _where())


def run_file(task: FileTask) -> FileDone:
    """Dask task: one file through the whole local engine on this worker; the result carries the
    version that was read (push marks it)."""
    return asyncio.run_coroutine_threadsafe(_run_file(task), _loop()).result()


# -- coordinator side ------------------------------------------------------------------

class _Future(Protocol):
    """What s3ferry uses of a ``distributed.Future`` (distributed leaves most of it unannotated)."""

    key: str

    def done(self) -> bool: ...

    def __await__(self) -> Generator[Any, None, object]: ...


class _Client(Protocol):
    """What s3ferry uses of an asynchronous ``distributed.Client``."""

    def submit(self, func: Any, *args: Any, key: str | None = None, retries: int | None = None,
               pure: bool | None = None) -> _Future: ...

    async def cancel(self, futures: list[_Future]) -> None: ...

    async def close(self) -> None: ...


class DaskExecutor:
    """The :class:`~s3ferry.engine.transfer.Executor` on a Dask cluster: parts of one file
    (:meth:`pump`), or whole files (:meth:`copy_file`), as Dask tasks."""

    remote = True

    def __init__(self, scheduler: str, retries: int = 1) -> None:
        self.scheduler = scheduler
        self.retries = retries
        self.workers_used: set[str] = set()
        self._client: _Client | None = None

    async def __aenter__(self) -> DaskExecutor:
        try:
            from distributed import Client  # a heavy import, only for --executor dask
        except ImportError as exc:
            raise UsageError("--executor dask needs dask.distributed: pip install 's3ferry[dask]'") from exc
        try:
            client = Client(self.scheduler, asynchronous=True, timeout="20s")  # type: ignore[no-untyped-call]  # unannotated
            self._client = await client
        except (OSError, TimeoutError) as exc:
            raise TransferError(f"cannot reach the Dask scheduler at {self.scheduler}: {exc}",
                                retryable=False) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()

    @property
    def client(self) -> _Client:
        if self._client is None:
            raise UsageError("the Dask executor is used outside its `async with` block")
        return self._client

    async def pump(self, job: PartJob, options: TransferOptions, destination: Location) -> None:
        """Submit every part not yet stored; journal each receipt as its task finishes."""
        from distributed import as_completed  # a heavy import, only for --executor dask

        upload_id = job.attempt.writer.upload_id
        assert upload_id is not None  # the engine hands out only multipart uploads
        tasks = [PartTask(job.source.location, destination, options, upload_id, options.checksum, part)
                 for part in job.next_part]
        futures = [self.client.submit(run_part, task, retries=self.retries, pure=False,
                                      key=f"s3ferry-part-{upload_id[:16]}-{task.part.number}")
                   for task in tasks]
        lengths = {f.key: t.part.length for f, t in zip(futures, tasks, strict=True)}
        try:
            async for future in as_completed(futures):  # type: ignore[no-untyped-call]  # unannotated in distributed
                done = await self._result(future, PartDone)
                self.workers_used.add(done.worker)
                await job.sent(done.receipt, lengths[future.key])
        finally:
            await self._cancel(futures)

    async def _cancel(self, futures: list[_Future]) -> None:
        """Stop the tasks still queued or running (after a failure, Ctrl-C): their parts are not wanted now."""
        pending = [f for f in futures if not f.done()]
        if not pending:
            return
        try:
            # shielded: this runs while the pump itself may be being cancelled
            await asyncio.shield(self.client.cancel(pending))
        except (OSError, TimeoutError) as exc:
            log.debug("could not cancel %d Dask tasks: %s", len(pending), exc)

    async def _result(self, future: _Future, kind: type[R]) -> R:
        """A task's result, of the type its task function returns; a lost connection or worker is a
        (retryable) transfer error."""
        try:
            result = await future
        except S3FerryError:
            raise
        except (OSError, TimeoutError) as exc:
            raise TransferError(f"a Dask task failed: {exc}") from exc
        if not isinstance(result, kind):
            raise TypeError(f"a Dask task returned {type(result).__name__}, not {kind.__name__}")
        return result

    async def copy_file(self, source: Source, sink: Sink, options: TransferOptions,
                        progress: ProgressListener | None = None, journal: Journal | None = None,
                        known: Stat | None = None) -> FileCopied:
        """One file as one task: the worker stats and journals it itself (``journal`` and ``known``
        are not used); ``progress`` hears of its bytes when it is done."""
        metadata = tuple(sorted(sink.metadata.items())) if isinstance(sink, MetadataSink) else ()
        task = FileTask(source.location, sink.location, options, metadata)
        done = await self._result(self.client.submit(run_file, task, retries=self.retries, pure=False), FileDone)
        self.workers_used.add(done.worker)
        await record_copy(options, done.copied.result)
        if progress is not None:
            progress.started(source.location.name, done.copied.result.size)
            progress.advanced(done.copied.result.size)
            progress.finished()
        return done.copied
