"""The Python API: ``copy`` / ``acopy``, the same engine as the CLI."""

from __future__ import annotations

import asyncio
from typing import Any

from .backends import open_sink, open_source
from .engine import ProgressListener, TransferResult, transfer
from .options import TransferOptions
from .urls import Location, join_name, parse


def resolve(src: str | Location, dst: str | Location) -> tuple[Location, Location]:
    """Parse both ends; a destination ending in ``/`` gets the source's file name."""
    source = src if isinstance(src, Location) else parse(src)
    dest = dst if isinstance(dst, Location) else parse(dst)
    if dest.is_dir_like:
        dest = join_name(dest, source.name)
    return source, dest


async def acopy(
    src: str | Location,
    dst: str | Location,
    options: TransferOptions | None = None,
    *,
    progress: ProgressListener | None = None,
    **overrides: Any,
) -> TransferResult:
    """Copy one file; ``overrides`` are :class:`TransferOptions` fields (checked by name).

    >>> await acopy("sftp://me@host/data.csv.gz", "s3://raw/partner/", part_size=16 * 2**20)
    """
    opts = (options or TransferOptions()).replace(**overrides)
    source_loc, dest_loc = resolve(src, dst)
    source = open_source(source_loc, opts)
    sink = open_sink(dest_loc, opts)
    try:
        return await transfer(source, sink, opts, progress)
    finally:
        await asyncio.shield(_close_both(source, sink))


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
