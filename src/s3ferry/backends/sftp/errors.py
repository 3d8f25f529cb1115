"""asyncssh's and the OS's errors on an open SFTP connection, as s3ferry's errors (:func:`translate_error`).

At the bottom of the package: every module that talks to the server words its failures through it, and
``doctor`` reuses it for its path check.
"""

from __future__ import annotations

import asyncio

import asyncssh

from s3ferry.core.errors import NotFoundError, PermissionError_, S3FerryError, TransferError

#: why an SFTP path is most often "not found" (doctor gives the same advice)
PATH_HINT = "the path in an sftp:// URL is absolute: sftp://host/home/me/x, not ~/x or x"


def translate_error(exc: BaseException, where: str) -> S3FerryError:
    """Map asyncssh / OS errors on an open connection to the s3ferry tree."""
    if isinstance(exc, (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)):
        return TransferError(f"SFTP connection lost at {where}: {exc.reason}")
    if isinstance(exc, asyncssh.SFTPNoSuchFile):
        missing = NotFoundError(f"source not found: {where}")
        missing.hint = PATH_HINT
        return missing
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return PermissionError_(f"permission denied: {where}")
    if isinstance(exc, asyncssh.SFTPError):
        return TransferError(f"SFTP error at {where}: {exc.reason}")
    if isinstance(exc, (asyncssh.DisconnectError, asyncssh.ConnectionLost, asyncssh.ChannelOpenError)):
        return TransferError(f"SFTP connection lost at {where}: {exc.reason}")
    if isinstance(exc, (OSError, asyncio.TimeoutError, EOFError)):
        return TransferError(f"SFTP connection lost at {where}: {exc or type(exc).__name__}")
    raise exc
