"""``s3ferry uploads`` and ``s3ferry cancel``: unfinished multipart uploads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from s3ferry.backends.s3.sink import S3Sink
from s3ferry.core.errors import UsageError
from s3ferry.core.options import TransferOptions
from s3ferry.core.storage import UploadInfo
from s3ferry.core.urls import Location
from s3ferry.engine.journal import Journal
from s3ferry.engine.retry import RetryPolicy


@dataclass(frozen=True)
class UploadRow:
    key: str
    upload_id: str
    initiated: datetime | None
    parts: int
    bytes: int
    journaled: bool

    def as_dict(self) -> dict[str, object]:
        return {"key": self.key, "upload_id": self.upload_id,
                "initiated": self.initiated.isoformat() if self.initiated else None,
                "parts": self.parts, "bytes": self.bytes, "journaled": self.journaled}


def _sink(location: Location, options: TransferOptions) -> S3Sink:
    if location.scheme != "s3":
        raise UsageError(f"expected an s3:// location, not {location}")
    return S3Sink(location, options.s3, retry=RetryPolicy(retries=options.retries))


async def list_uploads(location: Location, options: TransferOptions) -> list[UploadRow]:
    sink = _sink(location, options)
    journal = Journal(options.state_dir)
    try:
        await sink.prepare()
        uploads = await sink.find_uploads(location.path, exact=False)
        known = await journal.by_upload([u.upload_id for u in uploads])
        rows = []
        for up in uploads:
            parts = await sink.list_parts(up.key, up.upload_id)
            rows.append(UploadRow(up.key, up.upload_id, _when(up), len(parts), sum(p.size for p in parts.values()),
                                  up.upload_id in known))
        return rows
    finally:
        await journal.close()
        await sink.close()


def _when(up: UploadInfo) -> datetime | None:
    return up.initiated if isinstance(up.initiated, datetime) else None


async def cancel_uploads(location: Location, options: TransferOptions, prefix: bool,
                         older_than: timedelta | None) -> list[UploadInfo]:
    """Abort matching uploads and forget their journal entries; returns what was aborted.

    A location ending in ``/`` (or a bucket alone) is a folder: without ``prefix`` it is refused, never
    read as the key ``dir/`` (which would abort nothing and look like success).
    """
    sink = _sink(location, options)  # no connection yet: nothing to close if refused below
    if not prefix and location.is_dir_like:
        raise UsageError(f"{location} is a folder: add --prefix to abort every unfinished upload below it "
                         f"(`s3ferry uploads {location}` lists them)")
    journal = Journal(options.state_dir)
    try:
        await sink.prepare()
        uploads = await sink.find_uploads(location.path, exact=not prefix)
        if older_than is not None:
            cutoff = datetime.now(UTC) - older_than
            uploads = [u for u in uploads if (_when(u) or cutoff) < cutoff]
        for up in uploads:
            await sink.abort_upload(up.key, up.upload_id)
            await journal.forget_upload(up.upload_id)
        return uploads
    finally:
        await journal.close()
        await sink.close()
