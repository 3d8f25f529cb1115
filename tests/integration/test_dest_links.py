"""A symbolic link to a folder inside a destination tree is never written through.

``cp -r`` and ``push`` into a local or SFTP folder where ``dest/sub`` is a
link to somewhere else: the files below ``sub`` are refused by name (exit 2),
nothing lands where the link points, and the other files are copied. A link
in the path the user typed (the destination folder itself, or above it) is
their choice and is followed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from support.helpers import run_cli, sftp_flags

OBJECTS = {"a.csv": b"a" * 100, "sub/x.bin": b"x" * 2000, "sub/deep/y.bin": b"y" * 300, "other/z.csv": b"z" * 50}
BELOW_LINK = {"sub/x.bin", "sub/deep/y.bin"}


def upload(s3: testbed.SeaweedServer, bucket: str) -> None:
    client = s3.client()
    for rel, data in OBJECTS.items():
        client.put_object(Bucket=bucket, Key=f"p/{rel}", Body=data)


def files_below(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def linked_destination(top: Path) -> tuple[Path, Path]:
    """``top/dest`` whose ``sub`` is a link to ``top/outside`` (which holds a file of its own)."""
    dest, outside = top / "dest", top / "outside"
    dest.mkdir(parents=True)
    outside.mkdir()
    (outside / "theirs.txt").write_bytes(b"not ours")
    (dest / "sub").symlink_to(outside)
    return dest, outside


def check(failures: list[dict], dest: Path, outside: Path) -> None:
    assert {f["path"] for f in failures} == BELOW_LINK
    for failure in failures:
        assert failure["exit_code"] == 2
        assert "through the symbolic link" in failure["error"] and f"{dest}/sub" in failure["error"]
    assert files_below(outside) == {"theirs.txt": b"not ours"}  # nothing written where the link points
    assert files_below(dest) == {"a.csv": OBJECTS["a.csv"], "other/z.csv": OBJECTS["other/z.csv"]}  # not via sub
    assert (dest / "sub").is_symlink()


@pytest.mark.parametrize("kind", ["local", "sftp"])
@pytest.mark.usefixtures("s3_env")
def test_cp_r_refuses_a_linked_folder_inside_the_destination(kind: str, tmp_path: Path, ssh: testbed.SshServer,
                                                             s3: testbed.SeaweedServer, bucket: str) -> None:
    upload(s3, bucket)
    top = (ssh.root / f"links-{bucket}") if kind == "sftp" else tmp_path
    dest, outside = linked_destination(top)
    target = ssh.url(dest) + "/" if kind == "sftp" else f"{dest}/"
    result = run_cli("cp", "-r", f"s3://{bucket}/p/", target, "--no-progress", "--json", *sftp_flags(ssh))
    assert result.code == 2, result.stderr
    summary = json.loads(result.stdout)
    assert summary["copied"] == len(OBJECTS) - len(BELOW_LINK)
    check(summary["failures"], dest, outside)


@pytest.mark.parametrize("kind", ["local", "sftp"])
@pytest.mark.usefixtures("s3_env")
def test_push_refuses_a_linked_folder_inside_the_destination(kind: str, tmp_path: Path, ssh: testbed.SshServer,
                                                             s3: testbed.SeaweedServer, bucket: str) -> None:
    upload(s3, bucket)
    top = (ssh.root / f"links-push-{bucket}") if kind == "sftp" else tmp_path
    dest, outside = linked_destination(top)
    target = ssh.url(dest) if kind == "sftp" else str(dest)
    result = run_cli("push", f"s3://{bucket}/p/", target, "--json", "--state-dir", str(tmp_path / "state"),
                     *sftp_flags(ssh))
    assert result.code == 2, result.stderr
    report = json.loads(result.stdout)
    assert report["copied"] == len(OBJECTS) - len(BELOW_LINK)
    check(report["failures"], dest, outside)


@pytest.mark.parametrize("kind", ["local", "sftp"])
@pytest.mark.usefixtures("s3_env")
def test_a_link_in_the_path_the_user_typed_is_followed(kind: str, tmp_path: Path, ssh: testbed.SshServer,
                                                       s3: testbed.SeaweedServer, bucket: str) -> None:
    upload(s3, bucket)
    top = (ssh.root / f"typed-{bucket}") if kind == "sftp" else tmp_path
    real = top / "real" / "dest"
    real.mkdir(parents=True)
    (top / "via").symlink_to(top / "real")  # a link above the destination folder
    (top / "dest-link").symlink_to(real)  # the destination folder itself is a link
    for typed in (top / "via" / "dest", top / "dest-link"):
        target = ssh.url(typed) + "/" if kind == "sftp" else f"{typed}/"
        result = run_cli("cp", "-r", f"s3://{bucket}/p/", target, "--no-progress", "--overwrite", *sftp_flags(ssh))
        assert result.code == 0, result.stderr
    assert files_below(real) == OBJECTS
