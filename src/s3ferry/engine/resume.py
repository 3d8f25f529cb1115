"""What a new attempt may reuse from an earlier one, and nothing it may not.

Rules (never complete an object from parts of two different sources):

* A journaled attempt is continued only if the source's fingerprint (size,
  mtime, ETag) and the part layout and checksum are unchanged, and the
  upload still exists. Its parts are trusted only where ListParts shows the
  same size and ETag the journal recorded; any disagreement starts clean.
* Parts S3 holds that the journal does not know (the last second before a
  SIGKILL, or an upload adopted with ``--resume`` from another machine) are
  *candidates*: the engine re-reads that range of the source and uses the
  stored part only if the MD5 of those bytes equals the part's ETag (S3's
  ETag of an unencrypted part is its MD5); otherwise it uploads the part again.
* ``--force`` aborts the earlier upload and starts clean; ``--no-resume``
  refuses to run while an earlier attempt exists.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from s3ferry.core.checksums import Algorithm, PartDigest
from s3ferry.core.errors import S3FerryError, TransferError, UsageError, UserError
from s3ferry.core.storage import ChunkWriter, ListedPart, Part, Receipt, Sink, Stat
from s3ferry.engine.journal import Journal, TransferRecord

log = logging.getLogger("s3ferry")


@dataclass
class Attempt:
    writer: ChunkWriter
    transfer_id: int | None  # journal row; None when nothing is journaled
    done: dict[int, Receipt] = field(default_factory=dict)  # trusted stored parts
    candidates: dict[int, str] = field(default_factory=dict)  # stored, to check: number -> ETag
    #: an object completed just before a crash: used only after the source is read again and every
    #: part's checksum equals the journal's (the source may have been rewritten since)
    prove: bool = False


@dataclass(frozen=True)
class Plan:
    """The shape of this attempt, compared with an earlier one's."""

    source: str
    destination: str
    stat: Stat
    parts: list[Part]
    part_size: int
    algorithm: Algorithm | None
    mode: str
    #: the source was modified so recently that it is read twice before the copy is published
    fresh: bool = False
    #: ... and nothing may become visible before complete() (S3: a multipart upload even for one part)
    defer: bool = False

    @property
    def checksum_name(self) -> str:
        return self.algorithm.name if self.algorithm else "none"

    def record(self, upload_id: str) -> TransferRecord:
        return TransferRecord(0, self.source, self.destination, self.stat.size, self.stat.mtime, self.stat.etag,
                              self.part_size, self.checksum_name, upload_id, time.time())


async def prepare(plan: Plan, sink: Sink, journal: Journal | None) -> Attempt:
    if not sink.features.resumable:  # a file destination: written whole, nothing to resume
        return Attempt(await _open(plan, sink), None)
    prior = await journal.find(plan.source, plan.destination) if journal else None
    if prior is not None:
        assert journal is not None
        if plan.mode == "never":
            raise UserError(
                f"an unfinished earlier attempt to copy to {plan.destination} exists ({len(prior.parts)} parts "
                f"stored); continue it (drop --no-resume), discard it with --force, or "
                f"`s3ferry cancel {plan.destination}`"
            )
        if not prior.upload_id:
            prior = await _recover_upload_id(sink, journal, prior)
    if prior is not None:
        assert journal is not None
        if plan.mode == "force":
            log.warning("discarding the earlier attempt (upload %s) as asked by --force", prior.upload_id)
            await _discard(sink, journal, prior, plan.algorithm)
        else:
            attempt = await _continue(plan, sink, journal, prior)
            if attempt is not None:
                return attempt
    elif plan.mode == "resume" and len(plan.parts) > 1:
        attempt = await _adopt(plan, sink, journal)
        if attempt is not None:
            return attempt
    # --no-resume: the journal was only read, to refuse; this attempt is not kept.
    return await _fresh(plan, sink, None if plan.mode == "never" else journal)


async def _recover_upload_id(sink: Sink, journal: Journal, prior: TransferRecord) -> TransferRecord | None:
    """The process died between journaling its intent and learning the upload id: find the upload by key and time."""
    uploads = [u for u in await sink.find_uploads(sink.location.path) if _epoch(u.initiated) >= prior.created - 60]
    if not uploads:
        await journal.forget(prior.id)
        return None
    newest = max(uploads, key=lambda u: _epoch(u.initiated))
    await journal.set_upload(prior.id, newest.upload_id)
    return dataclasses.replace(prior, upload_id=newest.upload_id)


async def _fresh(plan: Plan, sink: Sink, journal: Journal | None) -> Attempt:
    if journal is None or len(plan.parts) == 1:  # a single PUT leaves nothing to resume
        return Attempt(await _open(plan, sink), None)
    # Journal the intent first: a crash right after the upload is created then
    # still finds it (by key and time) instead of leaving it orphaned.
    transfer_id = await journal.start(plan.record(""))
    writer = await _open(plan, sink)
    await journal.set_upload(transfer_id, writer.upload_id or "")
    return Attempt(writer, transfer_id)


async def _open(plan: Plan, sink: Sink) -> ChunkWriter:
    return await sink.open_writer(plan.stat.size, plan.part_size, plan.algorithm, defer=plan.defer)


async def _discard(sink: Sink, journal: Journal, prior: TransferRecord, algorithm: Algorithm | None) -> None:
    try:
        writer = sink.resume_writer(prior.upload_id, algorithm)
    except UsageError as exc:
        # A journal entry naming something not of our making (a file destination checks the name):
        # there is nothing of ours to remove, only the entry to forget.
        log.warning("%s; forgetting that journal entry", exc)
        await journal.forget(prior.id)
        return
    try:
        await writer.abort()
    finally:
        await journal.forget(prior.id)


def _same_shape(plan: Plan, prior: TransferRecord) -> str | None:
    """Why the earlier attempt cannot be continued, or None if it can."""
    if (prior.size, prior.mtime, prior.etag) != plan.stat.fingerprint():
        return (f"the source changed since the earlier attempt (size {prior.size} -> {plan.stat.size}, "
                f"mtime {prior.mtime} -> {plan.stat.mtime})")
    if prior.part_size != plan.part_size or prior.checksum != plan.checksum_name:
        return "the part size or checksum differs from the earlier attempt"
    return None


async def _continue(plan: Plan, sink: Sink, journal: Journal, prior: TransferRecord) -> Attempt | None:
    reason = _same_shape(plan, prior)
    if reason is not None:
        log.warning("%s: starting over", reason)
        await _discard(sink, journal, prior, plan.algorithm)
        return None
    writer = sink.resume_writer(prior.upload_id, plan.algorithm, plan.stat.size)
    journaled = {rec.number for rec in prior.parts}
    try:
        # A file destination cannot list its parts: it reads back the ones the journal names.
        listed = await writer.list_parts([p for p in plan.parts if p.number in journaled])
    except TransferError as exc:
        if exc.code != "NoSuchUpload":
            raise
        return await _completed_before(plan, sink, journal, prior)
    lengths = {p.number: p.length for p in plan.parts}
    done: dict[int, Receipt] = {}
    for rec in prior.parts:
        stored = listed.get(rec.number)
        if stored is None or stored.etag != rec.etag or stored.size != rec.size or lengths.get(rec.number) != rec.size:
            log.warning("the stored parts disagree with the journal (part %d): starting over", rec.number)
            await _discard(sink, journal, prior, plan.algorithm)
            return None
        digest = PartDigest(base64.b64decode(rec.digest), rec.size) if rec.digest else None
        done[rec.number] = Receipt(rec.number, rec.etag, digest)
    candidates = _candidates(listed, lengths, done)
    log.warning("resuming upload %s: %d of %d parts already stored%s", prior.upload_id, len(done), len(plan.parts),
                f", {len(candidates)} more to check against the source" if candidates else "")
    return Attempt(writer, prior.id, done, candidates)


async def _completed_before(plan: Plan, sink: Sink, journal: Journal, prior: TransferRecord) -> Attempt | None:
    """The upload is gone: if every part was journaled, it may have been completed just before a crash.

    The engine then only checks the object (size and whole-object checksum
    rebuilt from the journaled part checksums) instead of sending it again.
    """
    if plan.algorithm is not None and len(prior.parts) == len(plan.parts) and all(p.digest for p in prior.parts):
        done = {r.number: Receipt(r.number, r.etag, PartDigest(base64.b64decode(r.digest or ""), r.size))
                for r in prior.parts}
        whole = plan.algorithm.whole([r.digest for r in done.values() if r.digest], single=False)
        writer = sink.resume_writer(None, plan.algorithm)
        try:
            found = await writer.complete([], whole)  # no upload id: only looks at the object
        except UserError:
            found = None  # no such object
        if found is not None and found.size == plan.stat.size and found.checksum == whole:
            log.warning("the earlier upload %s was completed before the interruption; reading the source again "
                        "to prove it still holds those bytes", prior.upload_id)
            return Attempt(writer, prior.id, done, prove=True)
    log.warning("the earlier upload %s no longer exists: starting over", prior.upload_id)
    await journal.forget(prior.id)
    return None


def _epoch(when: object) -> float:
    return when.timestamp() if isinstance(when, datetime) else 0.0


def _candidates(listed: dict[int, ListedPart], lengths: dict[int, int], done: dict[int, Receipt]) -> dict[int, str]:
    return {n: p.etag for n, p in listed.items() if n not in done and lengths.get(n) == p.size}


async def _adopt(plan: Plan, sink: Sink, journal: Journal | None) -> Attempt | None:
    """Continue an upload found in S3 (not in the journal); its parts are candidates only."""
    uploads = await sink.find_uploads(sink.location.path)
    if not uploads:
        return None
    newest = max(uploads, key=lambda u: _epoch(u.initiated))
    writer = sink.resume_writer(newest.upload_id, plan.algorithm, plan.stat.size)
    try:
        listed = await writer.list_parts()
    except S3FerryError as exc:
        log.warning("cannot list the parts of upload %s (%s): starting over", newest.upload_id, exc)
        return None
    candidates = _candidates(listed, {p.number: p.length for p in plan.parts}, {})
    transfer_id = await journal.start(plan.record(newest.upload_id)) if journal else None
    log.warning("adopting upload %s found in S3: its %d stored parts are checked against the source before use",
                newest.upload_id, len(candidates))
    return Attempt(writer, transfer_id, {}, candidates)
