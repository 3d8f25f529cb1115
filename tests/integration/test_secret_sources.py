"""Secrets from a command (issue 19, item 5): an encrypted SSH key's passphrase and an FTP password come from
a command run by s3ferry, and the value never shows -- not in ``ps`` while the copy runs, not in the
``--debug`` output, not in the journal or anything else of the state dir. A failing command is one line
without its output, exit 2. Real sshd, SeaweedFS and pyftpdlib servers."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.ftp_server import FtpServer
from support.helpers import MiB, assert_one_line_error, object_sha256, run_cli, shown, write_random

S3FERRY = str(Path(sys.executable).with_name("s3ferry"))


def secret_script(folder: Path, secret: str, *, status: int = 0) -> Path:
    """An executable printing ``secret`` (to stdout and, as careless tools do, to stderr) and exiting
    with ``status``: the secret is in the script's text, never in any command line."""
    script = folder / "print-secret"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' '{secret}'\nprintf 'stderr %s\\n' '{secret}' >&2\n"
                      f"exit {status}\n")
    script.chmod(0o700)
    return script


def encrypted_copy(key: Path, folder: Path, passphrase: str) -> Path:
    """The test sshd's user key, passphrase-protected (the server trusts it as it trusts the plain one)."""
    copy = folder / "id_encrypted"
    shutil.copy(key, copy)
    copy.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-N", passphrase, "-f", str(copy)], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)
    return copy


class PsWatch:
    """Collects ``ps -eww -o args`` (full command lines) every few milliseconds in a thread, until stopped."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.seen.append(subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout)
            time.sleep(0.02)

    def __enter__(self) -> PsWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def state_files(state: Path) -> Iterator[bytes]:
    for path in state.rglob("*"):
        if path.is_file():
            yield path.read_bytes()


@pytest.mark.usefixtures("s3_env")
def test_ssh_key_passphrase_from_a_command_never_shows(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                        tmp_path: Path, bucket: str) -> None:
    passphrase = "Vault-Held-Passphrase-8231"
    key = encrypted_copy(ssh.user_key, tmp_path, passphrase)
    script = secret_script(tmp_path, passphrase)
    digest = write_random(ssh.root / "pp.bin", 24 * MiB)
    state = tmp_path / "state"
    args = [S3FERRY, "cp", "--debug", "-vv", "--no-progress", "--state-dir", str(state), "-i", str(key),
            "--known-hosts", str(ssh.known_hosts), "--identity-passphrase-command", str(script),
            "--bwlimit", "8M", ssh.url("pp.bin"), f"s3://{bucket}/pp.bin"]
    with PsWatch() as watch:
        proc = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert object_sha256(s3, bucket, "pp.bin") == digest
    assert any("s3ferry" in snapshot and "pp.bin" in snapshot for snapshot in watch.seen)  # it was watched
    for snapshot in watch.seen:
        assert passphrase not in snapshot
    assert passphrase not in proc.stdout + proc.stderr
    assert "DEBUG" in proc.stderr  # the debug output was there to leak it
    assert state.exists()
    for data in state_files(state):
        assert passphrase.encode() not in data


def test_without_the_passphrase_an_encrypted_key_is_one_line(ssh: testbed.SshServer, tmp_path: Path) -> None:
    key = encrypted_copy(ssh.user_key, tmp_path, "Some-Passphrase-11")
    (ssh.root / "np.bin").write_bytes(b"x" * 10)
    run = run_cli("cp", "-i", str(key), "--known-hosts", str(ssh.known_hosts), ssh.url("np.bin"),
                  str(tmp_path / "np.bin"))
    assert run.code == 2, run.stderr
    assert_one_line_error(run.stderr, "cannot load an SSH private key", "--identity-passphrase-")


def test_a_failing_command_is_one_line_without_its_output(ssh: testbed.SshServer, tmp_path: Path) -> None:
    secret = "Leaked-If-Shown-5523"
    key = encrypted_copy(ssh.user_key, tmp_path, secret)
    script = secret_script(tmp_path, secret, status=3)
    (ssh.root / "fail.bin").write_bytes(b"x" * 10)
    run = run_cli("cp", "--debug", "-i", str(key), "--known-hosts", str(ssh.known_hosts),
                  "--identity-passphrase-command", str(script), ssh.url("fail.bin"), str(tmp_path / "fail.bin"))
    assert run.code == 2, run.stderr
    assert secret not in shown(run)
    assert "print-secret failed (exit status 3)" in run.stderr
    quiet = run_cli("cp", "-i", str(key), "--known-hosts", str(ssh.known_hosts),
                    "--identity-passphrase-command", f"{script} --flag", ssh.url("fail.bin"),
                    str(tmp_path / "fail.bin"))
    assert quiet.code == 2
    assert_one_line_error(quiet.stderr, "the SSH key passphrase: print-secret failed (exit status 3)")
    missing = run_cli("cp", "--identity-passphrase-command", str(tmp_path / "no-such-tool"), ssh.url("fail.bin"),
                      str(tmp_path / "fail.bin"))
    assert missing.code == 2
    assert_one_line_error(missing.stderr, "cannot run no-such-tool")


@pytest.fixture(scope="module")
def ftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    base = tmp_path_factory.mktemp("ftp-secrets")
    server = FtpServer(base / "root", base / "work").start()
    yield server
    server.stop()


def test_ftp_password_from_a_command(ftp_server: FtpServer, tmp_path: Path) -> None:
    digest = write_random(ftp_server.root_dir / "pw.bin", 1 * MiB + 5)
    script = secret_script(tmp_path, ftp_server.password)
    run = run_cli("cp", "--debug", "--no-progress", "--password-command", str(script), ftp_server.url("pw.bin"),
                  str(tmp_path / "pw.bin"))
    assert run.code == 0, run.stderr
    assert ftp_server.password not in shown(run)
    assert hashlib.sha256((tmp_path / "pw.bin").read_bytes()).hexdigest() == digest
