"""S3 (and S3-compatible) sink over aiobotocore: :class:`S3Sink` on the client it shares with the S3
source (:mod:`.client`).

Objects up to one part go up in one ``PutObject``; larger ones as a
multipart upload whose every part carries a checksum S3 verifies on receipt.
CRC checksums use the ``FULL_OBJECT`` type, so S3 also checks the combined
checksum we send with ``CompleteMultipartUpload`` and reports the CRC of the
whole object afterwards.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from s3ferry.backends.s3.client import S3Client
from s3ferry.backends.s3.errors import DIGEST_CODES
from s3ferry.backends.s3.objects import MTIME_KEY, head_stat, is_md5, sse_c_args
from s3ferry.core.checksums import MD5, Algorithm, PartDigest
from s3ferry.core.errors import AuthError, IntegrityError, NotFoundError, PermissionError_, S3FerryError, TransferError
from s3ferry.core.options import S3Options
from s3ferry.core.storage import Completed, Features, ListedPart, Part, Receipt, Stat, UploadInfo
from s3ferry.core.urls import Location
from s3ferry.core.verification import multipart_etag
from s3ferry.engine.retry import RetryPolicy

if TYPE_CHECKING:
    from s3ferry.engine.streamed import StreamedPart


class PartBody(Payload):
    """One part's bytes as a request body, without copying them.

    botocore sees a seekable file (it reads it to sign the payload and seeks
    back on retries); aiohttp sees a :class:`Payload` and lets it write
    itself, which it does in slices of a memoryview, draining between them.
    Handing aiohttp the whole part instead makes asyncio's transport copy the
    unsent rest of it into its own buffer: one extra part of memory per
    upload in flight.
    """

    _autoclose = True
    SLICE = 256 * 1024

    def __init__(self, view: memoryview) -> None:
        super().__init__(view, content_type="application/octet-stream")
        self._view = view
        self._size = len(view)
        self._pos = 0

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int = -1) -> memoryview:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        chunk = self._view[self._pos : end]
        self._pos = end
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._view)}[whence]
        self._pos = max(0, min(len(self._view), base + offset))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._view).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        end = len(self._view) if content_length is None else min(content_length, len(self._view))
        for start in range(0, end, self.SLICE):
            await writer.write(self._view[start : min(start + self.SLICE, end)])


class S3Sink(S3Client):
    features = Features(server_side_copy=True, resumable=True, verifies_checksum=True)

    def __init__(self, location: Location, options: S3Options, pool_size: int = 10,
                 retry: RetryPolicy | None = None, parent: S3Client | None = None) -> None:
        super().__init__(location, options, pool_size, retry, parent)
        # a child (a tree's file) takes its parent's answer: the endpoint is the same, and deciding costs
        # ~0.2 ms (environment, address parsing), a tenth of a small file's whole CPU
        streamed = parent.features.streamed_parts if isinstance(parent, S3Sink) else options.can_stream_parts()
        self.features = Features(server_side_copy=True, resumable=True, verifies_checksum=True,
                                 streamed_parts=streamed)
        self._checked: asyncio.Future[None] | None = None
        #: the sink this one is a child of: the bucket is checked once, by the root
        self._parent_sink = parent if isinstance(parent, S3Sink) else None
        #: user metadata (x-amz-meta-*) for the object this sink creates
        self.metadata: dict[str, str] = {}

    def child(self, path: str) -> S3Sink:
        return S3Sink(self.location.with_path(path), self.options, self._pool_size, self.retry, parent=self)

    def sse_args(self) -> dict[str, Any]:
        """Encryption arguments for requests that write (or read back) the destination object."""
        return sse_c_args(self.options.sse_c_key())

    def kms_args(self) -> dict[str, Any]:
        """Arguments for requests that create an object (PutObject, CreateMultipartUpload):
        SSE-KMS, metadata (the user's and the source's mtime), content type, storage class, tags, ACL."""
        opts = self.options
        metadata = {**dict(opts.metadata), **self.metadata}
        args: dict[str, Any] = {"Metadata": metadata} if metadata else {}
        content_type = opts.content_type or mimetypes.guess_type(self.location.path)[0]
        if content_type:
            args["ContentType"] = content_type
        if opts.storage_class:
            args["StorageClass"] = opts.storage_class
        if opts.acl:
            args["ACL"] = opts.acl
        if opts.tags:
            args["Tagging"] = urlencode(opts.tags)
        if opts.sse_kms_key_id is not None:
            args.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=opts.sse_kms_key_id)
        return args

    def note_source(self, stat: Stat) -> None:
        """Record the source's mtime on the object, so a later download (and a re-run's check) can use it."""
        if stat.mtime is not None:
            self.metadata[MTIME_KEY] = repr(float(stat.mtime))

    async def sizes_below(self) -> dict[str, int]:
        """The size of every object below this prefix, by relative path (:class:`ListingSink`)."""
        try:
            return {entry.path: entry.size async for entry in self.objects_below()}
        except NotFoundError:
            return {}

    async def existing(self) -> Stat | None:
        """What is already at the destination key (None if nothing): size, recorded mtime, checksum."""
        try:
            head = await self.call("head_object", Bucket=self.location.bucket, Key=self.location.path,
                                   ChecksumMode="ENABLED", **self.sse_args())
        except NotFoundError:
            return None
        return head_stat(head)

    async def check_bucket(self) -> None:
        # Some stores (SeaweedFS) accept CreateMultipartUpload on a missing
        # bucket; ask first so the user gets "bucket not found" before any read.
        bucket = self.location.bucket
        try:
            await self.call("head_bucket", Bucket=bucket)
        except NotFoundError as exc:
            raise NotFoundError(f"bucket not found: s3://{bucket}") from exc
        except PermissionError_ as exc:
            # HEAD has no body: a 403 may be bad credentials or missing rights.
            raise AuthError(f"access to s3://{bucket} denied: check the credentials and bucket policy") from exc

    async def prepare(self) -> None:
        if self._parent_sink is not None:  # files of a tree: the bucket is checked once for all
            await self._parent_sink.prepare()
            return
        if self._checked is None:  # one check, however many files ask at once
            self._checked = asyncio.ensure_future(self.check_bucket())
        await self._checked

    def resume_writer(self, upload_id: str | None, algorithm: Algorithm | None,
                      size: int | None = None) -> S3Writer:
        """A writer for an existing upload; with ``None``, for an object already complete."""
        return S3Writer(self, algorithm, upload_id=upload_id)

    async def find_uploads(self, prefix: str, exact: bool = True) -> list[UploadInfo]:
        """Unfinished multipart uploads whose key is ``prefix`` (or starts with it)."""
        found: list[UploadInfo] = []
        args: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": prefix}
        while True:
            page = await self.call("list_multipart_uploads", **args)
            for up in page.get("Uploads", []):
                if not exact or up["Key"] == prefix:
                    found.append(UploadInfo(up["Key"], up["UploadId"], up.get("Initiated")))
            if not page.get("IsTruncated"):
                return found
            args["KeyMarker"], args["UploadIdMarker"] = page.get("NextKeyMarker"), page.get("NextUploadIdMarker")

    async def list_parts(self, key: str, upload_id: str) -> dict[int, ListedPart]:
        """Parts stored for an upload (raises TransferError code NoSuchUpload if it is gone)."""
        listed: dict[int, ListedPart] = {}
        args: dict[str, Any] = {"Bucket": self.location.bucket, "Key": key, "UploadId": upload_id}
        while True:
            page = await self.call("list_parts", **args)
            for p in page.get("Parts", []):
                listed[int(p["PartNumber"])] = ListedPart(int(p["PartNumber"]), int(p["Size"]), str(p["ETag"]))
            if not page.get("IsTruncated"):
                return listed
            args["PartNumberMarker"] = page["NextPartNumberMarker"]

    async def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            await self.call("abort_multipart_upload", Bucket=self.location.bucket, Key=key, UploadId=upload_id)
        except TransferError as exc:
            if exc.code != "NoSuchUpload":
                raise
            # already gone: nothing is left behind, which is the point

    async def open_writer(self, size: int, part_size: int, algorithm: Algorithm | None, *,
                          defer: bool = False) -> S3Writer:
        if size <= part_size and not defer:
            return S3Writer(self, algorithm, upload_id=None)
        kwargs: dict[str, Any] = {"Bucket": self.location.bucket, "Key": self.location.path, **self.sse_args(),
                                  **self.kms_args()}
        if algorithm is not None:
            kwargs["ChecksumAlgorithm"] = algorithm.s3_name
            kwargs["ChecksumType"] = "FULL_OBJECT" if algorithm.full_object else "COMPOSITE"
        response = await self.call("create_multipart_upload", **kwargs)
        return S3Writer(self, algorithm, upload_id=str(response["UploadId"]))


class S3Writer:
    """Parts of one object. ``upload_id`` None means a single PutObject."""

    def __init__(self, sink: S3Sink, algorithm: Algorithm | None, upload_id: str | None) -> None:
        self.sink = sink
        self.algorithm = algorithm
        self.upload_id = upload_id
        self._key = {"Bucket": sink.location.bucket, "Key": sink.location.path}
        self._put: tuple[int, dict[str, Any]] | None = None  # a single PutObject's size and answer
        self._unverified: str | None = None  # why a part could not be checked (see unverified())

    def unverified(self) -> str | None:
        return self._unverified

    async def _check_stored(self, part: Part, digest: PartDigest | None, response: dict[str, Any],
                            md5: Callable[[], Awaitable[bytes | None]]) -> None:
        """Compare what the store says it stored with the bytes sent: its checksum, else its MD5 ETag.

        A store that returns no checksums (many S3-compatible ones) is detected
        here, said once, and checked by the MD5 of every part instead.
        """
        if self.algorithm is None or digest is None:
            return  # --checksum none: nothing to compare
        echoed = response.get(f"Checksum{self.algorithm.s3_name}")
        self.sink.note_checksums(echoed is not None)
        if echoed is not None:
            if echoed != digest.b64:
                raise TransferError(f"S3 stored part {part.number} of {self.sink.where} with checksum {echoed}, "
                                    f"not the {digest.b64} of the bytes sent")
            return
        etag = str(response.get("ETag", "")).strip('"').lower()
        sent = await md5()
        if sent is None or not is_md5(etag):
            self._unverified = (f"{self.sink.options.resolved_endpoint() or 'the store'} returns no checksums "
                                "and its ETags are not MD5s")
            return
        if etag != sent.hex():
            raise TransferError(f"the store's MD5 of part {part.number} of {self.sink.where} ({etag}) is not "
                                f"the MD5 of the bytes sent ({sent.hex()})")

    def _checksum_args(self, digest: PartDigest | None) -> dict[str, str]:
        if self.algorithm is None or digest is None:
            return {}
        return {f"Checksum{self.algorithm.s3_name}": digest.b64}

    async def write_part(self, part: Part, data: memoryview, digest: PartDigest | None) -> Receipt:
        args = {**self._key, "Body": PartBody(data), "ContentLength": len(data), **self._checksum_args(digest),
                **self.sink.sse_args()}
        # Not retried here: the engine retries parts, and slows down on SlowDown.
        if self.upload_id is None:
            response = await self.sink.call_once("put_object", **args, **self.sink.kms_args())
        else:
            response = await self.sink.call_once("upload_part", UploadId=self.upload_id, PartNumber=part.number,
                                                 **args)

        async def md5() -> bytes:
            return await asyncio.to_thread(MD5.part, data)  # the buffer is the engine's until we return

        await self._check_stored(part, digest, response, md5)
        if self.upload_id is None:
            self._put = (len(data), response)
        return Receipt(part.number, str(response.get("ETag", "")), digest)

    async def write_stream(self, part: Part, body: StreamedPart) -> Receipt:
        """Send a part while it is read from the source (its checksum goes as a trailer)."""
        assert self.algorithm is not None, "streamed parts always carry a checksum"
        if self.sink.returns_checksums is not True:
            body.want_md5()  # the part cannot be read again to check it against a store without checksums
        args = {**self._key, "Body": body, "ContentLength": part.length,
                "ChecksumAlgorithm": self.algorithm.s3_name, **self.sink.sse_args()}
        try:
            if self.upload_id is None:
                response = await self.sink.call_once("put_object", **args, **self.sink.kms_args())
            else:
                response = await self.sink.call_once("upload_part", UploadId=self.upload_id,
                                                     PartNumber=part.number, **args)
        except S3FerryError as exc:
            if isinstance(body.failure, S3FerryError):
                raise body.failure from exc  # the source failed, not S3 (aiohttp reports a broken send)
            raise
        finally:
            await body.aclose()
        digest = body.digest()

        async def md5() -> bytes | None:
            return body.md5()

        await self._check_stored(part, digest, response, md5)
        if self.upload_id is None:
            self._put = (part.length, response)
        return Receipt(part.number, str(response.get("ETag", "")), digest)

    async def list_parts(self, expected: Sequence[Part] = ()) -> dict[int, ListedPart]:
        """The parts S3 holds for this upload (raises TransferError code NoSuchUpload if it is gone)."""
        assert self.upload_id is not None
        return await self.sink.list_parts(self._key["Key"], self.upload_id)

    async def complete(self, receipts: Sequence[Receipt], whole: str | None) -> Completed:
        if self.upload_id is None and self._put is not None:
            size, response = self._put
            stored = response.get(f"Checksum{self.algorithm.s3_name}") if self.algorithm else None
            if stored is not None or self.sink.returns_checksums is False:
                # S3 checked the whole body against our checksum header (or its MD5 was compared with
                # the ETag) before it answered: a HEAD would only repeat it (and for a tree of small
                # files it is one more round trip per file).
                return Completed(size=size, checksum=None if stored is None else str(stored),
                                 etag=response.get("ETag"), md5_verified=stored is None and not self._unverified)
        if self.upload_id is not None:
            await self._complete_multipart(receipts, whole)
        head_args: dict[str, Any] = {**self._key, **self.sink.sse_args()}
        if self.algorithm is not None:
            head_args["ChecksumMode"] = "ENABLED"
        head = await self.sink.call("head_object", **head_args)
        checksum = head.get(f"Checksum{self.algorithm.s3_name}") if self.algorithm else None
        etag = head.get("ETag")
        return Completed(size=int(head["ContentLength"]), checksum=checksum, etag=etag,
                         md5_verified=checksum is None and self._md5_etag_matches(receipts, etag))

    def _md5_etag_matches(self, receipts: Sequence[Receipt], etag: str | None) -> bool:
        """A store without checksums: the object's ETag is the MD5 of the part MD5s we checked one by one."""
        if self.sink.returns_checksums is not False or self._unverified or self.upload_id is None:
            return False
        part_etags = [r.etag.strip('"').lower() for r in receipts]
        if not all(is_md5(e) for e in part_etags):
            return False
        return str(etag or "").strip('"').lower() == multipart_etag([bytes.fromhex(e) for e in part_etags])

    async def _complete_multipart(self, receipts: Sequence[Receipt], whole: str | None) -> None:
        parts = []
        for r in receipts:
            entry: dict[str, Any] = {"PartNumber": r.number, "ETag": r.etag}
            entry.update(self._checksum_args(r.digest))
            parts.append(entry)
        args: dict[str, Any] = {**self._key, "UploadId": self.upload_id, "MultipartUpload": {"Parts": parts}}
        if self.algorithm is not None and self.algorithm.full_object and whole is not None:
            args["ChecksumType"] = "FULL_OBJECT"
            args[f"Checksum{self.algorithm.s3_name}"] = whole
        args.update(self.sink.sse_args())  # S3 wants the SSE-C key again to complete
        try:
            await self.sink.call("complete_multipart_upload", **args)
        except TransferError as exc:
            if exc.code in DIGEST_CODES:
                raise IntegrityError(f"S3 computed a different checksum for {self.sink.where} than the "
                                     "source's") from exc
            raise

    async def annotate(self, tags: Mapping[str, str], etag: str | None) -> None:
        """Add ``tags`` to the completed object, keeping its other tags (:class:`~s3ferry.core.storage.
        AnnotatingWriter`): the object, its ETag and its version stay as they are. PutObjectTagging takes no
        condition: the ETag is checked after, and a version written by someone else meanwhile (which the
        tags may then have landed on) is an error."""
        key = {"Bucket": self._key["Bucket"], "Key": self._key["Key"]}
        there = await self.sink.call("get_object_tagging", **key)
        merged = {t["Key"]: t["Value"] for t in there.get("TagSet", [])} | dict(tags)
        await self.sink.call("put_object_tagging", **key,
                             Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in merged.items()]})
        head = await self.sink.call("head_object", **self._key, **self.sink.sse_args())
        if etag and head.get("ETag") != etag:
            raise TransferError(f"{self.sink.location} was replaced by another writer while its tags were written",
                                retryable=False)

    async def abort(self) -> None:
        if self.upload_id is not None:
            await self.sink.abort_upload(self._key["Key"], self.upload_id)

    async def discard(self) -> None:
        await self.sink.call("delete_object", **self._key)
