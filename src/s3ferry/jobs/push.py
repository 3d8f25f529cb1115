"""``s3ferry push``: objects under an S3 prefix delivered to an SFTP folder, marked, retried."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine import ProgressListener
from ..options import TransferOptions
from ..tree import Filter
from ..urls import Location
from . import JobReport


@dataclass(frozen=True)
class PushSettings:
    retry_failed: bool = False  # work through the retry queue instead of looking for new objects
    filters: tuple[Filter, ...] = ()
    transfers: int = 4


async def push(src: str | Location, dst: str | Location, options: TransferOptions, settings: PushSettings,
               progress: ProgressListener | None = None) -> JobReport:
    raise NotImplementedError  # being written
