"""Part and whole-object checksums, in the forms S3 uses.

CRC32C and CRC64NVME are computed per part (in parallel, out of order) and
*combined* into the CRC of the whole object, which is what S3 reports for a
``FULL_OBJECT`` multipart upload: the final comparison is then between S3's
own figure and one derived only from bytes we read from the source.

SHA-256 only exists as ``COMPOSITE`` for multipart uploads: the SHA-256 of
the concatenated part digests, suffixed ``-N``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, Sequence

from awscrt import checksums as _crt


class Algorithm(Protocol):
    name: str
    s3_name: str  # e.g. "CRC32C": the suffix of ChecksumCRC32C
    full_object: bool  # multipart type FULL_OBJECT (else COMPOSITE)

    def part(self, data: bytes | bytearray | memoryview) -> bytes: ...

    def hasher(self) -> "Hasher": ...

    def whole(self, parts: Sequence["PartDigest"], single: bool) -> str: ...


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

    def __init__(self, name: str, s3_name: str, width: int, poly: int, fn: object) -> None:
        self.name, self.s3_name, self.width, self.poly = name, s3_name, width, poly
        self._fn = fn

    def value(self, data: bytes | bytearray | memoryview, previous: int = 0) -> int:
        return int(self._fn(data, previous))  # type: ignore[operator]

    def part(self, data: bytes | bytearray | memoryview) -> bytes:
        return self.value(data).to_bytes(self.width // 8, "big")

    def hasher(self) -> "_CrcHasher":
        return _CrcHasher(self)

    def whole(self, parts: Sequence[PartDigest], single: bool) -> str:
        crc = 0
        for part in parts:
            crc = crc_combine(self.width, self.poly, crc, int.from_bytes(part.digest, "big"), part.length)
        return base64.b64encode(crc.to_bytes(self.width // 8, "big")).decode()


class _CrcHasher:
    def __init__(self, crc: _Crc) -> None:
        self._crc, self._value = crc, 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._value = self._crc.value(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._crc.width // 8, "big")


class _Sha256:
    name, s3_name, full_object = "sha256", "SHA256", False

    def part(self, data: bytes | bytearray | memoryview) -> bytes:
        return hashlib.sha256(data).digest()

    def hasher(self) -> "hashlib._Hash":
        return hashlib.sha256()

    def whole(self, parts: Sequence[PartDigest], single: bool) -> str:
        if single:
            return parts[0].b64 if parts else base64.b64encode(hashlib.sha256(b"").digest()).decode()
        combined = hashlib.sha256(b"".join(p.digest for p in parts)).digest()
        return f"{base64.b64encode(combined).decode()}-{len(parts)}"


CRC32C = _Crc("crc32c", "CRC32C", 32, 0x82F63B78, _crt.crc32c)
CRC64NVME = _Crc("crc64nvme", "CRC64NVME", 64, 0x9A6C9329AC4BC9B5, _crt.crc64nvme)
SHA256 = _Sha256()

ALGORITHMS: dict[str, Algorithm] = {"crc32c": CRC32C, "crc64nvme": CRC64NVME, "sha256": SHA256}


def get(name: str) -> Algorithm | None:
    """The algorithm called ``name``, or None for ``"none"``."""
    return None if name == "none" else ALGORITHMS[name]
