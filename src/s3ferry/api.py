"""The Python API: ``copy`` / ``acopy`` for one file, ``copy_tree`` / ``acopy_tree`` for
folders and prefixes, ``acopy_glob`` for ``cp``'s source patterns -- the same engine as the CLI.

``copy`` / ``acopy`` take every name literally (``star*.bin`` is that one file): patterns are
``acopy_glob``'s alone."""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from .backends import open_sink, open_source
from .backends.base import Entry, Sink, Source, Stat
from .engine import PartExecutor, ProgressListener, TransferResult, transfer
from .errors import NotFoundError, S3FerryError, UsageError
from .globs import Glob, expand, glob_of
from .observe import metrics
from .journal import Journal, open_journal
from .options import TransferOptions
from .tree import Filter, TreeResult
from .tree import copy_tree as _copy_tree
from .urls import Location, join_name, parse, safe_relative


def resolve(src: str | Location, dst: str | Location) -> tuple[Location, Location]:
    """Parse both ends; a destination ending in ``/`` gets the source's file name."""
    source = src if isinstance(src, Location) else parse(src)
    dest = dst if isinstance(dst, Location) else parse(dst)
    if dest.scheme == "file" and not dest.is_dir_like and _is_dir(dest.path):
        dest = dest.with_path(dest.path + "/")  # like cp: an existing folder receives the file
    if dest.is_dir_like:
        if source.scheme == "s3" and ".." in source.path.split("/"):
            # S3 keys are names chosen by whoever wrote the bucket.
            raise UsageError(f"refusing unsafe key {source.path!r}: it would land outside the destination")
        dest = join_name(dest, source.name)
    return source, dest


def _is_dir(path: str) -> bool:
    import os

    return os.path.isdir(path)


async def copy_file(source: Source, sink: Sink, options: TransferOptions,
                    progress: ProgressListener | None = None, journal: Journal | None = None,
                    known: Stat | None = None, executor: PartExecutor | None = None) -> TransferResult:
    """One file: S3 -> S3 is copied by S3 itself, everything else streams through the engine.

    ``journal``: shared by the files of a tree; otherwise one is opened here for this file.
    """
    if journal is None:
        journal = await open_journal(options.state_dir, required=False)
        try:
            return await copy_file(source, sink, options, progress, journal, known, executor)
        finally:
            await asyncio.shield(journal.close())
    label = metrics.direction(source.location.scheme, sink.location.scheme)
    metered = metrics.Metered(progress, label)
    if (options.overwrite != "always" or options.dry_run) and not await _journaled(source, sink, journal):
        known = known or await source.stat()
        decided = await _skip_or_plan(source, sink, options, known)
        if decided is not None:
            metrics.FILES.labels("skipped" if decided.skipped else "planned", metrics.FLOW.get()).inc()
            return decided
    try:
        if _s3_to_s3(source, sink):
            from .server_copy import server_side_copy

            result = await server_side_copy(source, sink, options, metered)
        else:
            result = await transfer(source, sink, options, metered, journal, known, executor)
    except S3FerryError:
        metrics.FILES.labels("failed", metrics.FLOW.get()).inc()
        raise
    metrics.FILES.labels("copied", metrics.FLOW.get()).inc()
    metrics.DURATION.labels(label).observe(result.seconds)
    return result


def _s3_to_s3(source: Source, sink: Sink) -> bool:
    """Both ends are S3 objects (S3 copies them itself)."""
    if source.location.scheme != "s3" or sink.location.scheme != "s3":
        return False  # checked first: the S3 backends import aiobotocore, which other copies never need
    from .backends.s3 import S3Sink
    from .backends.s3_source import S3Source

    return isinstance(source, S3Source) and isinstance(sink, S3Sink)


async def _journaled(source: Source, sink: Sink, journal: Journal) -> bool:
    """An earlier attempt for this pair is on record: the engine finishes (or recognises) it, never a skip."""
    return sink.features.resumable and await journal.find(str(source.location), str(sink.location)) is not None


def matches(src: Stat, dst: Stat) -> bool:
    """Whether a destination already holds the source: same size, then the same checksum where both
    sides have one of the same kind, else the same mtime (within a second: SFTP keeps whole seconds)."""
    if src.size != dst.size:
        return False
    if src.checksum and dst.checksum and src.checksum[0] == dst.checksum[0]:
        return src.checksum[1] == dst.checksum[1]
    return src.mtime is not None and dst.mtime is not None and abs(src.mtime - dst.mtime) < 1.0


async def _skip_or_plan(source: Source, sink: Sink, options: TransferOptions, stat: Stat) -> TransferResult | None:
    """A result without a transfer: skipped (already there / --no-clobber) or planned (--dry-run); else None."""
    existing_of = getattr(sink, "existing", None)
    existing = await existing_of() if existing_of is not None and options.overwrite != "always" else None
    skip = existing is not None and (options.overwrite == "never" or matches(stat, existing))
    if not skip and not options.dry_run:
        return None
    return TransferResult(source=str(source.location), destination=str(sink.location), size=stat.size, seconds=0.0,
                          parts=0, part_size=0, checksum_algorithm=options.checksum, checksum=None,
                          peak_rss_bytes=0, disk_write_bytes=0, skipped=skip, dry_run=options.dry_run)


async def acopy(
    src: str | Location,
    dst: str | Location,
    options: TransferOptions | None = None,
    *,
    progress: ProgressListener | None = None,
    executor: PartExecutor | None = None,
    **overrides: Any,
) -> TransferResult:
    """Copy one file; ``overrides`` are :class:`TransferOptions` fields (checked by name).
    ``executor``: run the parts elsewhere (a started :class:`s3ferry.distributed.DaskExecutor`).

    >>> await acopy("sftp://me@host/data.csv.gz", "s3://raw/partner/", part_size=16 * 2**20)
    """
    opts = (options or TransferOptions()).replace(**overrides)
    source_loc, dest_loc = resolve(src, dst)
    source = open_source(source_loc, opts)
    sink = open_sink(dest_loc, opts)
    try:
        return await copy_file(source, sink, opts, progress, executor=executor)
    finally:
        await asyncio.shield(_close_both(source, sink))


async def acopy_tree(
    src: str | Location,
    dst: str | Location,
    options: TransferOptions | None = None,
    *,
    filters: Sequence[Filter] = (),
    transfers: int = 4,
    progress: ProgressListener | None = None,
    executor: Any = None,
    **overrides: Any,
) -> TreeResult:
    """Copy every file below the folder / prefix ``src`` to the same relative paths below ``dst``.

    >>> await acopy_tree("sftp://me@host/out", "s3://raw/partner/", filters=[Filter("*.tmp", include=False)])
    """
    opts = (options or TransferOptions()).replace(**overrides)
    source_loc = src if isinstance(src, Location) else parse(src)
    dest_loc = dst if isinstance(dst, Location) else parse(dst)
    source = open_source(source_loc, opts)
    sink = open_sink(dest_loc, opts)
    try:
        return await _copy_tree(source, sink, opts, filters=filters, transfers=transfers, progress=progress,
                                copy_one=copy_file, executor=executor)
    finally:
        await asyncio.shield(_close_both(source, sink))


async def acopy_glob(
    src: str | Location,
    dst: str | Location,
    options: TransferOptions | None = None,
    *,
    transfers: int = 4,
    progress: ProgressListener | None = None,
    executor: Any = None,
    **overrides: Any,
) -> TransferResult | TreeResult:
    """``cp`` with a pattern in the source's last component (rules in :mod:`s3ferry.globs`).

    Only that one folder is listed. As ``cp`` does with the files a shell expanded: when ``dst`` is a
    folder (ends in ``/``, or is an existing local folder) every match lands in it (a
    :class:`TreeResult`); else exactly one match is copied to ``dst`` itself (a
    :class:`TransferResult`) and more than one is a :class:`UsageError`. Nothing matching and no
    file of that literal name either: :class:`NotFoundError` (``no such file``). Both errors come
    before anything is written.
    """
    opts = (options or TransferOptions()).replace(**overrides)
    source_loc = src if isinstance(src, Location) else parse(src)
    dest_loc = dst if isinstance(dst, Location) else parse(dst)
    glob = glob_of(source_loc)
    if glob is None:
        raise UsageError(f"{source_loc} holds no pattern (*, ? or [...]) in its last name")
    if dest_loc.scheme == "file" and not dest_loc.is_dir_like and _is_dir(dest_loc.path):
        dest_loc = dest_loc.with_path(dest_loc.path + "/")  # like cp: an existing folder receives the files
    folder = open_source(glob.folder, opts)
    try:
        found = await _glob_matches(folder, glob, source_loc)
        if not dest_loc.is_dir_like and len(found) > 1:
            raise UsageError(f"{len(found)} files match {glob.pattern}: end {dest_loc} with / to copy them "
                             "into a folder")
        sink = open_sink(dest_loc, opts)
        try:
            if dest_loc.is_dir_like:
                return await _copy_tree(folder, sink, opts, transfers=transfers, progress=progress,
                                        copy_one=copy_file, executor=executor, listed=found)
            one = folder.child(glob.folder.path + safe_relative(found[0].path))  # a name from the listing
            return await copy_file(one, sink, opts, progress, executor=executor)
        finally:
            await asyncio.shield(sink.close())
    finally:
        await asyncio.shield(folder.close())


async def _glob_matches(folder: Source, glob: Glob, shown: Location) -> list[Entry]:
    """The files of ``glob``'s folder its pattern names (or the literal name); none is "no such file"."""
    try:
        found = expand([entry async for entry in folder.list_folder()], glob.pattern)
    except NotFoundError as exc:  # the folder itself is missing: the shell finds no match either
        raise NotFoundError(f"no such file: {shown}") from exc
    if not found:
        raise NotFoundError(f"no such file: {shown}")
    return found


async def _close_both(source: Any, sink: Any) -> None:
    try:
        await source.close()
    finally:
        await sink.close()


def copy(
    src: str | Location,
    dst: str | Location,
    options: TransferOptions | None = None,
    *,
    progress: ProgressListener | None = None,
    **overrides: Any,
) -> TransferResult:
    """Blocking form of :func:`acopy` (runs its own event loop)."""
    return asyncio.run(acopy(src, dst, options, progress=progress, **overrides))


def copy_tree(src: str | Location, dst: str | Location, options: TransferOptions | None = None,
              **kwargs: Any) -> TreeResult:
    """Blocking form of :func:`acopy_tree`."""
    return asyncio.run(acopy_tree(src, dst, options, **kwargs))
