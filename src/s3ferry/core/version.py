"""The installed version of s3ferry (read from the package metadata on first use)."""

from __future__ import annotations

from functools import cache


@cache
def installed_version() -> str:
    # importlib.metadata costs ~10 ms: loaded only when a version is asked for (--version, User-Agent).
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("s3ferry")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"
