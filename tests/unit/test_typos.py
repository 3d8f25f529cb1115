"""A location that looks like a URL with its "//" lost is refused (exit 2, a suggestion), never written
as a local folder named "s3:"; "./s3:x" still means a local file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from s3ferry.core.errors import UsageError
from s3ferry.core.urls import parse


@pytest.mark.parametrize(("typed", "meant"), [
    ("s3:/bucket/k/", "s3://bucket/k/"),
    ("s3:bucket/k/", "s3://bucket/k/"),
    ("S3:/bucket/k", "s3://bucket/k"),
    ("sftp:host:/path/x.csv", "sftp://host/path/x.csv"),
    ("sftp:me@host:/in/", "sftp://me@host/in/"),
    ("ftp:/ftp.example.com/x", "ftp://ftp.example.com/x"),
    ("https:/example.com/x.bin", "https://example.com/x.bin"),
    ("file:/tmp/x", "file:///tmp/x"),
])
def test_mistyped_scheme_is_refused_with_a_suggestion(typed: str, meant: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(typed)
    assert f"did you mean {meant!r}" in str(caught.value)
    assert caught.value.exit_code == 2


def test_relative_scp_path_says_urls_are_absolute() -> None:
    with pytest.raises(UsageError, match="absolute"):
        parse("sftp:me@host:data/x.csv")


@pytest.mark.parametrize("name", ["./s3:x", "/tmp/s3:bucket", "s3x:/a", "notes:today.txt", "s3"])
def test_explicit_local_names_stay_local(name: str) -> None:
    assert parse(name).scheme == "file"


def test_password_in_a_mistyped_url_is_not_echoed() -> None:
    with pytest.raises(UsageError) as caught:
        parse("sftp:me:hunter2@host:/x")
    assert "hunter2" not in str(caught.value)
    assert "did you mean 'sftp://me:***@host/x'" in str(caught.value)


def test_cp_to_a_mistyped_s3_url_writes_nothing_locally(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    source = work / "x.csv"
    source.write_bytes(b"a,b\n1,2\n")
    env = {**os.environ, "HOME": str(tmp_path), "S3FERRY_STATE_DIR": str(tmp_path / "state")}
    for dest in ("s3:/bucket/k/", "s3:bucket/k/"):
        done = subprocess.run([sys.executable, "-m", "s3ferry", "cp", "--no-progress", str(source), dest],
                              cwd=work, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "did you mean 's3://bucket/k/'" in done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["x.csv"]  # no ./s3: folder
