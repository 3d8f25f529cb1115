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
from dataclasses import dataclass
from functools import partial
from typing import Any

from s3ferry.backends import open_sink, open_source
from s3ferry.core import checksums
from s3ferry.core.errors import S3FerryError, TransferError, UsageError
from s3ferry.core.options import TransferOptions
from s3ferry.core.storage import Part, Receipt
from s3ferry.core.urls import Location
from s3ferry.engine.retry import RetryPolicy

# -- worker side -------------------------------------------------------------------

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()
_ENDPOINTS: dict[tuple[str, Location, TransferOptions], Any] = {}
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


def _endpoint(kind: str, location: Location, options: TransferOptions) -> Any:
    """A source or sink kept open in this process, one per server and options (children share it)."""
    root = location.with_path("/") if location.scheme != "s3" else location.with_path("")
    key = (kind, root, options)
    if key not in _ENDPOINTS:
        _ENDPOINTS[key] = open_source(root, options) if kind == "source" else open_sink(root, options)
    return _ENDPOINTS[key].child(location.path)


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


async def _run_part(task: PartTask) -> tuple[Receipt, str]:
    algorithm = checksums.get(task.checksum)
    source = _endpoint("source", task.source, task.options)
    sink = _endpoint("sink", task.destination, task.options)
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
    return receipt, _where()


def run_part(task: PartTask) -> tuple[Receipt, str]:
    """Dask task: read, checksum and upload one part; returns its receipt and where it ran."""
    return asyncio.run_coroutine_threadsafe(_run_part(task), _loop()).result()


def run_file(source: Location, destination: Location, options: TransferOptions,
             metadata: dict[str, str] | None = None) -> tuple[dict[str, object], str]:
    """Dask task: one file through the whole local engine on this worker.

    ``metadata`` goes on the object (pull's source fingerprint); the result
    carries ``source_etag``, the version that was read (push marks it).
    """
    from s3ferry.operations.copy import copy_file

    async def go() -> dict[str, object]:
        src = _endpoint("source", source, options)
        sink = _endpoint("sink", destination, options)
        if metadata:
            sink.metadata = dict(metadata)
        result = await copy_file(src, sink, options)
        return {**result.as_dict(), "source_etag": getattr(src, "pinned_etag", None)}

    return asyncio.run_coroutine_threadsafe(go(), _loop()).result(), _where()


# -- coordinator side ------------------------------------------------------------------

class DaskExecutor:
    """Runs parts (or files) on a Dask cluster; used by the engine through :meth:`pump`."""

    def __init__(self, scheduler: str, retries: int = 1) -> None:
        self.scheduler = scheduler
        self.retries = retries
        self.workers_used: set[str] = set()
        self._client: Any = None

    async def __aenter__(self) -> DaskExecutor:
        try:
            from distributed import Client
        except ImportError as exc:
            raise UsageError("--executor dask needs dask.distributed: pip install 's3ferry[dask]'") from exc
        try:
            self._client = await Client(self.scheduler, asynchronous=True, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise TransferError(f"cannot reach the Dask scheduler at {self.scheduler}: {exc}",
                                retryable=False) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()

    async def pump(self, job: Any, options: TransferOptions, destination: Location) -> None:
        """Submit every part not yet stored; journal each receipt as its task finishes."""
        from distributed import as_completed

        writer = job.attempt.writer
        todo = list(job.next_part)
        tasks = [PartTask(job.source.location, destination, options, writer.upload_id, options.checksum, part)
                 for part in todo]
        futures = [self._client.submit(run_part, task, retries=self.retries, pure=False,
                                       key=f"s3ferry-part-{writer.upload_id[:16]}-{task.part.number}")
                   for task in tasks]
        lengths = {f.key: t.part.length for f, t in zip(futures, tasks)}
        try:
            async for future in as_completed(futures):
                receipt, where = await self._result(future)
                self.workers_used.add(where)
                job.uploaded_bytes += lengths[future.key]
                await job._stored(receipt, lengths[future.key])
        finally:
            await self._cancel(futures)

    async def _cancel(self, futures: list[Any]) -> None:
        """Stop the tasks still queued or running (after a failure, Ctrl-C): their parts are not wanted now."""
        pending = [f for f in futures if not f.done()]
        if not pending:
            return
        try:
            # shielded: this runs while the pump itself may be being cancelled
            await asyncio.shield(self._client.cancel(pending))
        except (OSError, TimeoutError) as exc:
            log.debug("could not cancel %d Dask tasks: %s", len(pending), exc)

    async def _result(self, future: Any) -> Any:
        try:
            return await future
        except S3FerryError:
            raise
        except (OSError, TimeoutError) as exc:
            raise TransferError(f"a Dask task failed: {exc}") from exc

    async def copy_one(self, source: Location, destination: Location, options: TransferOptions,
                       metadata: dict[str, str] | None = None) -> dict[str, object]:
        """One file as one task (pull and push): the result dict, with ``source_etag``."""
        future = self._client.submit(run_file, source, destination, options, metadata, retries=self.retries,
                                     pure=False)
        result, where = await self._result(future)
        self.workers_used.add(where)
        return dict(result)

    async def copy_files(self, pairs: list[tuple[Location, Location]], options: TransferOptions) -> Any:
        """Submit one task per file; yields (index, result dict or S3FerryError) as they finish."""
        from distributed import as_completed

        futures = {self._client.submit(run_file, src, dst, options, None, retries=self.retries, pure=False): i
                   for i, (src, dst) in enumerate(pairs)}
        async for future in as_completed(list(futures)):
            try:
                result, where = await future
            except S3FerryError as exc:
                yield futures[future], exc
                continue
            self.workers_used.add(where)
            yield futures[future], result
