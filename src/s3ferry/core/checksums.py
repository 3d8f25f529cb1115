"""Part and whole-object checksums, in the forms S3 uses.

CRC32C and CRC64NVME are computed per part (in parallel, out of order) and
*combined* into the CRC of the whole object, which is what S3 reports for a
``FULL_OBJECT`` multipart upload: the final comparison is then between S3's
own figure and one derived only from bytes we read from the source.

SHA-256 only exists as ``COMPOSITE`` for multipart uploads: the SHA-256 of
the concatenated part digests, suffixed ``-N``.

Besides the algorithms s3ferry writes with (``--checksum``), objects written
by other tools carry CRC32 (the AWS SDKs' default), SHA-1, or nothing but an
MD5 ETag; :data:`STORED` knows every algorithm an object may carry, so that a
download can be checked against whatever the object holds.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from awscrt import checksums as _crt


class Algorithm(Protocol):
    name: str
    s3_name: str  # e.g. "CRC32C": the suffix of ChecksumCRC32C
    full_object: bool  # multipart type FULL_OBJECT (else COMPOSITE)

    def part(self, data: bytes | bytearray | memoryview) -> bytes: ...

    def hasher(self) -> Hasher: ...

    def whole(self, parts: Sequence[PartDigest], single: bool) -> str: ...

    def composite(self, digests: Sequence[bytes]) -> str:
        """S3's COMPOSITE form: the checksum of the concatenated part checksums, ``-N``."""


class Hasher(Protocol):
    """An incremental :meth:`Algorithm.part`, for parts streamed slab by slab."""

    def update(self, data: bytes | bytearray | memoryview) -> None: ...

    def digest(self) -> bytes: ...


@dataclass(frozen=True)
class PartDigest:
    """The raw checksum of one part and the part's length."""

    digest: bytes
    length: int

    @property
    def b64(self) -> str:
        return base64.b64encode(self.digest).decode()


def _gf2_times(matrix: Sequence[int], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


@lru_cache(maxsize=64)
def _zeros_operator(width: int, poly: int, nbytes: int) -> tuple[int, ...]:
    """The GF(2) matrix that advances a reflected CRC register over ``nbytes`` zero bytes.

    Built by squaring the one-zero-bit operator (zlib's crc32_combine); the
    result is cached per length because all parts but the last share one.
    """
    power = tuple([poly] + [1 << (n - 1) for n in range(1, width)])  # one zero bit
    result: tuple[int, ...] | None = None
    bits = 8 * nbytes
    while bits:
        if bits & 1:
            result = power if result is None else tuple(_gf2_times(power, col) for col in result)
        bits >>= 1
        if bits:
            power = tuple(_gf2_times(power, col) for col in power)
    return result if result is not None else tuple(1 << n for n in range(width))


def crc_combine(width: int, poly: int, crc1: int, crc2: int, len2: int) -> int:
    """CRC of A+B from CRC(A), CRC(B) and len(B), for CRCs with init = xorout = all ones."""
    if len2 == 0:
        return crc1
    return _gf2_times(_zeros_operator(width, poly, len2), crc1) ^ crc2


class _Crc:
    full_object = True

    def __init__(self, name: str, s3_name: str, width: int, poly: int,
                 fn: Callable[[bytes | bytearray | memoryview, int], int]) -> None:
        self.name, self.s3_name, self.width, self.poly = name, s3_name, width, poly
        self._fn = fn

    def value(self, data: bytes | bytearray | memoryview, previous: int = 0) -> int:
        return int(self._fn(data, previous))

    def part(self, data: bytes | bytearray | memoryview) -> bytes:
        return self.value(data).to_bytes(self.width // 8, "big")

    def hasher(self) -> _CrcHasher:
        return _CrcHasher(self)

    def whole(self, parts: Sequence[PartDigest], single: bool) -> str:
        crc = 0
        for part in parts:
            crc = crc_combine(self.width, self.poly, crc, int.from_bytes(part.digest, "big"), part.length)
        return base64.b64encode(crc.to_bytes(self.width // 8, "big")).decode()

    def composite(self, digests: Sequence[bytes]) -> str:
        return f"{base64.b64encode(self.part(b''.join(digests))).decode()}-{len(digests)}"


class _CrcHasher:
    def __init__(self, crc: _Crc) -> None:
        self._crc, self._value = crc, 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._value = self._crc.value(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._crc.width // 8, "big")


class _Hash:
    """A cryptographic hash (SHA-1, SHA-256, MD5): no combining, so multipart objects are COMPOSITE."""

    full_object = False

    def __init__(self, name: str, s3_name: str) -> None:
        self.name, self.s3_name = name, s3_name

    def part(self, data: bytes | bytearray | memoryview) -> bytes:
        return hashlib.new(self.name, data, usedforsecurity=self.name != "md5").digest()

    def hasher(self) -> Hasher:
        return hashlib.new(self.name, usedforsecurity=self.name != "md5")

    def whole(self, parts: Sequence[PartDigest], single: bool) -> str:
        if single:
            return parts[0].b64 if parts else base64.b64encode(self.part(b"")).decode()
        return self.composite([p.digest for p in parts])

    def composite(self, digests: Sequence[bytes]) -> str:
        return f"{base64.b64encode(self.part(b''.join(digests))).decode()}-{len(digests)}"


CRC32 = _Crc("crc32", "CRC32", 32, 0xEDB88320, _crt.crc32)
CRC32C = _Crc("crc32c", "CRC32C", 32, 0x82F63B78, _crt.crc32c)
CRC64NVME = _Crc("crc64nvme", "CRC64NVME", 64, 0x9A6C9329AC4BC9B5, _crt.crc64nvme)
SHA1 = _Hash("sha1", "SHA1")
SHA256 = _Hash("sha256", "SHA256")
#: not an S3 checksum: the hash behind S3's ETags (single part: MD5 of the bytes; multipart:
#: MD5 of the concatenated part MD5s, ``-N``), where the ETag is a content hash at all
MD5 = _Hash("md5", "MD5")

#: what ``--checksum`` offers for the objects s3ferry writes
ALGORITHMS: dict[str, Algorithm] = {"crc32c": CRC32C, "crc64nvme": CRC64NVME, "sha256": SHA256}
#: every checksum an S3 object may carry, by S3's name (``ChecksumCRC32`` -> "CRC32")
STORED: dict[str, Algorithm] = {a.s3_name: a for a in (CRC32, CRC32C, CRC64NVME, SHA1, SHA256)}


def get(name: str) -> Algorithm | None:
    """The algorithm called ``name``, or None for ``"none"``."""
    return None if name == "none" else ALGORITHMS[name]
