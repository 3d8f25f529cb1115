"""What every subcommand shares: one error line and its exit code, signals, logging set-up, stdout."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from s3ferry.cli.flags import FLAG_OF
from s3ferry.core.errors import InterruptedError_, S3FerryError
from s3ferry.core.options import OptionError
from s3ferry.core.optionspec import named


def fail(exc: BaseException, debug: bool) -> NoReturn:
    """Print the one-line error (plus traceback with --debug) and exit."""
    from s3ferry.observe.logs import final_error, safe_traceback

    if debug:  # scrubbed as every log line: a traceback quotes URLs, headers and arguments
        click.echo(safe_traceback(exc), err=True, nl=False)
    if isinstance(exc, InterruptedError_):
        click.echo(final_error(str(exc), exc.exit_code), err=True)
        sys.exit(exc.exit_code)
    if isinstance(exc, OptionError):  # read late (a password file at login): named as on the command line
        exc = named(exc, FLAG_OF)
    if isinstance(exc, S3FerryError):
        hint = f"; {exc.hint}" if exc.hint else ""
        click.echo(final_error(f"error: {exc}{hint}", exc.exit_code), err=True)
        sys.exit(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        click.echo(final_error("interrupted", 130), err=True)
        sys.exit(130)
    click.echo(final_error(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", 1),
               err=True)
    sys.exit(1)


#: ``ctx.meta`` key: -q was given (the result lines are not printed)
QUIET = "s3ferry.quiet"


def set_quiet(quiet: bool) -> None:
    """Remember -q for :func:`say` (on the root context: every command's output goes through it)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[QUIET] = quiet


def say(text: str, err: bool = False) -> None:
    """A human result line (a summary, a count, what was done): -q prints nothing on success, so that cron
    mails nothing. Results asked for as data (--json, a listing) are printed with click.echo whatever -q."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or not ctx.meta.get(QUIET):
        click.echo(text, err=err)


def stdout_closed() -> NoReturn:
    """The reader of stdout went away (``s3ferry doctor ... | head -1``): not an error of ours.

    As Python's documentation on SIGPIPE recommends, stdout is pointed at /dev/null so that the flush at
    exit cannot fail again, and we leave without a word. The exit code is 141 (128 + SIGPIPE), what a
    shell reports for coreutils or rclone killed by SIGPIPE in the same pipe (`yes | head -1`), so
    `set -o pipefail` scripts see what they see with those tools.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(128 + signal.SIGPIPE)


def reader_gone() -> bool:
    """Whether stdout is a pipe or socket whose reading end is closed (poll says POLLERR for it)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError):  # no stdout at all, or closed: nobody reads it either
        return True


def run_command(debug: bool, body: Callable[[], Any]) -> Any:
    try:
        return body()
    except BrokenPipeError as exc:
        if not reader_gone():
            fail(exc, debug)  # a socket of ours, not stdout: a real error
        stdout_closed()
    except (S3FerryError, KeyboardInterrupt) as exc:
        fail(exc, debug)
    except Exception as exc:  # noqa: BLE001 - the last line of defence prints one line, not a traceback
        fail(exc, debug)


def run_async(coro: Any, interrupted: str = "interrupted") -> Any:
    """Run ``coro``; SIGINT and SIGTERM cancel it (clean-ups run) and exit 130 with one line."""
    import asyncio

    async def main() -> Any:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        return await coro

    try:
        return asyncio.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt) as exc:
        raise InterruptedError_(interrupted) from exc


def setup_logging(debug: bool, verbose: int = 0, quiet: bool = False, log_format: str = "text") -> None:
    """Notes (resuming, retrying, starting over) go to stderr as `s3ferry: ...` lines (or JSON lines)."""
    from s3ferry.observe.logs import setup

    setup(debug=debug, verbose=verbose, quiet=quiet, fmt=log_format)
