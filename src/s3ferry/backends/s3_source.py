"""S3 as a source: ranged GETs pinned to one version of the object, prefix listings.

Every ranged GET carries ``If-Match: <ETag from the first HEAD>``: if the
object is overwritten during the transfer, S3 answers 412 and the transfer
stops with :class:`SourceChangedError` instead of mixing two versions. The
object's own FULL_OBJECT checksum (when it has one) is reported in
:class:`Stat`, so a download is checked end to end against what S3 stored.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, AsyncIterator

import aiohttp
import botocore.exceptions as bexc

from ..errors import NotFoundError, SourceChangedError, TransferError, UsageError, UserError
from ..urls import Location
from .base import Entry, Features, Stat
from .s3 import S3Client, head_stat, sse_c_args

_SLICE = 256 * 1024


def _epoch(when: object) -> float | None:
    return when.timestamp() if isinstance(when, datetime) else None


class S3Reader:
    """Ranged GETs of one object version; the body is copied straight into the part buffer."""

    def __init__(self, source: "S3Source", etag: str | None) -> None:
        self._source, self._etag = source, etag

    async def read_into(self, offset: int, buf: memoryview) -> None:
        if len(buf) == 0:
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
        except (aiohttp.ClientError, bexc.BotoCoreError, OSError, asyncio.TimeoutError) as exc:
            raise TransferError(f"S3 read of {self._source.where} broke off: {exc or type(exc).__name__}") from exc
        if pos < len(buf):
            # A complete answer (a broken one raises above) that is short: the object ends earlier.
            raise SourceChangedError(f"{self._source.where} became shorter while it was being read")


class S3Source(S3Client):
    features = Features(ranged_reads=True, listing=True)
    #: the ETag stat() saw: every ranged GET names it (If-Match); push marks this version delivered
    pinned_etag: str | None = None

    def child(self, path: str) -> "S3Source":
        return S3Source(self.location.with_path(path), self.options, self._pool_size, self.retry, parent=self)

    def key_args(self) -> dict[str, Any]:
        return {"Bucket": self.location.bucket, "Key": self.location.path,
                **sse_c_args(self.options.sse_c_key(source=True))}

    async def stat(self) -> Stat:
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
        return head_stat(head)  # mtime: the one recorded from the original source, if any

    async def _is_prefix(self) -> bool:
        page = await self.call("list_objects_v2", Bucket=self.location.bucket,
                               Prefix=self.location.path.rstrip("/") + "/", MaxKeys=1)
        return bool(page.get("KeyCount") or page.get("Contents"))

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[S3Reader]:
        # Pinned to the ETag seen by stat(); the engine stats before reading.
        if self.pinned_etag is None:
            await self.stat()
        yield S3Reader(self, self.pinned_etag)

    async def list_folder(self) -> AsyncIterator[Entry]:
        # Delimiter='/': S3 rolls every key below a deeper "/" into one CommonPrefix, so the
        # pages hold this folder's own keys however many objects lie below it.
        path = self.location.path
        prefix = path if not path or path.endswith("/") else f"{path}/"
        args: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": prefix, "Delimiter": "/"}
        found = False
        while True:
            page = await self.call("list_objects_v2", **args)
            found = found or bool(page.get("Contents") or page.get("CommonPrefixes"))
            for obj in page.get("Contents", []):
                key = str(obj["Key"])
                if key != prefix:  # the folder's own marker object ("dir/") is no file of it
                    yield Entry(key[len(prefix):], int(obj["Size"]), _epoch(obj.get("LastModified")), obj.get("ETag"))
            if not page.get("IsTruncated"):
                break
            args["ContinuationToken"] = page["NextContinuationToken"]
        if not found:
            raise NotFoundError(f"nothing found under {self.location.with_path(prefix)}")

    async def walk(self) -> AsyncIterator[Entry]:
        prefix = self.location.path.rstrip("/")
        prefix = f"{prefix}/" if prefix else ""
        args: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": prefix}
        found = False
        while True:
            page = await self.call("list_objects_v2", **args)
            for obj in page.get("Contents", []):
                key = str(obj["Key"])
                if key.endswith("/"):
                    continue  # a "folder" marker, not a file
                found = True
                yield Entry(key[len(prefix):], int(obj["Size"]), _epoch(obj.get("LastModified")), obj.get("ETag"))
            if not page.get("IsTruncated"):
                break
            args["ContinuationToken"] = page["NextContinuationToken"]
        if not found:
            raise NotFoundError(f"nothing found under {self.location.with_path(prefix)}")
