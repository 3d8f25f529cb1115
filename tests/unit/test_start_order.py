"""What a command imports before it starts connecting: the S3 stack (aiobotocore, ~0.4 s of imports) is
imported in a thread beside the SSH set-up (backends.open_ends), so reading the command line must not
import it first. `pull`'s `--settle` default (an age) did: its parser lived beside the S3 uploads code, and
every pull started connecting 0.17 s late (measured: the SSH set-up began at 0.48 s against 0.30 s for
`cp -r`). A fresh interpreter per check: imports are per process."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("botocore", "aiobotocore", "aiohttp", "asyncssh")


def _imported_by_parsing(command: str, args: list[str]) -> list[str]:
    code = (
        "import sys\n"
        "from s3ferry.cli.app import main\n"
        f"cmd = main.get_command(None, {command!r})\n"
        f"cmd.make_context({command!r}, {args!r})\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.parametrize("command,args", [
    ("pull", ["sftp://me@host/out/", "s3://bucket/in/"]),
    ("pull", ["sftp://me@host/out/", "s3://bucket/in/", "--settle", "5m", "--retention-days", "30"]),
    ("push", ["s3://bucket/out/", "sftp://me@host/in/"]),
    ("cp", ["-r", "sftp://me@host/out/", "s3://bucket/in/"]),
])
def test_reading_the_command_line_imports_no_client(command: str, args: list[str]) -> None:
    assert _imported_by_parsing(command, args) == []


_OPEN_TOGETHER = """
import threading
from s3ferry.backends import open_sink, open_source
from s3ferry.core.options import TransferOptions
from s3ferry.core.urls import parse
start, errors = threading.Barrier(4), []
def open_one(n):
    start.wait()
    try:
        (open_sink if n % 2 else open_source)(parse("s3://bucket/key"), TransferOptions())
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=open_one, args=(n,)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(errors[0] if errors else "ok")
"""


def test_ends_opened_in_threads_at_once_import_their_backend_once() -> None:
    """Two flows of `s3ferry run` open their S3 ends in threads (beside their SSH set-ups) at the same moment:
    the first import of the S3 stack, done by two threads at once, met a half-imported aiohttp
    (ImportError or KeyError: 'aiohttp'; every time here without the lock). A fresh interpreter: nothing
    imported yet."""
    out = subprocess.run([sys.executable, "-c", _OPEN_TOGETHER], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok", out.stdout + out.stderr
