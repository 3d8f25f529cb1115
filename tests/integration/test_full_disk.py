"""A full disk behind a file destination: said plainly, exit 1, the temporary file removed.

A full disk does not pass by itself: keeping the temporary file "for resume"
would keep the disk full. An 8 MiB tmpfs is mounted (the tests run as root)
inside the test sshd's root for SFTP, or in the test's own folder, and a
20 MiB file is copied onto it. OpenSSH reports ENOSPC only as a generic
failure; the client asks ``statvfs@openssh.com`` to tell.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from support.helpers import MiB, run_cli, sftp_flags, write_random

DISK = 8 * MiB
BIG = 20 * MiB


@contextmanager
def small_disk(where: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs mounted at ``where`` for the block; unmounted after, whatever happened."""
    where.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK // MiB}m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def check_no_space(stderr: str) -> None:
    assert "no space left on the destination" in stderr, stderr
    assert "20.0 MiB needed" in stderr and " free, " in stderr, stderr
    assert "kept" not in stderr and "resume" not in stderr, stderr


@pytest.mark.parametrize("kind", ["sftp", "local"])
def test_cp_onto_a_full_disk(kind: str, tmp_path: Path, ssh: testbed.SshServer) -> None:
    write_random(tmp_path / "big.bin", BIG)
    place = (ssh.root / f"full-{tmp_path.name}") if kind == "sftp" else tmp_path / "full"
    with small_disk(place) as disk:
        target = ssh.url(disk / "big.bin") if kind == "sftp" else str(disk / "big.bin")
        result = run_cli("cp", str(tmp_path / "big.bin"), target, "--no-progress",
                         "--state-dir", str(tmp_path / "state"), *sftp_flags(ssh))
        left = sorted(p.name for p in disk.iterdir())
    assert result.code == 1, result.stderr
    check_no_space(result.stderr)
    assert target in result.stderr
    assert left == []  # the temporary file is gone: the disk is not left full


@pytest.mark.parametrize("kind", ["sftp", "local"])
@pytest.mark.usefixtures("s3_env")
def test_push_onto_a_full_disk_goes_on_with_the_other_files(kind: str, tmp_path: Path, ssh: testbed.SshServer,
                                                            s3: testbed.SeaweedServer, bucket: str) -> None:
    write_random(tmp_path / "big.bin", BIG)
    client = s3.client()
    client.upload_file(str(tmp_path / "big.bin"), bucket, "out/big.bin")
    client.put_object(Bucket=bucket, Key="out/small.csv", Body=b"s" * 1000)
    place = (ssh.root / f"full-push-{tmp_path.name}") if kind == "sftp" else tmp_path / "full"
    with small_disk(place) as disk:
        target = ssh.url(disk) if kind == "sftp" else str(disk)
        result = run_cli("push", f"s3://{bucket}/out/", target, "--json", "--transfers", "1",
                         "--state-dir", str(tmp_path / "state"), *sftp_flags(ssh))
        left = {p.name: p.read_bytes() for p in disk.iterdir()}
    assert result.code == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["copied"] == 1 and [f["path"] for f in report["failures"]] == ["big.bin"]
    check_no_space(report["failures"][0]["error"])
    assert left == {"small.csv": b"s" * 1000}
