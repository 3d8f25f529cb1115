"""Every delivery verified or refused (issue 14): objects s3ferry did not write, bodies corrupted in
flight, a check that fails never touching the file already there, stores without checksums, S3 -> S3.

The objects are written the way other tools write them (a plain SDK put_object stores CRC32; multipart
uploads with CRC32/SHA-256 COMPOSITE or FULL_OBJECT checksums, or none at all: then only the MD5 ETag),
and read back through tests/servers/s3proxy.py, which flips one byte of one ranged GET body.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from s3ferry.demo import servers as testbed
from servers.s3proxy import S3FaultProxy
from support.helpers import (
    MiB,
    object_exists,
    object_sha256,
    plain_client,
    put_multipart,
    run_cli,
    sftp_flags,
    write_random,
)

Writer = Callable[[testbed.SeaweedServer, str, str, bytes], None]

#: (name, how the object is written, what the summary must say it was verified against)
FOREIGN: list[tuple[str, Writer, str]] = [
    ("sdk-put-crc32", lambda s3, b, k, d: plain_client(s3).put_object(Bucket=b, Key=k, Body=d), "crc32 (full object)"),
    ("put-crc64nvme", lambda s3, b, k, d: plain_client(s3).put_object(Bucket=b, Key=k, Body=d,
                                                                        ChecksumAlgorithm="CRC64NVME"),
     "crc64nvme (full object)"),
    ("put-sha1", lambda s3, b, k, d: plain_client(s3).put_object(Bucket=b, Key=k, Body=d, ChecksumAlgorithm="SHA1"),
     "sha1 (full object)"),
    ("put-no-checksum", lambda s3, b, k, d: plain_client(s3, False).put_object(Bucket=b, Key=k, Body=d),
     "md5 etag"),
    ("mpu-crc32-composite", lambda s3, b, k, d: put_multipart(plain_client(s3), b, k, d, 5 * MiB, "CRC32",
                                                              "COMPOSITE"), "crc32 (composite of 4 parts)"),
    ("mpu-sha256-composite", lambda s3, b, k, d: put_multipart(plain_client(s3), b, k, d, 5 * MiB, "SHA256",
                                                               "COMPOSITE"), "sha256 (composite of 4 parts)"),
    ("mpu-crc32-full", lambda s3, b, k, d: put_multipart(plain_client(s3), b, k, d, 5 * MiB, "CRC32",
                                                         "FULL_OBJECT"), "crc32 (full object)"),
    ("mpu-no-checksum", lambda s3, b, k, d: put_multipart(plain_client(s3, False), b, k, d, 5 * MiB, None, None),
     "md5 etag (multipart, 4 parts)"),
]
SIZE = 17 * MiB + 12345  # 4 parts of 5 MiB for the multipart writers; 3 ranged GETs of 8 MiB to read it


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(SIZE)


def summary(stdout: str) -> dict[str, Any]:
    return json.loads(stdout)


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize(("name", "write", "check"), FOREIGN, ids=[f[0] for f in FOREIGN])
def test_download_of_a_foreign_object_is_verified_against_what_it_stores(
        name: str, write: Writer, check: str, s3: testbed.SeaweedServer, bucket: str, tmp_path: Path,
        payload: bytes) -> None:
    write(s3, bucket, "obj.bin", payload)
    result = run_cli("cp", f"s3://{bucket}/obj.bin", str(tmp_path / "x.bin"), "--json")
    assert result.code == 0, result.stderr
    report = summary(result.stdout)
    assert report["verified"] is True and report["verification"].startswith(check), report["verification"]
    assert (tmp_path / "x.bin").read_bytes() == payload


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize(("name", "write", "check"), FOREIGN, ids=[f[0] for f in FOREIGN])
def test_a_body_corrupted_in_flight_is_refused_and_the_old_file_kept(
        name: str, write: Writer, check: str, s3: testbed.SeaweedServer, bucket: str, tmp_path: Path,
        payload: bytes) -> None:
    write(s3, bucket, "obj.bin", payload)
    target = tmp_path / "x.bin"
    target.write_bytes(b"the good old version")
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.corrupt_gets = 1
        result = run_cli("cp", f"s3://{bucket}/obj.bin", str(target), env={"AWS_ENDPOINT_URL_S3": proxy.url})
        assert proxy.corrupted == 1
    assert result.code == 3, (result.code, result.stderr)
    assert "integrity check failed" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert target.read_bytes() == b"the good old version"  # checked before the rename: untouched
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the partial file is gone


@pytest.mark.usefixtures("s3_env")
def test_corrupted_download_into_sftp_is_refused(ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str,
                                                 payload: bytes) -> None:
    plain_client(s3).put_object(Bucket=bucket, Key="obj.bin", Body=payload)
    folder = ssh.root / "inbox-corrupt"
    folder.mkdir()
    (folder / "obj.bin").write_bytes(b"previous delivery")
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.corrupt_gets = 1
        result = run_cli("cp", f"s3://{bucket}/obj.bin", ssh.url(folder / "obj.bin"), *sftp_flags(ssh),
                         env={"AWS_ENDPOINT_URL_S3": proxy.url})
    assert result.code == 3, result.stderr
    assert (folder / "obj.bin").read_bytes() == b"previous delivery"
    assert [p.name for p in folder.iterdir()] == ["obj.bin"]


@pytest.mark.usefixtures("s3_env")
def test_push_of_a_corrupted_body_is_not_delivered_nor_marked(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                              bucket: str, payload: bytes,
                                                              tmp_path: Path) -> None:
    plain_client(s3).put_object(Bucket=bucket, Key="out/report.bin", Body=payload)
    inbox = ssh.root / "inbox-push-corrupt"
    inbox.mkdir()
    state = ["--state-dir", str(tmp_path / "state")]
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.corrupt_gets = 1
        result = run_cli("push", f"s3://{bucket}/out/", ssh.url(inbox), "--json", *state, *sftp_flags(ssh),
                         env={"AWS_ENDPOINT_URL_S3": proxy.url})
    report = summary(result.stdout)
    assert result.code == 3 and report["failed"] == 1 and report["copied"] == 0, result.stderr
    assert list(inbox.iterdir()) == []
    assert s3.client().get_object_tagging(Bucket=bucket, Key="out/report.bin")["TagSet"] == []
    again = run_cli("push", f"s3://{bucket}/out/", ssh.url(inbox), "--retry-failed", "--json", *state,
                    *sftp_flags(ssh))
    assert again.code == 0 and summary(again.stdout)["copied"] == 1, again.stderr
    assert hashlib.sha256((inbox / "report.bin").read_bytes()).digest() == hashlib.sha256(payload).digest()


@pytest.mark.usefixtures("s3_env")
def test_a_file_source_into_a_file_says_not_verified(ssh: testbed.SshServer, tmp_path: Path) -> None:
    write_random(ssh.root / "plain.bin", MiB)
    result = run_cli("cp", ssh.url(ssh.root / "plain.bin"), str(tmp_path / "plain.bin"), *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert "NOT verified: a sftp source stores no checksum" in result.stdout
    refused = run_cli("cp", ssh.url(ssh.root / "plain.bin"), str(tmp_path / "again.bin"), "--require-verified",
                      *sftp_flags(ssh))
    assert refused.code == 3 and "nothing was copied" in refused.stderr, refused.stderr
    assert not (tmp_path / "again.bin").exists()


@pytest.mark.usefixtures("s3_env")
def test_an_object_without_a_content_hash_is_not_verified(s3: testbed.SeaweedServer, bucket: str,
                                                          tmp_path: Path) -> None:
    """SSE-KMS ETags are not MD5s: with no checksum, nothing can be compared, and the summary says so."""
    data = os.urandom(6 * MiB)
    client = plain_client(s3, checksums=False)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="kms.bin", ServerSideEncryption="aws:kms",
                                               SSEKMSKeyId=testbed.KMS_KEY)["UploadId"]
    etag = client.upload_part(Bucket=bucket, Key="kms.bin", UploadId=upload_id, PartNumber=1, Body=data)["ETag"]
    client.complete_multipart_upload(Bucket=bucket, Key="kms.bin", UploadId=upload_id,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    result = run_cli("cp", f"s3://{bucket}/kms.bin", str(tmp_path / "kms.bin"), "--json")
    assert result.code == 0, result.stderr
    assert summary(result.stdout)["verified"] is False
    assert "ETag is not an MD5" in summary(result.stdout)["verification"]
    refused = run_cli("cp", f"s3://{bucket}/kms.bin", str(tmp_path / "kms2.bin"), "--require-verified")
    assert refused.code == 3 and not (tmp_path / "kms2.bin").exists(), refused.stderr


@pytest.mark.usefixtures("s3_env")
def test_part_sizes_come_from_head_part_when_attributes_are_refused(s3: testbed.SeaweedServer, bucket: str,
                                                                   tmp_path: Path, payload: bytes) -> None:
    put_multipart(plain_client(s3, False), bucket, "mpu.bin", payload, 5 * MiB, None, None)
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.fail_next.append(("GetObjectAttributes", 403, "AccessDenied"))
        result = run_cli("cp", f"s3://{bucket}/mpu.bin", str(tmp_path / "mpu.bin"), "--json",
                         env={"AWS_ENDPOINT_URL_S3": proxy.url})
        heads = proxy.count("HeadObject")
    assert result.code == 0, result.stderr
    assert summary(result.stdout)["verification"].startswith("md5 etag (multipart, 4 parts)")
    assert heads >= 3  # the object, then its first and last parts
    assert (tmp_path / "mpu.bin").read_bytes() == payload


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("size", [3 * MiB, 21 * MiB], ids=["single-put", "multipart"])
def test_a_store_without_checksums_is_checked_by_md5_etags(s3: testbed.SeaweedServer, bucket: str, tmp_path: Path,
                                                           size: int) -> None:
    digest = write_random(tmp_path / "up.bin", size)
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.strip_checksums = True
        result = run_cli("cp", str(tmp_path / "up.bin"), f"s3://{bucket}/up.bin", "--json", "-v",
                         env={"AWS_ENDPOINT_URL_S3": proxy.url})
    assert result.code == 0, result.stderr
    report = summary(result.stdout)
    assert report["verified"] is True and report["verification"].startswith("md5 etag"), report
    assert result.stderr.count("returns no checksums") == 1  # said once
    assert object_sha256(s3, bucket, "up.bin") == digest


@pytest.mark.usefixtures("s3_env")
def test_server_side_copy_of_a_foreign_object_is_compared_with_its_checksum(s3: testbed.SeaweedServer,
                                                                            bucket: str, payload: bytes) -> None:
    plain_client(s3).put_object(Bucket=bucket, Key="a.bin", Body=payload)  # CRC32, as the SDK stores it
    result = run_cli("cp", f"s3://{bucket}/a.bin", f"s3://{bucket}/b.bin", "--json")
    assert result.code == 0, result.stderr
    report = summary(result.stdout)
    assert report["verified"] is True and report["verification"].startswith("crc32 "), report
    assert object_exists(s3, bucket, "b.bin")


def journaled_parts(state: Path) -> int:
    try:
        with sqlite3.connect(state / "journal.sqlite3", timeout=0.1) as db:
            return int(db.execute("SELECT COUNT(*) FROM parts").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return 0


@pytest.mark.usefixtures("s3_env")
def test_resumed_download_replays_stored_parts_into_an_in_order_check(s3: testbed.SeaweedServer, bucket: str,
                                                                      tmp_path: Path) -> None:
    """An MD5 ETag needs every byte in order: parts kept by a killed download are read back, not skipped."""
    data = os.urandom(48 * MiB)
    plain_client(s3, False).put_object(Bucket=bucket, Key="md5.bin", Body=data)
    state = tmp_path / "state"
    target = tmp_path / "md5.bin"
    args = ["cp", f"s3://{bucket}/md5.bin", str(target), "--state-dir", str(state)]
    proc = subprocess.Popen([str(Path(sys.executable).with_name("s3ferry")), *args, "--bwlimit", "6M"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while journaled_parts(state) < 2:  # the journal is flushed every 5 s
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    second = run_cli(*args, "--json")
    assert second.code == 0, second.stderr
    report = summary(second.stdout)
    assert report["resumed_parts"] >= 2 and report["verification"].startswith("md5 etag"), report
    assert target.read_bytes() == data
