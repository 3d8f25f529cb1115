"""Resume into file destinations (local files, SFTP): the temporary file is the "upload", the journal its parts.

Real sshd as the source (or, for the SFTP destination, as the destination). A run killed or
cut mid-way leaves ``.NAME.s3ferry-XXXXXXXX.tmp`` and its journal; running the
same command again writes only the parts the journal holds no record of,
after reading the recorded ones back from the file and checking them.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.proxy import CuttingProxy
from support.helpers import MiB, journaled_parts, partials, run_cli, sftp_flags, write_random

SIZE = 96 * MiB
PART = 8 * MiB  # a file destination's part size at the defaults (max_memory / 4)


@pytest.fixture(scope="module")
def source(ssh: testbed.SshServer) -> tuple[Path, str]:
    path = ssh.root / "download-resume.bin"
    return path, write_random(path, SIZE)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kill_after_journaled_parts(args: list[str], state: Path, parts: int = 2) -> None:
    # --bwlimit: slow enough that the journal (flushed every 5 s) records parts before the kill
    proc = subprocess.Popen([str(Path(sys.executable).with_name("s3ferry")), *args, "--bwlimit", "12M"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    deadline = time.monotonic() + 60
    while journaled_parts(state) < parts:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no part was journaled in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_sigkill_mid_download_then_rerun_writes_only_the_rest(tmp_path: Path, ssh: testbed.SshServer,
                                                              source: tuple[Path, str], state: Path) -> None:
    src, digest = source
    out = tmp_path / "out"
    args = ["cp", ssh.url(src), f"{out}/", *sftp_flags(ssh), "--json", "--no-progress"]
    kill_after_journaled_parts(args, state)
    assert len(partials(out)) == 1 and not (out / src.name).exists()
    recorded = journaled_parts(state)

    result = run_cli(*args)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["resumed_parts"] >= recorded >= 2
    assert report["uploaded_bytes"] == SIZE - report["resumed_parts"] * PART  # only the rest was written
    assert "resuming" in result.stderr
    assert sha256_of(out / src.name) == digest
    assert partials(out) == []


def test_sigkill_mid_download_from_s3_then_rerun_checks_the_whole_object(tmp_path: Path, s3: testbed.SeaweedServer,
                                                                        bucket: str, s3_env: dict[str, str],
                                                                        state: Path) -> None:
    """An S3 source has a checksum of its own, recomputed from the bytes written: on resume, the parts an
    earlier attempt stored count too (a CRC of the new parts alone is not the object's)."""
    body = os.urandom(4 * 5 * MiB)
    s3.client().put_object(Bucket=bucket, Key="src.bin", Body=body, ChecksumAlgorithm="CRC32C")
    out = tmp_path / "out"
    args = ["cp", f"s3://{bucket}/src.bin", f"{out}/", "--part-size", "5M", "--json", "--no-progress"]
    kill_after_journaled_parts(args, state, parts=1)
    assert len(partials(out)) == 1

    result = run_cli(*args)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["resumed_parts"] >= 1 and report["verified"], report
    assert sha256_of(out / "src.bin") == hashlib.sha256(body).hexdigest()
    assert partials(out) == []


def cut_once(ssh: testbed.SshServer, src: Path, out: Path, after: int) -> tuple[list[str], str]:
    """A first run through a proxy that cuts after ``after`` bytes; returns the arguments and its stderr."""
    with CuttingProxy(ssh.port, cut_after=after) as proxy:
        url = f"sftp://{ssh.user}@127.0.0.1:{proxy.port}{src}"
        args = ["cp", url, f"{out}/", "-i", str(ssh.user_key), "--host-key", ssh.host_fingerprint,
                "--no-progress", "--json"]
        first = run_cli(*args, "--retries", "0")
    assert first.code == 1, first.stderr
    return args, first.stderr


def again(ssh: testbed.SshServer, args: list[str]) -> tuple[int, dict[str, object], str]:
    """The same command (same URL: a proxy on the same port that no longer cuts)."""
    port = int(args[1].split(":")[2].split("/")[0])
    with CuttingProxy(ssh.port, port=port):
        result = run_cli(*args)
    return result.code, json.loads(result.stdout) if result.code == 0 else {}, result.stderr


def test_cut_connection_keeps_the_partial_file_and_says_so(tmp_path: Path, ssh: testbed.SshServer,
                                                           source: tuple[Path, str], state: Path) -> None:
    src, digest = source
    out = tmp_path / "out"
    args, stderr = cut_once(ssh, src, out, 40 * MiB)
    kept = partials(out)
    assert len(kept) == 1 and f"the partial file {kept[0]} is kept" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1
    code, report, stderr = again(ssh, args)
    assert code == 0, stderr
    assert report["resumed_parts"] >= 1 and "resuming" in stderr
    assert sha256_of(out / src.name) == digest
    assert partials(out) == []


def test_a_partial_file_changed_since_is_not_trusted(tmp_path: Path, ssh: testbed.SshServer,
                                                     source: tuple[Path, str], state: Path) -> None:
    src, digest = source
    out = tmp_path / "out"
    args, _ = cut_once(ssh, src, out, 40 * MiB)
    (kept,) = partials(out)
    with open(kept, "r+b") as fh:  # one byte of the first part, which the journal holds
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    code, report, stderr = again(ssh, args)
    assert code == 0, stderr
    assert "disagree with the journal" in stderr and "starting over" in stderr
    assert report["resumed_parts"] == 0
    assert sha256_of(out / src.name) == digest
    assert partials(out) == []


def test_source_changed_between_attempts_starts_over(tmp_path: Path, ssh: testbed.SshServer, state: Path) -> None:
    src = ssh.root / "changes-between.bin"
    write_random(src, 48 * MiB)
    out = tmp_path / "out"
    args, _ = cut_once(ssh, src, out, 24 * MiB)
    assert len(partials(out)) == 1
    digest = write_random(src, 48 * MiB)  # same size, new bytes
    later = time.time() + 10
    os.utime(src, (later, later))  # and a new mtime (whole seconds over SFTP: the run may take less than one)
    code, report, stderr = again(ssh, args)
    assert code == 0, stderr
    assert "source changed since the earlier attempt" in stderr
    assert report["resumed_parts"] == 0
    assert sha256_of(out / src.name) == digest
    assert partials(out) == []
    os.remove(src)


def test_sigkill_mid_copy_to_sftp_then_rerun_writes_only_the_rest(tmp_path: Path, ssh: testbed.SshServer,
                                                                   state: Path) -> None:
    src = tmp_path / "to-partner.bin"
    digest = write_random(src, SIZE)
    inbox = ssh.root / "resume-inbox"
    args = ["cp", str(src), ssh.url(inbox) + "/", *sftp_flags(ssh), "--json", "--no-progress"]
    kill_after_journaled_parts(args, state)
    assert len(partials(inbox)) == 1 and not (inbox / src.name).exists()

    result = run_cli(*args)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["resumed_parts"] >= 2 and "resuming" in result.stderr
    assert report["uploaded_bytes"] == SIZE - report["resumed_parts"] * PART
    assert sha256_of(inbox / src.name) == digest
    assert partials(inbox) == []


def test_cut_sftp_destination_keeps_the_partial_file_and_names_it(tmp_path: Path, ssh: testbed.SshServer,
                                                                  state: Path) -> None:
    src = tmp_path / "cut.bin"
    digest = write_random(src, 64 * MiB)
    inbox = ssh.root / "cut-inbox"
    # 4 parts of 8 MiB are written at a time: after 48 MiB sent, at least two parts were sent whole
    with CuttingProxy(ssh.port, cut_after=48 * MiB, upstream=True) as proxy:
        url = f"sftp://{ssh.user}@127.0.0.1:{proxy.port}{inbox}/"
        args = ["cp", str(src), url, "-i", str(ssh.user_key), "--host-key", ssh.host_fingerprint, "--no-progress",
                "--json"]
        first = run_cli(*args, "--retries", "0")
    assert first.code == 1, first.stderr
    (kept,) = partials(inbox)
    assert f"the partial file sftp://{ssh.user}@127.0.0.1:{proxy.port}{kept} is kept" in first.stderr
    with CuttingProxy(ssh.port, port=proxy.port):
        second = run_cli(*args)
    assert second.code == 0, second.stderr
    assert json.loads(second.stdout)["resumed_parts"] >= 1, (first.stderr, second.stderr)
    assert sha256_of(inbox / src.name) == digest
    assert partials(inbox) == []


def test_a_journal_naming_a_foreign_file_is_refused_and_force_recovers(tmp_path: Path, ssh: testbed.SshServer,
                                                                        source: tuple[Path, str],
                                                                        state: Path) -> None:
    src, digest = source
    out = tmp_path / "out"
    bait = tmp_path / "precious.txt"
    bait.write_text("not s3ferry's")
    args, _ = cut_once(ssh, src, out, 40 * MiB)
    with sqlite3.connect(state / "journal.sqlite3") as db:  # as a tampered or corrupt journal would read
        db.execute("UPDATE transfers SET upload_id = ?", ("../precious.txt",))
    code, _, stderr = again(ssh, args)
    assert code == 2 and "cannot be" in stderr and "--force" in stderr, stderr
    code, report, stderr = again(ssh, [*args, "--force"])
    assert code == 0, stderr
    assert report["resumed_parts"] == 0
    assert sha256_of(out / src.name) == digest
    assert bait.read_text() == "not s3ferry's"
