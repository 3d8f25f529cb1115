"""What a transfer is verified against, and the verdict it reports.

The rule (README, *What "verified" means*): a transfer is verified when a
check computed by s3ferry from the bytes it moved equals a check the other
end made or stored independently:

* into S3: S3 checks every part's checksum on receipt and the whole object's
  at completion (or, on a store that returns no checksums, the MD5 ETag of
  every part and of the object);
* out of S3 into a file (local, SFTP): the object's own stored check --
  any S3 checksum (CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256; full-object or
  composite), else its ETag when that is an MD5 (not under SSE-KMS/SSE-C) --
  is recomputed from the bytes written, as they stream, and compared before
  the file is renamed into place;
* anything else (a file from SFTP into a file) is "not verified", said
  plainly, and ``--require-verified`` turns that into exit 3.

:class:`StoredCheck` is what an object carries; :class:`Tally` recomputes it
from the parts of a transfer. CRCs combine, so a CRC tally takes parts in any
order; a hash (MD5, SHA) needs its bytes in order, which the engine provides
when :attr:`Tally.ordered` says so.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from s3ferry.core.checksums import MD5, STORED, Algorithm, Hasher, PartDigest

CheckKind = Literal["full", "composite", "etag"]

_MD5_ETAG = re.compile(r"^[0-9a-f]{32}(?:-(\d+))?$")
_COMPOSITE = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class StoredCheck:
    """A check an object stores for its bytes: an S3 checksum, or an ETag that is an MD5.

    ``value`` is in S3's own form: base64 for checksums (``-N`` for composite
    ones), lower-case hex for ETags (``-N`` for multipart). ``part_sizes``
    are the object's part sizes, needed to recompute composite checksums and
    multipart ETags (empty otherwise).
    """

    algorithm: Algorithm
    kind: CheckKind
    value: str
    part_sizes: tuple[int, ...] = ()

    @property
    def parts(self) -> int:
        """How many parts the value is composed of (0 for a check over the whole object)."""
        match = _COMPOSITE.search(self.value)
        return int(match.group(1)) if match else 0

    @property
    def needs_part_sizes(self) -> bool:
        return self.parts > 0

    def describe(self) -> str:
        """How the summary names it: ``crc32 (full object)``, ``md5 etag (multipart, 3 parts)``."""
        name = self.algorithm.name
        if self.kind == "etag":
            return f"md5 etag (multipart, {self.parts} parts)" if self.parts else "md5 etag"
        if self.kind == "composite":
            return f"{name} (composite of {self.parts} parts)"
        return f"{name} (full object)"

    def equals(self, computed: str) -> bool:
        if self.kind == "etag":
            return computed.lower() == self.value.lower()
        return computed == self.value


def checksum_of(head: Mapping[str, Any]) -> StoredCheck | None:
    """The S3 checksum in a HeadObject / GetObject answer, if any (without part sizes).

    A value ending in ``-N`` is COMPOSITE whatever ``ChecksumType`` says (some
    stores omit the type); S3 keeps one checksum algorithm per object.
    """
    for s3_name, algorithm in STORED.items():
        value = head.get(f"Checksum{s3_name}")
        if value:
            text = str(value)
            kind: CheckKind = "composite" if _COMPOSITE.search(text) or head.get("ChecksumType") == "COMPOSITE" \
                else "full"
            return StoredCheck(algorithm, kind, text)
    return None


def etag_is_md5(head: Mapping[str, Any]) -> bool:
    """Whether the object's ETag is a content hash: MD5 (or MD5 of part MD5s), not under SSE-KMS / SSE-C."""
    if str(head.get("ServerSideEncryption") or "").startswith("aws:kms") or head.get("SSECustomerAlgorithm"):
        return False
    return _MD5_ETAG.match(str(head.get("ETag") or "").strip('"').lower()) is not None


def etag_check(head: Mapping[str, Any]) -> StoredCheck | None:
    """The object's ETag as a check, where it is an MD5."""
    if not etag_is_md5(head):
        return None
    return StoredCheck(MD5, "etag", str(head["ETag"]).strip('"').lower())


def stored_check(head: Mapping[str, Any]) -> StoredCheck | None:
    """The strongest check an object carries: its checksum, else an MD5 ETag (part sizes still to fill in)."""
    return checksum_of(head) or etag_check(head)


def multipart_etag(part_md5s: Sequence[bytes]) -> str:
    """S3's ETag of a multipart object: the MD5 of the concatenated part MD5s, ``-N``."""
    return f"{MD5.part(b''.join(part_md5s)).hex()}-{len(part_md5s)}"


class Tally:
    """Recomputes a :class:`StoredCheck` from the bytes of a transfer, fed part by part.

    CRC tallies take parts in any order (one CRC per piece, combined at the
    end); hash tallies (:attr:`ordered`) need consecutive bytes and refuse
    anything else. Pieces are split at the object's part boundaries, so the
    transfer's own parts need not match the object's.
    """

    def __init__(self, check: StoredCheck, size: int) -> None:
        self.check = check
        self.size = size
        sizes = check.part_sizes if check.needs_part_sizes else (size,)
        if sum(sizes) != size:
            raise ValueError(f"the object's part sizes add up to {sum(sizes)}, not {size}")
        self._bounds = _bounds(sizes)
        #: a hash (MD5, SHA) needs its bytes in order; CRCs combine (``full_object``), in any order
        self.ordered = not check.algorithm.full_object
        self._crcs: dict[int, PartDigest] = {}  # piece offset -> its CRC
        self._position = 0
        self._hasher: Hasher | None = None
        self._digests: list[bytes] = []

    def add(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """The bytes at ``offset`` (consecutive with the previous call for an :attr:`ordered` tally)."""
        view = memoryview(data)
        for start, end in _pieces(self._bounds, offset, offset + len(view)):
            piece = view[start - offset:end - offset]
            if self.ordered:
                self._hash(start, piece)
            else:
                self._crcs[start] = PartDigest(self.check.algorithm.part(piece), len(piece))

    def _hash(self, start: int, piece: memoryview) -> None:
        if start != self._position:
            raise ValueError(f"bytes at {start} given to an in-order tally that is at {self._position}")
        if self._hasher is None:
            self._hasher = self.check.algorithm.hasher()
        self._hasher.update(piece)
        self._position += len(piece)
        if self._position in self._bounds:  # a part of the object is complete
            self._digests.append(self._hasher.digest())
            self._hasher = None

    def value(self) -> str:
        """The check over everything added, in the form of :attr:`StoredCheck.value`."""
        if self.ordered:
            return self._hashed_value()
        return self._crc_value()

    def _hashed_value(self) -> str:
        digests = self._digests if self.size else [self.check.algorithm.part(b"")]
        if self.check.kind == "etag":
            return multipart_etag(digests) if self.check.needs_part_sizes else digests[0].hex()
        if self.check.kind == "composite":
            return self.check.algorithm.composite(digests)
        return base64.b64encode(digests[0]).decode()

    def _crc_value(self) -> str:
        algorithm = self.check.algorithm  # a CRC: whole() combines the pieces' CRCs in offset order
        pieces = [self._crcs[o] for o in sorted(self._crcs)]
        if self.check.kind != "composite":
            return algorithm.whole(pieces, single=False)
        per_part = []
        for low, high in zip((0, *self._bounds[:-1]), self._bounds, strict=True):
            own = [self._crcs[o] for o in sorted(self._crcs) if low <= o < high]
            per_part.append(base64.b64decode(algorithm.whole(own, single=False)))
        return algorithm.composite(per_part)


def _bounds(sizes: Sequence[int]) -> tuple[int, ...]:
    """The end offset of each part."""
    ends, total = [], 0
    for size in sizes:
        total += size
        ends.append(total)
    return tuple(ends)


def _pieces(bounds: Sequence[int], start: int, end: int) -> list[tuple[int, int]]:
    """``[start, end)`` cut at the part boundaries."""
    pieces = []
    for bound in bounds:
        if start >= end:
            break
        if bound > start:
            pieces.append((start, min(bound, end)))
            start = min(bound, end)
    return pieces


@dataclass(frozen=True)
class Verdict:
    """What a finished transfer was checked against: ``what`` names it, or says why nothing was."""

    verified: bool
    what: str

    def line(self) -> str:
        return f"verified {self.what}" if self.verified else f"NOT verified: {self.what}"
