"""Recurring jobs on the one engine: ``pull`` (SFTP drop folder -> S3, archive,
retention), ``push`` (S3 outbox -> SFTP, delivered marks, retry queue) and
``run`` (many named flows from a TOML file, on schedules).

Each job returns a :class:`JobReport`; one failing file never stops the
others, and :attr:`JobReport.exit_code` is the worst failure's exit code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from s3ferry.core.errors import S3FerryError
from s3ferry.core.redaction import printable
from s3ferry.observe import metrics

log = logging.getLogger("s3ferry")


@dataclass
class JobReport:
    """What one run of a pull or push did, file by file."""

    kind: str  # "pull" or "push"
    source: str
    destination: str
    copied: list[str] = field(default_factory=list)  # relative paths / keys transferred
    skipped: list[str] = field(default_factory=list)  # already delivered / still settling / excluded
    healed: list[str] = field(default_factory=list)  # pull: already in S3 (crash before archiving), archived only
    archived: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # pull: archived files past retention
    failed: list[tuple[str, S3FerryError]] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    dry_run: bool = False  # the lists say what would have been done; nothing was
    #: another process was running this same job (its lock was held): nothing was done
    locked: str | None = None

    def fail(self, path: str, exc: S3FerryError) -> None:
        """One file's failure: said in the log, counted in the report (the run goes on with the others)."""
        log.error("error: %s: %s", path, exc)
        self.failed.append((path, exc))

    @property
    def exit_code(self) -> int:
        return max((exc.exit_code for _, exc in self.failed), default=0)

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind, "source": self.source, "destination": self.destination,
            "copied": len(self.copied), "skipped": len(self.skipped), "healed": len(self.healed),
            "archived": len(self.archived), "deleted": len(self.deleted), "failed": len(self.failed),
            "bytes": self.bytes, "seconds": round(self.seconds, 3), "dry_run": self.dry_run,
            "locked": self.locked is not None,
            "failures": [{"path": p, "error": str(e), "exit_code": e.exit_code} for p, e in self.failed],
        }

    def summary(self) -> str:
        """One human line (control characters of the locations escaped; :meth:`as_dict` is for JSON)."""
        if self.locked is not None:
            return printable(f"{self.kind} {self.source} -> {self.destination}: skipped, {self.locked}")
        verb = "would copy" if self.dry_run else "copied"
        parts = [f"{self.kind} {self.source} -> {self.destination}: {len(self.copied)} {verb}"]
        for name, items in (("healed", self.healed), ("archived", self.archived), ("deleted", self.deleted),
                            ("skipped", self.skipped)):
            if items:
                parts.append(f"{len(items)} {name}")
        if self.failed:
            parts.append(f"{len(self.failed)} FAILED")
        tail = " (dry run: nothing changed)" if self.dry_run else f" in {self.seconds:.2f} s"
        return printable(", ".join(parts) + tail)


def record(report: JobReport) -> None:
    """Count a finished run in the metrics (files by result, last success of the flow)."""
    if report.dry_run or report.locked is not None:
        return  # nothing was skipped, archived or deleted: it was only decided (or another run did it)
    flow = metrics.FLOW.get()
    for result, items in (("skipped", report.skipped), ("healed", report.healed), ("archived", report.archived),
                          ("deleted", report.deleted)):
        if items:
            metrics.FILES.labels(result, flow).inc(len(items))
    if not report.failed:
        metrics.LAST_SUCCESS.labels(flow).set_to_current_time()
