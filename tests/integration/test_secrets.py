"""No secret and no raw terminal escape reaches stdout or stderr: at any verbosity, from any logger, in any
traceback (real SeaweedFS, sshd and aiohttp servers), plus the rules of s3ferry.redaction on their own."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3ferry.core.redaction import MASK, forms_of, json_printable, printable, register_secret, scrub
from s3ferry.demo import servers as testbed
from s3ferry.observe.logs import JsonFormatter, SafeFormatter
from servers.http_server import HttpServer
from support.helpers import MiB, Run, run_cli, write_random


def shown(run: Run) -> str:
    return run.stdout + run.stderr


def key_forms(key: bytes) -> list[str]:
    """How botocore and Python print an SSE-C key: base64 (header), base64 MD5 (header), repr, hex."""
    return [base64.b64encode(key).decode(), base64.b64encode(hashlib.md5(key).digest()).decode(),
            repr(key)[2:-1], key.hex()]


# --- SSE-C keys with --debug: botocore dumps every request's headers and parameters ---------------------------


@pytest.mark.usefixtures("s3_env")
def test_sse_c_keys_never_shown_in_debug_output(tmp_path: Path, bucket: str) -> None:
    key1, key2 = os.urandom(32), os.urandom(32)
    raw_file, b64_file = tmp_path / "k1", tmp_path / "k2.b64"
    raw_file.write_bytes(key1)
    b64_file.write_text(base64.b64encode(key2).decode() + "\n")  # the other form a key file may take
    src = tmp_path / "src.bin"
    write_random(src, 1 * MiB + 7)
    runs = {
        "upload": run_cli("cp", "--debug", "--no-progress", "--sse-c-key-file", str(raw_file), str(src),
                          f"s3://{bucket}/enc.bin"),
        "download": run_cli("cp", "--debug", "--no-progress", "--source-sse-c-key-file", str(raw_file),
                            f"s3://{bucket}/enc.bin", str(tmp_path / "back.bin")),
        "rekeying copy": run_cli("cp", "--debug", "--no-progress", "--source-sse-c-key-file", str(raw_file),
                                 "--sse-c-key-file", str(b64_file), f"s3://{bucket}/enc.bin",
                                 f"s3://{bucket}/rekeyed.bin"),
    }
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    for what, run in runs.items():
        assert run.code == 0, f"{what}: {run.stderr[-3000:]}"
        out = shown(run)
        # the debug dump is really there, headers named, values masked
        assert "DEBUG:botocore.endpoint:Sending http request" in out, what
        assert "x-amz-server-side-encryption-customer-key': b'***'" in out, what
        for form in key_forms(key1) + key_forms(key2) + [b64_file.read_text().strip()]:
            assert form not in out, f"{what}: {form!r} shown"
    assert "x-amz-copy-source-server-side-encryption-customer-key': b'***'" in runs["rekeying copy"].stderr


# --- a pre-signed URL in a --debug traceback ------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    base = tmp_path_factory.mktemp("http-secrets")
    server = HttpServer(base / "root", base / "work").start()
    yield server
    server.stop()


def test_presigned_url_query_not_in_debug_traceback(http_server: HttpServer, tmp_path: Path) -> None:
    # A server that redirects forever: aiohttp gives up with TooManyRedirects, whose text holds the
    # URL it was asked for, query included; --debug prints it as the cause of s3ferry's error.
    url = (http_server.url("__loop") + "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=CREDSECRET%2F20250101"
           "&X-Amz-Signature=SECRETSIG&X-Amz-Security-Token=TOKENSECRET")
    run = run_cli("cp", "--debug", "--no-progress", url, str(tmp_path / "out.bin"))
    assert run.code == 2, run.stderr
    assert "Traceback (most recent call last)" in run.stderr
    assert "TooManyRedirects" in run.stderr and "/__loop?***" in run.stderr  # the cause, its URL masked
    assert run.stderr.rstrip().endswith("too many redirects")
    for secret in ("SECRETSIG", "CREDSECRET", "TOKENSECRET"):
        assert secret not in shown(run)


# --- the SFTP password at the highest verbosity ---------------------------------------------------------------


def test_sftp_password_never_shown(ssh: testbed.SshServer, tmp_path: Path) -> None:
    password = "Wr0ng-S3cret-Pa55word"
    (ssh.root / "pw.bin").write_bytes(b"x" * 100)
    run = run_cli("cp", "--debug", "-vv", "--no-progress", "--known-hosts", str(ssh.known_hosts),
                  ssh.url("pw.bin"), str(tmp_path / "pw.bin"), env={"S3FERRY_SFTP_PASSWORD": password})
    assert run.code == 2, run.stderr  # wrong password: an AuthError
    assert "Trying password auth" in run.stderr  # asyncssh's debug lines are there, and the password was sent
    assert "authentication failed" in run.stderr
    assert password not in shown(run)


# --- third-party records, warnings and uncaught exceptions without --debug -----------------------------------

THIRD_PARTY = r"""
import asyncio, gc, logging, threading, warnings

from s3ferry.observe.logs import setup

setup()  # as every command without --debug
URL = "https://me:hunter2@example.invalid/x?X-Amz-Signature=SECRETSIG"


async def request() -> None:
    raise ConnectionError(f"GET {URL} failed \x1b[31mred")


async def main() -> None:
    task = asyncio.get_running_loop().create_task(request())
    await asyncio.sleep(0.01)  # it ran and failed; nobody awaits it
    del task
    gc.collect()  # asyncio logs "Task exception was never retrieved" (with the traceback) when it is collected


asyncio.run(main())
logging.getLogger("botocore.credentials").warning("refreshing from %s", URL)
logging.getLogger("urllib3.connectionpool").warning("retry %d of %s", URL)  # a library's bad arguments
warnings.warn(f"unverified HTTPS request to {URL}")


def worker() -> None:
    raise RuntimeError(f"thread saw {URL}")


thread = threading.Thread(target=worker, name="uploader")
thread.start()
thread.join()
raise SystemError(f"uncaught: {URL}")
"""


def test_third_party_records_and_uncaught_exceptions_are_scrubbed(tmp_path: Path) -> None:
    script = tmp_path / "third_party.py"
    script.write_text(THIRD_PARTY)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    err = proc.stderr
    assert proc.returncode == 1, err
    assert "ERROR:asyncio:Task exception was never retrieved" in err
    assert "ConnectionError: GET https://me:***@example.invalid/x?*** failed \\x1b[31mred" in err
    assert "WARNING:botocore.credentials:refreshing from https://me:***@example.invalid/x?***" in err
    assert "--- Logging error ---" in err and "arguments: ('https://me:***@example.invalid/x?***',)" in err
    assert "WARNING:py.warnings:" in err and "UserWarning: unverified HTTPS request" in err
    assert "Exception in thread uploader:" in err and "RuntimeError: thread saw" in err
    assert "SystemError: uncaught: https://me:***@" in err
    assert err.count("Traceback (most recent call last)") == 4  # the task, the logging error, the thread, main
    for secret in ("hunter2", "SECRETSIG", "\x1b"):
        assert secret not in err + proc.stdout


# --- names holding control characters -------------------------------------------------------------------------


@pytest.mark.usefixtures("s3_env")
def test_control_characters_in_names_are_shown_escaped(tmp_path: Path, bucket: str) -> None:
    tree = tmp_path / "in\x1b[31mRED\nfolder"
    tree.mkdir()
    (tree / "ok.txt").write_bytes(b"ok")
    (tree / "f\x1b[31mred\nline.txt").write_bytes(b"hello")
    (tree / "l\x1b]0;title\x07ink").symlink_to(tree / "ok.txt")  # skipped with a warning naming it
    up = run_cli("cp", "-r", "-v", str(tree), f"s3://{bucket}/t/")
    assert up.code == 0, up.stderr
    assert "in\\x1b[31mRED\\nfolder -> s3://" in up.stdout  # the summary line
    assert "skipping symbolic link" in up.stderr and "l\\x1b]0;title\\x07ink" in up.stderr
    # back down, with a folder in the way of the file: an error line naming it
    back = tmp_path / "back"
    (back / "f\x1b[31mred\nline.txt").mkdir(parents=True)
    down = run_cli("cp", "-r", f"s3://{bucket}/t/", str(back))
    assert down.code == 2, down.stderr
    assert "s3ferry: error: f\\x1b[31mred\\nline.txt: " in down.stderr
    for run in (up, down):
        for raw in ("\x1b", "\x07", "red\nline", "RED\nfolder"):
            assert raw not in shown(run)


def test_control_characters_in_a_name_on_the_progress_bar(tmp_path: Path) -> None:
    src = tmp_path / "a\x1b]0;title\x07b"
    write_random(src, 3 * MiB)
    # rich draws the bar (a terminal as far as it knows): its own escapes are fine, the name's are not
    run = run_cli("cp", str(src), str(tmp_path / "out.bin"), env={"TTY_COMPATIBLE": "1"})
    assert run.code == 0, run.stderr
    assert "\x1b[" in run.stderr  # the bar was drawn
    assert "a\\x1b]0;title\\x07b" in run.stderr
    assert "\x1b]" not in shown(run) and "\x07" not in shown(run)


# --- the rules themselves (no servers) ------------------------------------------------------------------------


@pytest.mark.parametrize("text, secret", [
    ("GET https://user:hunter2@h.example/x?a=1 failed", "hunter2"),
    ("URL('http://127.0.0.1:5/missing?X-Amz-Signature=SIG1')", "SIG1"),
    ("GET /missing?X-Amz-Credential=AKIA%2F2025&X-Amz-Signature=SIG2 HTTP/1.1", "SIG2"),
    ("GET /missing?X-Amz-Credential=AKIA%2F2025&X-Amz-Signature=SIG2 HTTP/1.1", "AKIA"),
    ("headers={'x-amz-server-side-encryption-customer-key': b'S3CR/KEY+b64='}", "S3CR/KEY+b64="),
    ("{'x-amz-copy-source-server-side-encryption-customer-key-MD5': 'Md5Sum=='}", "Md5Sum=="),
    ("{'SSECustomerKey': b'\\x8f\\'quoted\\x00', 'Bucket': 'b'}", "quoted"),
    ("CopySourceSSECustomerKey='k3y'", "k3y"),
    ("'Authorization': b'AWS4-HMAC-SHA256 Credential=AKID/s3, SignedHeaders=host, Signature=f00d'", "AKID"),
    ("'Authorization': b'AWS4-HMAC-SHA256 Credential=AKID/s3, SignedHeaders=host, Signature=f00d'", "f00d"),
    ("Authorization: Bearer tok3n-value and more", "tok3n"),
    ("{'X-Amz-Security-Token': b'FQoGZXIvYXdz'}", "FQoGZXIvYXdz"),
    ("<SecretAccessKey>wJalrXUtnFEMI</SecretAccessKey>", "wJalrXUtnFEMI"),
    ("aws_secret_access_key = wJalrXUtnFEMI", "wJalrXUtnFEMI"),
    ("password=pw1; token: tk2", "pw1"),
    ("password=pw1; token: tk2", "tk2"),
])
def test_scrub_masks_the_patterns(text: str, secret: str) -> None:
    clean = scrub(text)
    assert secret not in clean and MASK in clean


def test_scrub_keeps_what_is_not_secret() -> None:
    text = "{'x-amz-server-side-encryption-customer-algorithm': 'AES256', 'Bucket': 'b', 'Key': 'k'} --password-file /p"
    assert scrub(text) == text
    assert scrub("'SSECustomerKey': b'***'") == "'SSECustomerKey': b'***'"  # idempotent


def test_registered_values_are_masked_in_every_printed_form() -> None:
    key = bytes(range(200, 232))
    password = "Pa55'wo\x01rd"
    register_secret(key)
    register_secret(password)
    b64, md5 = key_forms(key)[:2]
    text = (f"{b64} {md5} {key!r} {repr(key)!r} {key.hex()} {key.decode('latin-1')} {password} "
            f"{ {'pw': password}!r} {b64.replace('/', '%2F').replace('+', '%2B').replace('=', '%3D')}")
    clean = scrub(text)
    for form in forms_of(key) | forms_of(password):
        assert form not in clean, form
    assert clean.count(MASK) >= 9
    register_secret("abc")  # too short to mask by value: "abc" in ordinary text stays
    assert scrub("abcdef") == "abcdef"


def test_printable_escapes_controls() -> None:
    assert printable("a\x1b[31mred\nline\t\r\x00\x7f\x9b\u202e\u2028z") == \
        "a\\x1b[31mred\\nline\\t\\r\\x00\\x7f\\x9b\\u202e\\u2028z"
    assert printable("Traceback\n  line \x1b[2J\n", keep_newlines=True) == "Traceback\n  line \\x1b[2J\n"
    assert printable("caf\u00e9 \u65e5\u672c \U0001f600 back\\slash") == "caf\u00e9 \u65e5\u672c \U0001f600 back\\slash"
    assert json_printable('{"m": "\x9b[31m \u202e"}') == '{"m": "\\u009b[31m \\u202e"}'


def _record(message: str, *args: object) -> logging.LogRecord:
    try:
        raise ValueError("in the exception: https://u:hunter2@h/x?X-Amz-Signature=SIG \x1b[2J")
    except ValueError:
        return logging.LogRecord("botocore", logging.ERROR, __file__, 1, message, args, sys.exc_info())


def test_formatters_scrub_and_escape_the_whole_record() -> None:
    text = SafeFormatter("%(levelname)s:%(name)s:%(message)s").format(_record("got %s", "name\x1b[31m\nx"))
    assert text.startswith("ERROR:botocore:got name\\x1b[31m\\nx\nTraceback (most recent call last):\n")
    assert "ValueError: in the exception: https://u:***@h/x?*** \\x1b[2J" in text
    assert "hunter2" not in text and "SIG" not in text and "\x1b" not in text
    line = JsonFormatter().format(_record("got %s", "name\x9b\nx"))
    assert "\n" not in line and "\x9b" not in line and "\\u009b" in line
    assert '"traceback": "Traceback' in line and "hunter2" not in line and "SIG" not in line
