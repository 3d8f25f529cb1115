"""s3ferry: stream large files between SFTP, local disks and S3 -- parallel, bounded, verified."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .api import acopy, copy
from .engine import TransferResult
from .errors import S3FerryError
from .options import S3Options, SftpOptions, TransferOptions

try:
    __version__ = version("s3ferry")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["acopy", "copy", "TransferResult", "TransferOptions", "SftpOptions", "S3Options", "S3FerryError",
           "__version__"]
