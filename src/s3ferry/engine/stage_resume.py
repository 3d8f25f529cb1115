"""Resume of a transformed upload (issue 19, item 4): what an earlier attempt may give, proven part by part.

A transformed copy cannot read "part 7" of its output from the source: the
output exists only as the chain produces it. So a resumed attempt runs the
whole chain again from the first source byte, and each output part it
re-derives is compared with the part the store holds: the journaled checksum
of that part (and the stored ETag), or for a part the journal did not record
in time (a SIGKILL within the journal's flush interval), the stored part's
MD5 ETag against the MD5 of the re-derived bytes. A proven part is not sent
again; any other part is (UploadPart replaces a part of the same number).

This needs a deterministic chain (compression at a fixed level, decryption);
a non-deterministic one (encryption: a fresh session key) starts over, and
says so. The journal records the chain in the attempt's ``checksum`` column
(``crc32c+unzstd,zstd:3``): an attempt through another chain, or an
untransformed one, never matches it, and starts over.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

from s3ferry.core.checksums import Algorithm, PartDigest
from s3ferry.core.errors import TransferError, UserError
from s3ferry.core.storage import ChunkWriter, ListedPart, Part, Receipt, Sink, Stat
from s3ferry.engine.journal import Journal, PartRecord, TransferRecord

log = logging.getLogger("s3ferry")


@dataclass(frozen=True)
class Shape:
    """What must be the same for an earlier attempt to be continued."""

    source: str
    destination: str
    stat: Stat
    part_size: int
    #: the checksum and the chain: ``crc32c+gzip:6``
    label: str
    deterministic: bool
    mode: str  # --resume / --force / --no-resume / auto


@dataclass
class Earlier:
    """The parts an earlier attempt stored, to be proven against the re-derived bytes."""

    transfer_id: int | None
    journaled: dict[int, PartRecord] = field(default_factory=dict)
    listed: dict[int, ListedPart] = field(default_factory=dict)

    def proven(self, part: Part, data: bytes | memoryview, digest: PartDigest | None) -> Receipt | None:
        """The stored part's receipt if it holds exactly ``data``; None: send it."""
        stored = self.listed.get(part.number)
        if stored is None or stored.size != len(data):
            return None
        record = self.journaled.get(part.number)
        if record is not None and digest is not None and record.digest == digest.b64 and record.etag == stored.etag:
            return Receipt(part.number, stored.etag, digest)
        if hashlib.md5(data, usedforsecurity=False).hexdigest() == stored.etag.strip('"').lower():
            return Receipt(part.number, stored.etag, digest)
        return None


def label(checksum: str, chain: str) -> str:
    return f"{checksum}+{chain}"


async def open_attempt(shape: Shape, sink: Sink, journal: Journal | None, part_size: int,
                       algorithm: Algorithm | None) -> tuple[ChunkWriter, Earlier]:
    """The writer for this attempt: an earlier upload continued where it may be, else a new one (journaled
    unless --no-resume or the destination is a file, which a transformed copy rewrites whole)."""
    if not sink.features.resumable or journal is None or not journal.working:
        return await sink.open_writer(0, part_size, algorithm, defer=True), Earlier(None)
    prior = await journal.find(shape.source, shape.destination)
    if prior is not None:
        continued = await _continue(shape, sink, journal, prior, algorithm)
        if continued is not None:
            return continued
    if shape.mode == "never":  # nothing kept: the journal was only read, to refuse
        return await sink.open_writer(0, part_size, algorithm, defer=True), Earlier(None)
    # The intent first: a crash right after the upload is created then still names it.
    transfer_id = await journal.start(TransferRecord(0, shape.source, shape.destination, shape.stat.size,
                                                     shape.stat.mtime, shape.stat.etag, part_size, shape.label, "",
                                                     time.time()))
    writer = await sink.open_writer(0, part_size, algorithm, defer=True)
    await journal.set_upload(transfer_id, writer.upload_id or "")
    return writer, Earlier(transfer_id)


def why_not_continue(shape: Shape, prior: TransferRecord) -> str | None:
    if shape.mode == "force":
        return "discarding the earlier attempt as asked by --force"
    if not shape.deterministic:
        return (f"the chain {shape.label.partition('+')[2]} is not deterministic (encryption draws a fresh session "
                "key): its output cannot be re-derived, so the earlier attempt is discarded and the copy starts over")
    if (prior.size, prior.mtime, prior.etag) != shape.stat.fingerprint():
        return "the source changed since the earlier attempt: starting over"
    if prior.part_size != shape.part_size or prior.checksum != shape.label:
        return (f"the earlier attempt went through {prior.checksum.partition('+')[2] or 'no transform'} "
                f"({prior.checksum.partition('+')[0]}, parts of {prior.part_size}), this one through "
                f"{shape.label.partition('+')[2]}: starting over")
    if not prior.upload_id:
        return "the earlier attempt never learned its upload id: starting over"
    return None


async def _continue(shape: Shape, sink: Sink, journal: Journal, prior: TransferRecord,
                    algorithm: Algorithm | None) -> tuple[ChunkWriter, Earlier] | None:
    if shape.mode == "never":
        raise UserError(f"an unfinished earlier attempt to copy to {shape.destination} exists "
                        f"({len(prior.parts)} parts stored); continue it (drop --no-resume), discard it with "
                        f"--force, or `s3ferry cancel {shape.destination}`")
    reason = why_not_continue(shape, prior)
    if reason is None:
        writer = sink.resume_writer(prior.upload_id, algorithm)
        try:
            listed = await writer.list_parts()
        except TransferError as exc:
            if exc.code != "NoSuchUpload":
                raise
            reason = f"the earlier upload {prior.upload_id} no longer exists: starting over"
        else:
            log.warning("resuming upload %s: %d parts stored; the chain %s runs again from the first byte and each "
                        "stored part is kept only if the re-derived bytes prove it", prior.upload_id, len(listed),
                        shape.label.partition("+")[2])
            return writer, Earlier(prior.id, {r.number: r for r in prior.parts}, listed)
    log.warning("%s", reason)
    await discard(sink, journal, prior, algorithm)
    return None


async def discard(sink: Sink, journal: Journal, prior: TransferRecord, algorithm: Algorithm | None) -> None:
    """The earlier upload aborted and forgotten."""
    try:
        if prior.upload_id:
            await sink.resume_writer(prior.upload_id, algorithm).abort()
    finally:
        await journal.forget(prior.id)
