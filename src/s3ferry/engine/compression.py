"""Compression stages (issue 19): gzip and zstd, compress and decompress, in flight.

Compression is deterministic: a fixed level, a gzip header without a name or
timestamp (zlib writes mtime 0), single-threaded zstd (a multi-threaded
encoder may cut its jobs differently). The same input then gives the same
bytes on every run, which is what resume relies on (:mod:`s3ferry.engine.stages`).

Decompression takes several gzip members or zstd frames one after the other
(what ``cat a.gz b.gz`` and ``pigz``/``zstd -T`` write) and checks each one's
own checksum (gzip's CRC-32 and length, zstd's XXH64 when the frame has one):
a truncated or damaged input raises :class:`IntegrityError` (exit 3) at the
latest when the input ends.

CPU work runs in a thread per chunk (zlib and zstd release the GIL), so the
event loop keeps SSH and S3 sockets flowing meanwhile. Output is bounded per
step: gzip through ``max_length``; zstd by feeding it small slices of input
(a zstd block can expand far more than gzip's 1032:1, see the README).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

import zstandard

from s3ferry.core.errors import IntegrityError, UsageError
from s3ferry.core.options import compress_problem, parse_compress
from s3ferry.engine.stages import Stage

T = TypeVar("T")
U = TypeVar("U")
Format = Literal["gzip", "zstd"]
FORMATS: tuple[Format, ...] = ("gzip", "zstd")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: the suffix each format adds, and the ones its decompression removes
SUFFIXES: dict[Format, tuple[str, ...]] = {"gzip": (".gz", ".gzip"), "zstd": (".zst", ".zstd")}
#: most output bytes one decompression step returns (gzip's ``max_length``)
OUT_STEP = 4 * 1024 * 1024
#: input bytes a zstd step takes at once: keeps one step's output small for ordinary data
ZSTD_IN_STEP = 256 * 1024
#: below this, a thread hop costs more than the work
_INLINE = 64 * 1024


def compress_stage(text: str) -> Compress:
    """The stage for a --compress value (``gzip``, ``zstd:19``); a bad value raises UsageError."""
    problem = compress_problem(text)
    if problem:
        raise UsageError(f"--compress {problem}")
    name, level = parse_compress(text)
    return Compress("gzip" if name == "gzip" else "zstd", level)


def _next(pieces: Iterator[bytes]) -> bytes | None:
    return next(pieces, None)


def detect(head: bytes) -> Format | None:
    """The format the first bytes announce, if any."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


class _Thread:
    """The one thread a stage's codec runs in. One, not the shared pool: glibc gives each thread that
    allocates its own malloc arena, and the codec's output (MiBs per step) freed in another thread's arena
    stays cached there; spread over the pool's threads that cost ~20 MB of RSS (2 GiB --compress zstd)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3ferry-stage")

    async def run(self, work: Callable[[T], U], arg: T) -> U:
        return await asyncio.get_running_loop().run_in_executor(self._pool, work, arg)

    def close(self) -> None:
        self._pool.shutdown(wait=False)  # a step still running ends on its own; nothing waits for it


class Compress(Stage):
    """gzip or zstd at a fixed level: deterministic."""

    deterministic = True

    def __init__(self, fmt: Format, level: int) -> None:
        self.fmt, self.level = fmt, level
        self.name = f"{fmt}:{level}"

    def rename(self, name: str) -> str:
        return name + SUFFIXES[self.fmt][0]

    def _encoder(self) -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
        if self.fmt == "gzip":
            # wbits 31: a gzip wrapper; zlib writes mtime 0 and no file name, so the bytes repeat
            gz = zlib.compressobj(self.level, zlib.DEFLATED, 31)
            return gz.compress, gz.flush
        # threads=0: one thread, the same frame layout on every run; the content checksum lets a reader check it
        zs = zstandard.ZstdCompressor(level=self.level, threads=0, write_checksum=True).compressobj()
        return zs.compress, zs.flush

    async def apply(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        compress, flush = self._encoder()
        thread = _Thread()
        try:
            async for chunk in chunks:
                out = compress(chunk) if len(chunk) <= _INLINE else await thread.run(compress, chunk)
                if out:
                    yield out
            tail = flush()
            if tail:
                yield tail
        finally:
            thread.close()


class _Members:
    """The decoder of one format over a stream of members (gzip) or frames (zstd)."""

    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt
        self.started = False  # a member is open: input ending now is a truncation
        self._gz: zlib._Decompress | None = None
        self._zs: zstandard.ZstdDecompressionObj | None = None

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Output for ``data`` in bounded pieces; raises IntegrityError on a damaged member."""
        while data:
            if not self.started:
                if len(data) >= len(ZSTD_MAGIC) and detect(data) != self.fmt:
                    raise IntegrityError(f"not {self.fmt} data after the end of the previous member")
                self._open()
            data = yield from (self._feed_gzip(data) if self.fmt == "gzip" else self._feed_zstd(data))

    def _open(self) -> None:
        self.started = True
        if self.fmt == "gzip":
            self._gz = zlib.decompressobj(31)
        else:
            self._zs = zstandard.ZstdDecompressor().decompressobj()

    def _feed_gzip(self, data: bytes) -> Generator[bytes, None, bytes]:
        assert self._gz is not None
        gz = self._gz
        try:
            while data:
                out = gz.decompress(data, OUT_STEP)
                data = gz.unconsumed_tail
                if out:
                    yield out
                if gz.eof:
                    self.started = False
                    return gz.unused_data + data
        except zlib.error as exc:
            raise IntegrityError(f"damaged gzip data: {exc}") from exc
        return b""

    def _feed_zstd(self, data: bytes) -> Generator[bytes, None, bytes]:
        assert self._zs is not None
        zs = self._zs
        try:
            for start in range(0, len(data), ZSTD_IN_STEP):
                out = zs.decompress(data[start:start + ZSTD_IN_STEP])
                if out:
                    yield out
                if zs.eof:
                    self.started = False
                    return zs.unused_data + data[start + ZSTD_IN_STEP:]
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"damaged zstd data: {exc}") from exc
        return b""


class Decompress(Stage):
    """gunzip or unzstd, the format named or (``auto``) read from the first bytes; deterministic."""

    deterministic = True
    checks_input = True

    def __init__(self, fmt: Format | Literal["auto"] = "auto") -> None:
        self.fmt = fmt
        self.name = "decompress" if fmt == "auto" else f"un{fmt}"

    def rename(self, name: str) -> str:
        formats = FORMATS if self.fmt == "auto" else (self.fmt,)
        for fmt in formats:
            for suffix in SUFFIXES[fmt]:
                if name.lower().endswith(suffix) and len(name) > len(suffix):
                    return name[: -len(suffix)]
        if name.lower().endswith(".tgz"):
            return name[:-4] + ".tar"
        return name

    async def apply(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        thread = _Thread()
        try:
            async for piece in self._decompress(chunks, thread):
                yield piece
        finally:
            thread.close()

    async def _decompress(self, chunks: AsyncIterator[bytes], thread: _Thread) -> AsyncIterator[bytes]:
        decoder: _Members | None = None
        seen = 0
        async for chunk in chunks:
            if not chunk:
                continue
            seen += len(chunk)
            if decoder is None:
                decoder = _Members(self._format_of(chunk))
            pieces = decoder.feed(chunk)
            # one bounded piece per thread hop: a chunk's whole output is never held at once
            while (out := await thread.run(_next, pieces)) is not None:
                yield out
        if decoder is None and seen == 0:
            raise IntegrityError(f"the input is empty: no {self._named()} data to decompress")
        if decoder is not None and decoder.started:
            raise IntegrityError(f"truncated {decoder.fmt} data: the input ends inside a "
                                 f"{'member' if decoder.fmt == 'gzip' else 'frame'}")

    def _named(self) -> str:
        return "gzip or zstd" if self.fmt == "auto" else self.fmt

    def _format_of(self, head: bytes) -> Format:
        found = detect(head)
        if found is None or (self.fmt != "auto" and found != self.fmt):
            raise IntegrityError(f"the input is not {self._named()} data (it starts with {head[:4].hex()})")
        return found
