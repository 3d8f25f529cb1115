"""No secret and no raw terminal escape on screen, without a server: the rules of s3ferry.core.redaction, the
log formatters, third-party records and uncaught exceptions, a name on the progress bar, JSON logs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from s3ferry.core.redaction import MASK, forms_of, json_printable, printable, register_secret, scrub
from s3ferry.demo import servers as testbed
from s3ferry.observe.logs import JsonFormatter, SafeFormatter
from support.helpers import MiB, key_forms, run_cli, shown, write_random

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


def test_json_logs_parse_and_hold_no_secret(tmp_path: Path) -> None:
    secret = "Zm9vYmFyc2VjcmV0"
    result = run_cli("cp", f"http://127.0.0.1:{testbed.free_port()}/x.bin?X-Amz-Signature={secret}",
                     str(tmp_path / "x.bin"), "--log-format", "json", "-vv", "--retries", "1")
    assert result.code == 1, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1]["level"] == "error" and lines[-1]["exit_code"] == 1
    assert all({"time", "level", "message"} <= set(line) for line in lines)
    assert secret not in result.stderr + result.stdout


def test_scrub_masks_secrets_in_any_url() -> None:
    text = "GET https://user:hunter2@h.example/x?X-Amz-Signature=abc&X-Amz-Credential=k failed; password=pw1"
    clean = scrub(text)
    assert "hunter2" not in clean and "abc" not in clean and "pw1" not in clean
    assert "https://user:***@h.example/x?***" in clean
