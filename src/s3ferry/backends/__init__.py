"""One module per protocol; :func:`open_source` / :func:`open_sink` pick by URL scheme."""

from __future__ import annotations

from ..errors import UsageError
from ..options import TransferOptions
from ..urls import Location
from .base import Sink, Source


def open_source(location: Location, options: TransferOptions) -> Source:
    if location.scheme == "file":
        from .local import LocalSource

        return LocalSource(location)
    if location.scheme == "sftp":
        from .sftp import SftpSource

        return SftpSource(location, options.sftp, options.sftp_block, options.sftp_window)
    if location.scheme in ("ftp", "ftps"):
        from .ftp import FtpSource

        return FtpSource(location, options.ftp)
    if location.scheme in ("http", "https"):
        from .http import HttpSource

        return HttpSource(location, options.http)
    raise UsageError(f"{location.scheme}:// is not supported as a source yet")


def open_sink(location: Location, options: TransferOptions) -> Sink:
    if location.scheme == "s3":
        from .s3 import S3Sink

        from ..retry import RetryPolicy

        return S3Sink(location, options.s3, pool_size=options.upload_streams + 2,
                      retry=RetryPolicy(retries=options.retries))
    raise UsageError(f"{location.scheme}:// is not supported as a destination yet (use s3://)")
