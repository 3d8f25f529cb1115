"""``cp -r``: copy every file below a folder or prefix, several files at a time.

The source is listed first (``Source.walk``), filtered by include/exclude
globs, and each file goes through the same engine as a single ``cp`` -- in a
sliding window: a finished file makes room for the next. Each file in flight
holds a share of the memory budget: a large one ``max_memory / transfers``
(so ``transfers`` large files at a time), a small one only its size, so up to
:data:`SMALL_FILES_FACTOR` times as many small files run at once. A small
file costs round trips (open, read, close: ~3 across a WAN), not bandwidth or
memory; only many of them in flight keep the link busy. One file failing does
not stop the others; the result lists the failures and the exit code reflects
the worst.

Filters follow the AWS CLI: patterns match the path relative to the source
folder (``*`` also crosses ``/``), they are applied in order and the last one
that matches decides; with no filter, everything is copied.

Names come from the remote side: a relative path that would land outside the
destination (``..``, absolute) is refused, reported as a failure (exit 2), and
the other files are still copied.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar, cast

from s3ferry.core.errors import S3FerryError, UsageError
from s3ferry.core.options import MIN_PART_SIZE, TransferOptions
from s3ferry.core.storage import Entry, ListingSink, ReadAheadSource, Sink, Source, Stat
from s3ferry.core.urls import safe_relative
from s3ferry.engine.journal import Journal, open_journal
from s3ferry.engine.transfer import Executor, TransferResult
from s3ferry.engine.transformed import destination_name
from s3ferry.observe.progress import FileBars, ProgressListener
from s3ferry.observe.resources import ResourceMeter
from s3ferry.operations.single import LocalExecutor

log = logging.getLogger("s3ferry")
T = TypeVar("T")
U = TypeVar("U")

#: Small files in flight: at most this many times ``transfers`` (the memory budget decides below that).
SMALL_FILES_FACTOR = 32


@dataclass(frozen=True)
class Filter:
    """One ``--include`` / ``--exclude`` glob."""

    pattern: str
    include: bool

    def matches(self, path: str) -> bool:
        return fnmatch.fnmatchcase(path, self.pattern)


def selected(path: str, filters: Sequence[Filter]) -> bool:
    """Whether ``path`` is copied: the last matching filter decides; none matching means yes."""
    verdict = True
    for f in filters:
        if f.matches(path):
            verdict = f.include
    return verdict


@dataclass
class TreeResult:
    source: str
    destination: str
    files: list[TransferResult] = field(default_factory=list)
    failures: list[tuple[str, S3FerryError]] = field(default_factory=list)
    excluded: int = 0
    seconds: float = 0.0
    peak_rss_bytes: int = 0
    disk_write_bytes: int = 0

    @property
    def copied(self) -> list[TransferResult]:
        return [f for f in self.files if not f.skipped]

    @property
    def skipped(self) -> list[TransferResult]:
        return [f for f in self.files if f.skipped]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.copied)

    @property
    def exit_code(self) -> int:
        return max((exc.exit_code for _, exc in self.failures), default=0)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source, "destination": self.destination, "copied": len(self.copied),
            "skipped": len(self.skipped), "failed": len(self.failures), "excluded": self.excluded, "bytes": self.size,
            "not_verified": sum(1 for f in self.copied if not f.verified),
            "dry_run": any(f.dry_run for f in self.files),
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.size / self.seconds / 1e6, 2) if self.seconds > 0 else 0.0,
            "peak_rss_bytes": self.peak_rss_bytes, "disk_write_bytes": self.disk_write_bytes,
            "failures": [{"path": p, "error": str(e), "exit_code": e.exit_code} for p, e in self.failures],
        }


class _FileProgress:
    """Forwards one file's bytes to the tree's single progress display."""

    def __init__(self, total: ProgressListener) -> None:
        self._total = total

    def started(self, name: str, total: int) -> None:
        return None

    def advanced(self, nbytes: int) -> None:
        self._total.advanced(nbytes)

    def finished(self) -> None:
        return None


def _file_listener(progress: ProgressListener | None, entry: Entry) -> ProgressListener | None:
    """A per-file bar where the display has them (rich), else bytes forwarded to the total."""
    if progress is None:
        return None
    return progress.for_file(entry.path, entry.size) if isinstance(progress, FileBars) else _FileProgress(progress)


def renamed_path(options: TransferOptions, rel: str) -> str:
    """``rel`` with its file name as the transforms of ``options`` rename it (``d/a.csv`` -> ``d/a.csv.zst``)."""
    folder, _, name = rel.rpartition("/")
    new = destination_name(options, name)
    return f"{folder}/{new}" if folder else new


def child_path(base: str, rel: str) -> str:
    """``rel`` (already checked by :func:`safe_relative`) placed under the folder / prefix ``base``."""
    return f"{base.rstrip('/')}/{rel}" if base else rel


async def copy_tree(source: Source, sink: Sink, options: TransferOptions, *, filters: Sequence[Filter] = (),
                    transfers: int = 4, progress: ProgressListener | None = None,
                    executor: Executor | None = None, listed: Sequence[Entry] | None = None) -> TreeResult:
    """Copy every selected file below ``source`` into ``sink`` (both folders / prefixes).

    ``executor``: where each file is copied (default: here, ``transfers`` at a time).
    ``listed``: the files to copy, already listed (a glob's matches in one folder); then
    ``source`` is not walked and ``filters`` are not applied.
    """
    if not source.features.listing:
        raise UsageError(f"{source.location.scheme}:// sources cannot be listed: copy their files one by one")
    if not 1 <= transfers <= 64:
        raise UsageError(f"--transfers must be between 1 and 64, not {transfers}")
    run = executor or LocalExecutor()
    meter, started = ResourceMeter(), time.monotonic()
    result = TreeResult(str(source.location), str(sink.location))
    # Both listings at once: across a WAN each is round trips (and the first connection's set-up)
    selecting = _listed(listed) if listed is not None else _selected_entries(source, filters, result)
    entries, present = await both(selecting, _destination_sizes(sink, options))
    if progress is not None:
        progress.started(f"{len(entries)} files", sum(e.size for e in entries))
    if source.features.reads_small_in_stat and not options.dry_run:
        cast(ReadAheadSource, source).read_ahead([e for e in entries if _copied_whatever(e, options, present)])
    per_file = options.replace(max_memory=file_share(options.max_memory, transfers))
    journal = await open_journal(options.state_dir, required=False)
    copy = partial(_copy_entry, source, sink, per_file, journal, progress, run, result, present)
    try:
        if run.remote:  # every file submitted at once: the cluster schedules them and holds their memory
            await for_each(entries, copy, len(entries))
        else:
            await for_each_file(entries, copy, lambda e: e.size, transfers, options.max_memory)
    finally:
        await asyncio.shield(journal.close())
        if progress is not None:
            progress.finished()
    result.seconds = time.monotonic() - started
    result.peak_rss_bytes, result.disk_write_bytes = meter.peak_rss(), meter.disk_writes()
    return result


async def both(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    """Two awaitables run at the same time, their results in order; the first error is raised as it is
    (not in a group), and the other one is then cancelled."""
    later = asyncio.ensure_future(second)
    try:
        earlier = await first
    except BaseException:
        later.cancel()
        await asyncio.gather(later, return_exceptions=True)
        raise
    return earlier, await later


async def _listed(entries: Sequence[Entry]) -> list[Entry]:
    return list(entries)


async def _selected_entries(source: Source, filters: Sequence[Filter], result: TreeResult) -> list[Entry]:
    """The files below ``source`` that ``filters`` select; the others are counted as excluded."""
    entries: list[Entry] = []
    async for entry in source.walk():
        if selected(entry.path, filters):
            entries.append(entry)
        else:
            result.excluded += 1
    return entries


async def _destination_sizes(sink: Sink, options: TransferOptions) -> dict[str, int] | None:
    """Sizes of what is already under an S3 destination prefix (one listing instead of a HEAD per file).

    None when not worth it: files are always copied (--overwrite) or the destination cannot list
    in one go (a file's stat is as cheap as a listing: see :class:`ListingSink`).
    """
    if options.overwrite == "always" or not isinstance(sink, ListingSink):
        return None
    return await sink.sizes_below()


def _not_there(entry: Entry, present: dict[str, int] | None) -> bool:
    """The destination's listing shows the file absent, or of another size."""
    return present is not None and present.get(entry.path) != entry.size


def _copied_whatever(entry: Entry, options: TransferOptions, present: dict[str, int] | None) -> bool:
    """The file is copied whatever the destination holds: no skip check reads its source for nothing."""
    return options.overwrite == "always" or _not_there(entry, present)


def _options_for(entry: Entry, options: TransferOptions, present: dict[str, int] | None) -> TransferOptions:
    """A file the destination listing shows absent (or of another size) needs no check before copying."""
    if _not_there(entry, present) and not options.dry_run:
        return options.replace(overwrite="always")
    return options


class Budget:
    """Bytes of the memory budget lent to files in flight, first come first served: a file waits
    until its share is free, and the files behind it wait for it (a large file is not starved)."""

    def __init__(self, total: int) -> None:
        self._free = total
        self._turn = asyncio.Lock()
        self._returned = asyncio.Condition()

    async def lend(self, weigh: Callable[[T], int], action: Callable[[T], Awaitable[object]], item: T) -> None:
        """``action(item)`` while ``weigh(item)`` bytes (at most the total) are taken from the budget."""
        need = weigh(item)
        async with self._turn, self._returned:
            await self._returned.wait_for(lambda: self._free >= need)
            self._free -= need
        try:
            await action(item)
        finally:
            async with self._returned:
                self._free += need
                self._returned.notify_all()


def file_share(max_memory: int, transfers: int) -> int:
    """The memory budget of one large file in flight: ``transfers`` of them fill ``max_memory``."""
    return max(max_memory // transfers, MIN_PART_SIZE)


async def for_each_file(items: Sequence[T], action: Callable[[T], Awaitable[object]], size_of: Callable[[T], int],
                        transfers: int, max_memory: int) -> None:
    """``action`` on every file of ``items``, as many at once as the memory budget lends room to (see the
    module docstring): ``transfers`` large files, up to :data:`SMALL_FILES_FACTOR` times as many small ones.
    ``size_of``: a file's size in bytes (its weight, up to a large file's share)."""
    share = file_share(max_memory, transfers)
    budget = Budget(share * transfers)
    await for_each(items, partial(budget.lend, lambda item: min(size_of(item), share), action),
                   transfers * SMALL_FILES_FACTOR)


async def for_each(items: Sequence[T], action: Callable[[T], Awaitable[object]], workers: int) -> None:
    """``action`` on every item, ``workers`` at a time: a sliding window, a finished item makes room."""
    queue: asyncio.Queue[T] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            await action(queue.get_nowait())

    async with asyncio.TaskGroup() as group:
        for _ in range(min(workers, len(items))):
            group.create_task(worker())


async def _copy_entry(source: Source, sink: Sink, options: TransferOptions, journal: Journal,
                      progress: ProgressListener | None, executor: Executor, result: TreeResult,
                      present: dict[str, int] | None, entry: Entry) -> None:
    listener = _file_listener(progress, entry)
    try:
        rel = safe_relative(entry.path)
        known = Stat(entry.size, entry.mtime, entry.etag) if source.features.listing_is_stat else None
        done = await executor.copy_file(source.child(child_path(source.location.path, rel)),
                                        sink.child(child_path(sink.location.path, renamed_path(options, rel))),
                                        _options_for(entry, options, present), listener, journal, known)
    except S3FerryError as exc:
        log.error("error: %s: %s", entry.path, exc)
        result.failures.append((entry.path, exc))
        return
    finally:
        if listener is not None:
            listener.finished()
    result.files.append(done.result)
