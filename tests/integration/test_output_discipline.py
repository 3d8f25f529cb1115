"""What reaches stdout and stderr: -q is silent on success, a closed stdout is no error, --help works with a
broken config file, sizes and rates in one unit family (MiB, MiB/s), a resumed copy's rate is of what it moved.

Real SeaweedFS and sshd; each command runs as a separate process, as a user (or cron) runs it.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import time
from pathlib import Path

import pytest

from s3ferry.cli.progress import LogProgress
from s3ferry.demo import servers as testbed
from support.helpers import MiB, pull_flow, run_cli, sftp_flags, start, stop_after_journaled_parts, write_random

BROKEN_CONFIG = "[defaults]\npart_size = \n"
#: a size or a rate in the decimal family (MB, MB/s, kB): none may be shown beside MiB
DECIMAL = re.compile(r"\b\d+(\.\d+)? ?[kMGT]B\b|[kMGT]B/s")


# --- -q: nothing on success ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("s3_env")
def test_quiet_copy_prints_nothing(tmp_path: Path, bucket: str) -> None:
    src = tmp_path / "q.bin"
    write_random(src, 3 * MiB)
    result = run_cli("cp", "-q", str(src), f"s3://{bucket}/q.bin")
    assert result.code == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    loud = run_cli("cp", str(src), f"s3://{bucket}/loud.bin")  # the summary -q hid is there without it
    assert loud.code == 0 and loud.stdout.startswith("copied "), loud.stderr


@pytest.mark.usefixtures("s3_env")
def test_quiet_tree_copy_prints_nothing(tmp_path: Path, bucket: str) -> None:
    folder = tmp_path / "tree"
    folder.mkdir()
    for name in ("a.bin", "b.bin"):
        write_random(folder / name, 1 * MiB)
    result = run_cli("cp", "-r", "-q", f"{folder}/", f"s3://{bucket}/tree/")
    assert result.code == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")


@pytest.mark.usefixtures("s3_env")
def test_quiet_run_once_prints_nothing(tmp_path: Path, s3: testbed.SeaweedServer, bucket: str) -> None:
    """`run --once -q` from cron: nothing on stdout or stderr when every flow succeeded."""
    drop = tmp_path / "drop"
    drop.mkdir()
    write_random(drop / "a.csv", 1000)
    flows = tmp_path / "flows.toml"
    flows.write_text(pull_flow("quiet", f"{drop}/", bucket, s3.endpoint))
    result = run_cli("run", "--once", "-q", str(flows))
    assert result.code == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    write_random(drop / "b.csv", 1000)
    loud = run_cli("run", "--once", str(flows))  # without -q the run says what it did
    assert loud.code == 0 and "quiet:" in loud.stdout, loud.stderr


def test_quiet_cancel_prints_nothing(s3: testbed.SeaweedServer, s3_env: dict[str, str], bucket: str) -> None:
    s3.client().create_multipart_upload(Bucket=bucket, Key="old/x.bin")
    result = run_cli("cancel", "-q", "--prefix", f"s3://{bucket}/old/")
    assert result.code == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_quiet_doctor_prints_nothing_when_every_check_passes(s3_env: dict[str, str], bucket: str) -> None:
    result = run_cli("doctor", "-q", f"s3://{bucket}/")
    assert result.code == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")


# --- a closed stdout ----------------------------------------------------------------------------------------


def test_a_closed_stdout_ends_quietly_like_coreutils(s3_env: dict[str, str], bucket: str) -> None:
    """`s3ferry doctor ... | head -1`: the reader is gone before doctor writes (closed here at once, so that
    no line can slip into the pipe's buffer first)."""
    proc = start("doctor", f"s3://{bucket}/")
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGPIPE, err  # what a shell shows for `yes | head -1`
    assert err == "", err  # no "internal error: BrokenPipeError", no traceback


# --- a broken config file -----------------------------------------------------------------------------------


@pytest.fixture
def broken_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(BROKEN_CONFIG)
    monkeypatch.setenv("S3FERRY_CONFIG", str(path))
    return path


@pytest.mark.parametrize("command", ["cp", "pull", "uploads", "cancel", "doctor", "run"])
def test_help_works_with_a_broken_config(command: str, broken_config: Path) -> None:
    result = run_cli(command, "--help")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(f"Usage: s3ferry {command} ") and result.stderr == ""
    version = run_cli("--version")  # as --version and shell completion always did
    assert version.code == 0 and version.stdout.startswith("s3ferry, version "), version.stderr
    completion = run_cli(env={"_S3FERRY_COMPLETE": "bash_complete", "COMP_WORDS": f"s3ferry {command} --debu",
                              "COMP_CWORD": "2"})
    assert completion.code == 0 and "plain,--debug" in completion.stdout.split(), completion.stderr
    ran = run_cli("uploads", "s3://bucket/")  # a command that runs still stops at the file, with its line
    assert ran.code == 2
    assert ran.stderr.startswith(f"s3ferry: error: {broken_config}:2: not valid TOML"), ran.stderr


# --- one unit family ----------------------------------------------------------------------------------------


def test_summary_lines_use_mib_and_mib_per_second(tmp_path: Path, s3_env: dict[str, str], bucket: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    src = folder / "units.bin"
    write_random(src, 12 * MiB)
    one = run_cli("cp", str(src), f"s3://{bucket}/units.bin")
    tree = run_cli("cp", "-r", f"{folder}/", f"s3://{bucket}/tree/")
    for result in (one, tree):
        assert result.code == 0, result.stderr
        line = result.stdout.strip()
        assert re.search(r"\(\d+\.\d (KiB|MiB|GiB)/s\)", line), line
        assert re.search(r"peak RSS \d+\.\d MiB", line), line
        assert not DECIMAL.search(line), line
    as_json = json.loads(run_cli("cp", "--json", str(src), f"s3://{bucket}/units-json.bin").stdout)
    assert as_json["size"] == 12 * MiB and isinstance(as_json["peak_rss_bytes"], int)  # JSON stays in bytes


def test_progress_lines_use_mib_per_second(caplog: pytest.LogCaptureFixture) -> None:
    progress = LogProgress(interval=0.0)
    with caplog.at_level(logging.WARNING, logger="s3ferry.progress"):
        progress.started("big.bin", 64 * MiB)
        time.sleep(0.01)
        progress.advanced(8 * MiB)
    line = caplog.records[-1].getMessage()
    assert "8.0 MiB of 64.0 MiB" in line and re.search(r"\d+\.\d (KiB|MiB|GiB)/s", line), line
    assert not DECIMAL.search(line), line


# --- a resumed copy's rate ----------------------------------------------------------------------------------


def test_a_resumed_copy_reports_the_rate_of_what_it_moved(tmp_path: Path, ssh: testbed.SshServer,
                                                         state: Path) -> None:
    size = 64 * MiB
    src = ssh.root / "rate-resume.bin"
    write_random(src, size)
    out = tmp_path / "out"
    args = ["cp", ssh.url(src), f"{out}/", *sftp_flags(ssh), "--no-progress"]
    stop_after_journaled_parts(start(*args, "--bwlimit", "4M"), state, signal.SIGKILL)

    result = run_cli(*args)
    assert result.code == 0, result.stderr
    line = result.stdout.strip()
    found = re.search(r" in (\d+\.\d+) s \((\d+\.\d) MiB sent this run at (\d+\.\d) MiB/s\)", line)
    assert found, line
    seconds, moved, rate = (float(found.group(i)) for i in (1, 2, 3))
    assert 0 < moved < size / MiB
    assert abs(rate - moved / seconds) <= 0.1 + 0.05 * rate, line  # the moved bytes' rate
    assert abs(rate - size / MiB / seconds) > 0.1 + 0.05 * rate, line  # not the whole file's
