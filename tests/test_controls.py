"""Transfer controls users expect from rclone and the AWS CLI (issue 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import MiB, run_cli, write_random


@pytest.mark.usefixtures("s3_env")
def test_bwlimit_is_honoured(tmp_path: Path, bucket: str) -> None:
    src = tmp_path / "limited.bin"
    write_random(src, 64 * MiB)
    result = run_cli("cp", str(src), f"s3://{bucket}/limited.bin", "--bwlimit", "16M", "--json", "--no-progress")
    assert result.code == 0, result.stderr
    seconds = json.loads(result.stdout)["seconds"]
    assert 3.6 <= seconds <= 4.4, seconds  # 64 MiB at 16 MiB/s: 4 s, within 10%


def test_bwlimit_rejects_nonsense(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"x")
    result = run_cli("cp", str(tmp_path / "x"), str(tmp_path / "y"), "--bwlimit", "10")
    assert result.code == 2 and "bwlimit" in result.stderr
