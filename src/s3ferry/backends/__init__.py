"""One module per protocol; :func:`open_source` / :func:`open_sink` pick by URL scheme."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol, cast

from s3ferry.core.errors import UsageError
from s3ferry.core.options import TransferOptions
from s3ferry.core.storage import Connecting, Sink, Source
from s3ferry.core.urls import Location, parse

if TYPE_CHECKING:
    from s3ferry.engine.retry import RetryPolicy

#: Connections an S3 client may open. The pool only caps them: how many requests run at once is
#: decided by the engine (streams per file, files at a time), and a tree of small files runs dozens of
#: files through one client; an idle pool costs nothing.
S3_POOL = 64


#: Backend modules are imported on first use, some in a thread beside an SSH set-up (:func:`open_ends`):
#: two flows of one process importing the S3 stack at once in two threads met a half-imported aiohttp
#: ("KeyError: 'aiohttp'", seen in `s3ferry run`). One import of a backend at a time; after the first,
#: the lock is held for a dictionary lookup.
_IMPORTING = threading.RLock()


def open_source(location: Location, options: TransferOptions) -> Source:
    """The source at ``location`` (its backend imported on first use, one import at a time)."""
    with _IMPORTING:
        return _open_source(location, options)


def open_sink(location: Location, options: TransferOptions) -> Sink:
    """The sink at ``location`` (its backend imported on first use, one import at a time)."""
    with _IMPORTING:
        return _open_sink(location, options)


def _open_source(location: Location, options: TransferOptions) -> Source:
    if location.scheme == "file":
        from s3ferry.backends.local import LocalSource

        return LocalSource(location)
    if location.scheme == "sftp":
        from s3ferry.backends.sftp import SftpSource

        return SftpSource(location, options.sftp, options.sftp_block, options.sftp_window)
    if location.scheme in ("ftp", "ftps"):
        from s3ferry.backends.ftp import FtpSource

        return FtpSource(location, options.ftp)
    if location.scheme in ("http", "https"):
        from s3ferry.backends.http import HttpSource

        return HttpSource(location, options.http, streams=options.read_streams)
    if location.scheme == "s3":
        from s3ferry.backends.s3.source import S3Source

        return S3Source(location, options.s3, pool_size=max(S3_POOL, options.read_streams + 2), retry=_retry(options))
    raise UsageError(f"{location.scheme}:// is not supported as a source yet")


def _open_sink(location: Location, options: TransferOptions) -> Sink:
    if location.scheme == "s3":
        from s3ferry.backends.s3.sink import S3Sink

        return S3Sink(location, options.s3, pool_size=max(S3_POOL, options.upload_streams + 2), retry=_retry(options))
    if location.scheme == "file":
        from s3ferry.backends.local import LocalSink

        return LocalSink(location)
    if location.scheme == "sftp":
        from s3ferry.backends.sftp import SftpSink

        return SftpSink(location, options.sftp, options.sftp_block, options.sftp_window)
    raise UsageError(f"{location.scheme}:// cannot be a destination (use s3://, sftp:// or a local path)")


def _retry(options: TransferOptions) -> RetryPolicy:
    from s3ferry.engine.retry import RetryPolicy

    return RetryPolicy(retries=options.retries)


class Closable(Protocol):
    async def close(self) -> None: ...


async def close_all(*ends: Closable) -> None:
    """Close each of ``ends`` (a journal, a source, a sink), even when one before it failed to close."""
    if not ends:
        return
    try:
        await ends[0].close()
    finally:
        await close_all(*ends[1:])


def as_location(where: str | Location) -> Location:
    return where if isinstance(where, Location) else parse(where)


@asynccontextmanager
async def opened(source: Location, dest: Location, options: TransferOptions) -> AsyncIterator[tuple[Source, Sink]]:
    """A source and a sink for one operation (:func:`open_ends`), both closed after it, however it ends
    (Ctrl-C included)."""
    src, sink = await open_ends(source, dest, options)
    try:
        yield src, sink
    finally:
        await asyncio.shield(close_all(src, sink))


async def open_ends(source: Location, dest: Location, options: TransferOptions) -> tuple[Source, Sink]:
    """A source and a sink for one operation; the caller closes both.

    The end whose connection takes round trips (``features.connects_ahead``: SFTP) is made first and starts
    connecting at once; the other end's backend is imported and made in a thread meanwhile. Measured at
    50 ms: importing aiobotocore takes ~0.4 s, and an SSH connection ~0.6 s before its first request, which
    therefore no longer wait for each other (they overlap: the import is CPU, the connection waits).
    """
    sink_first = _connects_ahead(dest) and not _connects_ahead(source)
    # in a thread too: another flow of this process may hold the import lock (see _IMPORTING) for ~0.4 s,
    # which must not stop this loop (and that flow's SSH set-up)
    first: Source | Sink = await asyncio.to_thread(open_sink if sink_first else open_source,
                                                   dest if sink_first else source, options)
    _warm_up(first)
    try:
        if sink_first:
            src: Source = await asyncio.to_thread(open_source, source, options)
            sink = cast(Sink, first)
        else:
            sink = await asyncio.to_thread(open_sink, dest, options)
            src = cast(Source, first)
    except BaseException:
        await asyncio.shield(first.close())
        raise
    _warm_up(src if sink_first else sink)
    return src, sink


def _connects_ahead(location: Location) -> bool:
    return location.scheme == "sftp"  # the backend's features say so too; its module is not imported yet


def _warm_up(end: Source | Sink) -> None:
    if end.features.connects_ahead:
        cast(Connecting, end).warm_up()

