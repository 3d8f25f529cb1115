"""Parts sent while they are read: memory independent of the part size.

A part of 256 MiB (a 5 TB file needs ~525 MiB parts) cannot sit whole in
memory per upload in flight. A :class:`StreamedPart` is a request body that
reads its part from the source one slab at a time -- the next slab is read
while the current one is sent -- and hashes it on the way. Its checksum
cannot go in a header (it is known only at the end), so the part is sent
``aws-chunked`` with the checksum as an HTTP *trailer*
(``STREAMING-UNSIGNED-PAYLOAD-TRAILER``); S3 verifies it on receipt as it
verifies a header. Nothing of the part is kept: when an upload fails, the
retry reads the part's range from the source again.

Memory per part in flight: two slabs (``2 x 4 MiB``) plus the HTTP client's
own chunk (1 MiB), whatever the part size.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from s3ferry.core.checksums import MD5, Algorithm, Hasher, PartDigest
from s3ferry.core.storage import ChunkWriter, Part, Receipt

SLAB = 4 * 1024 * 1024


class _Reader(Protocol):
    async def read_into(self, offset: int, buf: memoryview) -> None: ...


@runtime_checkable
class StreamingWriter(ChunkWriter, Protocol):
    """A writer that takes a part as it is read (``Features.streamed_parts``; S3). The flag plans
    the copy before the writer exists; this sub-protocol is how the engine then reaches
    :meth:`write_stream` (one ``isinstance``, see :mod:`s3ferry.core.storage`)."""

    async def write_stream(self, part: Part, body: StreamedPart) -> Receipt: ...


class StreamedPart:
    """An async file-like request body (``read(n)``) over one part of the source.

    The consumer (botocore's aws-chunked wrapper) copies each piece before it
    asks for the next, so the two slabs are reused in turn.
    """

    def __init__(self, reader: _Reader, part: Part, algorithm: Algorithm, slab: int = SLAB) -> None:
        self.part = part
        self._reader = reader
        self._hasher = algorithm.hasher()
        size = min(slab, part.length)
        self._slabs = (bytearray(size), bytearray(size))
        self._slab = size
        self._requested = 0  # bytes of the part asked of the source so far
        self._served = 0
        self._current = memoryview(b"")
        self._ahead: asyncio.Task[memoryview] | None = None
        self._turn = 0
        #: the exception a source read raised (the HTTP client reports it as a broken connection)
        self.failure: BaseException | None = None
        self._md5: Hasher | None = None

    def want_md5(self) -> None:
        """Also hash the part with MD5 (a store without checksums is checked by its ETags); before sending."""
        self._md5 = MD5.hasher()

    def md5(self) -> bytes | None:
        return self._md5.digest() if self._md5 is not None else None

    def __len__(self) -> int:
        return self.part.length

    async def _fill(self, index: int) -> memoryview:
        start = self._requested
        length = min(self._slab, self.part.length - start)
        self._requested += length
        view = memoryview(self._slabs[index])[:length]
        await self._reader.read_into(self.part.offset + start, view)
        return view

    def _prefetch(self) -> None:
        if self._requested < self.part.length:
            self._turn ^= 1
            self._ahead = asyncio.ensure_future(self._fill(self._turn))
        else:
            self._ahead = None

    async def _next_slab(self) -> memoryview:
        if self._ahead is None and self._requested == 0:
            self._current = await self._fill(self._turn)
        elif self._ahead is not None:
            self._current = await self._ahead
        else:
            return memoryview(b"")
        self._prefetch()  # the other slab: its bytes were already handed over and copied
        return self._current

    async def read(self, size: int | None = -1) -> memoryview | bytes:
        try:
            if not self._current and (self._served >= self.part.length or not await self._next_slab()):
                return b""
            n = len(self._current) if size is None or size < 0 else size
            chunk, self._current = self._current[:n], self._current[n:]
            self._hasher.update(chunk)
            if self._md5 is not None:
                self._md5.update(chunk)
            self._served += len(chunk)
            return chunk
        except BaseException as exc:
            self.failure = exc
            raise

    def digest(self) -> PartDigest:
        """The part's checksum; only meaningful once every byte was read."""
        if self._served != self.part.length:
            raise RuntimeError(f"part {self.part.number}: {self._served} of {self.part.length} bytes were sent")
        return PartDigest(self._hasher.digest(), self.part.length)

    async def aclose(self) -> None:
        """Stop a read-ahead still running (the request ended early)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and not ahead.done():
            ahead.cancel()
        if ahead is not None:
            await asyncio.gather(ahead, return_exceptions=True)
