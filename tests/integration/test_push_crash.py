"""A push killed (SIGKILL) after the file was renamed into place on the SFTP server but before its delivery
was recorded and marked: the next run recognises the file as that delivery and marks it; it does not send
it again (a partner's inbox must not see one object twice). Killed before the rename: the next run sends it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from s3ferry.demo import servers as testbed
from servers.s3proxy import S3FaultProxy
from support.helpers import S3FERRY, run_cli, sftp_flags

MiB = 1024 * 1024


def push_args(bucket: str, folder: Path, state: Path, ssh: testbed.SshServer) -> list[str]:
    return ["push", f"s3://{bucket}/out/", ssh.url(folder), "--json", "--state-dir", str(state), *sftp_flags(ssh)]


def killed_when(args: list[str], endpoint: str, done: Path, timeout: float = 60) -> None:
    """``s3ferry`` with ``args`` against ``endpoint``, SIGKILLed as soon as ``done`` exists."""
    proc = subprocess.Popen([S3FERRY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "AWS_ENDPOINT_URL_S3": endpoint})
    try:
        deadline = time.monotonic() + timeout
        while not done.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{done.name} never appeared"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()


def test_killed_after_the_rename_is_not_delivered_twice(tmp_path: Path, s3: testbed.SeaweedServer,
                                                         ssh: testbed.SshServer, bucket: str,
                                                         s3_env: dict[str, str]) -> None:
    client = s3.client()
    data = os.urandom(6 * MiB)
    etag = client.put_object(Bucket=bucket, Key="out/w.bin", Body=data)["ETag"]
    folder, state = ssh.root / f"inbox-{bucket}", tmp_path / "state"
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.delays["GetObjectTagging"] = 30  # the mark after the rename stalls: killed in that window
        proxy.delays["HeadObject"] = 0.3
        killed_when(push_args(bucket, folder, state, ssh), proxy.url, folder / "w.bin")
    assert (folder / "w.bin").read_bytes() == data  # in place, not recorded, not marked
    assert "TagSet" not in client.get_object_tagging(Bucket=bucket, Key="out/w.bin") or \
        not client.get_object_tagging(Bucket=bucket, Key="out/w.bin")["TagSet"]
    renamed_at = (folder / "w.bin").stat().st_ino

    again = run_cli(*push_args(bucket, folder, state, ssh))
    assert again.code == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["copied"] == 0 and report["skipped"] == 1, report  # recognised, not sent again
    assert (folder / "w.bin").stat().st_ino == renamed_at and (folder / "w.bin").read_bytes() == data
    tags = client.get_object_tagging(Bucket=bucket, Key="out/w.bin")["TagSet"]
    assert [t["Value"] for t in tags if t["Key"].startswith("s3ferry-pushed-")] == [etag.strip('"')]
    third = json.loads(run_cli(*push_args(bucket, folder, state, ssh)).stdout)
    assert third["copied"] == 0 and third["skipped"] == 1


def test_a_file_changed_in_place_after_the_kill_is_sent_again(tmp_path: Path, s3: testbed.SeaweedServer,
                                                               ssh: testbed.SshServer, bucket: str,
                                                               s3_env: dict[str, str]) -> None:
    client = s3.client()
    data = os.urandom(2 * MiB)
    client.put_object(Bucket=bucket, Key="out/v.bin", Body=data)
    folder, state = ssh.root / f"inbox-{bucket}", tmp_path / "state"
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.delays["GetObjectTagging"] = 30
        killed_when(push_args(bucket, folder, state, ssh), proxy.url, folder / "v.bin")
    (folder / "v.bin").write_bytes(b"the partner's own file now")  # not our copy any more: another size
    again = run_cli(*push_args(bucket, folder, state, ssh))
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["copied"] == 1
    assert (folder / "v.bin").read_bytes() == data
