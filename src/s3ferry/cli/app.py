"""Command line: ``s3ferry cp``, ``pull``, ``push``, ``uploads``, ``cancel``, ``demo``.

Their options come from the option table (:mod:`s3ferry.cli.flags`).

Every failure prints one line ``s3ferry: error: ...`` on stderr and exits with
the code of its error class (see :mod:`s3ferry.core.errors`); ``--debug`` adds
the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from s3ferry.cli.common import run_async, run_command, say, set_quiet, setup_logging
from s3ferry.cli.flags import options, transfer_options
from s3ferry.cli.settings import check_loaded, complete_location, location_callback
from s3ferry.core.errors import UsageError
from s3ferry.core.options import TransferOptions
from s3ferry.core.redaction import printable
from s3ferry.core.units import parse_age

# Start-up time: every run (--help, --version, each TAB of shell completion) imports this module,
# so asyncio, logging, the engine, the backends and rich are imported inside the code that uses them.
if TYPE_CHECKING:
    from s3ferry.core.urls import Location
    from s3ferry.engine.transfer import Executor
    from s3ferry.observe.progress import ProgressListener
    from s3ferry.operations.tree import Filter, TreeResult

EXAMPLES_CP = """
\b
Examples:
  s3ferry cp sftp://me@partner.example.com/out/data.csv.gz s3://raw/partner/
  s3ferry cp --part-size 32MiB --upload-streams 8 ./big.bin s3://bucket/big.bin
  S3FERRY_SFTP_PASSWORD=... s3ferry cp sftp://me@host:2222/x.bin s3://b/x.bin
  s3ferry cp -r --exclude '*.tmp' sftp://me@partner.example.com/out/ s3://raw/partner/
  s3ferry cp s3://raw/partner/data.csv.gz ./downloads/
  s3ferry cp --sse-c-key-file new.key --source-sse-c-key-file old.key s3://b/x s3://b/x-rekeyed
"""


def setup_output(params: dict[str, Any], debug: bool) -> None:
    """Logging and result lines as the output options say (-v/-q/--log-format; taken out of ``params``)."""
    quiet = params.pop("quiet", False)
    set_quiet(quiet)
    setup_logging(debug, params.pop("verbose", 0), quiet, params.pop("log_format", "text"))


def observing(params: dict[str, Any], debug: bool, flow: str, body: Callable[[], Any]) -> Any:
    """Set up logs and metrics from the output options, then run ``body``; pushes metrics on the way out."""
    from contextlib import ExitStack

    from s3ferry.observe import metrics

    setup_output(params, debug)
    port, addr = params.pop("metrics_port", None), params.pop("metrics_addr", "127.0.0.1")
    gateway, interval = params.pop("pushgateway", None), params.pop("push_interval", 30.0)
    metrics.FLOW.set(flow)

    def run() -> Any:
        with ExitStack() as stack:
            if port is not None:
                metrics.serve(port, addr)
            if gateway:
                stack.enter_context(metrics.Pusher(gateway, interval))
            return body()

    return run_command(debug, run)


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """What ``click.version_option`` prints, with the version looked up only when asked for
    (importing importlib.metadata costs ~20 ms, a third of `s3ferry --help`)."""
    if not value or ctx.resilient_parsing:
        return
    from s3ferry.core.version import installed_version

    click.echo(f"s3ferry, version {installed_version()}", color=ctx.color)
    ctx.exit()


class _Command(click.Command):
    """A subcommand: it runs only with a usable config file. Its --help, the group's --version and shell
    completion never get here, so a broken file cannot stop them."""

    def invoke(self, ctx: click.Context) -> Any:
        check_loaded(ctx)
        return super().invoke(ctx)


class _Group(click.Group):
    command_class = _Command


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the version and exit.")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Stream large files between SFTP, local disks and S3: parallel, bounded memory, verified.

    Option defaults and named endpoints come from ~/.config/s3ferry/config.toml
    (or $S3FERRY_CONFIG); see the README.
    """
    from s3ferry.cli.settings import apply_to

    # [defaults] become every command's default_map; a broken file is reported when a command runs
    run_command(False, lambda: apply_to(ctx))


def filter_order(include: Sequence[str], exclude: Sequence[str], argv: Sequence[str]) -> list[Filter]:
    """--include/--exclude in command-line order (the last matching filter decides, as in the AWS CLI).

    click hands each option's values over separately, so the order between the
    two options is read back from argv; if that fails, excludes apply last.
    """
    from s3ferry.jobs.flowfile import ordered_filters
    from s3ferry.operations.tree import Filter

    seen: list[Filter] = []
    tokens = list(argv)
    for i, token in enumerate(tokens):
        for flag, include_it in (("--include", True), ("--exclude", False)):
            if token == flag and i + 1 < len(tokens):
                seen.append(Filter(tokens[i + 1], include_it))
            elif token.startswith(flag + "="):
                seen.append(Filter(token.split("=", 1)[1], include_it))
    wanted = sorted([("i", p) for p in include] + [("e", p) for p in exclude])
    if sorted([("i" if f.include else "e", f.pattern) for f in seen]) != wanted:
        seen = [Filter(p, True) for p in include] + [Filter(p, False) for p in exclude]
    return list(ordered_filters(seen))  # the include-first rule


@main.command(epilog=EXAMPLES_CP)
@click.argument("src", callback=location_callback, shell_complete=complete_location)
@click.argument("dst", callback=location_callback, shell_complete=complete_location)
@options("cp")
def cp(src: str, dst: str, recursive: bool, include: tuple[str, ...], exclude: tuple[str, ...], transfers: int,
       no_progress: bool, as_json: bool, debug: bool, **params: Any) -> None:
    """Copy SRC to DST (a DST ending in / gets the source's file name); with -r, a whole folder.

    An interrupted or failed copy is kept and journaled: run the same command
    again and only the missing parts are sent.
    """
    from s3ferry.cli.progress import summary_line
    from s3ferry.core.urls import parse
    from s3ferry.operations.copy import acopy, resolve
    from s3ferry.operations.globs import glob_of

    executor, scheduler = params.pop("executor"), params.pop("scheduler")

    def body() -> None:
        options = transfer_options(params)
        progress = _progress(no_progress)
        cluster = _cluster(executor, scheduler)
        if recursive:
            filters = filter_order(include, exclude, sys.argv)
            _copy_tree_cli(src, dst, options, filters, transfers, progress, as_json, cluster)
            return
        if include or exclude:
            raise UsageError("--include/--exclude select files of a folder: add -r")
        source = parse(src)
        if source.scheme == "s3" and source.is_dir_like:  # s3://b and s3://b/ alike, whatever DST is
            raise UsageError(f"{source} is a prefix (use cp -r to copy everything under it)")
        if glob_of(source) is not None:  # 'sftp://host/out/*.csv.gz': the matching files of that one folder
            _copy_glob_cli(src, dst, options, transfers, progress, as_json, cluster)
            return
        _, dest = resolve(src, dst, options)
        result = run_async(_with_cluster(cluster, lambda ex: acopy(src, dst, options, config=False,
                                                                   progress=progress, executor=ex)),
                           interrupted_line(dest, options))
        _print_result(result.as_dict(), as_json, summary_line(result), cluster)

    observing(params, debug, "cp", body)


def interrupted_line(dest: Location, options: TransferOptions) -> str:
    """What Ctrl-C on one file says: how to go on from what the interrupted copy kept."""
    if options.resume == "never":
        return "interrupted"
    if dest.scheme == "s3":
        return f"interrupted: the upload is kept; run the same command again to resume, or `s3ferry cancel {dest}`"
    if dest.scheme in ("file", "sftp"):  # `cancel` is for S3 uploads: a file destination's "upload" is a file
        folder, _, name = str(dest).rpartition("/")
        return (f"interrupted: the partial file {folder}/.{name}.s3ferry-*.tmp is kept; run the same command "
                f"again to resume, or delete it to start over")
    return "interrupted"


def _progress(disabled: bool) -> Any:
    """A bar on a terminal; otherwise a line every 30 s (hidden by -q); nothing with --no-progress."""
    if disabled:
        return None
    from s3ferry.cli.progress import LogProgress, RichProgress

    if _plainly_no_terminal():
        return LogProgress(30.0)
    from rich.console import Console

    console = Console(stderr=True)
    return RichProgress(console) if console.is_terminal else LogProgress(30.0)


def _plainly_no_terminal() -> bool:
    """stderr is no terminal and no variable could make rich think otherwise: cron jobs and pipes
    get their LogProgress without importing rich. Whenever in doubt, rich's own check decides."""
    if "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ:
        return False  # rich lets these override isatty()
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return isatty is None or not isatty()
    except ValueError:  # closed stream: rich says "no terminal" too
        return True


def _cluster(executor: str, scheduler: str | None) -> Any:
    """A (not yet connected) Dask executor for --executor dask, else None."""
    if executor == "local":
        return None
    if not scheduler:
        raise UsageError("--executor dask needs --scheduler tcp://HOST:8786 (or S3FERRY_DASK_SCHEDULER)")
    from s3ferry.operations.distributed import DaskExecutor

    return DaskExecutor(scheduler)


async def _with_cluster(cluster: Any, make: Callable[[Any], Any]) -> Any:
    if cluster is None:
        return await make(None)
    async with cluster:
        result = await make(cluster)
    if cluster.workers_used:
        import logging

        logging.getLogger("s3ferry").info("ran on Dask workers: %s", ", ".join(sorted(cluster.workers_used)))
    return result


def _copy_tree_cli(src: str, dst: str, options: TransferOptions, filters: list[Filter], transfers: int,
                   progress: Any, as_json: bool, cluster: Any = None) -> None:
    from s3ferry.operations.copy import acopy_tree

    result = run_async(_with_cluster(cluster, lambda ex: acopy_tree(src, dst, options, config=False, filters=filters,
                                                                    transfers=transfers, progress=progress,
                                                                    executor=ex)),
                       "interrupted: run the same command again to copy what is left")
    _print_tree_result(result, as_json, cluster)


def _print_result(data: dict[str, Any], as_json: bool, line: str, cluster: Any = None) -> None:
    """A result as JSON (asked for: printed even with -q) or as its summary line (not printed with -q)."""
    if cluster is not None:
        data["workers"] = sorted(cluster.workers_used)
    if as_json:
        click.echo(json.dumps(data))
    else:
        say(line)


def _print_tree_result(result: TreeResult, as_json: bool, cluster: Any) -> None:
    from s3ferry.cli.progress import tree_summary_line

    _print_result(result.as_dict(), as_json, tree_summary_line(result), cluster)
    if result.failures:
        sys.exit(result.exit_code)


def _copy_glob_cli(src: str, dst: str, options: TransferOptions, transfers: int, progress: Any, as_json: bool,
                   cluster: Any) -> None:
    """A pattern in the source: a tree summary when the matches went into a folder, else one file's line."""
    from s3ferry.cli.progress import summary_line
    from s3ferry.operations.copy import acopy_glob
    from s3ferry.operations.tree import TreeResult

    result = run_async(_with_cluster(cluster, lambda ex: acopy_glob(src, dst, options, config=False,
                                                                    transfers=transfers, progress=progress,
                                                                    executor=ex)),
                       "interrupted: run the same command again to copy what is left")
    if isinstance(result, TreeResult):
        _print_tree_result(result, as_json, cluster)
        return
    _print_result(result.as_dict(), as_json, summary_line(result), cluster)


def _job_output(report: Any, as_json: bool) -> None:
    _print_result(report.as_dict(), as_json, report.summary())
    if report.exit_code:  # files failed, the run failed, or objects wait in the retry queue
        sys.exit(report.exit_code)


#: a pull or push run from its options, progress display and executor (a coroutine giving its JobReport)
JobStarter = Callable[[TransferOptions, "ProgressListener | None", "Executor | None"], Any]


def _run_job(name: str, job: JobStarter, params: dict[str, Any], no_progress: bool, as_json: bool,
             debug: bool) -> None:
    """``pull`` and ``push``: one run of the job with the command's options, its report printed."""

    def body() -> None:
        options = transfer_options(params)
        progress = _progress(no_progress)
        cluster = _cluster(params["executor"], params["scheduler"])
        _job_output(run_async(_with_cluster(cluster, lambda ex: job(options, progress, ex))), as_json)

    observing(params, debug, name, body)


@main.command(epilog="""
\b
Examples:
  s3ferry pull sftp://partner/out s3://raw/partner/ --settle 60s --retention-days 30
  s3ferry pull --include '*.csv.gz' --archive .sent sftp://partner/out s3://raw/partner/
""")
@click.argument("src", callback=location_callback, shell_complete=complete_location)
@click.argument("dst", callback=location_callback, shell_complete=complete_location)
@options("pull")
def pull(src: str, dst: str, archive: str, settle: float, retention_days: float, include: tuple[str, ...],
         exclude: tuple[str, ...], transfers: int, no_progress: bool, as_json: bool, debug: bool,
         **params: Any) -> None:
    """Copy every file below the SRC folder into S3, then move it into its .done archive.

    Run it from cron or `s3ferry run`: files already archived are never pulled
    again, a file still being written is left for the next run, and a crash
    between upload and archive is healed without sending the file again.
    """
    from s3ferry.jobs.pull import PullSettings
    from s3ferry.jobs.pull import pull as run_pull

    def job(options: TransferOptions, progress: ProgressListener | None, executor: Executor | None) -> Any:
        settings = PullSettings(archive=archive, settle=settle, retention_days=retention_days,
                                filters=tuple(filter_order(include, exclude, sys.argv)), transfers=transfers)
        return run_pull(src, dst, options, settings, progress=progress, executor=executor)

    _run_job("pull", job, params, no_progress, as_json, debug)


@main.command(epilog="""
\b
Examples:
  s3ferry push s3://outbox/partner/ sftp://partner/inbox
  s3ferry push --retry-failed s3://outbox/partner/ sftp://partner/inbox
""")
@click.argument("src", callback=location_callback, shell_complete=complete_location)
@click.argument("dst", callback=location_callback, shell_complete=complete_location)
@options("push")
def push(src: str, dst: str, retry_failed: bool, include: tuple[str, ...], exclude: tuple[str, ...], transfers: int,
         no_progress: bool, as_json: bool, debug: bool, **params: Any) -> None:
    """Deliver every object below the S3 prefix SRC that is not marked delivered yet to the folder DST.

    Delivered objects get a tag naming the ETag delivered; failures go to a
    retry queue in the journal (see `push --retry-failed`).
    """
    from s3ferry.jobs.push import PushSettings
    from s3ferry.jobs.push import push as run_push

    def job(options: TransferOptions, progress: ProgressListener | None, executor: Executor | None) -> Any:
        settings = PushSettings(retry_failed=retry_failed, filters=tuple(filter_order(include, exclude, sys.argv)),
                                transfers=transfers)
        return run_push(src, dst, options, settings, progress=progress, executor=executor)

    _run_job("push", job, params, no_progress, as_json, debug)


@main.command(epilog="""
\b
Examples:
  s3ferry uploads s3://raw/
  s3ferry uploads s3://raw/partner/ --json
""")
@click.argument("location")
@options("uploads")
def uploads(location: str, as_json: bool, debug: bool, **params: Any) -> None:
    """List unfinished multipart uploads under s3://bucket[/prefix]."""
    from s3ferry.core.units import human_bytes
    from s3ferry.core.urls import parse
    from s3ferry.operations.uploads import list_uploads

    setup_output(params, debug)

    def body() -> None:
        rows = run_async(list_uploads(parse(location), transfer_options(params)))
        for row in rows:
            if as_json:
                click.echo(json.dumps(row.as_dict()))
            else:
                started = row.initiated.strftime("%Y-%m-%d %H:%M") if row.initiated else "?"
                known = "journal" if row.journaled else "-"
                click.echo(f"{printable(row.key)}\t{row.upload_id}\t{started}\t{row.parts} parts"
                           f"\t{human_bytes(row.bytes)}\t{known}")
        if not as_json:
            say(f"{len(rows)} unfinished upload(s)", err=True)

    run_command(debug, body)


@main.command(epilog="""
\b
Examples:
  s3ferry cancel s3://raw/partner/big.csv.gz
  s3ferry cancel --prefix --older-than 7d s3://raw/
""")
@click.argument("location")
@options("cancel")
def cancel(location: str, prefix: bool, older_than: str | None, as_json: bool, debug: bool, **params: Any) -> None:
    """Abort unfinished multipart uploads of s3://bucket/key (and forget their journal entries).

    A location ending in / (or a bucket alone) names a folder: it is refused
    unless --prefix says to abort every upload below it, as `aws s3 rm` wants
    --recursive for a prefix (aborting loses the parts already sent).
    """
    from s3ferry.core.urls import parse
    from s3ferry.operations.uploads import cancel_uploads

    setup_output(params, debug)

    def body() -> None:
        age = parse_age(older_than) if older_than else None
        loc = parse(location)
        aborted = run_async(cancel_uploads(loc, transfer_options(params), prefix, age))
        for up in aborted:
            if as_json:
                click.echo(json.dumps({"bucket": loc.bucket, "key": up.key, "upload_id": up.upload_id}))
            else:
                say(f"aborted {up.upload_id} s3://{loc.bucket}/{printable(up.key)}")
        if not as_json:
            say(f"{len(aborted)} upload(s) aborted", err=True)

    run_command(debug, body)


@main.command()
@options("demo")
def demo(size: int, keep: bool) -> None:
    """Start embedded sshd and SeaweedFS, copy a random file through s3ferry, verify it, stop.

    \b
    Example:
      s3ferry demo --size 256MiB
    """
    from s3ferry.demo.walkthrough import run_demo

    run_command(False, lambda: run_demo(size, keep))
