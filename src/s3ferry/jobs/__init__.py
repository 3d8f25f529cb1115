"""Recurring jobs on the one engine: ``pull`` (SFTP drop folder -> S3, archive,
retention), ``push`` (S3 outbox -> SFTP, delivered marks, retry queue) and
``run`` (many named flows from a TOML file, on schedules).

Each job returns a :class:`JobReport`; one failing file never stops the
others, and :attr:`JobReport.exit_code` is the worst failure's exit code.
A run that leaves objects waiting in push's retry queue is not ok either
(exit 1: a transfer failed and may pass when retried): a failure that is
only queued must not look like success run after run.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field

from s3ferry.core.errors import S3FerryError
from s3ferry.core.redaction import printable
from s3ferry.observe import metrics

log = logging.getLogger("s3ferry")

#: the name of the flow a run belongs to (set by ``s3ferry run`` for each run's task; None for plain pull/push):
#: error lines name it, the journal's run records carry it
FLOW_NAME: contextvars.ContextVar[str | None] = contextvars.ContextVar("s3ferry_flow_name", default=None)

#: the exit code of a run whose only trouble is objects waiting for a retry (DESIGN.md: 1, may pass if retried)
WAITING_EXIT = 1


def flow_prefix() -> str:
    """``flow NAME: `` under ``s3ferry run``, else nothing: what error lines start with."""
    name = FLOW_NAME.get()
    return f"flow {name}: " if name is not None else ""


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
    #: push: objects in the retry queue this run did not fail itself (queued earlier and left to --retry-failed,
    #: or not tried because the destination could not be reached)
    waiting: list[str] = field(default_factory=list)
    #: what failed the run as a whole (the destination unreachable): one error, not one per file
    error: S3FerryError | None = None
    bytes: int = 0
    seconds: float = 0.0
    dry_run: bool = False  # the lists say what would have been done; nothing was
    #: another process was running this same job (its lock was held): nothing was done
    locked: str | None = None

    def fail(self, path: str, exc: S3FerryError) -> None:
        """One file's failure: said in the log, counted in the report (the run goes on with the others)."""
        log.error("error: %s%s: %s", flow_prefix(), path, exc)
        self.failed.append((path, exc))

    def fail_run(self, exc: S3FerryError) -> bool:
        """The run's own failure (said once, the first time); False when one was already said."""
        if self.error is not None:
            return False
        log.error("error: %s%s", flow_prefix(), exc)
        self.error = exc
        return True

    @property
    def exit_code(self) -> int:
        codes = [exc.exit_code for _, exc in self.failed]
        if self.error is not None:
            codes.append(self.error.exit_code)
        if self.waiting and not self.dry_run:  # a dry run only says what waits
            codes.append(WAITING_EXIT)
        return max(codes, default=0)

    @property
    def ok(self) -> bool:
        """Nothing failed and nothing waits for a retry (what the last-success metric and status count)."""
        return self.exit_code == 0

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind, "source": self.source, "destination": self.destination,
            "copied": len(self.copied), "skipped": len(self.skipped), "healed": len(self.healed),
            "archived": len(self.archived), "deleted": len(self.deleted), "failed": len(self.failed),
            "waiting": len(self.waiting), "bytes": self.bytes, "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run, "locked": self.locked is not None,
            "failures": [{"path": p, "error": str(e), "exit_code": e.exit_code} for p, e in self.failed],
            **({"error": str(self.error)} if self.error is not None else {}),
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
        if self.waiting:
            parts.append(f"{len(self.waiting)} WAITING for retry")
        if self.error is not None:
            parts.append(f"FAILED: {self.error}")
        tail = " (dry run: nothing changed)" if self.dry_run else f" in {self.seconds:.2f} s"
        return printable(", ".join(parts) + tail)


def record(report: JobReport) -> None:
    """Count a finished run in the metrics (files by result, last success of the flow)."""
    if report.dry_run or report.locked is not None:
        return  # nothing was skipped, archived or deleted: it was only decided (or another run did it)
    flow = metrics.FLOW.get()
    for result, items in (("skipped", report.skipped), ("healed", report.healed), ("archived", report.archived),
                          ("deleted", report.deleted), ("waiting", report.waiting)):
        if items:
            metrics.FILES.labels(result, flow).inc(len(items))
    if report.ok:  # a run that left anything failed or waiting is no success: the alert must be able to fire
        metrics.LAST_SUCCESS.labels(flow).set_to_current_time()
