"""Trees of small files with fewer requests (issue 16): a small object read whole by one GET (no HEAD), the
SFTP destination's folders made from the deepest one there, a source folder listed without a stat first.

Each shortcut keeps what it replaces: the GET is pinned to the listing's ETag and checked against the
object's stored checksum (a corrupted body is refused or read again, never published), an object changed
after the listing is copied as it is now, a file where a folder is expected is still said in plain words.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest

from s3ferry.backends.s3.source import READ_WHOLE, S3Source
from s3ferry.core.options import TransferOptions
from s3ferry.core.urls import parse
from s3ferry.demo import servers as testbed
from servers.s3proxy import S3FaultProxy
from support.helpers import Run, assert_one_line_error, plain_client, run_cli, sftp_flags

SIZES = (0, 1, 4096, 65536, 300_000, READ_WHOLE, READ_WHOLE + 1)


def put_tree(s3: testbed.SeaweedServer, bucket: str, prefix: str, checksums: bool = True) -> dict[str, bytes]:
    """Objects of SIZES in two folders, written as another SDK writes them (CRC32, or only the MD5 ETag)."""
    client, tree = plain_client(s3, checksums), {}
    for n, size in enumerate(SIZES):
        rel = f"{'a' if n % 2 else 'b/c'}/f{n}.bin"
        tree[rel] = os.urandom(size)
        client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=tree[rel])
    return tree


def files_below(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def down(ssh: testbed.SshServer, bucket: str, out: Path, proxy: S3FaultProxy, *flags: str) -> Run:
    """``cp -r s3://bucket/in/`` into the SFTP folder ``out`` (a destination listed in one go: the files it
    lacks are read ahead), S3 through ``proxy``."""
    return run_cli("cp", "-r", f"s3://{bucket}/in/", ssh.url(out), *sftp_flags(ssh), *flags,
                   env={"AWS_ENDPOINT_URL_S3": proxy.url})


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("checksums", [True, False], ids=["crc32", "md5-etag"])
def test_small_objects_of_a_tree_take_one_get_each_and_are_verified(
        ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str, checksums: bool) -> None:
    tree, out = put_tree(s3, bucket, "in", checksums), ssh.root / f"one-get-{bucket}"
    with S3FaultProxy(s3.s3_port) as proxy:
        result = down(ssh, bucket, out, proxy, "--json")
        heads, gets = proxy.count("HeadObject"), proxy.count("GetObject")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["copied"] == len(SIZES) and report["not_verified"] == 0, report
    assert files_below(out) == tree
    # the object above READ_WHOLE goes the ranged way (a HEAD, then its GET); every other: one GET
    assert (heads, gets) == (1, len(SIZES)), proxy.requests


@pytest.mark.usefixtures("s3_env")
def test_a_tree_copied_again_reads_no_object(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                             bucket: str) -> None:
    """Files already at the destination are skipped by size and time: their objects are never read whole
    (only what is copied whatever the destination holds is read ahead)."""
    tree, out = put_tree(s3, bucket, "in"), ssh.root / f"again-{bucket}"
    with S3FaultProxy(s3.s3_port) as proxy:
        assert down(ssh, bucket, out, proxy).code == 0
        before = proxy.count("GetObject")
        again = down(ssh, bucket, out, proxy, "--json")
        gets = proxy.count("GetObject") - before
    assert again.code == 0 and json.loads(again.stdout)["skipped"] == len(SIZES), again.stderr
    assert gets == 0, proxy.requests
    assert files_below(out) == tree


@pytest.mark.usefixtures("s3_env")
def test_a_small_body_corrupted_in_flight_is_read_again_when_its_checksum_catches_it(
        ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str) -> None:
    plain_client(s3).put_object(Bucket=bucket, Key="in/one.bin", Body=(data := os.urandom(70_000)))
    out = ssh.root / f"reread-{bucket}"
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.corrupt_gets = 1
        result = down(ssh, bucket, out, proxy, "--json")
        assert proxy.corrupted == 1
    assert result.code == 0, result.stderr
    assert "does not match its checksum" in result.stderr  # said, as a warning
    assert json.loads(result.stdout.splitlines()[-1])["not_verified"] == 0
    assert (out / "one.bin").read_bytes() == data


@pytest.mark.usefixtures("s3_env")
def test_a_small_body_corrupted_in_flight_without_a_stored_checksum_is_refused(
        ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str) -> None:
    plain_client(s3, False).put_object(Bucket=bucket, Key="in/one.bin", Body=os.urandom(70_000))
    out = ssh.root / f"refused-{bucket}"
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.corrupt_gets = 1
        result = down(ssh, bucket, out, proxy)
        assert proxy.corrupted == 1
    assert result.code == 3, result.stderr
    assert "integrity check failed" in result.stderr
    assert not out.exists() or files_below(out) == {}  # nothing published, no partial file left


@pytest.mark.usefixtures("s3_env")
def test_an_object_changed_after_the_listing_is_read_as_it_is_now(s3: testbed.SeaweedServer, bucket: str) -> None:
    client = plain_client(s3)
    client.put_object(Bucket=bucket, Key="in/x.bin", Body=b"listed version")
    newer = os.urandom(5000)

    async def copy_after_a_change() -> tuple[int, bytes]:
        parent = S3Source(parse(f"s3://{bucket}/in/"), TransferOptions().s3)
        try:
            listed = [entry async for entry in parent.walk()]
            assert [e.path for e in listed] == ["x.bin"]
            parent.read_ahead(listed)
            client.put_object(Bucket=bucket, Key="in/x.bin", Body=newer)  # between the listing and the copy
            child = parent.child("in/x.bin")
            stat = await child.stat()
            buf = bytearray(stat.size)
            async with child.reader() as reader:
                await reader.read_into(0, memoryview(buf))
            return stat.size, bytes(buf)
        finally:
            await parent.close()

    size, data = asyncio.run(copy_after_a_change())
    assert (size, data) == (len(newer), newer)


def test_a_tree_goes_into_a_folder_made_with_its_missing_parents(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                                 bucket: str, tmp_path: Path,
                                                                 s3_env: dict[str, str]) -> None:
    tree = put_tree(s3, bucket, "in")
    target = ssh.root / "made" / "deep" / "er"
    result = run_cli("cp", "-r", f"s3://{bucket}/in/", ssh.url(target), *sftp_flags(ssh), "--json")
    assert result.code == 0, result.stderr
    assert files_below(target) == tree
    again = run_cli("cp", "-r", f"s3://{bucket}/in/", ssh.url(target), *sftp_flags(ssh), "--json")
    assert again.code == 0 and json.loads(again.stdout)["skipped"] == len(SIZES), again.stderr


def test_a_file_in_the_way_of_the_destination_folder_is_one_line(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                                 bucket: str, s3_env: dict[str, str]) -> None:
    put_tree(s3, bucket, "in")
    blocker = ssh.root / "blocked"
    blocker.write_bytes(b"a file, not a folder")
    result = run_cli("cp", "-r", f"s3://{bucket}/in/", ssh.url(blocker / "below"), *sftp_flags(ssh))
    assert result.code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == len(SIZES) and "Traceback" not in result.stderr, result.stderr  # a line per file
    assert all(f"cannot create the folder {blocker} on 127.0.0.1: a file is in the way" in line for line in lines)
    assert blocker.read_bytes() == b"a file, not a folder"


def test_a_file_given_as_the_folder_of_a_tree_is_said_so(ssh: testbed.SshServer, bucket: str,
                                                         s3_env: dict[str, str]) -> None:
    (ssh.root / "plain.txt").write_bytes(b"x")
    result = run_cli("cp", "-r", ssh.url(ssh.root / "plain.txt"), f"s3://{bucket}/p/", *sftp_flags(ssh))
    assert result.code == 2, result.stderr
    assert_one_line_error(result.stderr, "is not a directory")


def test_a_missing_source_folder_is_not_found(ssh: testbed.SshServer, bucket: str, s3_env: dict[str, str]) -> None:
    result = run_cli("cp", "-r", ssh.url(ssh.root / "no-such-folder"), f"s3://{bucket}/p/", *sftp_flags(ssh))
    assert result.code != 0 and "no-such-folder" in result.stderr, result.stderr
    assert "is not a directory" not in result.stderr


def test_an_sftp_tree_lands_byte_for_byte(ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str,
                                          s3_env: dict[str, str]) -> None:
    src = ssh.root / "small-tree"
    for n in range(40):
        path = src / f"d{n % 4}" / f"f{n}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(n * 1000))
    result = run_cli("cp", "-r", ssh.url(src), f"s3://{bucket}/st/", *sftp_flags(ssh), "--json")
    assert result.code == 0 and json.loads(result.stdout)["copied"] == 40, result.stderr
    client = s3.client()
    for path in src.rglob("*.bin"):
        body = client.get_object(Bucket=bucket, Key=f"st/{path.relative_to(src).as_posix()}")["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(path.read_bytes()).digest()
