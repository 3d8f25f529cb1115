"""cp -r: whole folders and prefixes, file-level concurrency, filters, hostile names."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.s3proxy import S3FaultProxy
from support.helpers import object_sha256, run_cli, sftp_flags

TREE = {"a.csv": 1000, "b.tmp": 10, "sub/c.csv": 70_000, "sub/deep/d e.bin": 5 * 1024 * 1024 + 3,
        "sub/ünï.csv": 0, "z/.hidden": 5}


def make_tree(root: Path) -> dict[str, str]:
    digests = {}
    for i, (rel, size) in enumerate(TREE.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1)
        path.write_bytes(data[:size])
        digests[rel] = hashlib.sha256(data[:size]).hexdigest()
    return digests


def listing(s3: testbed.SeaweedServer, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def local_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.usefixtures("s3_env")
def test_sftp_tree_to_s3_and_back_to_local(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer,
                                           ssh: testbed.SshServer) -> None:
    src = ssh.root / "tree-out"
    digests = make_tree(src)
    up = run_cli("cp", "-r", ssh.url(src), f"s3://{bucket}/in/", "--no-progress", "--json", *sftp_flags(ssh))
    assert up.code == 0, up.stderr
    summary = json.loads(up.stdout)
    assert summary["copied"] == len(TREE) and summary["failed"] == 0
    assert listing(s3, bucket) == sorted(f"in/{rel}" for rel in TREE)
    for rel, digest in digests.items():
        assert object_sha256(s3, bucket, f"in/{rel}") == digest
    down = run_cli("cp", "-r", f"s3://{bucket}/in", str(tmp_path / "back"), "--no-progress")
    assert down.code == 0, down.stderr
    assert local_files(tmp_path / "back") == digests


@pytest.mark.usefixtures("s3_env")
def test_include_exclude_in_command_line_order(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer) -> None:
    make_tree(tmp_path / "src")
    with S3FaultProxy(s3.s3_port) as proxy:
        result = run_cli("cp", "-r", str(tmp_path / "src"), f"s3://{bucket}/", "--exclude", "*", "--include",
                         "*.csv", "--no-progress", "--json", env={"AWS_ENDPOINT_URL_S3": proxy.url})
    assert result.code == 0, result.stderr
    # One request per small file: the PutObject answer carries the checksum S3 verified, no HEAD needed.
    assert proxy.count("PutObject", 200) == 3 and proxy.count("HeadObject") == 0
    assert proxy.count("HeadBucket") == 1
    assert listing(s3, bucket) == ["a.csv", "sub/c.csv", "sub/ünï.csv"]
    assert json.loads(result.stdout)["excluded"] == 3


def test_local_tree_to_sftp(tmp_path: Path, ssh: testbed.SshServer) -> None:
    digests = make_tree(tmp_path / "src")
    dest = ssh.root / "tree-in"
    result = run_cli("cp", "-r", str(tmp_path / "src"), ssh.url(dest), "--no-progress", "--transfers", "2",
                     *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert local_files(dest) == digests


@pytest.mark.usefixtures("s3_env")
def test_s3_prefix_to_s3_prefix_server_side(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer) -> None:
    digests = make_tree(tmp_path / "src")
    assert run_cli("cp", "-r", str(tmp_path / "src"), f"s3://{bucket}/a/", "--no-progress").code == 0
    with S3FaultProxy(s3.s3_port) as proxy:
        result = run_cli("cp", "-r", f"s3://{bucket}/a/", f"s3://{bucket}/b/", "--no-progress",
                         env={"AWS_ENDPOINT_URL_S3": proxy.url})
    assert result.code == 0, result.stderr
    assert proxy.count("CopyObject", 200) == len(TREE)
    assert proxy.body_bytes < 64 * 1024
    for rel, digest in digests.items():
        assert object_sha256(s3, bucket, f"b/{rel}") == digest


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("to_sftp", [False, True], ids=["to-local", "to-sftp"])
def test_hostile_names_from_a_listing_are_refused(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer,
                                                  ssh: testbed.SshServer, to_sftp: bool) -> None:
    make_tree(tmp_path / "src")
    assert run_cli("cp", "-r", str(tmp_path / "src"), f"s3://{bucket}/p/", "--no-progress").code == 0
    # SeaweedFS itself refuses such keys; a hostile server would list them.
    hostile = b"<Key>p/a/../../../escaped.csv</Key>"
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.rewrite_listing = lambda body: body.replace(b"<Key>p/a.csv</Key>", hostile)
        top = (ssh.root / f"hostile-{bucket}") if to_sftp else tmp_path
        out = top / "deep" / "out"
        dest = ssh.url(out) if to_sftp else str(out)
        result = run_cli("cp", "-r", f"s3://{bucket}/p/", dest, "--no-progress", "--json", *sftp_flags(ssh),
                         env={"AWS_ENDPOINT_URL_S3": proxy.url})
    assert result.code == 2, result.stderr
    assert "unsafe name 'a/../../../escaped.csv'" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["failed"] == 1 and summary["copied"] == len(TREE) - 1
    assert not list(top.rglob("escaped.csv")) and not list(ssh.root.rglob("escaped.csv"))


@pytest.mark.usefixtures("s3_env")
def test_tree_of_a_missing_folder(tmp_path: Path, bucket: str) -> None:
    result = run_cli("cp", "-r", str(tmp_path / "nope"), f"s3://{bucket}/x/", "--no-progress")
    assert result.code == 2
    assert "not found" in result.stderr
