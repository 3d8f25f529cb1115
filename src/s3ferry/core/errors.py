"""The one exception tree of s3ferry.

Every error a user can see is an :class:`S3FerryError`; its ``exit_code`` is
the process exit code (see DESIGN.md) and ``retryable`` says whether trying
the same operation again could help. Third-party exceptions (botocore,
asyncssh, OS errors) are translated at the backend boundary with
``raise ... from exc`` so the original stays available under ``--debug``.

::

    S3FerryError                      exit 1
    ├── TransferError                 exit 1   (connection lost, server 5xx; retryable)
    │   ├── SourceChangedError        exit 1   (size or mtime changed mid-transfer)
    │   └── UnreachableError          exit 1   (no connection to the endpoint at all)
    ├── UserError                     exit 2
    │   ├── UsageError                         (bad URL or option)
    │   ├── NotFoundError                      (source, bucket)
    │   ├── AuthError                          (wrong password, key or credentials)
    │   ├── PermissionError_                   (access denied)
    │   ├── HostKeyError                       (unknown or changed SSH host key)
    │   └── JournalError                       (the journal file is damaged)
    ├── IntegrityError                exit 3   (checksums disagree)
    └── InterruptedError_             exit 130
"""

from __future__ import annotations


class S3FerryError(Exception):
    """Base class: ``str(exc)`` is the one line printed to the user."""

    exit_code = 1
    retryable = False

    def __init__(self, message: str, *, retryable: bool | None = None, code: str | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        #: the server's own error code (e.g. S3's "SlowDown"), when there is one
        self.code = code
        #: what the user can do next (printed after the message, same line)
        self.hint: str | None = None


class TransferError(S3FerryError):
    """The transfer failed on the way (network, server); it may work if retried."""

    retryable = True


class SourceChangedError(TransferError):
    """The source changed while it was being read."""

    retryable = False


class UnreachableError(TransferError):
    """No connection to the endpoint at all (refused, timed out): every file of a run would fail the same way."""


class UserError(S3FerryError):
    """Something the user must fix: input, credentials, trust, a missing thing."""

    exit_code = 2


class UsageError(UserError):
    """A malformed URL, a bad option value or an impossible combination."""


class NotFoundError(UserError):
    """The source file, folder or destination bucket does not exist."""


class AuthError(UserError):
    """Authentication failed (password, key, S3 credentials)."""


class PermissionError_(UserError):
    """Authenticated, but not allowed to do this."""


class HostKeyError(UserError):
    """The SSH server's host key is unknown or does not match the pinned one."""


class JournalError(UserError):
    """The resume journal cannot be read (damaged): named, with how to move it aside."""


class IntegrityError(S3FerryError):
    """The bytes at the destination are not the bytes read from the source."""

    exit_code = 3


class InterruptedError_(S3FerryError):
    """Stopped by SIGINT or SIGTERM."""

    exit_code = 130
