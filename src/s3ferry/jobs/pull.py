"""``s3ferry pull``: an SFTP (or local) drop folder into S3, then archived on the source."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine import ProgressListener
from ..options import TransferOptions
from ..tree import Filter
from ..urls import Location
from . import JobReport


@dataclass(frozen=True)
class PullSettings:
    archive: str = ".done"  # folder created beside each pulled file; files inside are never pulled
    settle: float = 0.0  # seconds: files modified more recently are left for a later run
    retention_days: float = 0.0  # archived files older than this are deleted (0: never)
    filters: tuple[Filter, ...] = ()
    transfers: int = 4


async def pull(src: str | Location, dst: str | Location, options: TransferOptions, settings: PullSettings,
               progress: ProgressListener | None = None) -> JobReport:
    raise NotImplementedError  # being written
