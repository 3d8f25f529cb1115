"""s3ferry: stream large files between SFTP, local disks and S3 -- parallel, bounded, verified.

The Python API (README, *Python API*): ``copy`` / ``acopy`` (one file), ``copy_tree`` / ``acopy_tree``
(a folder or prefix), ``copy_glob`` / ``acopy_glob`` (a pattern), ``pull`` / ``apull`` and ``push`` /
``apush`` (the jobs) -- each reading the same config file as the command line, each returning a typed
result (:class:`TransferResult`, :class:`TreeResult`, :class:`JobReport`).
"""

from __future__ import annotations

import typing as _typing

from s3ferry.core.errors import S3FerryError
from s3ferry.core.options import S3Options, SftpOptions, TransferOptions

if _typing.TYPE_CHECKING:
    from s3ferry.engine.transfer import TransferResult
    from s3ferry.jobs import JobReport
    from s3ferry.jobs.api import apull, apush, pull, push
    from s3ferry.jobs.pull import PullSettings
    from s3ferry.jobs.push import PushSettings
    from s3ferry.operations.copy import acopy, acopy_glob, acopy_tree, copy, copy_glob, copy_tree
    from s3ferry.operations.tree import Filter, TreeResult

    __version__: str

__all__ = [
    "Filter",
    "JobReport",
    "PullSettings",
    "PushSettings",
    "S3FerryError",
    "S3Options",
    "SftpOptions",
    "TransferOptions",
    "TransferResult",
    "TreeResult",
    "__version__",
    "acopy",
    "acopy_glob",
    "acopy_tree",
    "apull",
    "apush",
    "copy",
    "copy_glob",
    "copy_tree",
    "pull",
    "push",
]

# `s3ferry --help`, `--version` and every TAB of shell completion import this package. The API pulls
# in the engine, metrics and checksums, and the version needs importlib.metadata: all of it is loaded
# on first use (PEP 562) rather than at every start.
_LAZY = {
    **dict.fromkeys(("acopy", "acopy_glob", "acopy_tree", "copy", "copy_glob", "copy_tree"), "operations.copy"),
    **dict.fromkeys(("apull", "apush", "pull", "push"), "jobs.api"),
    "Filter": "operations.tree",
    "TreeResult": "operations.tree",
    "TransferResult": "engine.transfer",
    "JobReport": "jobs",
    "PullSettings": "jobs.pull",
    "PushSettings": "jobs.push",
}


def __getattr__(name: str) -> object:
    if name == "__version__":
        from s3ferry.core.version import installed_version

        value: object = installed_version()
    elif name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    """The public API only: not the helpers of this module, nor the subpackages imported meanwhile."""
    return sorted(__all__)
