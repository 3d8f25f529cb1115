"""The Python API: ``copy`` / ``acopy`` for one file, ``copy_tree`` / ``acopy_tree`` for
folders and prefixes, ``copy_glob`` / ``acopy_glob`` for ``cp``'s source patterns -- the same engine,
and the same config file, as ``s3ferry cp``.

Every entry point reads the config file as the command line does (``config=None``: ``$S3FERRY_CONFIG``
or ``~/.config/s3ferry/config.toml``; a path: that file; ``False``: none): its ``[defaults]`` and the
options of a named endpoint (``partner:/out/x.csv``) apply, and the caller's ``options`` and keyword
arguments win over both (:func:`s3ferry.operations.settings.prepare`).

``copy`` / ``acopy`` take every name literally (``star*.bin`` is that one file): patterns are
``acopy_glob``'s alone."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from s3ferry.backends import as_location, open_sink, open_source, opened
from s3ferry.core.errors import NotFoundError, UsageError
from s3ferry.core.options import TransferOptions
from s3ferry.core.storage import Entry, Source
from s3ferry.core.urls import Location, join_name, safe_relative
from s3ferry.engine.transfer import Executor, TransferResult
from s3ferry.engine.transformed import destination_name
from s3ferry.observe.progress import ProgressListener
from s3ferry.operations.globs import Glob, expand, glob_of
from s3ferry.operations.settings import aprepare
from s3ferry.operations.single import copy_file
from s3ferry.operations.tree import Filter, TreeResult
from s3ferry.operations.tree import copy_tree as _copy_tree

#: ``config=``: a config file, ``None``/``True`` for the command line's (if any), ``False`` for none
ConfigArg = Path | str | bool | None


def resolve(src: str | Location, dst: str | Location,
            options: TransferOptions | None = None) -> tuple[Location, Location]:
    """Parse both ends; a destination ending in ``/`` gets the source's file name (as the transforms of
    ``options`` rename it: ``a.csv`` -> ``a.csv.zst``; an explicit file name is used as given)."""
    source, dest = as_location(src), as_location(dst)
    dest = _existing_folder(dest)
    if dest.is_dir_like:
        if source.scheme == "s3" and ".." in source.path.split("/"):
            # S3 keys are names chosen by whoever wrote the bucket.
            raise UsageError(f"refusing unsafe key {source.path!r}: it would land outside the destination")
        dest = join_name(dest, destination_name(options, source.name) if options else source.name)
    return source, dest


def _existing_folder(dest: Location) -> Location:
    """Like cp: an existing local folder named without a trailing ``/`` receives the files."""
    if dest.scheme == "file" and not dest.is_dir_like and os.path.isdir(dest.path):
        return dest.with_path(dest.path + "/")
    return dest


async def acopy(
    src: str | Location,
    dst: str | Location,
    options: TransferOptions | None = None,
    *,
    config: ConfigArg = None,
    progress: ProgressListener | None = None,
    executor: Executor | None = None,
    **overrides: Any,
) -> TransferResult:
    """Copy one file; ``overrides`` are :class:`TransferOptions` fields or ``cp``'s options by name
    (``endpoint_url=``, ``identity=``; ``overwrite=True``/``False`` means "always"/"never").
    ``executor``: run the parts elsewhere (a started :class:`s3ferry.operations.distributed.DaskExecutor`).

    >>> await acopy("sftp://me@host/data.csv.gz", "s3://raw/partner/", part_size=16 * 2**20)
    """
    call = await aprepare("cp", src, dst, options, overrides, config)
    opts = call.options
    source_loc, dest_loc = resolve(call.src, call.dst, opts)
    async with opened(source_loc, dest_loc, opts) as (source, sink):
        return await copy_file(source, sink, opts, progress, executor=executor)


def filters_of(values: Mapping[str, Any], given: Sequence[Filter] | None) -> tuple[Filter, ...]:
    """``given`` filters, else the ``include``/``exclude`` values (includes first), with the include-first rule
    of ``--include``/``--exclude`` and flows files (``jobs.flowfile.ordered_filters``): an include that
    comes first means "only these"."""
    if given is None:
        given = [*(Filter(p, True) for p in values.get("include") or ()),
                 *(Filter(p, False) for p in values.get("exclude") or ())]
    if given and given[0].include:
        return (Filter("*", include=False), *given)
    return tuple(given)


async def acopy_tree(
    src: str | Location,
    dst: str | Location,
    options: TransferOptions | None = None,
    *,
    config: ConfigArg = None,
    filters: Sequence[Filter] | None = None,
    transfers: int | None = None,
    progress: ProgressListener | None = None,
    executor: Executor | None = None,
    **overrides: Any,
) -> TreeResult:
    """Copy every file below the folder / prefix ``src`` to the same relative paths below ``dst``.
    ``filters``: the ``--include``/``--exclude`` globs in order (default: ``include=``/``exclude=``
    keyword arguments, else the config file's, as ``cp -r`` takes them).

    >>> await acopy_tree("sftp://me@host/out", "s3://raw/partner/", filters=[Filter("*.tmp", include=False)])
    """
    call = await aprepare("cp", src, dst, options, {**overrides, "transfers": transfers}, config)
    async with opened(as_location(call.src), as_location(call.dst), call.options) as (source, sink):
        return await _copy_tree(source, sink, call.options, filters=filters_of(call.values, filters),
                                transfers=call.values["transfers"],
                                progress=progress, executor=executor)


async def acopy_glob(
    src: str | Location,
    dst: str | Location,
    options: TransferOptions | None = None,
    *,
    config: ConfigArg = None,
    transfers: int | None = None,
    progress: ProgressListener | None = None,
    executor: Executor | None = None,
    **overrides: Any,
) -> TransferResult | TreeResult:
    """``cp`` with a pattern in the source's last component (rules in :mod:`s3ferry.operations.globs`).

    Only that one folder is listed. As ``cp`` does with the files a shell expanded: when ``dst`` is a
    folder (ends in ``/``, or is an existing local folder) every match lands in it (a
    :class:`TreeResult`); else exactly one match is copied to ``dst`` itself (a
    :class:`TransferResult`) and more than one is a :class:`UsageError`. Nothing matching and no
    file of that literal name either: :class:`NotFoundError` (``no such file``). Both errors come
    before anything is written.
    """
    call = await aprepare("cp", src, dst, options, {**overrides, "transfers": transfers}, config)
    opts, transfers = call.options, call.values["transfers"]
    source_loc, dest_loc = as_location(call.src), as_location(call.dst)
    glob = glob_of(source_loc)
    if glob is None:
        raise UsageError(f"{source_loc} holds no pattern (*, ? or [...]) in its last name")
    dest_loc = _existing_folder(dest_loc)
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
                                        executor=executor, listed=found)
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


def copy(
    src: str | Location,
    dst: str | Location,
    options: TransferOptions | None = None,
    *,
    config: ConfigArg = None,
    progress: ProgressListener | None = None,
    **overrides: Any,
) -> TransferResult:
    """Blocking form of :func:`acopy` (runs its own event loop)."""
    return asyncio.run(acopy(src, dst, options, config=config, progress=progress, **overrides))


def copy_tree(
    src: str | Location,
    dst: str | Location,
    options: TransferOptions | None = None,
    *,
    config: ConfigArg = None,
    filters: Sequence[Filter] | None = None,
    transfers: int | None = None,
    progress: ProgressListener | None = None,
    **overrides: Any,
) -> TreeResult:
    """Blocking form of :func:`acopy_tree`."""
    return asyncio.run(acopy_tree(src, dst, options, config=config, filters=filters, transfers=transfers,
                                  progress=progress, **overrides))


def copy_glob(
    src: str | Location,
    dst: str | Location,
    options: TransferOptions | None = None,
    *,
    config: ConfigArg = None,
    transfers: int | None = None,
    progress: ProgressListener | None = None,
    **overrides: Any,
) -> TransferResult | TreeResult:
    """Blocking form of :func:`acopy_glob`."""
    return asyncio.run(acopy_glob(src, dst, options, config=config, transfers=transfers, progress=progress,
                                  **overrides))
