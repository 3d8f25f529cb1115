"""``s3ferry audit verify`` and ``s3ferry audit show``: the audit trail of deliveries (:mod:`s3ferry.observe.audit`).

Registered on :data:`s3ferry.cli.main` when :mod:`s3ferry.cli` imports this module.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from s3ferry.cli.app import main
from s3ferry.cli.common import run_command, say
from s3ferry.core.errors import UsageError
from s3ferry.core.redaction import printable
from s3ferry.core.units import parse_age

if TYPE_CHECKING:  # the audit module is imported when a command runs (start-up time)
    from s3ferry.observe.audit import AuditLog

EXAMPLES_AUDIT = """
\b
Examples:
  s3ferry audit verify
  s3ferry audit verify --log /var/lib/s3ferry/audit.jsonl --expect-head 3f2a9c1b7d04
  s3ferry audit show --flow partner-in --since 7d
  s3ferry audit show --op push --grep invoices/ --json
"""

_LOG_HELP = ("The audit log (default: S3FERRY_AUDIT_LOG, else audit.jsonl in the state dir: S3FERRY_STATE_DIR or "
             "~/.local/state/s3ferry).")
HEAD_SHOWN = 16  # hex digits of the head hash in the summary line: enough to anchor, short enough to read


@main.group(epilog=EXAMPLES_AUDIT)
def audit() -> None:
    """The audit trail: every delivery of cp, pull and push, hash-chained (see the README, *Audit trail*)."""


def _log_of(path: Path | None) -> AuditLog:
    """``--log``, else the log the transfers write by default: S3FERRY_AUDIT_LOG, else the state dir's."""
    import os

    from s3ferry.engine.journal import default_state_dir
    from s3ferry.observe.audit import OFF, resolve

    setting = str(path) if path is not None else os.environ.get("S3FERRY_AUDIT_LOG") or None
    log = resolve(setting, default_state_dir())
    if log is None:
        raise UsageError(f"S3FERRY_AUDIT_LOG is {OFF!r}: no audit log is kept; name one with --log")
    return log


@audit.command("verify")
@click.option("--log", "log_path", type=click.Path(path_type=Path, dir_okay=False), help=_LOG_HELP)
@click.option("--expect-head", metavar="HASH",
              help="Also require this entry hash (or a prefix of 8+ hex digits), anchored earlier, to be in the chain.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def verify_command(log_path: Path | None, expect_head: str | None, debug: bool) -> None:
    """Recompute the chain: exit 0 with the entry count and head hash, or exit 3 naming the first broken line.

    A chain cannot show entries cut off its end: keep the printed head hash and
    count elsewhere, and check them later with --expect-head.
    """
    from s3ferry.observe.audit import broken, verify

    def body() -> None:
        if expect_head is not None and not _is_hash_prefix(expect_head):
            raise UsageError(f"--expect-head takes 8 to 64 hex digits of an entry's hash, not {expect_head!r}")
        log = _log_of(log_path)
        report = verify(log, expect_head)
        if not report.intact:
            raise broken(report, log)
        anchored = f", expected head at line {report.anchored_at}" if report.anchored_at is not None else ""
        say(printable(f"{report.count} entries, chain intact, head {report.head[:HEAD_SHOWN]}{anchored} ({log.path})"))

    run_command(debug, body)


def _is_hash_prefix(text: str) -> bool:
    return 8 <= len(text) <= 64 and all(c in "0123456789abcdefABCDEF" for c in text)


@audit.command("show")
@click.option("--log", "log_path", type=click.Path(path_type=Path, dir_okay=False), help=_LOG_HELP)
@click.option("--flow", metavar="NAME", help="Only deliveries of this flow.")
@click.option("--op", type=click.Choice(["cp", "pull", "push", "serve"]), help="Only deliveries of this command.")
@click.option("--since", metavar="TIME", help="Only deliveries at or after TIME: an ISO 8601 time (UTC if no zone) "
                                              "or an age (7d, 12h, 30m).")
@click.option("--until", metavar="TIME", help="Only deliveries at or before TIME (as --since).")
@click.option("--grep", metavar="TEXT", help="Only deliveries whose source or destination contains TEXT.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the last N deliveries selected.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry, as stored.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def show_command(log_path: Path | None, flow: str | None, op: str | None, since: str | None, until: str | None,
                 grep: str | None, limit: int | None, as_json: bool, debug: bool) -> None:
    """The deliveries recorded, oldest first: a table, or JSON lines with --json."""
    from collections import deque

    from s3ferry.observe.audit import Selection, select

    def bad_line(number: int, why: str) -> None:
        click.echo(printable(f"s3ferry: line {number} of the audit log is not an entry ({why}): "
                             "`s3ferry audit verify` checks the chain"), err=True)

    def body() -> None:
        selection = Selection(flow, op, _time(since, "--since"), _time(until, "--until"), grep)
        entries = deque(select(_log_of(log_path), selection, bad_line), maxlen=limit)
        if not as_json:
            click.echo(printable(_row(("SEQ", "TIME", "OP", "FLOW", "SIZE", "VERIFIED", "SOURCE -> DESTINATION"))))
        for entry in entries:
            if as_json:
                click.echo(entry.line())
            else:
                click.echo(printable(_row((str(entry.seq), entry.time, entry.op, entry.flow or "-", str(entry.size),
                                           "yes" if entry.verified else "NO",
                                           f"{entry.source} -> {entry.destination}"))))

    run_command(debug, body)


_WIDTHS = (6, 24, 5, 14, 12, 8)


def _row(cells: tuple[str, ...]) -> str:
    padded = [cell.ljust(width) for cell, width in zip(cells, _WIDTHS, strict=False)]
    return "  ".join([*padded, *cells[len(_WIDTHS):]])


def _time(text: str | None, flag: str) -> datetime | None:
    """An ISO 8601 time (UTC unless it names a zone) or an age before now."""
    if text is None:
        return None

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            return datetime.now(UTC) - parse_age(text)
        except UsageError:
            raise UsageError(f"{flag} takes an ISO 8601 time (2026-12-03T14:00) or an age (7d, 12h, 30m), "
                             f"not {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
