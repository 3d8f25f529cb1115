"""Progress display (a subscriber of the engine) and the human summary line."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..engine import TransferResult
from ..tree import TreeResult


class RichProgress:
    """A rich progress bar on stderr: bytes, rate, ETA."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def started(self, name: str, total: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task(name, total=total)

    def advanced(self, nbytes: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, nbytes)

    def finished(self) -> None:
        self._progress.stop()


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def summary_line(result: TransferResult) -> str:
    checksum = f"{result.checksum_algorithm} {result.checksum}" if result.checksum else "no checksum"
    return (
        f"copied {human_bytes(result.size)} {result.source} -> {result.destination} "
        f"in {result.seconds:.2f} s ({result.bytes_per_second / 1e6:.1f} MB/s), "
        f"{result.parts} part(s) of {human_bytes(result.part_size)}; "
        f"peak RSS {result.peak_rss_bytes / 1e6:.0f} MB; disk writes {human_bytes(result.disk_write_bytes)}; "
        f"verified {checksum}"
    )


def tree_summary_line(result: TreeResult) -> str:
    rate = result.size / result.seconds / 1e6 if result.seconds > 0 else 0.0
    failed = f", {len(result.failures)} FAILED" if result.failures else ""
    excluded = f", {result.excluded} excluded" if result.excluded else ""
    return (
        f"copied {len(result.files)} file(s), {human_bytes(result.size)} {result.source} -> {result.destination} "
        f"in {result.seconds:.2f} s ({rate:.1f} MB/s){failed}{excluded}; "
        f"peak RSS {result.peak_rss_bytes / 1e6:.0f} MB; disk writes {human_bytes(result.disk_write_bytes)}"
    )
