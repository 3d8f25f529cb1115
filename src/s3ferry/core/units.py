"""Sizes as people read them: one unit family everywhere (KiB, MiB, GiB: powers of 1024)."""

from __future__ import annotations


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
