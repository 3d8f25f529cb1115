"""s3ferry: stream large files between SFTP, local disks and S3 -- parallel, bounded, verified."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import S3FerryError
from .options import S3Options, SftpOptions, TransferOptions

if TYPE_CHECKING:
    from .api import acopy, copy
    from .engine import TransferResult

    __version__: str

__all__ = ["acopy", "copy", "TransferResult", "TransferOptions", "SftpOptions", "S3Options", "S3FerryError",
           "__version__"]

# `s3ferry --help`, `--version` and every TAB of shell completion import this package. The copy API
# pulls in the engine, metrics and checksums, and the version needs importlib.metadata: all of it
# is loaded on first use (PEP 562) rather than at every start.
_LAZY = {"acopy": "api", "copy": "api", "TransferResult": "engine"}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _installed_version()
    elif name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("s3ferry")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"
