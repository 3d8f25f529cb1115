"""S3 as a source: ranged GETs pinned to one version of the object, prefix listings.

Every ranged GET carries ``If-Match: <ETag from the first HEAD>``: if the
object is overwritten during the transfer, S3 answers 412 and the transfer
stops with :class:`SourceChangedError` instead of mixing two versions. The
object's own stored check -- any S3 checksum, else an ETag that is an MD5 --
is reported by :meth:`S3Source.stored_check` (with the object's part sizes
where the check is composed of parts), so a download is checked end to end
against what S3 stored, whoever wrote the object.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import botocore.exceptions as bexc

from s3ferry.backends.s3.client import S3Client
from s3ferry.backends.s3.objects import head_stat, sse_c_args
from s3ferry.core.errors import (
    NotFoundError,
    PermissionError_,
    S3FerryError,
    SourceChangedError,
    TransferError,
    UsageError,
    UserError,
)
from s3ferry.core.options import S3Options
from s3ferry.core.storage import Entry, Features, Stat
from s3ferry.core.urls import Location
from s3ferry.core.verification import StoredCheck, stored_check
from s3ferry.engine.retry import RetryPolicy

_SLICE = 256 * 1024
#: objects a listing showed at most this large are read whole by :meth:`S3Source.stat` (see there)
READ_WHOLE = 1024 * 1024
log = logging.getLogger("s3ferry")


class S3Reader:
    """Ranged GETs of one object version; the body is copied straight into the part buffer."""

    def __init__(self, source: S3Source, etag: str | None) -> None:
        self._source, self._etag = source, etag

    async def read_into(self, offset: int, buf: memoryview) -> None:
        if len(buf) == 0:
            return
        whole = self._source.whole
        if whole is not None:  # read by stat(), with the version it pinned
            if offset + len(buf) > len(whole):
                raise SourceChangedError(f"{self._source.where} became shorter while it was being read")
            buf[:] = whole[offset : offset + len(buf)]
            return
        args: dict[str, Any] = {**self._source.key_args(), "Range": f"bytes={offset}-{offset + len(buf) - 1}"}
        if self._etag:
            args["IfMatch"] = self._etag
        try:
            response = await self._source.call_once("get_object", **args)
        except TransferError as exc:
            if exc.code in ("PreconditionFailed", "412"):
                raise SourceChangedError(f"{self._source.where} was overwritten during the transfer") from exc
            if exc.code in ("InvalidRange", "416"):
                raise SourceChangedError(f"{self._source.where} became shorter while it was being read") from exc
            raise
        await self._copy(response["Body"], buf)

    async def _copy(self, body: Any, buf: memoryview) -> None:
        pos = 0
        try:
            async with body as stream:
                while pos < len(buf):
                    chunk = await stream.read(min(_SLICE, len(buf) - pos))
                    if not chunk:
                        break
                    buf[pos : pos + len(chunk)] = chunk
                    pos += len(chunk)
        except (TimeoutError, aiohttp.ClientError, bexc.BotoCoreError, OSError) as exc:
            raise TransferError(f"S3 read of {self._source.where} broke off: {exc or type(exc).__name__}") from exc
        if pos < len(buf):
            # A complete answer (a broken one raises above) that is short: the object ends earlier.
            raise SourceChangedError(f"{self._source.where} became shorter while it was being read")


class S3Source(S3Client):
    features = Features(ranged_reads=True, listing=True, reads_small_in_stat=True)
    #: the ETag stat() saw: every ranged GET names it (If-Match); push marks this version delivered
    pinned_etag: str | None = None
    #: stat()'s HeadObject answer (its checksum and ETag are what a download is checked against)
    _head: dict[str, Any] | None = None
    #: the object's bytes, when stat() read it whole (a small object a listing showed)
    whole: bytes | None = None

    def __init__(self, location: Location, options: S3Options, pool_size: int = 10,
                 retry: RetryPolicy | None = None, parent: S3Client | None = None) -> None:
        super().__init__(location, options, pool_size, retry, parent)
        #: small objects a walk listed (key -> ETag), until their stat(); shared by a tree's objects
        self._listed: dict[str, str] = parent._listed if isinstance(parent, S3Source) else {}

    def child(self, path: str) -> S3Source:
        return S3Source(self.location.with_path(path), self.options, self._pool_size, self.retry, parent=self)

    def key_args(self) -> dict[str, Any]:
        return {"Bucket": self.location.bucket, "Key": self.location.path,
                **sse_c_args(self.options.sse_c_key(source=True))}

    async def stat(self) -> Stat:
        """The object's size, ETag (every later read is pinned to it), time and stored checksum; a small
        object a walk listed is read whole by the same request (see :meth:`_read_whole`)."""
        listed = self._listed.pop(self.location.path, None)
        if listed is not None and self.pinned_etag is None and not self.location.path.endswith("/"):
            head = await self._read_whole(listed)
            if head is not None:
                self.pinned_etag, self._head = head.get("ETag"), head
                return head_stat(head)
        return await self.head()

    async def head(self) -> Stat:
        """:meth:`stat` by HeadObject alone, never reading the object (a copy inside S3 moves no bytes here)."""
        if not self.location.path or self.location.path.endswith("/"):
            raise UsageError(f"{self.where} is a prefix (use cp -r to copy everything under it)")
        try:
            head = await self.call("head_object", **self.key_args(), ChecksumMode="ENABLED")
        except NotFoundError as exc:
            if await self._is_prefix():
                raise UsageError(f"{self.where} is a prefix (use cp -r to copy everything under it)") from exc
            raise NotFoundError(f"source not found: {self.where}") from exc
        except TransferError as exc:
            if exc.code in ("400", "BadRequest", "InvalidArgument", "InvalidRequest"):
                # A HEAD answer has no body; 400 is what S3 says to a request
                # without the key of an SSE-C object.
                has_key = self.options.source_sse_c_key_file is not None
                hint = "check --source-sse-c-key-file" if has_key else "pass --source-sse-c-key-file"
                raise UserError(f"S3 refused to read {self.where} (400): is it encrypted with SSE-C? {hint}") from exc
            raise
        self.pinned_etag = head.get("ETag")
        self._head = head
        return head_stat(head)  # mtime: the one recorded from the original source, if any

    async def _read_whole(self, etag: str) -> dict[str, Any] | None:
        """A small object of a tree read whole, pinned to the ETag its listing showed: the GET answers what
        a HEAD would (size, ETag, metadata, the stored checksum with ``ChecksumMode``), one request per
        object instead of two (measured: 300 objects of 64 KiB to SFTP, the HEADs were ~20% of the CPU).
        None when that fails (changed since the listing, gone, refused): :meth:`stat` then asks HEAD,
        whose answer says why."""
        try:
            answer = await self.call_once("get_object", **self.key_args(), IfMatch=etag, ChecksumMode="ENABLED")
        except S3FerryError as exc:
            log.debug("reading %s whole failed (%s): asking HEAD", self.where, exc)
            return None
        try:
            async with answer.pop("Body") as stream:
                whole = await stream.read()
        except bexc.FlexibleChecksumError as exc:
            log.warning("S3 answered a body of %s that does not match its checksum (%s): reading it again",
                        self.where, exc)
            return None
        except (TimeoutError, aiohttp.ClientError, bexc.BotoCoreError, OSError) as exc:
            log.debug("reading %s whole broke off (%s): asking HEAD", self.where, exc)
            return None
        if len(whole) != int(answer.get("ContentLength", -1)):
            return None
        self.whole = whole
        return dict(answer)

    async def stored_check(self) -> StoredCheck | None:
        """The check the object stores for the version stat() saw: its checksum, else an MD5 ETag.

        A composite checksum or a multipart ETag is composed per part: the
        object's part sizes are fetched (GetObjectAttributes, else HeadObject
        per part number) so the check can be recomputed from any read layout.
        """
        if self._head is None:
            await self.stat()
        assert self._head is not None
        check = stored_check(self._head)
        if check is None or not check.needs_part_sizes:
            return check
        sizes = await self._part_sizes(check.parts, int(self._head["ContentLength"]))
        return dataclasses.replace(check, part_sizes=sizes)

    async def _part_sizes(self, count: int, size: int) -> tuple[int, ...]:
        try:
            sizes = await self._attribute_part_sizes()
        except (PermissionError_, TransferError) as exc:
            # GetObjectAttributes needs its own permission (s3:GetObjectAttributes) and some stores lack it.
            log.debug("GetObjectAttributes of %s refused (%s): asking HeadObject per part", self.where, exc)
            sizes = ()
        if len(sizes) == count and sum(sizes) == size:
            return sizes
        return await self._head_part_sizes(count, size)

    async def _attribute_part_sizes(self) -> tuple[int, ...]:
        sizes: list[int] = []
        args: dict[str, Any] = {**self.key_args(), "ObjectAttributes": ["ObjectParts", "ETag"], "MaxParts": 1000}
        while True:
            answer = await self.call("get_object_attributes", **args)
            if self.pinned_etag and str(answer.get("ETag", "")).strip('"') != self.pinned_etag.strip('"'):
                raise SourceChangedError(f"{self.where} was overwritten during the transfer")
            parts = answer.get("ObjectParts") or {}
            sizes.extend(int(p["Size"]) for p in parts.get("Parts") or [] if "Size" in p)
            if not parts.get("IsTruncated"):
                return tuple(sizes)
            args["PartNumberMarker"] = parts["NextPartNumberMarker"]

    async def _head_part_size(self, number: int) -> int:
        args: dict[str, Any] = {**self.key_args(), "PartNumber": number}
        if self.pinned_etag:
            args["IfMatch"] = self.pinned_etag
        try:
            return int((await self.call("head_object", **args))["ContentLength"])
        except TransferError as exc:
            if exc.code in ("PreconditionFailed", "412"):
                raise SourceChangedError(f"{self.where} was overwritten during the transfer") from exc
            raise

    async def _head_part_sizes(self, count: int, size: int) -> tuple[int, ...]:
        """Part sizes from HeadObject partNumber: the first and last first, all of them only if the
        object's parts are not of one size (which every common uploader uses)."""
        first = await self._head_part_size(1)
        last = await self._head_part_size(count) if count > 1 else first
        if count == 1 or ((count - 1) * first + last == size and 0 < last <= first):
            return (first,) * (count - 1) + (last,)
        slots = asyncio.Semaphore(8)

        async def one(number: int) -> int:
            async with slots:
                return await self._head_part_size(number)

        return tuple(await asyncio.gather(*(one(n) for n in range(1, count + 1))))

    async def current(self) -> Stat | None:
        """The object as it is now (None if gone), without pinning reads to it as stat() does."""
        try:
            head = await self.call("head_object", **self.key_args())
        except NotFoundError:
            return None
        return head_stat(head)

    async def tags(self, key: str) -> dict[str, str]:
        """The tag set of ``key`` in this bucket."""
        answer = await self.call("get_object_tagging", Bucket=self.location.bucket, Key=key)
        return {t["Key"]: t["Value"] for t in answer.get("TagSet", [])}

    async def put_tags(self, key: str, tags: dict[str, str]) -> None:
        """Replace the tag set of ``key`` (S3 has no conditional form: callers serialise and read back)."""
        await self.call("put_object_tagging", Bucket=self.location.bucket, Key=key,
                        Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})

    async def _is_prefix(self) -> bool:
        page = await self.call("list_objects_v2", Bucket=self.location.bucket,
                               Prefix=self.location.path.rstrip("/") + "/", MaxKeys=1)
        return bool(page.get("KeyCount") or page.get("Contents"))

    @asynccontextmanager
    async def reader(self, length: int | None = None) -> AsyncIterator[S3Reader]:
        # Pinned to the ETag seen by stat(); the engine stats before reading.
        if self.pinned_etag is None:
            await self.stat()
        yield S3Reader(self, self.pinned_etag)

    def list_folder(self) -> AsyncIterator[Entry]:
        path = self.location.path
        return self.entries(path if not path or path.endswith("/") else f"{path}/", folder_only=True)

    def walk(self) -> AsyncIterator[Entry]:
        return self.objects_below()

    def read_ahead(self, entries: Sequence[Entry]) -> None:
        """Note the small ones of ``entries`` (from :meth:`walk`) for their :meth:`stat` to read whole."""
        prefix = self.location.path.rstrip("/")
        for entry in entries:
            if entry.size <= READ_WHOLE and entry.etag:
                self._listed[f"{prefix}/{entry.path}" if prefix else entry.path] = entry.etag
