"""Progress display (a subscriber of the engine) and the human summary line.

Sizes and rates shown to people are in one unit family, powers of 1024 (MiB with MiB/s:
:func:`s3ferry.core.units.human_bytes` and :func:`~s3ferry.core.units.human_rate`); JSON keeps bytes.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from s3ferry.core.redaction import printable
from s3ferry.core.units import human_bytes, human_rate

# rich (~30 ms to import) only when a bar is drawn: the summary lines and LogProgress (cron,
# pipes) do without it. The engine and tree types are for type hints only.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import ProgressColumn, Task, TaskID

    from s3ferry.engine.transfer import TransferResult
    from s3ferry.operations.tree import TreeResult

log = logging.getLogger("s3ferry.progress")


class RichProgress:
    """Rich progress bars on stderr: bytes, rate, ETA; for trees a total bar and one bar per file in flight."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            _rate_column(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def started(self, name: str, total: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task(_shown(name), total=total)

    def advanced(self, nbytes: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, nbytes)

    def finished(self) -> None:
        self._progress.stop()

    def for_file(self, name: str, total: int) -> _FileBar:
        """A listener for one file of a tree: its own (transient) bar, and the total's."""
        return _FileBar(self, self._progress.add_task(f"  {_shown(name)}", total=total))


def _rate_column() -> ProgressColumn:
    """A bar's rate in MiB/s, like its sizes (rich's TransferSpeedColumn says MB/s: powers of 1000).
    The class is made here because rich is imported only when a bar is drawn."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("?" if speed is None else human_rate(speed), style="progress.data.speed")

    return RateColumn()


def _shown(name: str) -> str:
    """A file name as a bar's description: control characters escaped, and no rich markup (the description
    column renders ``[bold]``-style tags: a name holding ``[/]`` would be read as one, or fail to parse)."""
    from rich.markup import escape

    return escape(printable(name))


class _FileBar:
    def __init__(self, owner: RichProgress, task: TaskID) -> None:
        self._owner, self._task = owner, task

    def started(self, name: str, total: int) -> None:
        return None

    def advanced(self, nbytes: int) -> None:
        self._owner._progress.advance(self._task, nbytes)
        self._owner.advanced(nbytes)

    def finished(self) -> None:
        self._owner._progress.remove_task(self._task)


class LogProgress:
    """When stderr is not a terminal: one quiet line every ``interval`` seconds instead of a bar."""

    def __init__(self, interval: float = 30.0) -> None:
        self._interval = interval
        self._name, self._total, self._done = "", 0, 0
        self._started = self._last = 0.0

    def started(self, name: str, total: int) -> None:
        self._name, self._total = name, total
        self._started = self._last = time.monotonic()

    def advanced(self, nbytes: int) -> None:
        self._done += nbytes
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            rate = self._done / (now - self._started) if now > self._started else 0.0
            left = (self._total - self._done) / rate if rate > 0 else 0.0
            share = 100 * self._done / self._total if self._total else 100.0
            log.warning("progress: %s %s of %s (%.0f%%), %s, about %.0f s left", self._name,
                        human_bytes(self._done), human_bytes(self._total), share, human_rate(rate), left)

    def finished(self) -> None:
        return None


def summary_line(result: TransferResult) -> str:
    """The line ``cp`` prints for one file (names with control characters escaped: they come from the remote
    side and go to a terminal)."""
    return printable(_summary(result))


def _summary(result: TransferResult) -> str:
    if result.dry_run:
        verb = "would skip" if result.skipped else "would copy"
        return f"{verb} {human_bytes(result.size)} {result.source} -> {result.destination} (dry run: nothing changed)"
    if result.skipped:
        return f"skipped {result.source}: {result.destination} already holds it ({human_bytes(result.size)})"
    check = f"verified {result.verification}" if result.verified else f"NOT verified: {result.verification}"
    return (
        f"copied {human_bytes(result.size)} {result.source} -> {result.destination} "
        f"in {result.seconds:.2f} s ({_moved(result)}), "
        f"{result.parts} part(s) of {human_bytes(result.part_size)}; "
        f"peak RSS {human_bytes(result.peak_rss_bytes)}; disk writes {human_bytes(result.disk_write_bytes)}; "
        f"{check}"
    )


def _moved(result: TransferResult) -> str:
    """The rate of what this run moved; a resumed copy says how much that was (the rest was there)."""
    rate = human_rate(result.bytes_per_second)
    if result.moved_bytes == result.size:
        return rate
    return f"{human_bytes(result.moved_bytes)} sent this run at {rate}"


def tree_summary_line(result: TreeResult) -> str:
    """The line ``cp -r`` prints (control characters escaped, as :func:`summary_line`)."""
    return printable(_tree_summary(result))


def _tree_summary(result: TreeResult) -> str:
    moved = sum(f.moved_bytes for f in result.copied)
    rate = human_rate(moved / result.seconds if result.seconds > 0 else 0.0)
    failed = f", {len(result.failures)} FAILED" if result.failures else ""
    excluded = f", {result.excluded} excluded" if result.excluded else ""
    skipped = f", {len(result.skipped)} skipped (already there)" if result.skipped else ""
    if any(f.dry_run for f in result.files):
        return (f"dry run: would copy {len(result.copied)} file(s) ({human_bytes(sum(f.size for f in result.copied))})"
                f"{skipped}{failed}{excluded}; nothing changed")
    unverified = [f for f in result.copied if not f.verified]
    checked = (f", {len(unverified)} NOT verified ({unverified[0].verification})" if unverified
               else ", all verified" if result.copied else "")
    return (
        f"copied {len(result.copied)} file(s){skipped}, {human_bytes(result.size)} "
        f"{result.source} -> {result.destination} "
        f"in {result.seconds:.2f} s ({rate}){checked}{failed}{excluded}; "
        f"peak RSS {human_bytes(result.peak_rss_bytes)}; disk writes {human_bytes(result.disk_write_bytes)}"
    )
