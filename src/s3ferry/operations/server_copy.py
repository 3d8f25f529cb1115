"""S3 → S3 copies done by S3 itself: no payload byte passes through s3ferry.

Objects up to ``copy_part_size`` are one ``CopyObject``; larger ones a
multipart upload whose parts are ``UploadPartCopy`` requests, ``upload_streams``
of them in flight (a sliding window: a finished part makes room for the next).
Every request names the source's ETag (``x-amz-copy-source-if-match``), so an
object overwritten during the copy fails it instead of mixing two versions.
SSE-C keys apply on both sides: ``--source-sse-c-key-file`` decrypts,
``--sse-c-key-file`` / ``--sse-kms-key-id`` encrypt the copy (re-encryption
without the bytes leaving S3).

The result is checked: the copy's size, and its checksum against the
source's. S3 is asked to compute the copy's checksum with the source's own
algorithm (a full-object CRC for multipart copies), so an object written by
any tool is compared like for like; a source with only an MD5 ETag is
compared by ETag when copied in one request without encryption (which keeps
the ETag). Anything else is reported "not verified".
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

from s3ferry.backends.s3.objects import full_object_checksum, sse_c_args
from s3ferry.backends.s3.sink import S3Sink
from s3ferry.backends.s3.source import S3Source
from s3ferry.core import checksums
from s3ferry.core.errors import IntegrityError, S3FerryError, SourceChangedError, TransferError
from s3ferry.core.options import MAX_PARTS, TransferOptions
from s3ferry.core.storage import Stat
from s3ferry.core.verification import Verdict, etag_is_md5
from s3ferry.engine.retry import RetryPolicy
from s3ferry.engine.transfer import TransferResult
from s3ferry.observe.progress import NoProgress, ProgressListener
from s3ferry.observe.resources import ResourceMeter

log = logging.getLogger("s3ferry")


def _copy_source_args(source: S3Source, etag: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {"CopySource": {"Bucket": source.location.bucket, "Key": source.location.path},
                            **sse_c_args(source.options.sse_c_key(source=True), prefix="CopySource")}
    if etag:
        args["CopySourceIfMatch"] = etag
    return args


def _changed(exc: TransferError, source: S3Source) -> S3FerryError:
    if exc.code in ("PreconditionFailed", "412"):
        return SourceChangedError(f"{source.where} was overwritten during the copy")
    return exc


async def server_side_copy(source: S3Source, sink: S3Sink, options: TransferOptions,
                           progress: ProgressListener | None = None) -> TransferResult:
    """Copy ``source`` to ``sink`` inside S3 (same endpoint and credentials)."""
    listener = progress or NoProgress()
    meter, started = ResourceMeter(), time.monotonic()
    retry = RetryPolicy(retries=options.retries)
    stat = await source.head()  # not stat(): it may read a small object whole, and here S3 copies it
    await sink.prepare()
    single = stat.size <= options.copy_part_size
    algorithm = _copy_algorithm(stat, single, options)
    listener.started(source.location.name, stat.size)
    try:
        if single:
            await _copy_object(source, sink, stat.etag, algorithm)
            parts, part_size = 1, stat.size
        else:
            part_size = max(options.copy_part_size, -(-stat.size // MAX_PARTS))
            parts = await _multipart_copy(source, sink, stat.size, stat.etag, part_size, options, retry, listener,
                                          algorithm)
        if parts == 1:
            listener.advanced(stat.size)
    finally:
        listener.finished()
    checksum, verdict = await _verify(sink, stat, algorithm, single, options.require_verified)
    return TransferResult(
        source=str(source.location), destination=str(sink.location), size=stat.size,
        seconds=time.monotonic() - started, parts=parts, part_size=part_size,
        checksum_algorithm=algorithm.name if algorithm else options.checksum, checksum=checksum,
        peak_rss_bytes=meter.peak_rss(), disk_write_bytes=meter.disk_writes(), uploaded_bytes=0,
        verified=verdict.verified, verification=verdict.what,
    )


def _copy_algorithm(stat: Stat, single: bool, options: TransferOptions) -> checksums.Algorithm | None:
    """The checksum S3 computes over the copy: the source's own algorithm where that can be compared
    (one request; or a CRC, which S3 combines over the parts of a multipart copy), else --checksum."""
    if stat.checksum is not None:
        own = checksums.STORED[stat.checksum[0]]
        if single or own.full_object:
            return own
    return checksums.get(options.checksum)


async def _copy_object(source: S3Source, sink: S3Sink, etag: str | None,
                       algorithm: checksums.Algorithm | None) -> None:
    args: dict[str, Any] = {"Bucket": sink.location.bucket, "Key": sink.location.path,
                            **_copy_source_args(source, etag), **sink.sse_args(), **sink.kms_args()}
    if algorithm is not None:
        args["ChecksumAlgorithm"] = algorithm.s3_name  # S3 computes it over the copied bytes
    try:
        await sink.call("copy_object", **args)
    except TransferError as exc:
        raise _changed(exc, source) from exc


async def _multipart_copy(source: S3Source, sink: S3Sink, size: int, etag: str | None, part_size: int,
                          options: TransferOptions, retry: RetryPolicy, listener: ProgressListener,
                          algorithm: checksums.Algorithm | None) -> int:
    key = {"Bucket": sink.location.bucket, "Key": sink.location.path}
    checksum_args: dict[str, Any] = {}
    if algorithm is not None:
        checksum_args = {"ChecksumAlgorithm": algorithm.s3_name,
                         "ChecksumType": "FULL_OBJECT" if algorithm.full_object else "COMPOSITE"}
    created = await sink.call("create_multipart_upload", **key, **sink.sse_args(), **sink.kms_args(), **checksum_args)
    upload_id = str(created["UploadId"])
    ranges = [(n + 1, off, min(size, off + part_size) - 1) for n, off in enumerate(range(0, size, part_size))]
    etags: dict[int, dict[str, Any]] = {}
    slots = asyncio.Semaphore(options.upload_streams)

    async def one(number: int, first: int, last: int) -> None:
        async with slots:
            call = partial(sink.call_once, "upload_part_copy", **key, UploadId=upload_id, PartNumber=number,
                           CopySourceRange=f"bytes={first}-{last}", **_copy_source_args(source, etag),
                           **sink.sse_args())
            try:
                response = await retry.run(call, f"copying part {number}")
            except TransferError as exc:
                raise _changed(exc, source) from exc
        result = response["CopyPartResult"]
        etags[number] = {"ETag": str(result["ETag"])}
        if algorithm is not None and result.get(f"Checksum{algorithm.s3_name}"):
            etags[number][f"Checksum{algorithm.s3_name}"] = result[f"Checksum{algorithm.s3_name}"]
        listener.advanced(last - first + 1)

    try:
        async with asyncio.TaskGroup() as group:
            for number, first, last in ranges:
                group.create_task(one(number, first, last))
        parts = [{"PartNumber": n, **etags[n]} for n, _, _ in ranges]
        complete_args = {"ChecksumType": "FULL_OBJECT"} if algorithm is not None and algorithm.full_object else {}
        await sink.call("complete_multipart_upload", **key, UploadId=upload_id, MultipartUpload={"Parts": parts},
                        **sink.sse_args(), **complete_args)
    except BaseException as exc:
        await asyncio.shield(_abort(sink, key["Key"], upload_id))
        if isinstance(exc, BaseExceptionGroup):
            raise _first(exc) from None
        raise
    return len(ranges)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if isinstance(exc, S3FerryError):
            return exc
    return group.exceptions[0]


async def _abort(sink: S3Sink, key: str, upload_id: str) -> None:
    try:
        await sink.abort_upload(key, upload_id)
    except S3FerryError as exc:
        log.warning("could not abort the copy's upload %s (%s); `s3ferry uploads` lists it", upload_id, exc)


async def _verify(sink: S3Sink, stat: Stat, algorithm: checksums.Algorithm | None, single: bool,
                  require_verified: bool) -> tuple[str | None, Verdict]:
    """The copy's size and its own checksum against the source's (else ETags); removes a copy that differs."""
    head = await sink.call("head_object", Bucket=sink.location.bucket, Key=sink.location.path,
                           ChecksumMode="ENABLED", **sink.sse_args())
    got = int(head["ContentLength"])
    copy_sum = full_object_checksum(head)
    verdict = _verdict(stat, head, copy_sum, single)
    problem = None
    if got != stat.size:
        problem = f"{sink.where} holds {got} bytes, the source {stat.size}"
    elif not verdict.verified and verdict.what.startswith("differs"):
        problem = f"{sink.where} {verdict.what}"
    elif not verdict.verified and require_verified:
        problem = f"{sink.where} could not be verified ({verdict.what}) (--require-verified)"
    if problem:
        await sink.call("delete_object", Bucket=sink.location.bucket, Key=sink.location.path)
        raise IntegrityError(f"integrity check failed, copy removed: {problem}")
    if copy_sum and algorithm is not None and copy_sum[0] == algorithm.s3_name:
        return copy_sum[1], verdict
    return None, verdict


def _verdict(stat: Stat, head: dict[str, Any], copy_sum: tuple[str, str] | None, single: bool) -> Verdict:
    source_sum = stat.checksum
    if source_sum and copy_sum and source_sum[0] == copy_sum[0]:
        if source_sum[1] != copy_sum[1]:
            return Verdict(False, f"differs: {copy_sum[0].lower()} {copy_sum[1]}, the source's {source_sum[1]}")
        return Verdict(True, f"{copy_sum[0].lower()} {copy_sum[1]}: S3 computed it over the copy, equal to the "
                             "source object's")
    source_etag, copy_etag = str(stat.etag or "").strip('"'), str(head.get("ETag") or "").strip('"')
    if single and source_etag and "-" not in source_etag and etag_is_md5(head) and copy_etag == source_etag:
        return Verdict(True, f"md5 etag {copy_etag}: the copy's equals the source object's")
    return Verdict(False, "S3 copied the object itself, and the source carries no checksum the copy's can be "
                          "compared with")
