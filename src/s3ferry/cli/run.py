"""``s3ferry run FLOWS.toml``: many named pull/push flows from one file, each on its schedule.

Registered on :data:`s3ferry.cli.main` when :mod:`s3ferry.cli` imports this module.
The file format is documented in :mod:`s3ferry.jobs.flowfile`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from s3ferry.cli.app import main, observing
from s3ferry.cli.common import run_async, say
from s3ferry.cli.flags import options
from s3ferry.core.errors import UsageError
from s3ferry.core.redaction import printable

if TYPE_CHECKING:  # loaded by the command itself: `s3ferry --help` stays fast
    from s3ferry.jobs.flowfile import Flow, FlowFile
    from s3ferry.jobs.runner import Scheduler

log = logging.getLogger("s3ferry")
#: what the service says it does (the plan on start, reloads): shown unless -q, in the log format chosen
service_log = logging.getLogger("s3ferry.service")

EXAMPLES_RUN = """
\b
Examples:
  s3ferry run --check flows.toml            # validate: every problem with its line
  s3ferry run --once flows.toml             # each flow once, now (cron, CI)
  s3ferry run --dry-run flows.toml          # what each flow would do now; changes nothing
  s3ferry run flows.toml                    # run forever, each flow at its schedule
  kill -HUP <pid>                           # reload flows.toml (checked first; a bad file changes nothing)
  s3ferry run --once --flow partner-drop --json flows.toml
"""


@main.command(epilog=EXAMPLES_RUN)
@click.argument("flows_file", type=click.Path(path_type=Path, dir_okay=False))
@options("run")
def run(flows_file: Path, once: bool, check: bool, dry_run: bool, selected: tuple[str, ...],
        state_dir: Path | None, as_json: bool, debug: bool, **params: Any) -> None:
    """Run the pull/push flows of FLOWS_FILE, each at its schedule (or each once with --once).

    Each flow holds a lock while it runs: a flow still running (here or in
    another s3ferry process) is skipped with a note, never run twice at once.
    SIGINT/SIGTERM stop the runs in flight cleanly (exit 130). --dry-run is
    one pass whatever the schedules, and takes the locks like a real run.

    Running on schedules, it says on start what it will do (each flow, its
    next run, the metrics address) and reloads FLOWS_FILE on SIGHUP: the new
    file is checked as --check does; a bad one changes nothing (one line says
    why), a good one replaces the schedules without stopping runs in flight.
    """
    from s3ferry.jobs import runner

    metrics_at = (f"http://{params['metrics_addr']}:{params['metrics_port']}/metrics"
                  if params.get("metrics_port") is not None else None)
    service_log.setLevel(logging.ERROR if params.get("quiet") and not debug else logging.INFO)

    def body() -> None:
        if check and dry_run:
            raise UsageError("--check only validates the file and --dry-run runs the flows without changing "
                             "anything: give one of them")
        loaded = load(flows_file, selected, require_env=not check)
        for problem in loaded.problems:
            click.echo(printable(problem.format(str(flows_file))), err=True)
        flows = chosen(loaded, selected, flows_file)
        if check:
            for flow in flows:
                click.echo(printable(flow.describe()))
            return
        flows = runner.with_state_dir(flows, state_dir)
        if dry_run:
            flows = runner.dry_runs(flows)

        def report(outcome: runner.Outcome) -> None:
            # a skipped run: its note is already on stderr, and only --json prints a line for it
            if as_json:
                click.echo(json.dumps(outcome.as_dict()))
            elif outcome.report is not None:  # a result line: -q prints nothing on success
                say(printable(f"{outcome.flow.name}: {outcome.report.summary()}"))
            if outcome.error is not None:
                hint = f"; {outcome.error.hint}" if outcome.error.hint else ""
                from s3ferry.observe.logs import final_error

                click.echo(final_error(f"error: flow {outcome.flow.name}: {outcome.error}{hint}",
                                       outcome.error.exit_code), err=True)

        if once or dry_run:  # a dry run is one pass, never the scheduler: what a run now would do
            worst = run_async(runner.run_once(flows, report), "interrupted: the flows' runs were stopped")
            if worst:
                sys.exit(worst)
            return
        announce(f"running {len(flows)} flow{'s' if len(flows) != 1 else ''} of {flows_file}", flows, metrics_at)
        scheduler = runner.Scheduler(flows, report)
        reload = partial(reload_flows, scheduler, flows_file, selected, state_dir)
        run_async(serve(scheduler, reload), "interrupted: the flows' runs were stopped")

    observing(params, debug, "run", body)  # metrics of each run are labelled with its flow's name


def load(flows_file: Path, selected: Sequence[str], *, require_env: bool) -> FlowFile:
    """The flows file, read as --check reads it (``require_env``: the selected flows' password variables must
    be set, as a run needs them)."""
    from s3ferry.jobs import flowfile

    return flowfile.load(flows_file, require_env=(frozenset(selected) or True) if require_env else False)


def chosen(loaded: FlowFile, selected: Sequence[str], flows_file: Path) -> list[Flow]:
    """The flows to run (all, or those --flow names); a file with errors or an unknown name is refused."""
    shown = str(flows_file)
    if loaded.errors:
        count = len(loaded.errors)
        raise UsageError(f"{shown}: {count} error{'s' if count > 1 else ''}; nothing was run")
    unknown = [name for name in selected if name not in loaded.flows]
    if unknown:
        raise UsageError(f"no flow named {', '.join(map(repr, unknown))} in {shown} "
                         f"(flows: {', '.join(loaded.flows)})")
    return [loaded.flows[name] for name in (dict.fromkeys(selected) or loaded.flows)]


def announce(head: str, flows: Sequence[Flow], metrics_at: str | None = None) -> None:
    """What the scheduler will do: one line, then one per flow (kind, source -> destination, next run)."""
    service_log.info(printable(head + (f"; metrics on {metrics_at}" if metrics_at else "")))
    for flow in flows:
        service_log.info(printable(f"  {flow.describe()}"))


async def serve(scheduler: Scheduler, reload: partial[None]) -> None:
    """The scheduler until cancelled, reloading the flows file on SIGHUP."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await scheduler.run()
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def reload_flows(scheduler: Scheduler, flows_file: Path, selected: Sequence[str], state_dir: Path | None) -> None:
    """SIGHUP: the file checked first; a bad one keeps the flows running (one line says why), a good one
    replaces them (runs in flight go on)."""
    from s3ferry.jobs import runner

    loaded: FlowFile | None = None
    try:
        loaded = load(flows_file, selected, require_env=True)
        flows = runner.with_state_dir(chosen(loaded, selected, flows_file), state_dir)
    except UsageError as exc:
        first = f" (first: {loaded.errors[0].format(str(flows_file))})" if loaded and loaded.errors else ""
        log.error(printable(f"reload refused: {exc}{first}; the flows loaded before keep running"))
        return
    added, changed, removed = scheduler.replace(flows)
    news = ", ".join(f"{word}: {', '.join(names)}" for word, names in
                     (("added", added), ("changed", changed), ("removed", removed)) if names) or "no change"
    announce(f"reloaded {flows_file} ({news}): {len(flows)} flow{'s' if len(flows) != 1 else ''}", flows)
