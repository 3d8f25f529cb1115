"""``s3ferry verify SRC DST``: prove, without copying, that DST holds SRC's bytes (one file, or ``-r`` a tree).

Each pair of files is compared by the verification rule of the copies (README, *What "verified"
means*): the strongest check both sides support.

* Both sides store the same check in the same form (two S3 objects with one checksum, or MD5 ETags of
  one part layout): the stored values are compared; no byte is read.
* One side stores a check (an S3 object: its checksum, else an MD5 ETag): the other side's bytes are
  streamed -- parallel ranged reads, bounded memory, the engine's :func:`read_digests` -- and the check
  recomputed from them. A composite checksum or a multipart ETag needs the object's part sizes: S3
  reports them (GetObjectAttributes, HeadObject per part); when it does not, the part layouts s3ferry
  and the AWS CLI use are tried, and a layout that does not match says ``size only`` (not verified),
  never "differs": the layout, not the bytes, may be what is wrong.
* Neither side stores one (SFTP, FTP, HTTP, local files, an S3 object with neither checksum nor MD5
  ETag): both sides are streamed and a CRC64NVME computed from each.

Nothing is written anywhere, and no payload byte touches the disk.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from s3ferry.backends import as_location, close_all, open_source
from s3ferry.core.checksums import CRC64NVME, PartDigest
from s3ferry.core.errors import NotFoundError, S3FerryError, UsageError, UserError
from s3ferry.core.options import MAX_PARTS, MiB, TransferOptions
from s3ferry.core.storage import Entry, Part, Source
from s3ferry.core.urls import Location, safe_relative
from s3ferry.core.verification import StoredCheck, multipart_etag
from s3ferry.engine.retry import RetryPolicy
from s3ferry.engine.throttle import limit_for
from s3ferry.engine.transfer import plan_parts, read_digests
from s3ferry.operations.copy import resolve
from s3ferry.operations.tree import Filter, both, child_path, for_each_file, selected

#: identical: a check made from the bytes agrees; differs: sizes or a check disagree; missing: SRC has it,
#: DST does not; extra: only DST has it; size_only: same size, content not compared; failed: an error
Status = Literal["identical", "differs", "missing", "extra", "size_only", "failed"]
STATUSES: tuple[Status, ...] = ("identical", "differs", "missing", "extra", "size_only", "failed")
SIZE_ONLY = "size only"
#: the AWS CLI's (and s3ferry's) default part size: the first layout tried for a multipart ETag
DEFAULT_PART = 8 * MiB
#: the CRC computed from both sides when neither stores a check (hardware, and it combines across ranged reads)
BOTH_SIDES = StoredCheck(CRC64NVME, "full", "")

Layout = tuple[int, ...]


@dataclass(frozen=True)
class FileCheck:
    """How one file compared. ``path``: relative to the compared folders (a tree), else SRC's location."""

    path: str
    status: Status
    #: what was compared: ``crc64nvme (full object)``, ``md5 etag (multipart, 3 parts)``, ``size only``, or ""
    check: str = ""
    #: why it differs, why only its size was compared, or the error
    detail: str = ""
    source_size: int | None = None
    destination_size: int | None = None
    #: payload bytes streamed to decide (both sides together)
    bytes_read: int = 0
    #: a failure's exit code (2: a name refused, a permission; 1: the network or a server)
    exit_code: int = 0

    @property
    def verified(self) -> bool:
        """A check computed from bytes (or stored by both sides) decided: identical or differs."""
        return self.status in ("identical", "differs") and self.check != SIZE_ONLY

    def line(self) -> str:
        """One line for a person: status, path, and what was compared or why not."""
        what = ": ".join(part for part in (self.check, self.detail) if part)
        return f"{self.status.replace('_', ' '):<10} {self.path}" + (f"  [{what}]" if what else "")

    def as_dict(self) -> dict[str, object]:
        return {"type": "file", "path": self.path, "status": self.status, "check": self.check,
                "detail": self.detail, "verified": self.verified, "source_size": self.source_size,
                "destination_size": self.destination_size, "bytes_read": self.bytes_read,
                **({"exit_code": self.exit_code} if self.status == "failed" else {})}


@dataclass
class VerifyResult:
    """Every file compared, and the exit code they add up to."""

    source: str
    destination: str
    require_verified: bool = False
    files: list[FileCheck] = field(default_factory=list)
    excluded: int = 0
    seconds: float = 0.0

    def count(self, status: Status) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def bytes_read(self) -> int:
        return sum(f.bytes_read for f in self.files)

    @property
    def exit_code(self) -> int:
        """2 a user error (a refused name, a permission), else 1 a difference (or a failed read), else 3
        when something was only compared by size and ``--require-verified`` asks for more, else 0."""
        codes = {f.exit_code for f in self.files if f.status == "failed"}
        if 2 in codes:
            return 2
        if codes or any(f.status in ("differs", "missing", "extra") for f in self.files):
            return 1
        if self.require_verified and self.count("size_only"):
            return 3
        return 0

    def summary(self) -> str:
        counts = ", ".join(f"{self.count(s)} {s.replace('_', ' ')}" for s in STATUSES if self.count(s))
        counts = counts or "nothing to compare"
        excluded = f", {self.excluded} excluded" if self.excluded else ""
        return (f"{counts}{excluded} ({self.bytes_read / MiB:.1f} MiB read in {self.seconds:.1f} s); "
                f"exit {self.exit_code}")

    def as_dict(self) -> dict[str, object]:
        return {"type": "summary", "source": self.source, "destination": self.destination,
                **{s: self.count(s) for s in STATUSES}, "excluded": self.excluded,
                "bytes_read": self.bytes_read, "seconds": round(self.seconds, 3), "exit_code": self.exit_code}


# -- which check: pure logic --

def layout_of(size: int, part_size: int) -> Layout:
    """Parts of ``part_size`` covering ``size`` bytes (the last one shorter), as uploaders cut them."""
    return tuple(p.length for p in plan_parts(size, part_size))


def tried_part_sizes(size: int, options: TransferOptions) -> list[int]:
    """Part sizes an uploader of ``size`` bytes likely used: s3ferry's (``--part-size``, grown to fit
    10,000 parts, MiB-aligned), and the AWS CLI's (8 MiB, doubled until it fits)."""
    aws = DEFAULT_PART
    while math.ceil(size / aws) > MAX_PARTS:
        aws *= 2
    found: list[int] = []
    for part in (options.part_size_for(size), DEFAULT_PART, aws):
        if part not in found:
            found.append(part)
    return found


def layouts(check: StoredCheck, size: int, part_sizes: Sequence[int]) -> tuple[list[Layout], bool]:
    """The part layouts to recompute ``check`` with, and whether they are the object's own (else guesses).

    A check over the whole object has one layout, the object. A composite one uses the part sizes the
    store reported when they fit (as many as its parts, adding up to ``size``); else each of
    ``part_sizes`` that cuts ``size`` into that many parts is a guess.
    """
    if not check.needs_part_sizes:
        return [(size,)], True
    own = check.part_sizes
    if len(own) == check.parts and sum(own) == size:
        return [own], True
    if check.parts == 1:
        return [(size,)], True
    guesses: list[Layout] = []
    for part in part_sizes:
        layout = layout_of(size, part)
        if part > 0 and len(layout) == check.parts and layout not in guesses:
            guesses.append(layout)
    return guesses, False


def same_form(a: StoredCheck, b: StoredCheck, size: int) -> bool:
    """Whether two stored checks can be compared as they are: one algorithm, one kind, one part layout."""
    if a.algorithm.name != b.algorithm.name or a.kind != b.kind or a.parts != b.parts:
        return False
    if not a.needs_part_sizes:
        return True
    (own_a, trusted_a), (own_b, trusted_b) = layouts(a, size, ()), layouts(b, size, ())
    if trusted_a and trusted_b and own_a == own_b:
        return True
    return a.equals(b.value)  # equal digests of part digests: the same parts (and the same bytes)


Read = Literal["source", "destination"]


@dataclass(frozen=True)
class Method:
    """How a pair of same-size files is compared.

    ``stored``: the two stored checks; ``stream``: ``check`` (stored by the other side) recomputed from the
    bytes of ``read`` in each of ``layouts``; ``both``: both sides streamed; ``size``: nothing else possible.
    """

    how: Literal["stored", "stream", "both", "size"]
    check: StoredCheck | None = None
    read: Read | None = None
    layouts: tuple[Layout, ...] = ()
    trusted: bool = True
    reason: str = ""


def choose(source: StoredCheck | None, destination: StoredCheck | None, size: int,
           part_sizes: Sequence[int]) -> Method:
    """The strongest comparison the two sides' stored checks allow (see the module docstring)."""
    if source is not None and destination is not None and same_form(source, destination, size):
        return Method("stored", destination)
    if source is None and destination is None:
        return Method("both", BOTH_SIDES, layouts=((size,),))
    options: list[Method] = []
    sides: tuple[tuple[StoredCheck | None, Read], ...] = ((destination, "source"), (source, "destination"))
    for check, read in sides:
        if check is not None:
            found, trusted = layouts(check, size, part_sizes)
            if found:
                options.append(Method("stream", check, read, tuple(found), trusted))
    options.sort(key=lambda m: not m.trusted)  # the object's own layout first, a guess after
    if options:
        return options[0]
    check = destination or source
    assert check is not None
    tried = ", ".join(f"{p / MiB:g} MiB" for p in part_sizes)
    return Method("size", check, reason=f"{check.describe()} needs the object's part sizes, which the store does "
                                        f"not report, and no part size tried ({tried}) makes {check.parts} parts")


def value_of(check: StoredCheck, digests: Sequence[bytes]) -> str:
    """``check``'s value from the digests of its parts (one digest for a check over the whole object)."""
    if check.kind == "etag":
        return multipart_etag(digests) if check.needs_part_sizes else digests[0].hex()
    if check.kind == "composite":
        return check.algorithm.composite(digests)
    return base64.b64encode(digests[0]).decode()


def parts_of(layout: Layout) -> list[Part]:
    parts, offset = [], 0
    for number, length in enumerate(layout, start=1):
        parts.append(Part(number, offset, length))
        offset += length
    return parts


# -- reading --

async def computed(source: Source, check: StoredCheck, layout: Layout, options: TransferOptions) -> str:
    """``check`` recomputed from ``source``'s bytes (cut as ``layout`` says): read only, in parallel.

    A CRC over the whole object combines per-range CRCs, so it is read in ``--part-size`` ranges whatever
    the object's layout; a hash is computed part by part (each part in order, the parts in parallel).
    """
    size = sum(layout)
    whole_crc = check.kind == "full" and check.algorithm.full_object
    parts = plan_parts(size, options.part_size) if whole_crc else parts_of(layout)
    digests = await read_digests(source, parts, check.algorithm, options, RetryPolicy(retries=options.retries),
                                 limit_for(options.bwlimit))
    if whole_crc:
        return check.algorithm.whole([PartDigest(digests[p.number], p.length) for p in parts], single=False)
    return value_of(check, [digests[p.number] for p in parts])


@dataclass(frozen=True)
class Pair:
    """The two files of one comparison, and what is shown for them."""

    source: Source
    destination: Source
    path: str
    size: int = 0  #: as listed (a tree): small files are compared more at a time


async def compare(pair: Pair, options: TransferOptions, size_only: bool) -> FileCheck:
    """Compare one file with its counterpart (see the module docstring); a missing DST is a result."""
    retry = RetryPolicy(retries=options.retries)
    src_stat = await retry.run(pair.source.stat, "reading the source's size")
    try:
        dst_stat = await retry.run(pair.destination.stat, "reading the destination's size")
    except NotFoundError:
        return FileCheck(pair.path, "missing", detail="not in DST", source_size=src_stat.size)
    except UserError as exc:
        if "--source-sse-c-key-file" in str(exc):  # the S3 backend names SRC's key option; DST's is another
            raise UserError(str(exc).replace("--source-sse-c-key-file", "--sse-c-key-file")) from exc
        raise
    found = FileCheck(pair.path, "size_only", SIZE_ONLY, source_size=src_stat.size, destination_size=dst_stat.size)
    if src_stat.size != dst_stat.size:
        return dataclasses.replace(found, status="differs", check="size",
                                   detail=f"SRC has {src_stat.size} bytes, DST {dst_stat.size}")
    if size_only:
        return dataclasses.replace(found, detail="--size-only")
    src_check = await retry.run(pair.source.stored_check, "reading the source's checksum")
    dst_check = await retry.run(pair.destination.stored_check, "reading the destination's checksum")
    method = choose(src_check, dst_check, src_stat.size, tried_part_sizes(src_stat.size, options))
    return await _by_method(pair, method, found, src_check, options)


async def _by_method(pair: Pair, method: Method, found: FileCheck, src_check: StoredCheck | None,
                     options: TransferOptions) -> FileCheck:
    if method.how == "size":
        return dataclasses.replace(found, detail=method.reason)
    assert method.check is not None
    if method.how == "stored":
        assert src_check is not None
        return _verdict(found, method.check, src_check.value, "stored by both sides", 0)
    if method.how == "both":
        return await _both_sides(pair, found, options)
    return await _streamed(pair, method, found, options)


async def _both_sides(pair: Pair, found: FileCheck, options: TransferOptions) -> FileCheck:
    """Neither side stores a check: a CRC64NVME from each side's bytes, both read at once."""
    size = found.source_size or 0
    async with asyncio.TaskGroup() as group:
        ours = group.create_task(computed(pair.source, BOTH_SIDES, (size,), options))
        theirs = group.create_task(computed(pair.destination, BOTH_SIDES, (size,), options))
    check = dataclasses.replace(BOTH_SIDES, value=theirs.result())
    return _verdict(found, check, ours.result(), "computed from the bytes of both sides", 2 * size)


async def _streamed(pair: Pair, method: Method, found: FileCheck, options: TransferOptions) -> FileCheck:
    """One side's stored check recomputed from the other side's bytes, in each layout to try."""
    assert method.check is not None
    reader = pair.source if method.read == "source" else pair.destination
    stores = "DST" if method.read == "source" else "SRC"
    size = found.source_size or 0
    got, sides = "", ("SRC", "DST") if method.read == "source" else ("DST", "SRC")
    for number, layout in enumerate(method.layouts, start=1):
        check = dataclasses.replace(method.check, part_sizes=layout if method.check.needs_part_sizes else ())
        got = await computed(reader, check, layout, options)
        if check.equals(got):
            return _verdict(found, check, got, f"stored by {stores}, recomputed from the bytes of the other side",
                            number * size, sides)
    if method.trusted:
        return _verdict(found, method.check, got, f"stored by {stores}, recomputed from the bytes of the other side",
                        len(method.layouts) * size, sides)
    shapes = ", ".join(f"{layout[0] / MiB:g} MiB parts" for layout in method.layouts)
    return dataclasses.replace(found, bytes_read=len(method.layouts) * size,
                               detail=f"{method.check.describe()} stored by {stores} matches no part layout tried "
                                      f"({shapes}); the object's part sizes are not reported, so the bytes "
                                      "could not be compared")


def _verdict(found: FileCheck, check: StoredCheck, got: str, how: str, read: int,
             sides: tuple[str, str] = ("SRC", "DST")) -> FileCheck:
    """``got`` (from the side ``sides[0]``) against ``check.value`` (``sides[1]``'s)."""
    if check.equals(got):
        return dataclasses.replace(found, status="identical", check=check.describe(), detail=how, bytes_read=read)
    return dataclasses.replace(found, status="differs", check=check.describe(), bytes_read=read,
                               detail=f"{how}: {sides[0]} {got}, {sides[1]} {check.value}")


# -- one file, a tree --

def destination_options(options: TransferOptions) -> TransferOptions:
    """DST is read too: an S3 DST is read with DST's SSE-C key (--sse-c-key-file), SRC with SRC's."""
    s3 = dataclasses.replace(options.s3, source_sse_c_key_file=options.s3.sse_c_key_file)
    return options.replace(s3=s3)


async def verify(src: str | Location, dst: str | Location, options: TransferOptions | None = None, *,
                 recursive: bool = False, filters: Sequence[Filter] = (), transfers: int = 4,
                 size_only: bool = False) -> VerifyResult:
    """Compare SRC with DST: one file (a DST ending in ``/`` gets SRC's name), or with ``recursive`` every
    file below the folder / prefix SRC with the same relative path below DST."""
    options = options or TransferOptions()
    if size_only and options.require_verified:
        raise UsageError("--size-only and --require-verified contradict each other")
    if recursive:
        source_loc, dest_loc = as_location(src), as_location(dst)
    else:
        source_loc, dest_loc = resolve(src, dst)
        if source_loc.scheme == "s3" and source_loc.is_dir_like:
            raise UsageError(f"{source_loc} is a prefix (use verify -r to compare everything under it)")
    result = VerifyResult(str(source_loc), str(dest_loc), options.require_verified)
    started = time.monotonic()
    source, dest = open_source(source_loc, options), open_source(dest_loc, destination_options(options))
    try:
        if recursive:
            await _tree(source, dest, options, filters, transfers, size_only, result)
        else:
            result.files.append(await compare(Pair(source, dest, str(source_loc)), options, size_only))
    finally:
        await asyncio.shield(close_all(source, dest))
    result.seconds = time.monotonic() - started
    return result


async def _tree(source: Source, dest: Source, options: TransferOptions, filters: Sequence[Filter],
                transfers: int, size_only: bool, result: VerifyResult) -> None:
    if not (source.features.listing and dest.features.listing):
        raise UsageError(f"{source.location.scheme}:// and {dest.location.scheme}:// folders must both be listable "
                         "to compare trees: compare their files one by one")
    if not 1 <= transfers <= 64:
        raise UsageError(f"--transfers must be between 1 and 64, not {transfers}")
    # Both sides listed at once: across a WAN each listing is round trips
    ours, theirs = await both(_listing(source, filters, result, required=True),
                              _listing(dest, filters, result, required=False))
    pairs: list[Pair] = []
    for rel in sorted(set(ours) | set(theirs)):
        mine, other = ours.get(rel), theirs.get(rel)
        if other is None:
            result.files.append(FileCheck(rel, "missing", detail="not in DST", source_size=_size(mine)))
        elif mine is None:
            result.files.append(FileCheck(rel, "extra", detail="only in DST", destination_size=other.size))
        elif mine.size != other.size:
            result.files.append(FileCheck(rel, "differs", "size", f"SRC has {mine.size} bytes, DST {other.size}",
                                          mine.size, other.size))
        else:
            pairs.append(Pair(source.child(child_path(source.location.path, rel)),
                              dest.child(child_path(dest.location.path, rel)), rel, mine.size))

    async def one(pair: Pair) -> None:
        try:
            result.files.append(await compare(pair, options, size_only))
        except S3FerryError as exc:
            result.files.append(FileCheck(pair.path, "failed", detail=str(exc), exit_code=exc.exit_code))

    await for_each_file(pairs, one, lambda pair: pair.size, transfers, options.max_memory)
    result.files.sort(key=lambda f: f.path)


def _size(entry: Entry | None) -> int | None:
    return entry.size if entry is not None else None


async def _listing(side: Source, filters: Sequence[Filter], result: VerifyResult, *,
                   required: bool) -> dict[str, Entry]:
    """The selected files below ``side`` by relative path; names that could leave the folder are refused
    (a failure each, exit 2). A DST that does not exist holds nothing (``required``: SRC must exist)."""
    found: dict[str, Entry] = {}
    try:
        async for entry in side.walk():
            if not selected(entry.path, filters):
                if required:  # counted on SRC's side: what was left out of the comparison
                    result.excluded += 1
                continue
            try:
                found[safe_relative(entry.path)] = entry
            except UsageError as exc:
                where = "SRC" if required else "DST"
                result.files.append(FileCheck(entry.path, "failed", detail=f"{where}: {exc}", exit_code=exc.exit_code))
    except NotFoundError:
        if required:
            raise
    return found

