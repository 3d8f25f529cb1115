"""No secret and no raw terminal escape reaches stdout or stderr: at any verbosity, from any logger, in any
traceback (real SeaweedFS, sshd and aiohttp servers). The rules on their own: tests/unit/test_scrubbing.py."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.http_server import HttpServer
from support.helpers import MiB, key_forms, run_cli, shown, write_random

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
