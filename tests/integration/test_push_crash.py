"""A push killed (SIGKILL) after the file was renamed into place on the SFTP server but before its delivery
was recorded and marked: the next run recognises the file as that delivery and marks it; it does not send
it again (a partner's inbox must not see one object twice). Killed before the rename: the next run sends it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from s3ferry.demo import servers as testbed
from servers.s3proxy import S3FaultProxy
from support.helpers import S3FERRY, run_cli, sftp_flags

MiB = 1024 * 1024


def push_args(bucket: str, folder: Path, state: Path, ssh: testbed.SshServer) -> list[str]:
    return ["push", f"s3://{bucket}/out/", ssh.url(folder), "--json", "--state-dir", str(state), *sftp_flags(ssh)]


def journal_rows(state: Path, table: str) -> int:
    """Rows of ``table`` in the journal of ``state`` (a reader: the running push is not held up)."""
    db = state / "journal.sqlite3"
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        try:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        except sqlite3.OperationalError:  # the schema is being made
            return 0


def wait_for(ready: Callable[[], bool], what: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.01)


@contextlib.contextmanager
def pushing(args: list[str], endpoint: str) -> Iterator[subprocess.Popen[str]]:
    """``s3ferry`` with ``args`` against ``endpoint``, SIGKILLed when the block ends."""
    proc = subprocess.Popen([S3FERRY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "AWS_ENDPOINT_URL_S3": endpoint})
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()


@contextlib.contextmanager
def journal_held(state: Path) -> Iterator[None]:
    """No one else writes to the journal of ``state`` during the block (readers go on): a push waits at its
    next write, the record of a delivery."""
    with contextlib.closing(sqlite3.connect(state / "journal.sqlite3", timeout=30, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")


def killed_after_the_rename(args: list[str], proxy: S3FaultProxy, state: Path, delivered: Path) -> None:
    """The push killed with the file renamed into place and its delivery not yet recorded: the journal is held
    from the moment the delivery starts (journaled), the copy slowed so that this comes first."""
    proxy.delays["GetObject"] = 1.0
    with pushing(args, proxy.url) as proc:
        wait_for(lambda: journal_rows(state, "delivering") > 0, "the start of the delivery", proc)
        with journal_held(state):
            wait_for(delivered.exists, f"{delivered.name} in place", proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def test_killed_after_the_rename_is_not_delivered_twice(tmp_path: Path, s3: testbed.SeaweedServer,
                                                         ssh: testbed.SshServer, bucket: str,
                                                         s3_env: dict[str, str]) -> None:
    client = s3.client()
    data = os.urandom(6 * MiB)
    etag = client.put_object(Bucket=bucket, Key="out/w.bin", Body=data)["ETag"]
    folder, state = ssh.root / f"inbox-{bucket}", tmp_path / "state"
    with S3FaultProxy(s3.s3_port) as proxy:
        killed_after_the_rename(push_args(bucket, folder, state, ssh), proxy, state, folder / "w.bin")
    assert (folder / "w.bin").read_bytes() == data  # in place, not recorded, not marked
    assert journal_rows(state, "delivered") == 0
    assert not client.get_object_tagging(Bucket=bucket, Key="out/w.bin").get("TagSet")
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
        killed_after_the_rename(push_args(bucket, folder, state, ssh), proxy, state, folder / "v.bin")
    assert journal_rows(state, "delivered") == 0
    (folder / "v.bin").write_bytes(b"the partner's own file now")  # not our copy any more: another size
    again = run_cli(*push_args(bucket, folder, state, ssh))
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["copied"] == 1
    assert (folder / "v.bin").read_bytes() == data


def test_killed_after_the_record_before_the_tag_is_tagged_by_the_next_run(
        tmp_path: Path, s3: testbed.SeaweedServer, ssh: testbed.SshServer, bucket: str,
        s3_env: dict[str, str]) -> None:
    """The ledger has the delivery, the object has no tag yet: the next run skips it (the ledger) and writes
    its tag (else the object stayed untagged for good, and another state dir would deliver it again)."""
    client = s3.client()
    data = os.urandom(2 * MiB)
    etag = client.put_object(Bucket=bucket, Key="out/t.bin", Body=data)["ETag"]
    folder, state = ssh.root / f"inbox-{bucket}", tmp_path / "state"
    args = push_args(bucket, folder, state, ssh)
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.delays["GetObject"] = 1.0
        with pushing(args, proxy.url) as proc:
            wait_for(lambda: journal_rows(state, "delivering") > 0, "the start of the delivery", proc)
            proxy.delays["GetObjectTagging"] = 30  # the scan's read is done: the mark's read stalls
            wait_for(lambda: journal_rows(state, "delivered") > 0, "the record of the delivery", proc)
    assert (folder / "t.bin").read_bytes() == data
    assert journal_rows(state, "delivering") == 1  # recorded, still started: its tag is not written
    assert not client.get_object_tagging(Bucket=bucket, Key="out/t.bin").get("TagSet")

    again = run_cli(*args)
    assert again.code == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["copied"] == 0 and report["skipped"] == 1, report
    tags = client.get_object_tagging(Bucket=bucket, Key="out/t.bin")["TagSet"]
    assert [t["Value"] for t in tags if t["Key"].startswith("s3ferry-pushed-")] == [etag.strip('"')]
    assert journal_rows(state, "delivering") == 0
