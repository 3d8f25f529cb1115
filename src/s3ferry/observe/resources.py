"""Peak memory and local-disk writes of this process: the zero-disk proof."""

from __future__ import annotations

import resource
import sys


def disk_writes() -> int:
    """Bytes this process caused to be written to storage (Linux /proc/self/io)."""
    try:
        with open("/proc/self/io", "rb") as fh:
            for line in fh:
                if line.startswith(b"write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass  # not Linux: report 0 rather than fail a finished transfer
    return 0


def peak_rss() -> int:
    """Peak resident set size of this process in bytes.

    Linux: VmHWM from /proc/self/status. Not ``ru_maxrss``: that survives
    exec, so it would report the launching process's size when that is larger.
    """
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass  # not Linux: fall back to getrusage below
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(usage if sys.platform == "darwin" else usage * 1024)


class ResourceMeter:
    """Measures from its creation: disk writes as a delta, RSS as the process peak."""

    def __init__(self) -> None:
        self._writes0 = disk_writes()

    def disk_writes(self) -> int:
        return disk_writes() - self._writes0

    def peak_rss(self) -> int:
        return peak_rss()
