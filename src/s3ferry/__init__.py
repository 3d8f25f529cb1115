"""s3ferry: stream large files between SFTP, local disks and S3 -- parallel, bounded, verified."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from s3ferry.core.errors import S3FerryError
from s3ferry.core.options import S3Options, SftpOptions, TransferOptions

if TYPE_CHECKING:
    from s3ferry.engine.transfer import TransferResult
    from s3ferry.operations.copy import acopy, copy

    __version__: str

__all__ = [
    "S3FerryError",
    "S3Options",
    "SftpOptions",
    "TransferOptions",
    "TransferResult",
    "__version__",
    "acopy",
    "copy",
]

# `s3ferry --help`, `--version` and every TAB of shell completion import this package. The copy API
# pulls in the engine, metrics and checksums, and the version needs importlib.metadata: all of it
# is loaded on first use (PEP 562) rather than at every start.
_LAZY = {"acopy": "operations.copy", "copy": "operations.copy", "TransferResult": "engine.transfer"}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from s3ferry.core.version import installed_version

        value: Any = installed_version()
    elif name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

