"""Names from an SFTP listing: hostile ones refused by name, ones that are not UTF-8 skipped, the rest copied.

Two servers: a lying one (tests/servers/hostile_sftp.py) that lists names no file
system holds -- ``../evil``, ``a/b``, ``/abs``, ``.`` and ``..`` as files, an
empty name, a NUL, a folder ``../outside`` -- and the real OpenSSH server,
whose folders hold names that are not UTF-8 (any bytes but ``/`` and NUL are
a valid file name on Linux). Local trees with such names are checked too.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.hostile_sftp import HostileSftpServer, hostile_listing
from support.helpers import run_cli, sftp_flags, write_random

#: what each listed name becomes as a path below the copied folder (refused, all of them)
HOSTILE_PATHS = {"../evil", "a/b", "/abs", ".", "..", "", "nul\x00name", "../outside", "sub/../evil"}
GOOD = {"good.csv": 1000, "sub/deep.bin": 70_000}
BAD_BYTES = b"bad\xff.bin"


def listing(s3: testbed.SeaweedServer, bucket: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def files_below(root: Path) -> dict[str, str]:
    """Every file below ``root`` (relative path -> SHA-256)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def served_tree(root: Path) -> dict[str, str]:
    """The drop folder the lying server serves, a real file that is not UTF-8, and files ``..`` would reach."""
    (root / "drop" / "sub").mkdir(parents=True)
    digests = {rel: write_random(root / "drop" / rel, size) for rel, size in GOOD.items()}
    (root / "outside").mkdir()
    write_random(root / "outside" / "secret.bin", 100)  # what following "../outside" would find
    write_random(root / "evil", 5)  # what reading "../evil" would find
    _write_bytes_name(root / "drop", BAD_BYTES, b"not utf-8")
    return digests


def _write_bytes_name(folder: Path, name: bytes, data: bytes) -> None:
    with open(os.fsencode(folder) + b"/" + name, "wb") as fh:
        fh.write(data)


def _injected() -> dict[str, list]:
    sub = [n for n in hostile_listing() if n.filename == b"../evil"]
    return {"/drop": hostile_listing(), "/drop/sub": sub}


def _refused(failures: list[dict]) -> dict[str, str]:
    return {f["path"]: f["error"] for f in failures}


def _check_refusals(failures: list[dict]) -> None:
    refused = _refused(failures)
    escaped = os.fsdecode(BAD_BYTES)
    assert set(refused) == HOSTILE_PATHS | {escaped}
    assert all(f["exit_code"] == 2 for f in failures)
    for error in refused.values():
        assert error.startswith("refusing"), error
    assert refused[escaped] == "refusing the name 'bad\\xff.bin' from the source: not valid UTF-8"
    assert "cannot hold '/'" in refused["a/b"]
    assert "'nul\\x00name'" in refused["nul\x00name"]


def test_cp_r_from_a_lying_server_copies_only_the_honest_names(tmp_path: Path) -> None:
    digests = served_tree(tmp_path / "server")
    out = tmp_path / "out"
    with HostileSftpServer(tmp_path / "keys", tmp_path / "server", _injected()) as server:
        result = run_cli("cp", "-r", server.url("/drop"), f"{out}/dest/", "--no-progress", "--json",
                         *server.flags())
    assert result.code == 2, result.stderr
    summary = json.loads(result.stdout)
    _check_refusals(summary["failures"])
    assert summary["copied"] == len(GOOD)
    assert files_below(out) == {f"dest/{rel}": digest for rel, digest in digests.items()}


@pytest.mark.usefixtures("s3_env")
def test_pull_from_a_lying_server_archives_only_the_honest_names(tmp_path: Path, s3: testbed.SeaweedServer,
                                                                 bucket: str) -> None:
    root = tmp_path / "server"
    served_tree(root)
    with HostileSftpServer(tmp_path / "keys", root, _injected()) as server:
        result = run_cli("pull", server.url("/drop"), f"s3://{bucket}/in/", "--json", *server.flags())
    assert result.code == 2, result.stderr
    report = json.loads(result.stdout)
    _check_refusals(report["failures"])
    assert (report["copied"], report["archived"]) == (len(GOOD), len(GOOD))
    assert listing(s3, bucket) == sorted(f"in/{rel}" for rel in GOOD)
    # Only the honest files were archived; nothing else on the server moved.
    assert (root / "drop" / ".done" / "good.csv").exists() and (root / "drop" / "sub" / ".done" / "deep.bin").exists()
    assert (root / "outside" / "secret.bin").exists() and (root / "evil").exists()
    assert os.path.exists(os.fsencode(root / "drop") + b"/" + BAD_BYTES)
    assert sorted(p.name for p in root.iterdir()) == ["drop", "evil", "outside"]


# -- names that are not UTF-8 on the real OpenSSH server, and in local trees --

def _nonutf8_tree(folder: Path) -> dict[str, str]:
    """good.csv, a file whose name is not UTF-8 and a folder whose name is not, holding a file."""
    folder.mkdir(parents=True)
    digests = {"good.csv": write_random(folder / "good.csv", 1000)}
    _write_bytes_name(folder, BAD_BYTES, b"x")
    os.mkdir(os.fsencode(folder) + b"/d\xfe")
    _write_bytes_name(folder, b"d\xfe/inner.csv", b"y")
    return digests


NONUTF8_PATHS = {os.fsdecode(BAD_BYTES), os.fsdecode(b"d\xfe/inner.csv")}


def _check_nonutf8(failures: list[dict]) -> None:
    refused = _refused(failures)
    assert set(refused) == NONUTF8_PATHS
    assert refused[os.fsdecode(BAD_BYTES)] == "refusing the name 'bad\\xff.bin' from the source: not valid UTF-8"
    assert refused[os.fsdecode(b"d\xfe/inner.csv")] == (
        "refusing the name 'd\\xfe/inner.csv' from the source: not valid UTF-8")
    assert all(f["exit_code"] == 2 for f in failures)


@pytest.mark.usefixtures("s3_env")
def test_pull_skips_a_name_that_is_not_utf8(ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str) -> None:
    folder = ssh.root / f"nonutf8-pull-{bucket}"
    _nonutf8_tree(folder)
    result = run_cli("pull", ssh.url(folder), f"s3://{bucket}/in/", "--json", *sftp_flags(ssh))
    assert result.code == 2, result.stderr
    report = json.loads(result.stdout)
    _check_nonutf8(report["failures"])
    assert listing(s3, bucket) == ["in/good.csv"]
    assert (folder / ".done" / "good.csv").exists()
    assert os.path.exists(os.fsencode(folder) + b"/" + BAD_BYTES)  # not archived: it was not pulled


@pytest.mark.parametrize("kind", ["sftp", "local"])
@pytest.mark.usefixtures("s3_env")
def test_cp_r_skips_a_name_that_is_not_utf8(kind: str, tmp_path: Path, ssh: testbed.SshServer,
                                            s3: testbed.SeaweedServer, bucket: str) -> None:
    folder = (ssh.root / f"nonutf8-cp-{bucket}") if kind == "sftp" else tmp_path / "src"
    digests = _nonutf8_tree(folder)
    src = ssh.url(folder) if kind == "sftp" else str(folder)
    to_local = run_cli("cp", "-r", src, f"{tmp_path}/out/", "--no-progress", "--json", *sftp_flags(ssh))
    assert to_local.code == 2, to_local.stderr
    _check_nonutf8(json.loads(to_local.stdout)["failures"])
    assert files_below(tmp_path / "out") == digests
    to_s3 = run_cli("cp", "-r", src, f"s3://{bucket}/t/", "--no-progress", "--json", *sftp_flags(ssh))
    assert to_s3.code == 2, to_s3.stderr
    _check_nonutf8(json.loads(to_s3.stdout)["failures"])
    assert listing(s3, bucket) == ["t/good.csv"]


def test_a_name_that_is_not_utf8_beside_the_destination_file(tmp_path: Path, ssh: testbed.SshServer) -> None:
    """--resume lists the destination folder for an earlier attempt's temporary file."""
    folder = ssh.root / f"nonutf8-dest-{tmp_path.name}"
    folder.mkdir()
    _write_bytes_name(folder, BAD_BYTES, b"someone else's file")
    digest = write_random(tmp_path / "big.bin", 12 * 1024 * 1024)
    result = run_cli("cp", str(tmp_path / "big.bin"), ssh.url(folder) + "/", "--resume", "--no-progress",
                     "--part-size", "5MiB", *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert hashlib.sha256((folder / "big.bin").read_bytes()).hexdigest() == digest
