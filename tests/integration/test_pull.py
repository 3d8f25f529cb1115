"""s3ferry pull: a partner's SFTP drop folder into S3, archived, settled, retained, healed after a crash."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.s3proxy import S3FaultProxy
from support.helpers import MiB, object_sha256, run_cli, sftp_flags, write_random


def listing(s3: testbed.SeaweedServer, bucket: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def drop(root: Path, files: dict[str, int]) -> dict[str, str]:
    digests = {}
    for rel, size in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        digests[rel] = write_random(root / rel, size)
    return digests


def pull(ssh: testbed.SshServer, folder: Path, bucket: str, *extra: str, env: dict[str, str] | None = None) -> dict:
    result = run_cli("pull", ssh.url(folder), f"s3://{bucket}/in/", "--json", *sftp_flags(ssh), *extra, env=env)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


FILES = {"a.csv": 1000, "sub/b.csv": 70_000, "sub/deep/c.bin": 9 * MiB}


@pytest.mark.usefixtures("s3_env")
def test_pull_archives_and_a_second_run_does_nothing(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                     bucket: str) -> None:
    folder = ssh.root / "drop1"
    digests = drop(folder, FILES)
    first = pull(ssh, folder, bucket)
    assert (first["copied"], first["archived"], first["failed"]) == (3, 3, 0)
    assert listing(s3, bucket) == sorted(f"in/{rel}" for rel in FILES)
    for rel, digest in digests.items():
        assert object_sha256(s3, bucket, f"in/{rel}") == digest
        done = folder / Path(rel).parent / ".done" / Path(rel).name
        assert done.exists() and not (folder / rel).exists()
    second = pull(ssh, folder, bucket)
    assert (second["copied"], second["archived"], second["healed"]) == (0, 0, 0)


@pytest.mark.usefixtures("s3_env")
def test_same_name_in_archive_is_replaced(ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str) -> None:
    folder = ssh.root / "drop2"
    drop(folder, {"daily.csv": 100})
    pull(ssh, folder, bucket)
    new = drop(folder, {"daily.csv": 200})["daily.csv"]
    report = pull(ssh, folder, bucket)
    assert report["copied"] == 1
    assert (folder / ".done" / "daily.csv").stat().st_size == 200
    assert object_sha256(s3, bucket, "in/daily.csv") == new


@pytest.mark.usefixtures("s3_env")
def test_growing_file_is_left_until_it_settles(ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str) -> None:
    folder = ssh.root / "drop3"
    drop(folder, {"old.csv": 10, "growing.csv": 10})
    past = time.time() - 600
    os.utime(folder / "old.csv", (past, past))
    report = pull(ssh, folder, bucket, "--settle", "60s")
    assert (report["copied"], report["skipped"]) == (1, 1)
    assert listing(s3, bucket) == ["in/old.csv"] and (folder / "growing.csv").exists()
    os.utime(folder / "growing.csv", (past, past))  # it stopped changing
    assert pull(ssh, folder, bucket, "--settle", "60s")["copied"] == 1
    assert listing(s3, bucket) == ["in/growing.csv", "in/old.csv"]


@pytest.mark.usefixtures("s3_env")
def test_retention_deletes_only_old_archived_files(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                   bucket: str) -> None:
    folder = ssh.root / "drop4"
    drop(folder, {"x.csv": 10, "sub/y.csv": 10})
    pull(ssh, folder, bucket)
    old = time.time() - 10 * 86400
    os.utime(folder / ".done" / "x.csv", (old, old))  # archived ten days ago
    drop(folder, {"keep.csv": 10})  # not archived: never deleted, however old
    os.utime(folder / "keep.csv", (old, old))
    report = pull(ssh, folder, bucket, "--retention-days", "7")
    assert report["deleted"] == 1
    assert not (folder / ".done" / "x.csv").exists()
    assert (folder / "sub" / ".done" / "y.csv").exists() and (folder / ".done" / "keep.csv").exists()


@pytest.mark.usefixtures("s3_env")
def test_crash_between_upload_and_archive_is_healed_without_upload(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                                   bucket: str, s3_env: dict[str, str]) -> None:
    folder = ssh.root / "drop5"
    digest = drop(folder, {"big.bin": 24 * MiB})["big.bin"]
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.hold_complete = __import__("threading").Event()
        args = [str(Path(sys.executable).with_name("s3ferry")), "pull", ssh.url(folder), f"s3://{bucket}/in/",
                *sftp_flags(ssh)]
        proc = subprocess.Popen(args, env={**os.environ, "AWS_ENDPOINT_URL_S3": proxy.url},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proxy.complete_seen.wait(60)
        proc.send_signal(signal.SIGKILL)  # dies while S3 is finishing the object: before archiving
        proc.communicate(timeout=30)
        proxy.hold_complete.set()  # the held request still reaches S3, which completes the object
        deadline = time.time() + 30
        while "in/big.bin" not in listing(s3, bucket) and time.time() < deadline:
            time.sleep(0.05)
    assert (folder / "big.bin").exists() and "in/big.bin" in listing(s3, bucket)
    with S3FaultProxy(s3.s3_port) as proxy:
        report = pull(ssh, folder, bucket, env={"AWS_ENDPOINT_URL_S3": proxy.url})
        sent = proxy.upload_bytes
    assert (report["healed"], report["copied"], report["archived"]) == (1, 0, 1)
    assert sent == 0
    assert object_sha256(s3, bucket, "in/big.bin") == digest
    assert (folder / ".done" / "big.bin").exists()


@pytest.mark.usefixtures("s3_env")
def test_one_failing_file_does_not_stop_the_others(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                   bucket: str) -> None:
    folder = ssh.root / "drop6"
    drop(folder, {"f1.csv": 10, "f2.csv": 10, "f3.csv": 10})
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.fail_next.append(("PutObject", 403, "AccessDenied"))
        result = run_cli("pull", ssh.url(folder), f"s3://{bucket}/in/", "--json", "--transfers", "1",
                         *sftp_flags(ssh), env={"AWS_ENDPOINT_URL_S3": proxy.url})
    report = json.loads(result.stdout)
    assert result.code == 2, result.stderr
    assert (report["copied"], report["archived"], report["failed"]) == (2, 2, 1)
    failed = report["failures"][0]["path"]
    assert (folder / failed).exists()  # not archived: it goes again next run
    assert pull(ssh, folder, bucket)["copied"] == 1
    assert len(listing(s3, bucket)) == 3


@pytest.mark.usefixtures("s3_env")
def test_pull_needs_an_s3_destination(ssh: testbed.SshServer, tmp_path: Path) -> None:
    result = run_cli("pull", ssh.url(ssh.root), str(tmp_path), *sftp_flags(ssh))
    assert result.code == 2 and "must be s3://" in result.stderr


@pytest.mark.usefixtures("s3_env")
def test_files_archived_together_share_one_mkdir_of_their_archive_folder(
        ssh: testbed.SshServer, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Across a WAN the files of a folder reach their archive step together: each sent its own ``mkdir`` of
    ``.done``, then a stat when it failed (two round trips per file). The SFTP client's requests are counted
    from its own debug log."""
    import asyncio

    from s3ferry.core.options import SftpOptions, TransferOptions
    from s3ferry.jobs.pull import PullSettings
    from s3ferry.jobs.pull import pull as pull_job
    from support.wan import sftp_across_wan

    folder = ssh.root / f"together-{bucket}"
    drop(folder, {f"{sub}/f{n:02}.csv": 100 + n for sub in ("a", "b") for n in range(30)})
    with sftp_across_wan(ssh, tmp_path) as wan, caplog.at_level(logging.DEBUG, logger="asyncssh"):
        options = TransferOptions(state_dir=tmp_path / "state", sftp=SftpOptions(
            identity=(ssh.user_key,), known_hosts=Path(wan.flags[wan.flags.index("--known-hosts") + 1])))
        report = asyncio.run(pull_job(wan.url(folder), f"s3://{bucket}/in/", options, PullSettings()))
    assert len(report.archived) == 60 and not report.failed
    made = [r.getMessage().partition("Sending mkdir for ")[2] for r in caplog.records
            if "Sending mkdir for " in r.getMessage()]
    assert sorted(made) == [str(folder / sub / ".done") for sub in ("a", "b")], made
    assert sorted(p.name for p in (folder / "a" / ".done").iterdir()) == [f"f{n:02}.csv" for n in range(30)]
