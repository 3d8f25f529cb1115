"""``s3ferry run FLOWS.toml``: many named pull/push flows from one file, each on its schedule.

Registered on :data:`s3ferry.cli.main` when :mod:`s3ferry.cli` imports this module.
The file format is documented in :mod:`s3ferry.jobs.flowfile`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from s3ferry.cli.app import main, observing
from s3ferry.cli.common import run_async
from s3ferry.cli.flags import options
from s3ferry.core.errors import UsageError
from s3ferry.core.redaction import printable

EXAMPLES_RUN = """
\b
Examples:
  s3ferry run --check flows.toml            # validate: every problem with its line
  s3ferry run --once flows.toml             # each flow once, now (cron, CI)
  s3ferry run --dry-run flows.toml          # what each flow would do now; changes nothing
  s3ferry run flows.toml                    # run forever, each flow at its schedule
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
    """
    from s3ferry.jobs import flowfile, runner

    def body() -> None:
        if check and dry_run:
            raise UsageError("--check only validates the file and --dry-run runs the flows without changing "
                             "anything: give one of them")
        require_env: bool | frozenset[str] = False if check else (frozenset(selected) if selected else True)
        loaded = flowfile.load(flows_file, require_env=require_env)
        shown = str(flows_file)
        for problem in loaded.problems:
            click.echo(printable(problem.format(shown)), err=True)
        if loaded.errors:
            count = len(loaded.errors)
            raise UsageError(f"{shown}: {count} error{'s' if count > 1 else ''}; nothing was run")
        unknown = [name for name in selected if name not in loaded.flows]
        if unknown:
            raise UsageError(f"no flow named {', '.join(map(repr, unknown))} in {shown} "
                             f"(flows: {', '.join(loaded.flows)})")
        flows = [loaded.flows[name] for name in (dict.fromkeys(selected) or loaded.flows)]
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
            elif outcome.report is not None:
                click.echo(printable(f"{outcome.flow.name}: {outcome.report.summary()}"))
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
        run_async(runner.run_forever(flows, report), "interrupted: the flows' runs were stopped")

    observing(params, debug, "run", body)  # metrics of each run are labelled with its flow's name
