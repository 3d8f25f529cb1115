"""Command line: ``s3ferry cp``, ``s3ferry demo``.

Every failure prints one line ``s3ferry: error: ...`` on stderr and exits with
the code of its error class (see :mod:`s3ferry.errors`); ``--debug`` adds
the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from s3ferry.cli.common import run_async, run_command, setup_logging
from s3ferry.cli.settings import complete_location, location_callback
from s3ferry.core.errors import UsageError
from s3ferry.core.options import (
    CHECKSUMS,
    FtpOptions,
    HttpOptions,
    S3Options,
    SftpOptions,
    TransferOptions,
    parse_size,
    split_pairs,
)
from s3ferry.core.redaction import printable

# Start-up time: every run (--help, --version, each TAB of shell completion) imports this module,
# so asyncio, logging, the engine, the backends and rich are imported inside the code that uses them.
if TYPE_CHECKING:
    from s3ferry.operations.tree import Filter, TreeResult

F = TypeVar("F", bound=Callable[..., Any])
DEFAULTS = TransferOptions()
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


class SizeType(click.ParamType):
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return parse_size(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


def output_options(fn: F) -> F:
    """-v/-q, --log-format, and the Prometheus exposition flags (every command that transfers)."""
    for deco in reversed([
        click.option("-v", "--verbose", count=True, help="More notes: -v retries and decisions, -vv debug."),
        click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr."),
        click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
                     help="stderr notes as readable lines or as JSON lines."),
        click.option("--metrics-port", type=int, metavar="PORT",
                     help="Serve Prometheus metrics on http://ADDR:PORT/metrics while the command runs."),
        click.option("--metrics-addr", default="127.0.0.1", show_default=True,
                     help="Address for --metrics-port (0.0.0.0 to let another host scrape)."),
        click.option("--pushgateway", metavar="URL", help="Push metrics to this Prometheus Pushgateway at the end."),
        click.option("--push-interval", type=float, default=30.0, show_default=True, metavar="SECONDS",
                     help="With --pushgateway: also push every SECONDS during the command (0: only at the end)."),
    ]):
        fn = deco(fn)
    return fn


def observing(params: dict[str, Any], debug: bool, flow: str, body: Callable[[], Any]) -> Any:
    """Set up logs and metrics from ``output_options``, then run ``body``; pushes metrics on the way out."""
    from contextlib import ExitStack

    from s3ferry.observe import metrics

    setup_logging(debug, params.pop("verbose", 0), params.pop("quiet", False), params.pop("log_format", "text"))
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


def state_options(fn: F) -> F:
    return click.option("--state-dir", type=click.Path(path_type=Path), envvar="S3FERRY_STATE_DIR",
                        help="Where the resume journal lives (default: ~/.local/state/s3ferry).")(fn)


def sftp_options(fn: F) -> F:
    for deco in reversed([
        click.option("--identity", "-i", multiple=True, type=click.Path(path_type=Path),
                     help="SSH private key file (like ssh -i); default: ~/.ssh/config, default keys, agent."),
        click.option("--known-hosts", type=click.Path(path_type=Path),
                     help="known_hosts file (default: UserKnownHostsFile or ~/.ssh/known_hosts)."),
        click.option("--host-key", metavar="SHA256:...", help="Pin the server's host key fingerprint."),
        click.option("--jump", "-J", metavar="[USER@]HOST[:PORT]",
                     help="Reach the SFTP server through this jump host (like ssh -J; ProxyJump in "
                          "~/.ssh/config works too)."),
        click.option("--password-file", type=click.Path(path_type=Path),
                     help="File holding the SFTP or FTP password (or set S3FERRY_SFTP_PASSWORD / "
                          "S3FERRY_FTP_PASSWORD)."),
    ]):
        fn = deco(fn)
    return fn


def s3_options(fn: F) -> F:
    for deco in reversed([
        click.option("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)."),
        click.option("--profile", help="AWS profile (default: AWS_PROFILE)."),
        click.option("--region", help="AWS region (default: AWS_REGION / config)."),
        click.option("--sign-payload/--no-sign-payload", default=None,
                     help="SHA-256 request bodies into the signature (default: only over plain http to a "
                          "non-loopback host)."),
    ]):
        fn = deco(fn)
    return fn


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """What ``click.version_option`` prints, with the version looked up only when asked for
    (importing importlib.metadata costs ~20 ms, a third of `s3ferry --help`)."""
    if not value or ctx.resilient_parsing:
        return
    from s3ferry.core.version import installed_version

    click.echo(f"s3ferry, version {installed_version()}", color=ctx.color)
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the version and exit.")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Stream large files between SFTP, local disks and S3: parallel, bounded memory, verified.

    Option defaults and named endpoints come from ~/.config/s3ferry/config.toml
    (or $S3FERRY_CONFIG); see the README.
    """
    from s3ferry.cli.settings import apply_to

    run_command(False, lambda: apply_to(ctx))  # [defaults] become every command's default_map


def transfer_options(p: dict[str, Any]) -> TransferOptions:
    """The typed options behind the transfer flags (click hands them over by name)."""
    ca = p.get("ca_bundle")
    options = TransferOptions(
        part_size=p["part_size"], read_streams=p["read_streams"], upload_streams=p["upload_streams"],
        max_memory=p["max_memory"], checksum=p["checksum"], retries=p["retries"],
        resume=p.get("resume_mode") or "auto", state_dir=p.get("state_dir"),
        sftp=SftpOptions(identity=p["identity"], known_hosts=p["known_hosts"], host_key=p["host_key"],
                         password_file=p["password_file"], jump=p.get("jump")),
        s3=S3Options(endpoint_url=p["endpoint_url"], profile=p["profile"], region=p["region"],
                     sign_payload=p["sign_payload"], sse_c_key_file=p.get("sse_c_key_file"),
                     source_sse_c_key_file=p.get("source_sse_c_key_file"), sse_kms_key_id=p.get("sse_kms_key_id"),
                     ca_file=ca, storage_class=p.get("storage_class"), content_type=p.get("content_type"),
                     acl=p.get("acl"), metadata=split_pairs(p.get("metadata", ()), "--metadata"),
                     tags=split_pairs(p.get("tag", ()), "--tag")),  # S3Options checks them (options.check_*)
        copy_part_size=p.get("copy_part_size") or DEFAULTS.copy_part_size,
        bwlimit=p.get("bwlimit"),
        overwrite=_overwrite_mode(p.get("no_clobber", False), p.get("overwrite", False)),
        dry_run=p.get("dry_run", False),
        require_verified=bool(p.get("require_verified", False)),
        ftp=FtpOptions(password_file=p["password_file"], ca_file=ca),
        http=HttpOptions(ca_file=ca),
    )
    options.s3.sse_c_key(), options.s3.sse_c_key(source=True)  # a bad key file fails before anything starts
    return options


def executor_options(fn: F) -> F:
    for deco in reversed([
        click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True,
                     help="Where the work runs: here, or on a Dask cluster (docs/distributed.md)."),
        click.option("--scheduler", envvar="S3FERRY_DASK_SCHEDULER", metavar="tcp://HOST:8786",
                     help="The Dask scheduler for --executor dask (or S3FERRY_DASK_SCHEDULER)."),
    ]):
        fn = deco(fn)
    return fn


def _overwrite_mode(no_clobber: bool, overwrite: bool) -> Any:
    if no_clobber and overwrite:
        raise UsageError("--no-clobber and --overwrite contradict each other")
    return "never" if no_clobber else "always" if overwrite else "changed"


DRY_RUN = click.option("--dry-run", is_flag=True,
                       help="Print what would be copied, skipped, archived, deleted or marked; change nothing.")


def existing_options(fn: F) -> F:
    """What cp does with a destination that already exists."""
    for deco in reversed([
        click.option("--no-clobber", is_flag=True, help="Never replace an existing destination file."),
        click.option("--overwrite", is_flag=True,
                     help="Always copy, even when the destination already matches (default: skip matching "
                          "files: same size, then same checksum where both sides have one, else same mtime)."),
    ]):
        fn = deco(fn)
    return fn


def object_options(fn: F) -> F:
    """The settings of the S3 objects s3ferry creates."""
    for deco in reversed([
        click.option("--storage-class", metavar="CLASS", help="S3 storage class (STANDARD_IA, GLACIER_IR, ...)."),
        click.option("--content-type", metavar="TYPE", help="Content-Type of the objects (default: from the name)."),
        click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="User metadata (repeatable)."),
        click.option("--tag", multiple=True, metavar="KEY=VALUE", help="Object tag (repeatable)."),
        click.option("--acl", metavar="ACL", help="Canned ACL (private, bucket-owner-full-control, ...)."),
    ]):
        fn = deco(fn)
    return fn


def engine_options(fn: F) -> F:
    """The flags that shape one file's transfer (shared by cp, pull and push)."""
    for deco in reversed([
        click.option("--part-size", type=SizeType(), default=DEFAULTS.part_size, show_default="8MiB",
                     help="Bytes per part (grown automatically to stay within 10,000 parts)."),
        click.option("--read-streams", type=int, default=DEFAULTS.read_streams, show_default=True,
                     help="Parallel reads from the source."),
        click.option("--upload-streams", type=int, default=DEFAULTS.upload_streams, show_default=True,
                     help="Parallel part uploads."),
        click.option("--max-memory", type=SizeType(), default=DEFAULTS.max_memory, show_default="32MiB",
                     help="Byte budget for payload buffers."),
        click.option("--checksum", type=click.Choice(CHECKSUMS), default=DEFAULTS.checksum, show_default=True,
                     help="Checksum verified per part by S3 and on the whole object."),
        click.option("--resume", "resume_mode", flag_value="resume",
                     help="Continue an earlier attempt; without a journal, adopt an upload found in S3 "
                          "(parts verified)."),
        click.option("--force", "resume_mode", flag_value="force", help="Discard any earlier attempt and start clean."),
        click.option("--no-resume", "resume_mode", flag_value="never",
                     help="Refuse to run if an earlier attempt exists; keep no journal, leave nothing behind on "
                          "failure."),
        click.option("--bwlimit", type=SizeType(), metavar="RATE",
                     help="Bytes per second for the whole process, shared by all streams (e.g. 50M = 50 MiB/s)."),
        click.option("--retries", type=int, default=DEFAULTS.retries, show_default=True,
                     help="Retries per part and per request for errors that may pass (5xx, SlowDown, lost "
                          "connection)."),
    ]):
        fn = deco(fn)
    return fn


def encryption_options(fn: F) -> F:
    for deco in reversed([
        click.option("--sse-c-key-file", type=click.Path(path_type=Path, dir_okay=False),
                     help="Encrypt the S3 destination with this customer key (SSE-C; 32 bytes or their base64)."),
        click.option("--source-sse-c-key-file", type=click.Path(path_type=Path, dir_okay=False),
                     help="The SSE-C key the S3 source is encrypted with."),
        click.option("--sse-kms-key-id", metavar="KEY", help="Encrypt the S3 destination with this KMS key (SSE-KMS)."),
    ]):
        fn = deco(fn)
    return fn


def filter_order(include: Sequence[str], exclude: Sequence[str], argv: Sequence[str]) -> list[Filter]:
    """--include/--exclude in command-line order (the last matching filter decides, as in the AWS CLI).

    click hands each option's values over separately, so the order between the
    two options is read back from argv; if that fails, excludes apply last.
    """
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
    if seen and seen[0].include:
        # An --include that comes first means "only these" (as in rclone); the AWS CLI would
        # copy everything, which is never what anyone who typed it meant.
        seen.insert(0, Filter("*", include=False))
    return seen


def tls_options(fn: F) -> F:
    return click.option("--ca-bundle", type=click.Path(path_type=Path, dir_okay=False),
                        help="CA certificates (PEM) to verify FTPS/HTTPS servers with, instead of the system's.")(fn)


@main.command(epilog=EXAMPLES_CP)
@click.argument("src", callback=location_callback, shell_complete=complete_location)
@click.argument("dst", callback=location_callback, shell_complete=complete_location)
@engine_options
@click.option("--recursive", "-r", is_flag=True, help="Copy every file below the SRC folder or prefix.")
@click.option("--include", multiple=True, metavar="GLOB", help="With -r: copy paths matching GLOB (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="With -r: skip paths matching GLOB (repeatable).")
@click.option("--transfers", type=int, default=4, show_default=True, help="With -r: files copied at a time.")
@click.option("--copy-part-size", type=SizeType(), default=DEFAULTS.copy_part_size, show_default="256MiB",
              help="S3 to S3: larger objects are copied by S3 in parts of this size.")
@executor_options
@state_options
@sftp_options
@tls_options
@encryption_options
@s3_options
@existing_options
@DRY_RUN
@object_options
@output_options
@click.option("--require-verified", is_flag=True,
              help="Refuse (exit 3) a copy that cannot be verified against an independent check, instead of "
                   "completing it and saying 'NOT verified'.")
@click.option("--no-progress", is_flag=True, help="No progress bar (also off when stderr is not a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
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
        if glob_of(parse(src)) is not None:  # 'sftp://host/out/*.csv.gz': the matching files of that one folder
            _copy_glob_cli(src, dst, options, transfers, progress, as_json, cluster)
            return
        _, dest = resolve(src, dst)
        kept = "interrupted" if options.resume == "never" else (
            f"interrupted: the upload is kept; run the same command again to resume, or `s3ferry cancel {dest}`")
        result = run_async(_with_cluster(cluster, lambda ex: acopy(src, dst, options, progress=progress,
                                                                   executor=ex)), kept)
        if as_json:
            data = result.as_dict()
            if cluster is not None:
                data["workers"] = sorted(cluster.workers_used)
            click.echo(json.dumps(data))
        else:
            click.echo(summary_line(result))

    observing(params, debug, "cp", body)


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

    result = run_async(_with_cluster(cluster, lambda ex: acopy_tree(src, dst, options, filters=filters,
                                                                    transfers=transfers, progress=progress,
                                                                    executor=ex)),
                       "interrupted: run the same command again to copy what is left")
    _print_tree_result(result, as_json, cluster)


def _print_tree_result(result: TreeResult, as_json: bool, cluster: Any) -> None:
    from s3ferry.cli.progress import tree_summary_line

    data = result.as_dict()
    if cluster is not None:
        data["workers"] = sorted(cluster.workers_used)
    click.echo(json.dumps(data) if as_json else tree_summary_line(result))
    if result.failures:
        sys.exit(result.exit_code)


def _copy_glob_cli(src: str, dst: str, options: TransferOptions, transfers: int, progress: Any, as_json: bool,
                   cluster: Any) -> None:
    """A pattern in the source: a tree summary when the matches went into a folder, else one file's line."""
    from s3ferry.cli.progress import summary_line
    from s3ferry.operations.copy import acopy_glob
    from s3ferry.operations.tree import TreeResult

    result = run_async(_with_cluster(cluster, lambda ex: acopy_glob(src, dst, options, transfers=transfers,
                                                                    progress=progress, executor=ex)),
                       "interrupted: run the same command again to copy what is left")
    if isinstance(result, TreeResult):
        _print_tree_result(result, as_json, cluster)
        return
    data = result.as_dict()
    if cluster is not None:
        data["workers"] = sorted(cluster.workers_used)
    click.echo(json.dumps(data) if as_json else summary_line(result))


def _job_output(report: Any, as_json: bool) -> None:
    click.echo(json.dumps(report.as_dict()) if as_json else report.summary())
    if report.failed:
        sys.exit(report.exit_code)


class AgeType(click.ParamType):
    name = "age"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from s3ferry.operations.uploads import parse_age

        try:
            return float(value) if isinstance(value, (int, float)) else parse_age(value).total_seconds()
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


def job_options(fn: F) -> F:
    for deco in reversed([
        click.option("--include", multiple=True, metavar="GLOB", help="Only paths matching GLOB (repeatable)."),
        click.option("--exclude", multiple=True, metavar="GLOB", help="Skip paths matching GLOB (repeatable)."),
        click.option("--transfers", type=int, default=4, show_default=True, help="Files copied at a time."),
        engine_options, executor_options, state_options, sftp_options, tls_options, encryption_options, s3_options,
        DRY_RUN, output_options,
        click.option("--require-verified/--no-require-verified", default=True, show_default=True,
                     help="Refuse (exit 3, and retry later) a file that cannot be verified against an independent "
                          "check; --no-require-verified delivers it saying 'NOT verified'."),
        click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object."),
        click.option("--debug", is_flag=True, help="Show tracebacks and debug logs."),
    ]):
        fn = deco(fn)
    return fn


@main.command(epilog="""
\b
Examples:
  s3ferry pull sftp://partner/out s3://raw/partner/ --settle 60s --retention-days 30
  s3ferry pull --include '*.csv.gz' --archive .sent sftp://partner/out s3://raw/partner/
""")
@click.argument("src", callback=location_callback, shell_complete=complete_location)
@click.argument("dst", callback=location_callback, shell_complete=complete_location)
@click.option("--archive", default=".done", show_default=True, metavar="NAME",
              help="Folder beside each pulled file that receives it once it is verified in S3.")
@click.option("--settle", type=AgeType(), default="0s", show_default=True,
              help="Leave files modified more recently than this (still being written).")
@click.option("--retention-days", type=float, default=0, show_default=True,
              help="Delete archived files older than this many days (0: keep them).")
@object_options
@job_options
def pull(src: str, dst: str, archive: str, settle: float, retention_days: float, include: tuple[str, ...],
         exclude: tuple[str, ...], transfers: int, as_json: bool, debug: bool, **params: Any) -> None:
    """Copy every file below the SRC folder into S3, then move it into its .done archive.

    Run it from cron or `s3ferry run`: files already archived are never pulled
    again, a file still being written is left for the next run, and a crash
    between upload and archive is healed without sending the file again.
    """
    from s3ferry.jobs.pull import PullSettings
    from s3ferry.jobs.pull import pull as run_pull

    def body() -> None:
        settings = PullSettings(archive=archive, settle=settle, retention_days=retention_days,
                                filters=tuple(filter_order(include, exclude, sys.argv)), transfers=transfers)
        options = transfer_options({**params, "copy_part_size": None})
        cluster = _cluster(params["executor"], params["scheduler"])
        _job_output(run_async(_with_cluster(cluster, lambda ex: run_pull(src, dst, options, settings,
                                                                          executor=ex))), as_json)

    observing(params, debug, "pull", body)


@main.command(epilog="""
\b
Examples:
  s3ferry push s3://outbox/partner/ sftp://partner/inbox
  s3ferry push --retry-failed s3://outbox/partner/ sftp://partner/inbox
""")
@click.argument("src", callback=location_callback, shell_complete=complete_location)
@click.argument("dst", callback=location_callback, shell_complete=complete_location)
@click.option("--retry-failed", is_flag=True,
              help="Work through the retry queue of failed deliveries (skipping objects delivered or deleted since).")
@job_options
def push(src: str, dst: str, retry_failed: bool, include: tuple[str, ...], exclude: tuple[str, ...], transfers: int,
         as_json: bool, debug: bool, **params: Any) -> None:
    """Deliver every object below the S3 prefix SRC that is not marked delivered yet to the folder DST.

    Delivered objects get a tag naming the ETag delivered; failures go to a
    retry queue in the journal (see `push --retry-failed`).
    """
    from s3ferry.jobs.push import PushSettings
    from s3ferry.jobs.push import push as run_push

    def body() -> None:
        settings = PushSettings(retry_failed=retry_failed, filters=tuple(filter_order(include, exclude, sys.argv)),
                                transfers=transfers)
        options = transfer_options({**params, "copy_part_size": None})
        cluster = _cluster(params["executor"], params["scheduler"])
        _job_output(run_async(_with_cluster(cluster, lambda ex: run_push(src, dst, options, settings,
                                                                          executor=ex))), as_json)

    observing(params, debug, "push", body)


@main.command(epilog="""
\b
Examples:
  s3ferry uploads s3://raw/
  s3ferry uploads s3://raw/partner/ --json
""")
@click.argument("location")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per upload.")
@state_options
@s3_options
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def uploads(location: str, as_json: bool, state_dir: Path | None, endpoint_url: str | None, profile: str | None,
            region: str | None, sign_payload: bool | None, debug: bool) -> None:
    """List unfinished multipart uploads under s3://bucket[/prefix]."""
    from s3ferry.core.units import human_bytes
    from s3ferry.core.urls import parse
    from s3ferry.operations.uploads import list_uploads

    setup_logging(debug)

    def body() -> None:
        options = TransferOptions(state_dir=state_dir,
                                  s3=S3Options(endpoint_url=endpoint_url, profile=profile, region=region))
        rows = run_async(list_uploads(parse(location), options))
        for row in rows:
            if as_json:
                click.echo(json.dumps(row.as_dict()))
            else:
                started = row.initiated.strftime("%Y-%m-%d %H:%M") if row.initiated else "?"
                known = "journal" if row.journaled else "-"
                click.echo(f"{printable(row.key)}\t{row.upload_id}\t{started}\t{row.parts} parts"
                           f"\t{human_bytes(row.bytes)}\t{known}")
        if not as_json:
            click.echo(f"{len(rows)} unfinished upload(s)", err=True)

    run_command(debug, body)


@main.command(epilog="""
\b
Examples:
  s3ferry cancel s3://raw/partner/big.csv.gz
  s3ferry cancel --prefix --older-than 7d s3://raw/
""")
@click.argument("location")
@click.option("--prefix", is_flag=True, help="Every upload whose key starts with the given key.")
@click.option("--older-than", metavar="AGE", help="Only uploads started longer ago than AGE (7d, 12h, 30m).")
@state_options
@s3_options
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def cancel(location: str, prefix: bool, older_than: str | None, state_dir: Path | None, endpoint_url: str | None,
           profile: str | None, region: str | None, sign_payload: bool | None, debug: bool) -> None:
    """Abort unfinished multipart uploads of s3://bucket/key (and forget their journal entries)."""
    from s3ferry.core.urls import parse
    from s3ferry.operations.uploads import cancel_uploads, parse_age

    setup_logging(debug)

    def body() -> None:
        options = TransferOptions(state_dir=state_dir,
                                  s3=S3Options(endpoint_url=endpoint_url, profile=profile, region=region))
        age = parse_age(older_than) if older_than else None
        loc = parse(location)
        aborted = run_async(cancel_uploads(loc, options, prefix, age))
        for up in aborted:
            click.echo(f"aborted {up.upload_id} s3://{loc.bucket}/{printable(up.key)}")
        click.echo(f"{len(aborted)} upload(s) aborted", err=True)

    run_command(debug, body)


@main.command()
@click.option("--size", type=SizeType(), default="1GiB", show_default=True, help="Size of the random demo file.")
@click.option("--keep", is_flag=True, help="Leave the servers' folder in place (its path is printed).")
def demo(size: int, keep: bool) -> None:
    """Start embedded sshd and SeaweedFS, copy a random file through s3ferry, verify it, stop.

    \b
    Example:
      s3ferry demo --size 256MiB
    """
    from s3ferry.demo.walkthrough import run_demo

    run_command(False, lambda: run_demo(size, keep))



