"""``s3ferry doctor [SFTP_URL] [S3_URL]``: check the endpoints of a transfer, one line per check.

Registered on :data:`s3ferry.cli.main` when :mod:`s3ferry.cli` imports this module.
The checks themselves are in :mod:`s3ferry.operations.doctor`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from s3ferry.cli.app import main, setup_output
from s3ferry.cli.common import run_async, run_command, say
from s3ferry.cli.flags import options, transfer_options
from s3ferry.cli.settings import complete_location, location_callback
from s3ferry.core.errors import UsageError
from s3ferry.core.redaction import printable, scrub

EXAMPLES_DOCTOR = """
\b
Examples:
  s3ferry doctor sftp://etl@partner.example.com/out s3://raw/partner/
  s3ferry doctor --identity ~/.ssh/partner_ed25519 sftp://etl@partner.example.com:2222/out
  s3ferry doctor --endpoint-url https://minio.internal:9000 --write-test s3://raw/
  s3ferry doctor partner: s3://raw/          # a named endpoint from the config file
"""


@main.command(epilog=EXAMPLES_DOCTOR)
@click.argument("targets", nargs=-1, metavar="[SFTP_URL] [S3_URL]", callback=location_callback,
                shell_complete=complete_location)
@options("doctor")
def doctor(targets: tuple[str, ...], write_test: bool, as_json: bool, debug: bool, **params: Any) -> None:
    """Check an SFTP server and/or an S3 bucket step by step, with what to do about each failure.

    \b
    SFTP: DNS, TCP connect, SSH handshake, host key, login, the path.
    S3:   DNS, TCP connect, credentials, bucket, multipart upload permission
          (a test upload under the prefix, aborted at once), --write-test.

    Uses the same settings and trust rules as `cp` (~/.ssh/config, known_hosts,
    the AWS chain). Exits 0 when every check passed, else with the exit code of
    the first failure (2: something to fix in settings, 1: network or server).
    """
    from s3ferry.core.urls import parse
    from s3ferry.observe.logs import final_error
    from s3ferry.operations.doctor import Check, diagnose, exit_code

    setup_output(params, debug)

    def body() -> int:
        if not targets:
            raise UsageError("name what to check: an sftp:// URL, an s3:// URL or both "
                             "(e.g. s3ferry doctor sftp://me@host/out s3://bucket/prefix/)")
        locations = [parse(text) for text in targets]
        for loc in locations:
            if loc.scheme not in ("sftp", "s3"):
                raise UsageError(f"doctor checks sftp:// and s3:// locations, not {loc.scheme}:// ({loc})")
        options = transfer_options(params)  # exactly the options `cp` would build

        def show(check: Check) -> None:
            if as_json:
                click.echo(json.dumps(check.as_dict()))
            elif check.ok:
                say(printable(scrub(check.line())))  # -q: only the failed checks
            else:
                click.echo(printable(scrub(check.line())))

        checks = run_async(diagnose(locations, options, show, write_test=write_test))
        failed = [c for c in checks if not c.ok]
        if failed:
            names = ", ".join(f"{c.area} {c.name}" for c in failed)
            code = exit_code(checks)
            click.echo(final_error(f"error: {len(failed)} check{'s' if len(failed) > 1 else ''} failed: {names}",
                                   code), err=True)
            return code
        if not as_json:
            say(f"all {len(checks)} checks passed", err=True)
        return 0

    code = run_command(debug, body)
    if code:
        sys.exit(code)
