"""End-to-end copies through the CLI: real sshd -> real SeaweedFS, checked by SHA-256."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from support.helpers import MiB, object_sha256, run_cli, sftp_flags, uploads_for, write_random

PART = 8 * MiB  # the default part size


@pytest.mark.parametrize(
    "size",
    [0, 1, PART, PART + 1, 300 * MiB],
    ids=["empty", "one-byte", "exactly-one-part", "one-part-plus-one", "300MiB"],
)
def test_sftp_to_s3_byte_identical(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str],
                                   bucket: str, size: int) -> None:
    src = ssh.root / f"e2e-{size}.bin"
    expected = write_random(src, size)
    result = run_cli("cp", ssh.url(src), f"s3://{bucket}/in/data.bin", *sftp_flags(ssh), "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["size"] == size
    assert report["parts"] == max(1, -(-size // PART))
    assert report["disk_write_bytes"] < MiB
    assert object_sha256(s3, bucket, "in/data.bin") == expected
    head = s3.client().head_object(Bucket=bucket, Key="in/data.bin", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32C"] == report["checksum"]
    assert uploads_for(s3, bucket) == []


def test_destination_ending_in_slash_gets_the_source_name(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                          s3_env: dict[str, str], bucket: str) -> None:
    src = ssh.root / "named.csv.gz"
    expected = write_random(src, 1000)
    result = run_cli("cp", ssh.url(src), f"s3://{bucket}/partner/", *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "partner/named.csv.gz") == expected
    assert "copied" in result.stdout and "verified crc32c" in result.stdout


@pytest.mark.parametrize("algorithm,s3_field", [("crc64nvme", "ChecksumCRC64NVME"), ("sha256", "ChecksumSHA256")])
def test_other_checksums_are_verified_by_s3(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                           s3_env: dict[str, str], bucket: str, algorithm: str,
                                           s3_field: str) -> None:
    src = ssh.root / f"alg-{algorithm}.bin"
    expected = write_random(src, 2 * PART + 777)
    result = run_cli("cp", ssh.url(src), f"s3://{bucket}/a.bin", *sftp_flags(ssh), "--checksum", algorithm, "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    head = s3.client().head_object(Bucket=bucket, Key="a.bin", ChecksumMode="ENABLED")
    assert head[s3_field] == report["checksum"]
    assert object_sha256(s3, bucket, "a.bin") == expected


def test_checksum_none_still_copies(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str],
                                    bucket: str) -> None:
    src = ssh.root / "nosum.bin"
    expected = write_random(src, PART + 5)
    result = run_cli("cp", ssh.url(src), f"s3://{bucket}/n.bin", *sftp_flags(ssh), "--checksum", "none")
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "n.bin") == expected


def test_local_file_to_s3(tmp_path: Path, s3: testbed.SeaweedServer, s3_env: dict[str, str], bucket: str) -> None:
    src = tmp_path / "local.bin"
    expected = write_random(src, 3 * PART + 3)
    result = run_cli("cp", str(src), f"s3://{bucket}/", "--part-size", "5MiB", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["parts"] == 5
    assert object_sha256(s3, bucket, "local.bin") == expected
    result = run_cli("cp", f"file://{src}", f"s3://{bucket}/via-url.bin")
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "via-url.bin") == expected


def test_ssh_defaults_from_home_and_ssh_config(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                               s3_env: dict[str, str], bucket: str, trusted_home: Path) -> None:
    """No SFTP flags: the key, known_hosts, user and port come from ~/.ssh as with `ssh`."""
    (trusted_home / ".ssh" / "config").write_text(
        f"Host partner\n  HostName 127.0.0.1\n  Port {ssh.port}\n  User {ssh.user}\n"
    )
    src = ssh.root / "via-config.bin"
    expected = write_random(src, 12345)
    result = run_cli("cp", f"sftp://partner{src}", f"s3://{bucket}/c.bin")
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "c.bin") == expected


def test_pinned_host_key_is_enough(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str],
                                   bucket: str) -> None:
    src = ssh.root / "pinned.bin"
    expected = write_random(src, 4096)
    result = run_cli("cp", ssh.url(src), f"s3://{bucket}/p.bin", "-i", str(ssh.user_key),
                     "--host-key", ssh.host_fingerprint)
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "p.bin") == expected


def test_python_api_returns_the_figures(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str],
                                        bucket: str) -> None:
    import s3ferry

    src = ssh.root / "api.bin"
    data = os.urandom(PART + 100)
    src.write_bytes(data)
    options = s3ferry.TransferOptions(sftp=s3ferry.SftpOptions(identity=(ssh.user_key,), known_hosts=ssh.known_hosts))
    result = s3ferry.copy(ssh.url(src), f"s3://{bucket}/api/", options, upload_streams=2)
    assert result.size == len(data) and result.parts == 2
    assert result.destination == f"s3://{bucket}/api/api.bin"
    assert result.peak_rss_bytes > 0 and result.seconds > 0
    assert object_sha256(s3, bucket, "api/api.bin") == hashlib.sha256(data).hexdigest()
