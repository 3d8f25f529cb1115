"""One file from a source to a sink: skip it when the destination already holds it, let S3 copy
S3 objects itself, stream everything else through the engine. Trees and the public API both come
here, so a file is routed by one rule whatever asked for it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from s3ferry.core.errors import S3FerryError
from s3ferry.core.options import TransferOptions
from s3ferry.core.storage import PinnedSource, Sink, Source, Stat
from s3ferry.core.urls import Location
from s3ferry.engine.journal import Journal, default_state_dir, open_journal
from s3ferry.engine.transfer import (
    Executor,
    FileCopied,
    PartJob,
    TransferResult,
    pump_parts,
    transfer,
)
from s3ferry.engine.transformed import transfer_transformed, transforms
from s3ferry.observe import audit, metrics
from s3ferry.observe.progress import ProgressListener

if TYPE_CHECKING:
    from s3ferry.backends.s3.sink import S3Sink
    from s3ferry.backends.s3.source import S3Source


async def copy_file(source: Source, sink: Sink, options: TransferOptions,
                    progress: ProgressListener | None = None, journal: Journal | None = None,
                    known: Stat | None = None, executor: Executor | None = None) -> TransferResult:
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
        pair = _s3_pair(source, sink)
        if transforms(options):  # the bytes change on the way: streamed through the stages, never copied by S3
            result = await transfer_transformed(source, sink, options, metered, known, journal)
        elif pair is not None:
            from s3ferry.operations.server_copy import server_side_copy  # aiobotocore: only S3 copies load it

            result = await server_side_copy(*pair, options, metered)
        else:
            result = await transfer(source, sink, options, metered, journal, known, executor)
    except S3FerryError:
        metrics.FILES.labels("failed", metrics.FLOW.get()).inc()
        raise
    metrics.FILES.labels("copied", metrics.FLOW.get()).inc()
    metrics.DURATION.labels(label).observe(result.seconds)
    await record_copy(options, result)
    return result


async def record_copy(options: TransferOptions, result: TransferResult) -> None:
    """Append a finished copy to the audit trail (``options.audit_log``), as a delivery of the operation and
    flow the running task belongs to (:data:`s3ferry.observe.audit.CONTEXT`). A skipped file or a dry run
    delivered nothing: not recorded. Every copy of cp, cp -r, pull and push ends here (a Dask worker's copy
    on the coordinator's side), so a delivery is recorded once, after the engine verified and published it."""
    if result.skipped or result.dry_run:
        return
    log = audit.resolve(options.audit_log, options.state_dir or default_state_dir())
    op, flow = audit.CONTEXT.get()
    checksum = audit.Checksum(result.checksum_algorithm, result.checksum) if result.checksum else None
    etag = result.destination_etag.strip('"') if result.destination_etag else None
    await audit.record_delivery(log, audit.Delivery(
        op, flow, result.source, result.destination, result.size, checksum, result.verified,
        result.verification, etag))


def _s3_pair(source: Source, sink: Sink) -> tuple[S3Source, S3Sink] | None:
    """Both ends as S3 objects, when they are (S3 copies them itself); else None."""
    if source.location.scheme != "s3" or sink.location.scheme != "s3":
        return None  # checked first: the S3 backends import aiobotocore, which other copies never need
    from s3ferry.backends.s3.sink import S3Sink  # aiobotocore: loaded only for S3
    from s3ferry.backends.s3.source import S3Source

    return (source, sink) if isinstance(source, S3Source) and isinstance(sink, S3Sink) else None


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
    existing = await sink.existing() if options.overwrite != "always" else None
    skip = existing is not None and (options.overwrite == "never" or matches(stat, existing))
    if not skip and not options.dry_run:
        return None
    return TransferResult(source=str(source.location), destination=str(sink.location), size=stat.size, seconds=0.0,
                          parts=0, part_size=0, checksum_algorithm=options.checksum, checksum=None,
                          peak_rss_bytes=0, disk_write_bytes=0, skipped=skip, dry_run=options.dry_run)


class LocalExecutor:
    """The :class:`~s3ferry.engine.transfer.Executor` that moves every byte in this process (the default)."""

    remote = False

    async def pump(self, job: PartJob, options: TransferOptions, destination: Location) -> None:
        await pump_parts(job, options)

    async def copy_file(self, source: Source, sink: Sink, options: TransferOptions,
                        progress: ProgressListener | None = None, journal: Journal | None = None,
                        known: Stat | None = None) -> FileCopied:
        result = await copy_file(source, sink, options, progress, journal, known)
        return FileCopied(result, source.pinned_etag if isinstance(source, PinnedSource) else None)
