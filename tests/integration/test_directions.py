"""Every direction through the one engine, against real sshd and SeaweedFS, compared by SHA-256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.s3proxy import S3FaultProxy
from support.helpers import MiB, object_sha256, run_cli, sftp_flags, uploads_for, write_random


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upload(tmp_path: Path, bucket: str, key: str, size: int, *extra: str) -> str:
    src = tmp_path / f"up-{key.replace('/', '_')}"
    digest = write_random(src, size)
    result = run_cli("cp", str(src), f"s3://{bucket}/{key}", "--no-progress", *extra)
    assert result.code == 0, result.stderr
    return digest


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*s3ferry*"))


@pytest.mark.usefixtures("s3_env")
def test_s3_to_local_download(tmp_path: Path, bucket: str) -> None:
    digest = upload(tmp_path, bucket, "dir/big.bin", 21 * MiB + 17)
    out = tmp_path / "downloads"
    result = run_cli("cp", f"s3://{bucket}/dir/big.bin", f"{out}/", "--no-progress", "--json")
    assert result.code == 0, result.stderr
    assert sha256_of(out / "big.bin") == digest
    assert '"checksum": "' in result.stdout  # checked against the CRC32C S3 stored at upload
    assert leftovers(out) == []


@pytest.mark.usefixtures("s3_env")
def test_s3_to_existing_local_folder_without_slash(tmp_path: Path, bucket: str) -> None:
    digest = upload(tmp_path, bucket, "one.bin", 1000)
    out = tmp_path / "existing"
    out.mkdir()
    assert run_cli("cp", f"s3://{bucket}/one.bin", str(out), "--no-progress").code == 0
    assert sha256_of(out / "one.bin") == digest


@pytest.mark.usefixtures("s3_env")
def test_failed_download_leaves_nothing(tmp_path: Path, bucket: str) -> None:
    out = tmp_path / "downloads"
    out.mkdir()
    result = run_cli("cp", f"s3://{bucket}/missing.bin", f"{out}/", "--no-progress")
    assert result.code == 2
    assert "not found" in result.stderr
    assert list(out.iterdir()) == []


@pytest.mark.usefixtures("s3_env")
def test_download_of_object_overwritten_midway_is_refused(tmp_path: Path, bucket: str,
                                                          s3: testbed.SeaweedServer) -> None:
    import asyncio

    from s3ferry.core.errors import SourceChangedError
    from s3ferry.operations.copy import acopy

    upload(tmp_path, bucket, "moving.bin", 30 * MiB)
    (tmp_path / "dl").mkdir()
    out = tmp_path / "dl" / "out.bin"
    client = s3.client()

    class OverwriteAfterFirstPart:
        done = False

        def started(self, name: str, total: int) -> None: ...

        def advanced(self, nbytes: int) -> None:
            if not self.done:
                self.done = True
                client.put_object(Bucket=bucket, Key="moving.bin", Body=os.urandom(30 * MiB))

        def finished(self) -> None: ...

    with pytest.raises(SourceChangedError, match="overwritten"):
        asyncio.run(acopy(f"s3://{bucket}/moving.bin", str(out), progress=OverwriteAfterFirstPart(),
                          part_size=5 * MiB, read_streams=1, upload_streams=1, max_memory=10 * MiB))
    assert list(out.parent.iterdir()) == []


@pytest.mark.usefixtures("s3_env")
def test_s3_to_sftp(tmp_path: Path, bucket: str, ssh: testbed.SshServer) -> None:
    digest = upload(tmp_path, bucket, "to-sftp.bin", 19 * MiB + 3)
    target = ssh.root / "inbox" / "deep" / "to-sftp.bin"
    result = run_cli("cp", f"s3://{bucket}/to-sftp.bin", ssh.url(target), "--no-progress", *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert sha256_of(target) == digest
    assert leftovers(ssh.root / "inbox") == []


def test_local_to_sftp_replaces_existing(tmp_path: Path, ssh: testbed.SshServer) -> None:
    src = tmp_path / "local.bin"
    digest = write_random(src, 17 * MiB)
    folder = ssh.root / "l2s"
    folder.mkdir()
    (folder / "local.bin").write_bytes(b"old contents")
    result = run_cli("cp", str(src), ssh.url(folder) + "/", "--no-progress", *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert sha256_of(folder / "local.bin") == digest
    assert leftovers(folder) == []


def test_sftp_to_local(tmp_path: Path, ssh: testbed.SshServer) -> None:
    src = ssh.root / "s2l.bin"
    digest = write_random(src, 18 * MiB + 5)
    out = tmp_path / "s2l"
    result = run_cli("cp", ssh.url(src), f"{out}/", "--no-progress", *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert sha256_of(out / "s2l.bin") == digest


def test_sftp_destination_under_a_file_is_refused(tmp_path: Path, ssh: testbed.SshServer) -> None:
    # (Permission bits cannot be tested here: the test sshd's user is root.)
    src = tmp_path / "x.bin"
    write_random(src, 1000)
    blocker = ssh.root / "not-a-folder"
    blocker.write_bytes(b"I am a file")
    result = run_cli("cp", str(src), ssh.url(blocker) + "/sub/", "--no-progress", *sftp_flags(ssh))
    assert result.code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "cannot create the folder" in result.stderr
    assert blocker.read_bytes() == b"I am a file"


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("size,copy_part", [(12 * MiB, "256MiB"), (23 * MiB + 1, "5MiB")])
def test_s3_to_s3_is_server_side(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer, size: int,
                                 copy_part: str) -> None:
    digest = upload(tmp_path, bucket, "orig.bin", size)
    with S3FaultProxy(s3.s3_port) as proxy:
        result = run_cli("cp", f"s3://{bucket}/orig.bin", f"s3://{bucket}/copies/", "--no-progress",
                         "--copy-part-size", copy_part, env={"AWS_ENDPOINT_URL_S3": proxy.url})
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "copies/orig.bin") == digest
    assert proxy.body_bytes < 64 * 1024, "payload went through the client"
    if copy_part == "5MiB":
        assert proxy.count("UploadPartCopy", 200) == 5
    else:
        assert proxy.count("CopyObject", 200) == 1
    assert uploads_for(s3, bucket) == []


def _key_file(path: Path) -> Path:
    path.write_bytes(os.urandom(32))
    return path


@pytest.mark.usefixtures("s3_env")
def test_sse_c_upload_download_and_rekeying_copy(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer) -> None:
    key1, key2 = _key_file(tmp_path / "k1"), _key_file(tmp_path / "k2")
    digest = upload(tmp_path, bucket, "secret.bin", 13 * MiB, "--sse-c-key-file", str(key1))
    # Reading without the key fails (exit 2), with it works.
    no_key = run_cli("cp", f"s3://{bucket}/secret.bin", str(tmp_path / "nokey.bin"), "--no-progress")
    assert no_key.code == 2, no_key.stderr
    assert not (tmp_path / "nokey.bin").exists()
    out = tmp_path / "plain.bin"
    got = run_cli("cp", f"s3://{bucket}/secret.bin", str(out), "--no-progress", "--source-sse-c-key-file", str(key1))
    assert got.code == 0, got.stderr
    assert sha256_of(out) == digest
    # Server-side copy re-encrypted with a new key: the old key no longer opens it.
    copy = run_cli("cp", f"s3://{bucket}/secret.bin", f"s3://{bucket}/rekeyed.bin", "--no-progress",
                   "--source-sse-c-key-file", str(key1), "--sse-c-key-file", str(key2))
    assert copy.code == 0, copy.stderr
    old = run_cli("cp", f"s3://{bucket}/rekeyed.bin", str(tmp_path / "old.bin"), "--no-progress",
                  "--source-sse-c-key-file", str(key1))
    assert old.code == 2, old.stderr
    new = run_cli("cp", f"s3://{bucket}/rekeyed.bin", str(tmp_path / "new.bin"), "--no-progress",
                  "--source-sse-c-key-file", str(key2))
    assert new.code == 0, new.stderr
    assert sha256_of(tmp_path / "new.bin") == digest
    for output in (no_key, got, copy, old, new):
        assert key1.read_bytes().hex() not in output.stderr + output.stdout


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("size", [1000, 13 * MiB])
def test_sse_kms_upload_and_copy(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer, size: int) -> None:
    digest = upload(tmp_path, bucket, "kms.bin", size, "--sse-kms-key-id", testbed.KMS_KEY)
    head = s3.client().head_object(Bucket=bucket, Key="kms.bin")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"]
    assert object_sha256(s3, bucket, "kms.bin") == digest
    copy = run_cli("cp", f"s3://{bucket}/kms.bin", f"s3://{bucket}/kms-copy.bin", "--no-progress",
                   "--sse-kms-key-id", testbed.KMS_KEY)
    assert copy.code == 0, copy.stderr
    assert s3.client().head_object(Bucket=bucket, Key="kms-copy.bin")["ServerSideEncryption"] == "aws:kms"
    assert object_sha256(s3, bucket, "kms-copy.bin") == digest
