"""Facts about the machine and the tool versions, for the Markdown report."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path

from tools import tool_path


def _first_line(argv: list[str], want: Callable[[str], bool] = bool) -> str:
    """The first output line (stdout, then stderr) of ``argv`` that ``want`` accepts."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        return "not found"
    lines = [ln.strip() for ln in (proc.stdout + "\n" + proc.stderr).splitlines()]
    return next((ln for ln in lines if ln and want(ln)), "unknown")


# The package the tools' Python imports (PYTHONPATH can point it at a snapshot of the source).
IMPORTED_FROM = "import os, s3ferry; print(os.path.dirname(os.path.dirname(s3ferry.__file__)))"


def _proc_value(path: str, key: str) -> str:
    for line in Path(path).read_text().splitlines():
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _sshd() -> str:
    sshd = next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None)
    return _first_line([sshd, "-V"]) if sshd else "not installed (asyncssh fallback)"


def facts(weed: str) -> list[tuple[str, str]]:
    """(name, value) pairs: CPU, memory, OS and the version of every program involved."""
    mem_kib = int(_proc_value("/proc/meminfo", "MemTotal").split()[0])
    return [
        ("CPUs (nproc)", str(len(os.sched_getaffinity(0)))),
        ("CPU model", _proc_value("/proc/cpuinfo", "model name")),
        ("memory", f"{mem_kib / 1024**2:.1f} GiB"),
        ("kernel", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("load average at start", " ".join(f"{x:.2f}" for x in os.getloadavg())),
        ("python", platform.python_version()),
        ("s3ferry", _first_line([tool_path("s3ferry"), "--version"])),
        ("s3ferry imported from", _first_line([tool_path("python"), "-c", IMPORTED_FROM])),
        ("rclone", _first_line([tool_path("rclone"), "version"])),
        ("s5cmd", _first_line([tool_path("s5cmd"), "version"])),
        ("SeaweedFS (weed)", _first_line([weed, "version"], lambda ln: ln.startswith("version"))),
        ("sshd", _sshd()),
        ("ssh client", _first_line(["ssh", "-V"])),
    ]
