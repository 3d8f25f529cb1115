"""Messages that say what is wrong and what to do, not something nearby (real SeaweedFS and sshd)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from support.helpers import (
    MiB,
    partials,
    run_cli,
    sftp_flags,
    start,
    stop_after_journaled_parts,
    uploads_for,
    write_random,
)


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("s3ferry: "), stderr
    return lines[0]


@pytest.mark.usefixtures("s3_env")
def test_a_wrong_secret_key_is_named(tmp_path: Path, bucket: str) -> None:
    src = tmp_path / "x.bin"
    write_random(src, 1 * MiB)
    for args in (("cp", str(src), f"s3://{bucket}/x.bin"), ("uploads", f"s3://{bucket}/")):
        result = run_cli(*args, env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
        assert result.code == 2
        line = error_line(result.stderr)
        assert "signature does not match" in line and "check the secret key" in line, line
        assert "access denied" not in line and "not-the-secret" not in line


def test_ctrl_c_on_a_download_says_the_partial_file_is_kept(tmp_path: Path, ssh: testbed.SshServer,
                                                            state: Path) -> None:
    src = ssh.root / "interrupted-download.bin"
    write_random(src, 64 * MiB)
    out = tmp_path / "out"
    args = ["cp", ssh.url(src), f"{out}/", *sftp_flags(ssh), "--no-progress"]
    proc = start(*args, "--bwlimit", "4M")
    _, err = stop_after_journaled_parts(proc, state, signal.SIGINT, parts=1)
    assert proc.returncode == 130
    line = error_line(err)
    assert "s3ferry cancel" not in line, line  # cancel aborts S3 uploads: it cannot remove a file
    kept = partials(out)
    assert len(kept) == 1
    assert f"the partial file {out}/.{src.name}.s3ferry-*.tmp is kept" in line, line
    assert "run the same command again to resume" in line and "delete it" in line, line
    resumed = run_cli(*args, "--json")
    assert resumed.code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed_parts"] >= 1 and partials(out) == []


@pytest.mark.usefixtures("s3_env")
def test_a_download_part_size_is_honoured_or_the_note_says_why(tmp_path: Path, s3: testbed.SeaweedServer,
                                                               bucket: str) -> None:
    s3.client().put_object(Bucket=bucket, Key="big.bin", Body=b"\x01" * (70 * MiB))
    roomy = run_cli("cp", "--json", "--no-progress", "--part-size", "32MiB", "--max-memory", "64MiB",
                    f"s3://{bucket}/big.bin", str(tmp_path / "a.bin"))
    assert roomy.code == 0, roomy.stderr
    assert json.loads(roomy.stdout)["part_size"] == 32 * MiB and roomy.stderr == ""
    tight = run_cli("cp", "--json", "--no-progress", "--part-size", "32MiB", f"s3://{bucket}/big.bin",
                    str(tmp_path / "b.bin"))
    assert tight.code == 0, tight.stderr
    used = json.loads(tight.stdout)["part_size"]
    assert used == 16 * MiB  # two parts fit the default 32 MiB budget
    assert "parts of 16.0 MiB, not 32.0 MiB" in tight.stderr and "--max-memory" in tight.stderr, tight.stderr


@pytest.mark.usefixtures("s3_env")
def test_a_bucket_as_source_gets_one_message_with_or_without_slash(tmp_path: Path, bucket: str) -> None:
    lines = set()
    for src in (f"s3://{bucket}", f"s3://{bucket}/"):
        for dst in (f"{tmp_path}/", str(tmp_path / "x.bin"), f"s3://{bucket}/copy"):
            result = run_cli("cp", src, dst)
            assert result.code == 2
            lines.add(error_line(result.stderr))
    assert lines == {f"s3ferry: error: s3://{bucket}/ is a prefix (use cp -r to copy everything under it)"}


def test_a_relative_looking_sftp_path_gets_the_absolute_path_hint(tmp_path: Path, ssh: testbed.SshServer) -> None:
    result = run_cli("cp", f"sftp://{ssh.user}@127.0.0.1:{ssh.port}/relative.csv", f"{tmp_path}/",
                     *sftp_flags(ssh))
    assert result.code == 2
    line = error_line(result.stderr)
    assert "source not found" in line and "absolute" in line and "sftp://host/home/me/x" in line, line


def test_an_empty_password_file_is_named(tmp_path: Path, ssh: testbed.SshServer) -> None:
    empty = tmp_path / "password"
    empty.write_text("\n")
    result = run_cli("cp", "--password-file", str(empty), "--known-hosts", str(ssh.known_hosts),
                     ssh.url(ssh.root / "anything.bin"), f"{tmp_path}/")
    assert result.code == 2
    line = error_line(result.stderr)
    assert f"--password-file {empty} is empty" in line, line


def test_cancel_of_a_folder_refuses_and_names_prefix(s3: testbed.SeaweedServer, s3_env: dict[str, str],
                                                     bucket: str) -> None:
    upload_id = s3.client().create_multipart_upload(Bucket=bucket, Key="dir/big.bin")["UploadId"]
    refused = run_cli("cancel", f"s3://{bucket}/dir/")
    assert refused.code == 2
    line = error_line(refused.stderr)
    assert f"s3://{bucket}/dir/ is a folder" in line and "--prefix" in line, line
    assert [u["UploadId"] for u in uploads_for(s3, bucket)] == [upload_id]  # nothing was aborted
    done = run_cli("cancel", "--prefix", f"s3://{bucket}/dir/")
    assert done.code == 0 and upload_id in done.stdout, done.stderr
    assert uploads_for(s3, bucket) == []
    assert "--prefix" in run_cli("cancel", "--help").stdout.split("Options:")[0]  # the help says so too
