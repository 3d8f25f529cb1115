"""Usage errors s3ferry reports before it connects anywhere: exit code 2 and what is wrong (no server runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.helpers import (
    assert_one_line_error,
    run_cli,
)


def test_bwlimit_rejects_nonsense(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"x")
    result = run_cli("cp", str(tmp_path / "x"), str(tmp_path / "y"), "--bwlimit", "10")
    assert result.code == 2 and "bwlimit" in result.stderr


def test_hostile_key_refused_on_download(tmp_path: Path) -> None:
    out = tmp_path / "dl"
    out.mkdir()
    result = run_cli("cp", "s3://some-bucket/a/../../x", f"{out}/", "--no-progress")
    assert result.code == 2
    assert "unsafe" in result.stderr
    assert list(out.iterdir()) == []


def test_sse_c_key_file_must_hold_a_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("short")
    src = tmp_path / "x"
    src.write_bytes(b"x")
    result = run_cli("cp", str(src), "s3://some-bucket/x", "--sse-c-key-file", str(bad), "--no-progress")
    assert result.code == 2
    assert "256-bit key" in result.stderr


def test_usage_errors() -> None:
    result = run_cli("doctor")
    assert result.code == 2 and "name what to check" in result.stderr
    result = run_cli("doctor", "https://example.com/x")
    assert result.code == 2 and "sftp:// and s3://" in result.stderr


@pytest.mark.parametrize(
    "src,dst,needle",
    [
        ("gopher://host/x", "s3://bucket/x", "unsupported scheme"),
        ("sftp:///no/host", "s3://bucket/x", "missing host"),
        ("sftp://host:notaport/x", "s3://bucket/x", "bad port"),
        ("/tmp/x", "s3:///key", "missing bucket"),
        ("/tmp/x", "s3://ab/key", "3 to 63"),
    ],
)
def test_malformed_urls(src: str, dst: str, needle: str) -> None:
    result = run_cli("cp", src, dst)
    assert result.code == 2
    assert_one_line_error(result.stderr, needle)


def test_bad_option_value(tmp_path: Path) -> None:
    result = run_cli("cp", "--part-size", "1MiB", str(tmp_path / "x"), "s3://bucket/x")
    assert result.code == 2
    assert_one_line_error(result.stderr, "part-size")


def test_filters_need_recursive(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    result = run_cli("cp", str(tmp_path / "f"), str(tmp_path / "g"), "--exclude", "*.tmp")
    assert result.code == 2
    assert "add -r" in result.stderr
