"""Integrity of the recurring jobs and of what they remember (issue 14, items 2, 3, 4 and 9b).

* pull heals (archives without uploading) only what an interrupted run uploaded, proven by reading the file;
* push marks survive concurrent flows, and two runs of one push never deliver twice;
* a same-size rewrite of an SFTP source within the second of its mtime is never published;
* a damaged journal is named, never an "internal error", and never blocks a plain copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from s3ferry.demo import servers as testbed
from s3ferry.jobs.push import mark_key
from servers.proxy import CuttingProxy
from servers.s3proxy import S3FaultProxy
from support.helpers import MiB, object_sha256, run_cli, sftp_flags, write_random


def pull(ssh: testbed.SshServer, folder: Path, bucket: str, *extra: str,
         env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    result = run_cli("pull", ssh.url(folder), f"s3://{bucket}/in/", "--json", *sftp_flags(ssh), *extra, env=env)
    return result.code, json.loads(result.stdout) if result.stdout.strip() else {}, result.stderr


def same_size_rewrite(path: Path) -> str:
    """Other bytes, same size, same mtime: written in place, never shorter for a moment (a truncating
    rewrite is caught by a short read already), the mtime kept (scp -p / rsync -t of a corrected file)."""
    before = path.stat()
    data = os.urandom(before.st_size)
    with open(path, "r+b") as fh:
        fh.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    return hashlib.sha256(data).hexdigest()


def just_changed(path: Path) -> None:
    """An mtime within the second a same-size rewrite could hide in, however slow this machine is today:
    a minute ahead, as a server clock running ahead of ours shows it (the window counts that as recent)."""
    ahead = time.time() + 60
    os.utime(path, (ahead, ahead))


def age(path: Path, seconds: float = 3600) -> None:
    """A file dropped a while ago (not within the second a rewrite could hide in)."""
    past = time.time() - seconds
    os.utime(path, (past, past))


# -- pull: healing needs proof ---------------------------------------------------------------------------------

@pytest.mark.usefixtures("s3_env")
def test_a_corrected_file_with_the_same_name_size_and_mtime_is_uploaded(ssh: testbed.SshServer,
                                                                        s3: testbed.SeaweedServer, bucket: str,
                                                                        tmp_path: Path) -> None:
    folder = ssh.root / "heal-resent"
    folder.mkdir()
    write_random(folder / "daily.csv", 3 * MiB)
    age(folder / "daily.csv")
    sent = (folder / "daily.csv").stat()
    code, first, err = pull(ssh, folder, bucket, "--state-dir", str(tmp_path / "state"))
    assert code == 0 and first["copied"] == 1, err
    # The partner sends a corrected file again, keeping name, size and mtime (its own copy's).
    corrected = write_random(folder / "daily.csv", sent.st_size)
    os.utime(folder / "daily.csv", ns=(sent.st_atime_ns, sent.st_mtime_ns))
    code, second, err = pull(ssh, folder, bucket, "--state-dir", str(tmp_path / "state"))
    assert code == 0, err
    assert (second["copied"], second["healed"]) == (1, 0)
    assert object_sha256(s3, bucket, "in/daily.csv") == corrected


@pytest.mark.usefixtures("s3_env")
def test_healing_after_a_failed_archive_proves_the_bytes(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                         bucket: str, tmp_path: Path) -> None:
    folder = ssh.root / "heal-proof"
    folder.mkdir()
    write_random(folder / "a.bin", 6 * MiB)
    original = write_random(folder / "b.bin", 6 * MiB)
    for name in ("a.bin", "b.bin"):
        age(folder / name)
    os.symlink("/nonexistent/archive", folder / ".done")  # archiving fails (the walk skips links)
    state = ["--state-dir", str(tmp_path / "state")]
    code, first, err = pull(ssh, folder, bucket, *state)
    assert code != 0 and first["copied"] == 2 and first["archived"] == 0, err
    (folder / ".done").unlink()
    corrected = same_size_rewrite(folder / "a.bin")  # a.bin was re-sent meanwhile; b.bin was not
    with S3FaultProxy(s3.s3_port) as proxy:
        code, second, err = pull(ssh, folder, bucket, *state, env={"AWS_ENDPOINT_URL_S3": proxy.url})
        sent = proxy.upload_bytes
    assert code == 0, err
    assert (second["copied"], second["healed"], second["archived"]) == (1, 1, 2)
    assert sent == 6 * MiB  # only a.bin went again
    assert object_sha256(s3, bucket, "in/a.bin") == corrected
    assert object_sha256(s3, bucket, "in/b.bin") == original


# -- push: marks and locks -------------------------------------------------------------------------------------

def _objects(s3: testbed.SeaweedServer, bucket: str, count: int) -> None:
    client = s3.client()
    for i in range(count):
        client.put_object(Bucket=bucket, Key=f"out/f{i:03d}.txt", Body=f"file {i}\n".encode())


def _push(ssh: testbed.SshServer, bucket: str, inbox: Path, state: Path, *extra: str,
          env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    args = [str(Path(sys.executable).with_name("s3ferry")), "push", f"s3://{bucket}/out/", ssh.url(inbox), "--json",
            "--state-dir", str(state), *sftp_flags(ssh), *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return dict(json.loads(out))


@pytest.mark.usefixtures("s3_env")
def test_two_flows_pushing_one_prefix_keep_each_others_marks(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                             bucket: str, tmp_path: Path) -> None:
    count = 40
    _objects(s3, bucket, count)
    inboxes = [ssh.root / "flow-a", ssh.root / "flow-b"]
    for inbox in inboxes:
        inbox.mkdir()
    state = tmp_path / "state"
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.delays["PutObjectTagging"] = 0.2  # the read-modify-write of a tag set takes its time
        procs = [_push(ssh, bucket, inbox, state, "--transfers", "8", env={"AWS_ENDPOINT_URL_S3": proxy.url})
                 for inbox in inboxes]
        assert [_report(p)["copied"] for p in procs] == [count, count]
    client = s3.client()
    marks = {mark_key(ssh.url(inbox)) for inbox in inboxes}
    for i in range(count):
        tags = {t["Key"] for t in client.get_object_tagging(Bucket=bucket, Key=f"out/f{i:03d}.txt")["TagSet"]}
        assert marks <= tags, (i, tags)
    again = [_push(ssh, bucket, inbox, state) for inbox in inboxes]
    assert [_report(p)["copied"] for p in again] == [0, 0]  # nothing delivered twice


@pytest.mark.usefixtures("s3_env")
def test_two_runs_of_one_push_never_deliver_twice(ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str,
                                                  tmp_path: Path) -> None:
    client = s3.client()
    for i in range(6):
        client.put_object(Bucket=bucket, Key=f"out/big{i}.bin", Body=os.urandom(2 * MiB))
    inbox = ssh.root / "one-inbox"
    inbox.mkdir()
    state = tmp_path / "state"
    first = _push(ssh, bucket, inbox, state, "--bwlimit", "3M", "--transfers", "1")
    deadline = time.monotonic() + 60
    while not any(inbox.iterdir()):  # the first run is delivering (it holds the lock)
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    second = _report(_push(ssh, bucket, inbox, state))
    assert second["locked"] is True and second["copied"] == 0, second
    assert _report(first)["copied"] == 6


# -- a same-size rewrite within the second ---------------------------------------------------------------------

@pytest.mark.usefixtures("s3_env")
def test_a_same_second_rewrite_of_an_sftp_source_is_never_published(ssh: testbed.SshServer,
                                                                    s3: testbed.SeaweedServer, bucket: str) -> None:
    path = ssh.root / "rewritten.bin"
    write_random(path, 40 * MiB)
    just_changed(path)  # a rewrite within its second keeps size and mtime
    args = [str(Path(sys.executable).with_name("s3ferry")), "cp", ssh.url(path), f"s3://{bucket}/rewritten.bin",
            "--bwlimit", "16M", "--no-resume", *sftp_flags(ssh)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    client, deadline = s3.client(), time.monotonic() + 60
    while not any(client.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts")
                  for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    same_size_rewrite(path)  # the first part was read from the old bytes, the rest will be new ones
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    assert "changed while it was read" in err and err.count("\n") == 1, err
    assert "rewritten.bin" not in [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.mark.usefixtures("s3_env")
def test_a_fresh_unchanged_source_is_read_twice_and_published(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                              bucket: str) -> None:
    path = ssh.root / "fresh.bin"
    digest = write_random(path, 20 * MiB)
    just_changed(path)
    result = run_cli("cp", ssh.url(path), f"s3://{bucket}/fresh.bin", "-v", *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert "read a second time" in result.stderr
    assert object_sha256(s3, bucket, "fresh.bin") == digest


# -- a damaged journal -----------------------------------------------------------------------------------------

@pytest.mark.usefixtures("s3_env")
def test_a_damaged_journal_is_named_and_does_not_block_a_copy(ssh: testbed.SshServer, bucket: str,
                                                              tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    journal = state / "journal.sqlite3"
    journal.write_bytes(b"this is not a database" * 100)
    write_random(tmp_path / "x.bin", 12 * MiB)
    copied = run_cli("cp", str(tmp_path / "x.bin"), f"s3://{bucket}/x.bin", "--state-dir", str(state))
    assert copied.code == 0, copied.stderr
    assert str(journal) in copied.stderr and "mv " in copied.stderr and "without resume" in copied.stderr
    inbox = ssh.root / "damaged-journal"
    inbox.mkdir()
    pushed = run_cli("push", f"s3://{bucket}/", ssh.url(inbox), "--state-dir", str(state), *sftp_flags(ssh))
    assert pushed.code == 2, pushed.stderr
    assert "internal error" not in pushed.stderr and f"the journal {journal} is damaged" in pushed.stderr
    assert pushed.stderr.count("\n") == 1
    assert list(inbox.iterdir()) == []


@pytest.mark.usefixtures("s3_env")
def test_a_fresh_small_source_is_read_twice_before_its_single_put(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                                  bucket: str) -> None:
    path = ssh.root / "fresh-small.bin"
    digest = write_random(path, 3 * MiB)
    just_changed(path)
    with S3FaultProxy(s3.s3_port) as proxy, CuttingProxy(ssh.port) as link:
        url = f"sftp://{ssh.user}@127.0.0.1:{link.port}{path}"
        result = run_cli("cp", url, f"s3://{bucket}/fresh-small.bin", "-v", "-i", str(ssh.user_key),
                         "--host-key", ssh.host_fingerprint, env={"AWS_ENDPOINT_URL_S3": proxy.url})
        puts, uploads = proxy.count("PutObject"), proxy.count("CreateMultipartUpload")
        read = link.forwarded
    assert result.code == 0, result.stderr
    assert "read a second time" in result.stderr
    assert read > 2 * 3 * MiB  # both reads crossed the link
    assert (puts, uploads) == (1, 0)  # still one request: the second read happens before it
    assert object_sha256(s3, bucket, "fresh-small.bin") == digest
