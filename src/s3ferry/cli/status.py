"""``s3ferry status [FLOWS_FILE]`` and ``s3ferry history``: what the flows did, read from the journal.

Registered on :data:`s3ferry.cli.main` when :mod:`s3ferry.cli` imports this module.
Every run of a pull or push is recorded in the journal of its state dir
(:mod:`s3ferry.engine.journal`: its result and counts, each file copied or
failed); these commands only read it, and change nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from s3ferry.cli.app import main, setup_output
from s3ferry.cli.common import run_async, run_command
from s3ferry.cli.flags import options
from s3ferry.cli.run import chosen, load
from s3ferry.core.redaction import printable

if TYPE_CHECKING:  # loaded by the commands themselves: `s3ferry --help` stays fast
    from s3ferry.engine.journal import HistoryEvent, Journal, QueueSummary, RunRecord
    from s3ferry.jobs.flowfile import Flow

EXAMPLES_STATUS = """
\b
Examples:
  s3ferry status flows.toml                 # each flow: last run, next run, retry queue
  s3ferry status --json flows.toml
  s3ferry status                            # the flows recorded in the default state dir
"""

EXAMPLES_HISTORY = """
\b
Examples:
  s3ferry history                           # the latest 50 files copied or failed
  s3ferry history --flow reports --since 1d --failed
  s3ferry history --json --limit 500
"""


def stamp(seconds: float) -> str:
    """A time for people: UTC, to the second."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(seconds: float) -> str:
    """A time for programs: ISO 8601, UTC."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class FlowStatus:
    """One flow as the journal of its state dir knows it."""

    flow: str
    kind: str
    source: str
    destination: str
    last: RunRecord | None
    next_run: float | None  # None: no flows file says when
    queue: QueueSummary

    def as_dict(self) -> dict[str, object]:
        oldest = self.queue.oldest
        return {
            "flow": self.flow, "kind": self.kind, "source": self.source, "destination": self.destination,
            "last_run": None if self.last is None else {
                **self.last.as_dict(), "started": iso(self.last.started), "ended": iso(self.last.ended)},
            "next_run": None if self.next_run is None else iso(self.next_run),
            "queue_depth": self.queue.depth,
            "oldest_failure": None if oldest is None else {
                "key": oldest.key, "since": iso(oldest.first_failed or oldest.updated), "attempts": oldest.attempts,
                "error": oldest.last_error},
        }

    def lines(self) -> list[str]:
        out = [f"{self.flow}: {self.kind} {self.source} -> {self.destination}"]
        if self.last is None:
            out.append("  last run:   never")
        else:
            run = self.last
            counts = f"{run.copied} copied, {run.failed} failed, {run.waiting} waiting"
            error = f": {run.error}" if run.error else ""
            result = run.status if run.status == "ok" else f"{run.status} (exit {run.exit_code})"
            out.append(f"  last run:   {stamp(run.started)}, {result}, {counts}{error}")
        if self.next_run is not None:
            late = " (overdue: is `s3ferry run` running?)" if self.next_run < time.time() - 60 else ""
            out.append(f"  next run:   {stamp(self.next_run)}{late}")
        if self.queue.oldest is not None:
            oldest = self.queue.oldest
            out.append(f"  retry queue: {self.queue.depth} waiting; oldest failure {oldest.key} since "
                       f"{stamp(oldest.first_failed or oldest.updated)} ({oldest.attempts} attempts): "
                       f"{oldest.last_error}")
        elif self.kind == "push":
            out.append("  retry queue: empty")
        return [printable(line) for line in out]


def next_run(flow: Flow, last: RunRecord | None) -> float:
    """When the scheduler starts ``flow`` next: after its last run, else its first time from now."""
    if last is None:
        return flow.schedule.first_after(datetime.now(UTC)).timestamp()
    return flow.schedule.next_after(datetime.fromtimestamp(last.started, UTC)).timestamp()


@asynccontextmanager
async def existing_journal(state_dir: Path) -> AsyncIterator[Journal | None]:
    """The journal of ``state_dir`` if there is one (reading never creates one), closed on the way out."""
    from s3ferry.engine.journal import Journal, open_journal

    journal = await open_journal(state_dir, required=True) if Journal(state_dir).path.exists() else None
    try:
        yield journal
    finally:
        if journal is not None:
            await journal.close()


async def flow_status(journal: Journal | None, name: str, kind: str, source: str, destination: str,
                      flow: Flow | None) -> FlowStatus:
    from s3ferry.engine.journal import QueueSummary

    last = await journal.last_run(name) if journal is not None else None
    queue = (await journal.queue_summary(source, destination) if journal is not None and kind == "push"
             else QueueSummary(0, None))
    return FlowStatus(name, kind, source, destination, last, next_run(flow, last) if flow else None, queue)


async def statuses(flows: Sequence[Flow] | None, selected: Sequence[str], state_dir: Path) -> list[FlowStatus]:
    """The flows of a flows file (each in its own state dir), else those recorded in ``state_dir``."""
    found: list[FlowStatus] = []
    if flows is not None:
        for flow in flows:
            async with existing_journal(flow.options.state_dir or state_dir) as journal:
                found.append(await flow_status(journal, flow.name, flow.kind, str(flow.source),
                                               str(flow.destination), flow))
        return found
    async with existing_journal(state_dir) as journal:
        if journal is None:
            return found
        for name in await journal.flows():
            if selected and name not in selected:
                continue
            last = await journal.last_run(name)
            assert last is not None  # the name comes from a recorded run
            found.append(await flow_status(journal, name, last.kind, last.source, last.destination, None))
    return found


@main.command(epilog=EXAMPLES_STATUS)
@click.argument("flows_file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@options("status")
def status(flows_file: Path | None, selected: tuple[str, ...], state_dir: Path | None, as_json: bool,
           debug: bool, **params: Any) -> None:
    """Each flow: its last run and result, its next run, its retry queue and oldest failure.

    With FLOWS_FILE, its flows (each from its own state_dir); without, the
    flows whose runs are recorded in the state dir. Reads the journal only.
    """
    from s3ferry.engine.journal import default_state_dir

    setup_output(params, debug)

    def body() -> None:
        flows = None
        if flows_file is not None:
            loaded = load(flows_file, selected, require_env=False)
            for problem in loaded.problems:
                click.echo(printable(problem.format(str(flows_file))), err=True)
            flows = chosen(loaded, selected, flows_file)
        found = run_async(statuses(flows, selected, state_dir or default_state_dir()))
        for one in found:
            if as_json:
                click.echo(json.dumps(one.as_dict()))
            else:
                click.echo("\n".join(one.lines()))
        if not found and not as_json:
            click.echo("no flow has run yet", err=True)

    run_command(debug, body)


def event_line(event: HistoryEvent) -> str:
    what = event.path or "(the run)"
    flow = f"{event.flow}: " if event.flow else ""
    error = f": {event.error}" if event.error else ""
    return printable(f"{stamp(event.time)}  {flow}{event.kind} {event.result} {what}{error}")


def event_dict(event: HistoryEvent) -> dict[str, object]:
    return {"time": iso(event.time), "flow": event.flow, "kind": event.kind, "source": event.source,
            "destination": event.destination, "path": event.path, "result": event.result, "error": event.error}


async def read_history(state_dir: Path, selected: Sequence[str], since: float | None, failed: bool,
                       limit: int) -> list[HistoryEvent]:
    async with existing_journal(state_dir) as journal:
        if journal is None:
            return []
        return await journal.history(selected, None if since is None else time.time() - since, failed, limit)


@main.command(epilog=EXAMPLES_HISTORY)
@options("history")
def history(selected: tuple[str, ...], since: float | None, failed: bool, limit: int, state_dir: Path | None,
            as_json: bool, debug: bool, **params: Any) -> None:
    """Recent files copied (pulled or delivered) and failures of pull, push and run, newest first.

    A run that failed as a whole (destination unreachable, no bucket) is one
    line without a file. Runs are kept 30 days in the journal.
    """
    from s3ferry.engine.journal import default_state_dir

    setup_output(params, debug)

    def body() -> None:
        events = run_async(read_history(state_dir or default_state_dir(), selected, since, failed, limit))
        for event in events:
            click.echo(json.dumps(event_dict(event)) if as_json else event_line(event))
        if not events and not as_json:
            click.echo("nothing recorded", err=True)

    run_command(debug, body)
