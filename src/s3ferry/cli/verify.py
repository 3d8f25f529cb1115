"""``s3ferry verify SRC DST``: compare a copy with its source without copying, one line per file.

Registered on :data:`s3ferry.cli.main` when :mod:`s3ferry.cli` imports this module. The comparison
itself is :mod:`s3ferry.operations.verify`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from s3ferry.cli.app import filter_order, main, setup_output
from s3ferry.cli.common import run_async, run_command, say
from s3ferry.cli.flags import options, transfer_options
from s3ferry.cli.settings import complete_location, location_callback
from s3ferry.core.errors import UsageError
from s3ferry.core.redaction import printable

EXAMPLES_VERIFY = """
\b
Examples:
  s3ferry verify sftp://me@partner.example.com/out/big.bin s3://raw/partner/big.bin
  s3ferry verify -r --exclude '*.tmp' s3://outbox/partner/ sftp://partner.example.com/inbox/
  s3ferry verify -r --size-only ./drop/ s3://raw/drop/
  s3ferry verify -r --json s3://raw/partner/ ./mirror/ | jq 'select(.status != "identical")'
"""


@main.command(epilog=EXAMPLES_VERIFY)
@click.argument("src", callback=location_callback, shell_complete=complete_location)
@click.argument("dst", callback=location_callback, shell_complete=complete_location)
@options("verify")
def verify(src: str, dst: str, recursive: bool, include: tuple[str, ...], exclude: tuple[str, ...], transfers: int,
           size_only: bool, as_json: bool, debug: bool, **params: Any) -> None:
    """Check, without copying, that DST holds SRC's bytes (a DST ending in / gets SRC's name); with -r, a tree.

    Each file is compared with the strongest check both sides support: checksums
    (or MD5 ETags) both S3 objects store, else the one S3 stores recomputed from
    the other side's bytes, else a CRC64NVME of both sides' bytes -- streamed with
    parallel ranged reads, nothing written. Each line says what was compared.

    \b
    Exit codes: 0 every file identical; 1 a file differs, is missing on one side
    or could not be read; 2 a usage error (or a name refused); 3 with
    --require-verified, a file could only be compared by size.
    """
    from s3ferry.operations.verify import verify as run_verify

    setup_output(params, debug)

    def body() -> int:
        if (include or exclude) and not recursive:
            raise UsageError("--include/--exclude select files of a folder: add -r")
        opts = transfer_options(params)
        filters = filter_order(include, exclude, sys.argv) if recursive else []
        result = run_async(run_verify(src, dst, opts, recursive=recursive, filters=filters, transfers=transfers,
                                      size_only=size_only))
        for found in result.files:
            if as_json:
                click.echo(json.dumps(found.as_dict()))
            elif found.status == "identical":
                say(printable(found.line()))  # -q: only what is not identical
            else:
                click.echo(printable(found.line()))
        if as_json and recursive:
            click.echo(json.dumps(result.as_dict()))
        elif not as_json:
            say(result.summary(), err=True)
        return int(result.exit_code)

    code = run_command(debug, body)
    if code:
        sys.exit(code)
