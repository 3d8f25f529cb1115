"""Bad input and broken connections: one clear line, the right exit code, nothing left behind."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from s3ferry.core.errors import SourceChangedError
from s3ferry.demo import servers as testbed
from servers.proxy import CuttingProxy
from support.helpers import (
    MiB,
    assert_one_line_error,
    object_exists,
    object_sha256,
    run_cli,
    sftp_flags,
    uploads_for,
    write_random,
)


@pytest.fixture
def source(ssh: testbed.SshServer) -> Path:
    path = ssh.root / "fail-src.bin"
    if not path.exists():
        write_random(path, 20 * MiB)
    return path


def test_unknown_host_key(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str], bucket: str,
                          source: Path, clean_env: Path) -> None:
    # HOME has no known_hosts at all: OpenSSH's behaviour is to trust nothing.
    result = run_cli("cp", ssh.url(source), f"s3://{bucket}/x", "-i", str(ssh.user_key))
    assert result.code == 2
    assert_one_line_error(result.stderr, "not known", ssh.host_fingerprint, "--host-key")
    assert uploads_for(s3, bucket) == [] and not object_exists(s3, bucket, "x")


def test_changed_host_key(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str], bucket: str,
                          source: Path, tmp_path: Path) -> None:
    other = testbed.SshServer(tmp_path / "other")  # only for its (different) host key
    other.base.mkdir()
    testbed._keygen(other.host_key, "impostor")
    pub = other.host_key.with_suffix(".pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{ssh.port} {pub[0]} {pub[1]}\n")
    result = run_cli("cp", ssh.url(source), f"s3://{bucket}/x", "-i", str(ssh.user_key), "--known-hosts", str(known))
    assert result.code == 2
    assert_one_line_error(result.stderr, "CHANGED", "ssh-keygen -R")
    assert uploads_for(s3, bucket) == []


def test_wrong_pinned_host_key(ssh: testbed.SshServer, s3_env: dict[str, str], bucket: str, source: Path) -> None:
    result = run_cli("cp", ssh.url(source), f"s3://{bucket}/x", "-i", str(ssh.user_key),
                     "--host-key", "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert result.code == 2
    assert_one_line_error(result.stderr, "not the pinned")


def test_wrong_password(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str], bucket: str,
                        source: Path) -> None:
    secret = "not-the-password-0123"
    result = run_cli("cp", ssh.url(source), f"s3://{bucket}/x", "--known-hosts", str(ssh.known_hosts),
                     env={"S3FERRY_SFTP_PASSWORD": secret})
    assert result.code == 2
    assert_one_line_error(result.stderr, "authentication failed")
    assert secret not in result.stderr + result.stdout
    assert uploads_for(s3, bucket) == []


def test_wrong_password_from_file(ssh: testbed.SshServer, s3_env: dict[str, str], bucket: str, source: Path,
                                  tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("also-wrong\n")
    result = run_cli("cp", ssh.url(source), f"s3://{bucket}/x", "--known-hosts", str(ssh.known_hosts),
                     "--password-file", str(pw))
    assert result.code == 2
    assert_one_line_error(result.stderr, "authentication failed")


def test_password_in_url_is_refused(s3_env: dict[str, str], bucket: str) -> None:
    result = run_cli("cp", "sftp://me:hunter2@127.0.0.1/x", f"s3://{bucket}/x")
    assert result.code == 2
    assert_one_line_error(result.stderr, "S3FERRY_SFTP_PASSWORD")
    assert "hunter2" not in result.stderr


def test_missing_source_file(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str],
                             bucket: str) -> None:
    result = run_cli("cp", ssh.url(ssh.root / "nope.bin"), f"s3://{bucket}/x", *sftp_flags(ssh))
    assert result.code == 2
    assert_one_line_error(result.stderr, "source not found", "nope.bin")
    assert uploads_for(s3, bucket) == []


def test_missing_bucket(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str],
                        source: Path) -> None:
    result = run_cli("cp", ssh.url(source), "s3://no-such-bucket-here/x", *sftp_flags(ssh))
    assert result.code == 2
    assert_one_line_error(result.stderr, "bucket not found", "no-such-bucket-here")
    names = [b["Name"] for b in s3.client().list_buckets()["Buckets"]]
    assert "no-such-bucket-here" not in names


def test_wrong_s3_credentials(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str],
                              bucket: str, source: Path) -> None:
    result = run_cli("cp", ssh.url(source), f"s3://{bucket}/x", *sftp_flags(ssh),
                     env={"AWS_SECRET_ACCESS_KEY": "wrong-secret"})
    assert result.code == 2
    assert "wrong-secret" not in result.stderr
    assert_one_line_error(result.stderr, bucket)
    assert uploads_for(s3, bucket) == []


def test_debug_shows_the_traceback(ssh: testbed.SshServer, s3_env: dict[str, str], bucket: str) -> None:
    result = run_cli("cp", ssh.url(ssh.root / "nope.bin"), f"s3://{bucket}/x", *sftp_flags(ssh), "--debug")
    assert result.code == 2
    assert "Traceback" in result.stderr and "s3ferry: error: source not found" in result.stderr


def test_connection_cut_mid_transfer_keeps_the_upload_for_resume(
        ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str], bucket: str) -> None:
    """The SFTP server becomes unreachable mid-way: exit 1, nothing published, and a re-run resumes."""
    src = ssh.root / "cut.bin"
    expected = write_random(src, 96 * MiB)
    with CuttingProxy(ssh.port, cut_after=40 * MiB) as proxy:
        url = f"sftp://{ssh.user}@127.0.0.1:{proxy.port}{src}"
        flags = ["-i", str(ssh.user_key), "--host-key", ssh.host_fingerprint, "--retries", "2"]
        result = run_cli("cp", url, f"s3://{bucket}/cut.bin", *flags)
        assert proxy.cut.is_set()
    assert result.code == 1, result.stderr
    assert_one_line_error(result.stderr, "connect", "run the same command again to resume",
                          f"s3ferry cancel s3://{bucket}/cut.bin")
    assert not object_exists(s3, bucket, "cut.bin")
    kept = uploads_for(s3, bucket, "cut.bin")
    assert len(kept) == 1
    listing = run_cli("uploads", f"s3://{bucket}/", "--json")
    assert listing.code == 0 and '"journaled": true' in listing.stdout

    # The same command once the network is back: only the missing parts move.
    with CuttingProxy(ssh.port, port=proxy.port):
        result = run_cli("cp", url, f"s3://{bucket}/cut.bin", *flags, "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["resumed_parts"] > 0
    assert report["uploaded_bytes"] <= 96 * MiB - report["resumed_parts"] * 8 * MiB
    assert object_sha256(s3, bucket, "cut.bin") == expected
    assert uploads_for(s3, bucket) == []


def test_no_resume_aborts_on_failure(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str],
                                     bucket: str) -> None:
    src = ssh.root / "cut2.bin"
    write_random(src, 64 * MiB)
    with CuttingProxy(ssh.port, cut_after=24 * MiB) as proxy:
        url = f"sftp://{ssh.user}@127.0.0.1:{proxy.port}{src}"
        result = run_cli("cp", url, f"s3://{bucket}/cut2.bin", "-i", str(ssh.user_key),
                         "--host-key", ssh.host_fingerprint, "--retries", "1", "--no-resume")
    assert result.code == 1, result.stderr
    assert_one_line_error(result.stderr, "connect")
    assert not object_exists(s3, bucket, "cut2.bin")
    assert uploads_for(s3, bucket) == []


def test_source_changing_under_us(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str],
                                  bucket: str) -> None:
    """The file grows while parts are read: the re-stat before completion refuses to finish."""
    import s3ferry

    src = ssh.root / "growing.bin"
    write_random(src, 40 * MiB)

    class AppendAfterFirstPart:
        done = False

        def started(self, name: str, total: int) -> None: ...

        def advanced(self, nbytes: int) -> None:
            if not self.done:
                self.done = True
                with open(src, "ab") as fh:
                    fh.write(b"more")

        def finished(self) -> None: ...

    options = s3ferry.TransferOptions(sftp=s3ferry.SftpOptions(identity=(ssh.user_key,), known_hosts=ssh.known_hosts))
    with pytest.raises(SourceChangedError, match="changed during the transfer"):
        asyncio.run(s3ferry.acopy(ssh.url(src), f"s3://{bucket}/g.bin", options, progress=AppendAfterFirstPart()))
    assert not object_exists(s3, bucket, "g.bin")
    assert uploads_for(s3, bucket) == []
    os.remove(src)
