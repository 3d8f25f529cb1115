"""Sizes and ages as people read and write them: one unit family for sizes everywhere (KiB, MiB, GiB: powers
of 1024); ages as ``7d``, ``12h``."""

from __future__ import annotations

import re
from datetime import timedelta

from s3ferry.core.errors import UsageError

_AGE_RE = re.compile(r"^(\d+)\s*([smhdw])$")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def human_bytes(n: float) -> str:
    """``1536`` → ``"1.5 KiB"``; whole bytes below 1 KiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_rate(bytes_per_second: float) -> str:
    """A rate in the family of :func:`human_bytes`: ``3 * 2**20`` -> ``"3.0 MiB/s"``."""
    return f"{human_bytes(bytes_per_second)}/s"


def parse_age(text: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``, ``"2w"`` -> timedelta."""
    match = _AGE_RE.match(text.strip().lower())
    if not match:
        raise UsageError(f"cannot read {text!r} as an age (examples: 7d, 12h, 30m)")
    return timedelta(seconds=int(match.group(1)) * _AGE_UNITS[match.group(2)])


def age_seconds(value: object) -> float:
    """An age from a command line or a config file: a number of seconds as it is, else :func:`parse_age`."""
    return float(value) if isinstance(value, (int, float)) else parse_age(str(value)).total_seconds()
