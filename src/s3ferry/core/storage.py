"""The small interfaces every backend implements.

A :class:`Source` answers :meth:`Source.stat` and opens :class:`RangeReader`
streams (one per parallel read stream); a :class:`Sink` opens a
:class:`ChunkWriter` that takes numbered parts and then completes or aborts.

Optional abilities are declared, never guessed from the class or probed
with ``getattr`` (rclone's ``Features`` is the model). One rule per kind:

- what the engine plans with before anything is opened (ranged reads,
  resumable writes, streamed parts, ...) is a flag of :class:`Features`,
  read from ``features``;
- an ability every backend can answer, if only with "none", is a method of
  the main protocol whose "none" answer is documented there
  (:meth:`Sink.existing` returns None where nothing is known,
  :meth:`Sink.note_source` keeps nothing);
- an ability that brings methods of its own is a ``runtime_checkable``
  sub-protocol (:class:`PartialFile`, :class:`ListingSink`,
  :class:`MetadataSink`, :class:`PinnedSource`), fetched by one ``isinstance`` where it is used:
  the type checker then sees the methods, and a backend without them is
  simply not one;
- an ability the engine must know of before it has the object in hand, or
  per file where an ``isinstance`` against a runtime protocol costs (it
  looks up every method), is a :class:`Features` flag naming a plain
  sub-protocol the caller casts to once the flag says yes
  (:class:`ArchivingSource` for ``archiving``, :class:`Connecting` for
  ``connects_ahead``, :class:`ReadAheadSource` for ``reads_small_in_stat``);
  a unit test checks every backend that sets a flag has the methods.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from os import PathLike
from typing import Protocol, runtime_checkable

from s3ferry.core.checksums import Algorithm, PartDigest
from s3ferry.core.errors import TransferError, UsageError
from s3ferry.core.units import human_bytes
from s3ferry.core.urls import Location
from s3ferry.core.verification import StoredCheck

# -- file destinations (local, SFTP): a temporary file beside the final name is the "upload" --

def partial_name(name: str) -> str:
    """A new temporary name for a file being written as ``name`` (hidden, and says whose it is)."""
    return f".{name}.s3ferry-{secrets.token_hex(4)}.tmp"


def is_partial_of(candidate: str, name: str) -> bool:
    """Whether ``candidate`` is one of :func:`partial_name`'s names for ``name`` (and nothing else)."""
    return re.fullmatch(rf"\.{re.escape(name)}\.s3ferry-[0-9a-f]{{8}}\.tmp", candidate) is not None


def part_etag(digest: PartDigest | None) -> str:
    """A part written into a file: its "ETag" is its checksum, which a resumed attempt recomputes."""
    return f"crc-{digest.digest.hex()}" if digest is not None else ""


def read_back(number: int, data: bytes | bytearray, algorithm: Algorithm) -> ListedPart:
    """A part as a file holds it now (``data`` read back from it), with the ETag :func:`part_etag` gave it."""
    return ListedPart(number, len(data), part_etag(PartDigest(algorithm.part(data), len(data))))


def check_partial_id(upload_id: str | None, name: str, where: str) -> None:
    """The journal names a temporary file of s3ferry's own making for ``name``, or nothing else is opened."""
    if upload_id is not None and not is_partial_of(upload_id, name):
        raise UsageError(f"the journal names {upload_id!r} as the partial file of {where}, which it cannot be; "
                         "run with --force to start over")


def tree_root(parent: str, path: str) -> str | None:
    """The folder a tree is copied into, for a file sink at ``path`` made by the sink at ``parent``.

    None when ``path`` is not below it, or the folder is ``/``: nothing is outside that.
    """
    root = parent.rstrip("/")
    return root if root and path.startswith(root + "/") else None


def below_root(root: str | None, path: str) -> list[str]:
    """The folders between ``root`` (not included) and the file ``path``, outermost first."""
    if root is None:
        return []
    folders, folder = [], root
    for name in path[len(root) + 1:].split("/")[:-1]:
        folder = f"{folder}/{name}"
        folders.append(folder)
    return folders


def no_space(where: str, free: int, needed: int | None) -> TransferError:
    """A full file destination: final (not retryable), so the engine removes the partial file rather than
    keeping it -- and the disk full -- for a resume that cannot succeed until room is made."""
    wants = f", {human_bytes(needed)} needed" if needed is not None else ""
    return TransferError(f"no space left on the destination {where} ({human_bytes(free)} free{wants})",
                         retryable=False, code="NoSpace")


@dataclass(frozen=True)
class Features:
    ranged_reads: bool = False  # False: the engine uses one reader, reading parts in order
    offset_writes: bool = False
    server_side_copy: bool = False
    resumable: bool = False  # parts of an unfinished write can be listed and reused
    listing: bool = False  # walk() and list_folder() list a directory / prefix (cp -r, cp with a glob)
    #: the sink checks every part's checksum on receipt and reports the whole
    #: object's; sinks without it (files) are checked against the source's own
    #: stored checksum where the source has one (S3)
    verifies_checksum: bool = False
    #: archive() and remove() work on the source (pull's .done folders and retention)
    archiving: bool = False
    #: walk() reports size and mtime exactly as stat() does (a tree copy then
    #: skips one stat round trip per file; the check before completion stays)
    listing_is_stat: bool = False
    #: the writer takes parts as they are read (``write_stream``, see
    #: :class:`s3ferry.engine.streamed.StreamingWriter`), so a part need not
    #: sit whole in memory (S3 with the checksum as a trailer)
    streamed_parts: bool = False
    #: seconds after a modification during which the source may be rewritten (same size) without
    #: stat() showing it: the mtime's granularity plus the server clock's tolerance. A file
    #: modified this recently is read twice before its copy is published (0: stat always shows it,
    #: e.g. S3, whose reads are pinned to one ETag)
    change_window: float = 0.0
    #: the first request waits for a connection of many round trips (SSH: TCP, key exchange,
    #: authentication, a session: ~12, 0.6 s at 50 ms); ``warm_up()`` (:class:`Connecting`) starts it
    #: while the other end is still being set up
    connects_ahead: bool = False
    #: stat() of a small listed file that :meth:`ReadAheadSource.read_ahead` named reads it whole: one
    #: request instead of two (S3: a GET in place of HEAD, then GET)
    reads_small_in_stat: bool = False


@dataclass(frozen=True)
class Entry:
    """A regular file found by :meth:`Source.walk`.

    ``path`` is relative to the walked location, ``/``-separated, never
    starting with ``/``. It comes from the remote side: callers must check it
    (:func:`s3ferry.core.urls.safe_relative`) before using it as a destination name.
    """

    path: str
    size: int
    mtime: float | None = None
    etag: str | None = None


@dataclass(frozen=True)
class Stat:
    """What the engine needs to know about a source file, and to notice it change."""

    size: int
    mtime: float | None
    etag: str | None = None
    #: the whole object's checksum as the source stores it (S3): (S3 algorithm
    #: name such as "CRC32C", base64 value); only FULL_OBJECT checksums
    checksum: tuple[str, str] | None = None

    def fingerprint(self) -> tuple[int, float | None, str | None]:
        return (self.size, self.mtime, self.etag)


@dataclass(frozen=True)
class Part:
    """Part ``number`` (1-based, as S3 counts) covers ``[offset, offset + length)``."""

    number: int
    offset: int
    length: int


@dataclass(frozen=True)
class Receipt:
    """What a sink returns for a stored part; needed to complete the object."""

    number: int
    etag: str
    digest: PartDigest | None


@dataclass(frozen=True)
class ListedPart:
    """A part the destination already holds (from ListParts)."""

    number: int
    size: int
    etag: str


@dataclass(frozen=True)
class UploadInfo:
    """An unfinished multipart upload."""

    key: str
    upload_id: str
    initiated: object  # datetime from the server, None if unknown


@dataclass(frozen=True)
class Completed:
    """The finished object as the sink reports it."""

    size: int
    checksum: str | None  # base64, S3's form (COMPOSITE ones end in -N)
    etag: str | None = None
    #: a store without checksums: every part's ETag and the object's equal the MD5s of the bytes sent
    md5_verified: bool = False


class RangeReader(Protocol):
    async def read_into(self, offset: int, buf: memoryview) -> None:
        """Fill ``buf`` with the bytes at ``offset``; a short file is an error."""


class Source(Protocol):
    location: Location
    features: Features

    async def stat(self) -> Stat: ...

    async def stored_check(self) -> StoredCheck | None:
        """The check the source stores for the bytes stat() described (S3: a checksum or an MD5
        ETag), to verify a destination that reports none of its own; None when it stores none."""

    def reader(self, length: int | None = None) -> AbstractAsyncContextManager[RangeReader]:
        """A reader of the file; ``length``: the bytes it will read at most, when known (a short read may
        share a connection another reader holds, where opening one costs more than the read)."""

    def child(self, path: str) -> Source:
        """A source for ``path`` (a full path, as in ``Location.path``) on the same server,
        sharing this one's connections.

        Closing the parent closes the connections; closing a child does nothing.
        """

    def walk(self) -> AsyncIterator[Entry]:
        """Every regular file below this location, recursively (``features.listing`` only).

        Raises :class:`~s3ferry.core.errors.NotFoundError` when the location does not exist.
        """

    def list_folder(self) -> AsyncIterator[Entry]:
        """The regular files directly in this folder, not below it (``features.listing`` only).

        What a glob in ``cp``'s source needs: one folder is read (S3: one
        ``Delimiter='/'`` listing of the prefix), however big the tree below
        it. Entry paths are bare names. Symbolic links are skipped, as by
        :meth:`walk`. Raises :class:`~s3ferry.core.errors.NotFoundError` when the
        folder does not exist (S3: nothing at all under the prefix).
        """

    async def close(self) -> None: ...


class Connecting(Protocol):
    """A source or sink that can start connecting before its first request (``features.connects_ahead``)."""

    def warm_up(self) -> None:
        """Start opening the connection the first request will use (in a task of the running loop); if it
        fails, that request raises its error, as if it had connected itself."""


class ReadAheadSource(Source, Protocol):
    """A source whose listing can prepare the reads that follow it (``features.reads_small_in_stat``)."""

    def read_ahead(self, entries: Sequence[Entry]) -> None:
        """Files of this source's :meth:`~Source.walk` that are read next whatever the destination holds
        (a copy decided): a small one is read whole by its stat(). Not for files a copy may skip or a
        ``verify`` only compares, which would be read for nothing."""


class ArchivingSource(Source, Protocol):
    """A source that can move pulled files aside and delete old ones (``features.archiving``)."""

    async def archive(self, path: str, folder: str) -> str:
        """Move ``path`` into the sibling folder ``folder`` (created as needed), replacing a
        same-name file; its mtime becomes now, so retention counts from archiving. Returns the new path."""

    async def remove(self, path: str) -> None: ...


@runtime_checkable
class PinnedSource(Source, Protocol):
    """A source whose reads are pinned to the version stat() saw (S3: If-Match its ETag)."""

    #: that version (None before stat()); push marks it delivered
    pinned_etag: str | None


class ChunkWriter(Protocol):
    async def write_part(self, part: Part, data: memoryview, digest: PartDigest | None) -> Receipt: ...

    async def complete(self, receipts: Sequence[Receipt], whole: str | None) -> Completed:
        """Make the object visible at its name. A file is renamed into place only after its size
        is checked; the engine has checked its bytes before."""

    def unverified(self) -> str | None:
        """Why the sink could not check the parts it stored (None when it could, or does not check)."""

    async def abort(self) -> None: ...

    async def discard(self) -> None:
        """Remove a completed object that failed verification."""

    async def list_parts(self, expected: Sequence[Part] = ()) -> dict[int, ListedPart]:
        """Parts already stored (resumable sinks only).

        S3 lists what it holds and ignores ``expected``; a file, which cannot
        list, reads back exactly the ``expected`` parts (those the journal names).
        """

    @property
    def upload_id(self) -> str | None: ...


@runtime_checkable
class PartialFile(ChunkWriter, Protocol):
    """The writer of a file destination (``features.offset_writes``): a temporary file beside the
    final name, which it reads back (a resumed copy replays its stored parts through an in-order
    check: MD5, SHA)."""

    @property
    def partial(self) -> str | PathLike[str] | None:
        """The temporary file (kept for a resume after a failure); None before it exists."""

    async def read_into(self, offset: int, buf: memoryview) -> None: ...


@runtime_checkable
class AnnotatingWriter(ChunkWriter, Protocol):
    """A writer that can add tags to the object it completed (S3: PutObjectTagging, keeping the tags there):
    how a transformed copy records the source's checksum, known only at the end. Tags, not metadata: S3
    fixes metadata when an upload starts, and rewriting it (a copy onto itself) would make a new version
    with a new ETag -- a second "object created" event for whoever watches the bucket."""

    async def annotate(self, tags: Mapping[str, str], etag: str | None) -> None: ...


@runtime_checkable
class SizedWriter(ChunkWriter, Protocol):
    """A file writer that checks the temporary file's size before its rename (local, SFTP). A transformed
    copy opens it empty and sets ``size`` once the output's length is known (:mod:`s3ferry.engine.transformed`)."""

    #: what the file must hold before it is renamed into place (None: unchecked)
    size: int | None


class Sink(Protocol):
    location: Location
    features: Features

    async def prepare(self) -> None:
        """Check the destination is usable (bucket exists, ...) before anything is read."""

    async def open_writer(self, size: int, part_size: int, algorithm: Algorithm | None, *,
                          defer: bool = False) -> ChunkWriter:
        """A writer for a new object; ``defer``: nothing becomes visible before complete() (S3 then
        uses a multipart upload even for one part)."""

    def resume_writer(self, upload_id: str | None, algorithm: Algorithm | None, size: int | None = None
                      ) -> ChunkWriter: ...

    async def find_uploads(self, prefix: str, exact: bool = True) -> list[UploadInfo]: ...

    def child(self, path: str) -> Sink:
        """A sink for ``path`` on the same server, sharing this one's connections."""

    def note_source(self, stat: Stat) -> None:
        """The source about to be copied here: a sink that keeps its mtime (S3 metadata, a file's
        mtime) records it; a sink that keeps nothing of it does nothing."""

    async def existing(self) -> Stat | None:
        """What is already at the destination (size, mtime, checksum where known); None when nothing
        is there (a sink that cannot tell answers None: the file is then always copied)."""

    async def close(self) -> None: ...


@runtime_checkable
class MetadataSink(Sink, Protocol):
    """A sink that writes user metadata on the object it creates (S3's ``x-amz-meta-*``)."""

    #: metadata for this sink's object, besides the user's ``--metadata`` (pull's source fingerprint)
    metadata: dict[str, str]


@runtime_checkable
class ListingSink(Sink, Protocol):
    """A sink that lists everything below its folder / prefix at once (S3, SFTP): a tree copy then asks
    once instead of once per file (a round trip each across a WAN). A local disk is not: a stat is as
    cheap there."""

    async def sizes_below(self) -> dict[str, int]:
        """The size of every object below this prefix, by path relative to it ({} when none)."""
