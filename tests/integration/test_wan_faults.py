"""The loopback fault tests again, with the SFTP server 50 ms away (a delay line at 125 MB/s in front of sshd).

A WAN changes the timing the recovery paths see: many bytes in flight when a
run is killed or its connection cut, handshakes that take round trips, retries
that reconnect across the line. Each fault runs both ways where its loopback
test does (sftp -> s3 and s3 -> sftp): SIGKILL mid-transfer then a re-run that
sends only the missing parts (``test_resume.py``, ``test_download_resume.py``);
the SFTP connection cut mid-transfer, by a :class:`CuttingProxy` between the
line and sshd (``test_failures.py``); S3 answering 503 SlowDown while the SFTP
side is across the line. Files are a few parts of 5 MiB, to stay fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.proxy import CuttingProxy
from servers.s3proxy import S3FaultProxy
from support.helpers import (
    MiB,
    assert_one_line_error,
    journaled_parts,
    object_exists,
    object_sha256,
    partials,
    run_cli,
    start,
    stop_after_journaled_parts,
    uploads_for,
    write_random,
)
from support.resume import kill_at, rerun, stored_bytes
from support.wan import WanSftp, sftp_across_wan

PART = 5 * MiB  # the smallest S3 allows: several parts in a small file
SIZE = 5 * PART  # a whole number of parts: the bytes a resumed run writes are SIZE - resumed parts x PART
PARTS_FLAGS = ["--part-size", "5M", "--no-progress", "--json"]
SLOW = ["--bwlimit", "16M"]  # the run to be killed: slow enough that the kill lands mid-way


@pytest.fixture
def wan(ssh: testbed.SshServer, tmp_path: Path) -> Iterator[WanSftp]:
    with sftp_across_wan(ssh, tmp_path) as line:
        yield line


@pytest.fixture
def remote_source(ssh: testbed.SshServer, bucket: str) -> tuple[Path, str]:
    """A file of SIZE on the SFTP server (named after the test's bucket: no two tests share it)."""
    path = ssh.root / f"wan-faults-{bucket}.bin"
    return path, write_random(path, SIZE)


@pytest.fixture
def s3_source(s3: testbed.SeaweedServer, bucket: str) -> tuple[str, str]:
    """An object of SIZE in S3, with a CRC32C of its own (as s3ferry checks a download against): URL, SHA-256."""
    body = os.urandom(SIZE)
    s3.client().put_object(Bucket=bucket, Key="source.bin", Body=body, ChecksumAlgorithm="CRC32C")
    return f"s3://{bucket}/source.bin", hashlib.sha256(body).hexdigest()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- SIGKILL mid-transfer, then the same command again ---------------------------------------------------------


@pytest.mark.usefixtures("s3_env", "state")
def test_sftp_to_s3_sigkill_then_rerun_sends_only_what_is_missing(
        s3: testbed.SeaweedServer, bucket: str, wan: WanSftp, remote_source: tuple[Path, str]) -> None:
    src, expected = remote_source
    args = ["cp", wan.url(src), f"s3://{bucket}/big.bin", *wan.flags, *PARTS_FLAGS]
    kill_at(s3, [*args, *SLOW], lambda p: p.count("UploadPart", 200) >= 2)
    already = stored_bytes(s3, bucket, "big.bin")
    assert 2 * PART <= already < SIZE
    report, sent, stderr = rerun(s3, args)
    assert sent == SIZE - already, f"re-sent {sent} bytes, {SIZE - already} were missing"
    assert report["uploaded_bytes"] == sent
    assert report["resumed_parts"] > 0 and "resuming upload" in stderr, stderr
    assert object_sha256(s3, bucket, "big.bin") == expected
    assert uploads_for(s3, bucket) == []


@pytest.mark.usefixtures("s3_env")
def test_s3_to_sftp_sigkill_then_rerun_writes_only_the_rest(ssh: testbed.SshServer, bucket: str, wan: WanSftp,
                                                             s3_source: tuple[str, str], state: Path) -> None:
    url, digest = s3_source
    inbox = ssh.root / f"wan-inbox-{bucket}"
    args = ["cp", url, wan.url(inbox) + "/", *wan.flags, *PARTS_FLAGS]
    stop_after_journaled_parts(start(*args, *SLOW), state, signal.SIGKILL, parts=1)
    assert len(partials(inbox)) == 1 and not (inbox / "source.bin").exists()
    recorded = journaled_parts(state)

    result = run_cli(*args)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["resumed_parts"] >= recorded >= 1 and "resuming" in result.stderr
    assert report["uploaded_bytes"] == SIZE - report["resumed_parts"] * PART  # only the rest was written
    assert sha256_of(inbox / "source.bin") == digest
    assert partials(inbox) == []


# -- the SFTP connection cut mid-transfer (between the line and sshd) ------------------------------------------


@pytest.mark.usefixtures("s3_env", "state")
def test_sftp_to_s3_connection_cut_every_few_MiB_is_retried(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                            bucket: str, tmp_path: Path,
                                                            remote_source: tuple[Path, str]) -> None:
    src, expected = remote_source
    # Every 12 MiB (25 must flow: two cuts at least). A cut restarts the parts being read, and across 50 ms
    # each read stream has ~7 MiB in flight: at every 8 MiB one part was seen cut on 5 attempts of 6.
    with CuttingProxy(ssh.port, cut_every=12 * MiB) as cutter, \
            sftp_across_wan(ssh, tmp_path, cutter.port) as line:
        result = run_cli("cp", line.url(src), f"s3://{bucket}/flaky.bin", *line.flags, *PARTS_FLAGS)
        cuts = cutter.cuts
    assert result.code == 0, result.stderr
    assert cuts >= 2
    assert object_sha256(s3, bucket, "flaky.bin") == expected
    assert uploads_for(s3, bucket) == []


@pytest.mark.usefixtures("s3_env", "state")
def test_sftp_to_s3_connection_lost_keeps_the_upload_and_a_rerun_resumes(
        ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str, tmp_path: Path,
        remote_source: tuple[Path, str]) -> None:
    """The server becomes unreachable mid-way: exit 1, one line, nothing published; back, a re-run resumes."""
    src, expected = remote_source
    dest = f"s3://{bucket}/cut.bin"
    cutter = CuttingProxy(ssh.port, cut_after=3 * PART)
    with cutter, sftp_across_wan(ssh, tmp_path, cutter.port) as line:
        args = ["cp", line.url(src), dest, *line.flags, *PARTS_FLAGS, "--retries", "2"]
        result = run_cli(*args)
        assert cutter.cut.is_set()
        assert result.code == 1, result.stderr
        assert_one_line_error(result.stderr, "connect", "run the same command again to resume",
                              f"s3ferry cancel {dest}")
        assert not object_exists(s3, bucket, "cut.bin")
        assert len(uploads_for(s3, bucket, "cut.bin")) == 1

        cutter.close()
        with CuttingProxy(ssh.port, port=cutter.port):  # the network is back, on the same line
            result = run_cli(*args)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["resumed_parts"] > 0
    assert report["uploaded_bytes"] <= SIZE - report["resumed_parts"] * PART
    assert object_sha256(s3, bucket, "cut.bin") == expected
    assert uploads_for(s3, bucket) == []


@pytest.mark.usefixtures("s3_env", "state")
def test_s3_to_sftp_connection_lost_keeps_the_partial_file_and_a_rerun_resumes(
        ssh: testbed.SshServer, bucket: str, tmp_path: Path, s3_source: tuple[str, str]) -> None:
    url, digest = s3_source
    inbox = ssh.root / f"wan-cut-inbox-{bucket}"
    # two parts written at a time (--max-memory 10M): after 4 parts' bytes sent, at least two were sent whole
    cutter = CuttingProxy(ssh.port, cut_after=4 * PART, upstream=True)
    with cutter, sftp_across_wan(ssh, tmp_path, cutter.port) as line:
        args = ["cp", url, line.url(inbox) + "/", *line.flags, *PARTS_FLAGS, "--max-memory", "10M"]
        first = run_cli(*args, "--retries", "0")
        assert first.code == 1, first.stderr
        (kept,) = partials(inbox)
        assert_one_line_error(first.stderr, f"the partial file {line.url(kept)} is kept")
        cutter.close()
        with CuttingProxy(ssh.port, port=cutter.port):
            second = run_cli(*args)
    assert second.code == 0, second.stderr
    assert json.loads(second.stdout)["resumed_parts"] >= 1, (first.stderr, second.stderr)
    assert sha256_of(inbox / "source.bin") == digest
    assert partials(inbox) == []


# -- S3 answering 503 SlowDown while the SFTP side is across the line ------------------------------------------


@pytest.mark.usefixtures("s3_env", "state")
def test_sftp_to_s3_with_s3_answering_slowdown(s3: testbed.SeaweedServer, bucket: str, wan: WanSftp,
                                               remote_source: tuple[Path, str]) -> None:
    src, expected = remote_source
    with S3FaultProxy(s3.s3_port, slowdown_rate=0.2, seed=3) as proxy:
        proxy.fail_next.append(("UploadPart", 503, "SlowDown"))  # at least one, whatever the seed draws
        result = run_cli("cp", wan.url(src), f"s3://{bucket}/slow.bin", *wan.flags, *PARTS_FLAGS,
                         env={"AWS_ENDPOINT_URL_S3": proxy.url})
        throttled = proxy.count("UploadPart", 503)
    assert result.code == 0, result.stderr
    assert throttled >= 1
    assert object_sha256(s3, bucket, "slow.bin") == expected
    assert uploads_for(s3, bucket) == []


@pytest.mark.usefixtures("s3_env", "state")
def test_s3_to_sftp_with_s3_answering_slowdown(ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str,
                                               wan: WanSftp, s3_source: tuple[str, str]) -> None:
    url, digest = s3_source
    dest = ssh.root / f"wan-slow-{bucket}.bin"
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.fail_next += [("GetObject", 503, "SlowDown")] * 2
        result = run_cli("cp", url, wan.url(dest), *wan.flags, *PARTS_FLAGS, env={"AWS_ENDPOINT_URL_S3": proxy.url})
        throttled = proxy.count("GetObject", 503)
    assert result.code == 0, result.stderr
    assert throttled == 2
    assert sha256_of(dest) == digest
