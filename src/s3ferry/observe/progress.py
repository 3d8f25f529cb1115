"""Progress events: what a copy tells the display (the CLI's bar, a log line) as it goes."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class ProgressListener(Protocol):
    """Subscriber for progress events (the CLI's progress bar is one)."""

    def started(self, name: str, total: int) -> None: ...

    def advanced(self, nbytes: int) -> None: ...

    def finished(self) -> None: ...


@runtime_checkable
class FileBars(ProgressListener, Protocol):
    """A display with a bar per file (rich) besides a tree's total, found by one ``isinstance`` (the
    rule of :mod:`s3ferry.core.storage`); other displays get the files' bytes in their total."""

    def for_file(self, name: str, total: int) -> ProgressListener: ...


class NoProgress:
    def started(self, name: str, total: int) -> None:
        return None

    def advanced(self, nbytes: int) -> None:
        return None

    def finished(self) -> None:
        return None
