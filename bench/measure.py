"""Run one child process and measure it: wall time, peak RSS, local disk writes.

Why the children are started through ``/bin/sh ... &``: on Linux a child's
``ru_maxrss`` starts at the RSS of the process that forked it (fork copies the
RSS counters; vfork/posix_spawn hand the parent's memory map to ``exec``, which
records its high-water mark). Forked straight from this Python process, every
tool would report at least this harness's RSS (~70 MB with boto3 loaded), so a
lean tool would look as big as the harness. Instead the harness marks itself a
*child subreaper*, ``sh`` starts the tool in the background, prints its pid and
exits; the tool is re-parented to the harness, which reaps it with
``os.wait4`` and gets its rusage. The floor is then the RSS of ``dash``
(~1.6 MB). ``VmHWM`` from ``/proc/<pid>/status`` is polled as a cross-check.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
POLL_SECONDS = 0.05
LAUNCHER = 'out=$1; err=$2; shift 2; "$@" </dev/null >"$out" 2>"$err" & echo $!'


@dataclass
class ChildResult:
    """What one measured child did."""

    argv: list[str]
    returncode: int
    wall_s: float
    peak_rss_bytes: int  # ru_maxrss from os.wait4
    hwm_bytes: int  # last polled VmHWM (cross-check of peak_rss_bytes)
    disk_write_bytes: int  # last write_bytes from /proc/<pid>/io
    stdout: str
    stderr: str


def become_subreaper() -> None:
    """Adopt orphaned grandchildren, so the tools started by ``sh &`` can be reaped here."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def _proc_field(path: str, name: bytes) -> int:
    """An integer field of a /proc file (``name`` including the colon); 0 when absent."""
    with open(path, "rb") as fh:
        for line in fh:
            if line.startswith(name):
                return int(line.split()[1])
    return 0


class ProcPoller:
    """Reads write_bytes and VmHWM of ``pid`` every 50 ms in a thread, keeping the last values."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.write_bytes = 0
        self.hwm_kib = 0
        self.error: OSError | None = None
        self.stop_process = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"poll-{pid}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> bool:
        """Read both values once; False when the process (or its memory) is gone."""
        try:
            self.write_bytes = max(self.write_bytes, _proc_field(f"/proc/{self.pid}/io", b"write_bytes:"))
            hwm = _proc_field(f"/proc/{self.pid}/status", b"VmHWM:")  # 0 once it is a zombie
        except (FileNotFoundError, ProcessLookupError):
            return False
        self.hwm_kib = max(self.hwm_kib, hwm)
        return True

    def _run(self) -> None:
        try:
            while not self.stop_process.is_set() and self.sample():
                self.stop_process.wait(POLL_SECONDS)
        except OSError as exc:  # e.g. PermissionError: reported by stop()
            self.error = exc

    def stop(self) -> None:
        """Stop polling, take one last sample (the child is an unreaped zombie by now)."""
        self.stop_process.set()
        self._thread.join()
        if self.error is not None:
            raise self.error
        self.sample()


def _launch(argv: list[str], env: dict[str, str], out: Path, err: Path) -> int:
    """Start ``argv`` in the background of a short-lived ``sh``; return the tool's pid."""
    launcher = subprocess.Popen(
        ["/bin/sh", "-c", LAUNCHER, "sh", str(out), str(err), *argv],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
    )
    pid_text, _ = launcher.communicate()
    if launcher.returncode != 0 or not pid_text.strip().isdigit():
        raise RuntimeError(f"launcher failed ({launcher.returncode}) for {argv[0]}: {pid_text!r}")
    return int(pid_text)


def _kill(pid: int) -> None:
    """Terminate and reap a child after the harness itself was interrupted."""
    try:
        os.kill(pid, signal.SIGTERM)
        os.wait4(pid, 0)
    except ChildProcessError:
        pass  # already reaped


def run_measured(argv: list[str], env: dict[str, str], logs: Path, name: str,
                 stdout_path: Path | None = None) -> ChildResult:
    """Run ``argv`` to completion and measure it (stdout goes to ``stdout_path`` if given)."""
    out = stdout_path or logs / f"{name}.stdout"
    err = logs / f"{name}.stderr"
    start = time.monotonic()
    pid = _launch(argv, env, out, err)
    poller = ProcPoller(pid)
    poller.start()
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
        wall = time.monotonic() - start
        poller.stop()
        _, status, usage = os.wait4(pid, 0)
    except BaseException:
        _kill(pid)
        raise
    return ChildResult(
        argv=argv, returncode=os.waitstatus_to_exitcode(status), wall_s=wall,
        peak_rss_bytes=usage.ru_maxrss * 1024, hwm_bytes=poller.hwm_kib * 1024,
        disk_write_bytes=poller.write_bytes,
        stdout=out.read_text(errors="replace") if stdout_path is None else "",
        stderr=err.read_text(errors="replace"),
    )
