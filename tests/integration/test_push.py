"""s3ferry push: every transition of the sftp-lambda push state table (seeds/003), plus the races.

States (object exists / is marked delivered / is in the retry queue):
1 no/-/no  2 no/-/yes  3 yes/no/no  4 yes/no/yes  5 yes/yes/no  6 yes/yes/yes
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from s3ferry.backends.s3.source import READ_WHOLE
from s3ferry.core.options import SftpOptions, TransferOptions
from s3ferry.demo import servers as testbed
from s3ferry.jobs import JobReport
from s3ferry.jobs.push import PushSettings, mark_key, push
from support.helpers import run_cli, sftp_flags


class Outbox:
    """An S3 prefix pushed to an SFTP folder, with a way to make delivery fail (a file where the folder goes)."""

    def __init__(self, s3: testbed.SeaweedServer, ssh: testbed.SshServer, bucket: str, tmp: Path) -> None:
        self.client, self.bucket = s3.client(), bucket
        self.folder = ssh.root / f"inbox-{bucket}"
        self.src, self.dst = f"s3://{bucket}/out/", ssh.url(self.folder)
        self.state = tmp / "state"
        self.options = TransferOptions(state_dir=self.state,
                                       sftp=SftpOptions(identity=(ssh.user_key,), known_hosts=ssh.known_hosts))

    def put(self, name: str, data: bytes) -> str:
        return str(self.client.put_object(Bucket=self.bucket, Key=f"out/{name}", Body=data)["ETag"])

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=f"out/{name}")

    def push(self, retry: bool = False, progress: Any = None) -> JobReport:
        return asyncio.run(push(self.src, self.dst, self.options, PushSettings(retry_failed=retry), progress))

    def break_destination(self) -> None:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.folder.write_bytes(b"a file where the folder should be")

    def mend_destination(self) -> None:
        if self.folder.is_file():
            self.folder.unlink()

    def delivered(self, name: str) -> bytes | None:
        path = self.folder / name
        return path.read_bytes() if self.folder.is_dir() and path.exists() else None

    def marked(self, name: str) -> bool:
        try:
            tags = self.client.get_object_tagging(Bucket=self.bucket, Key=f"out/{name}")["TagSet"]
            etag = self.client.head_object(Bucket=self.bucket, Key=f"out/{name}")["ETag"]
        except self.client.exceptions.ClientError:
            return False
        wanted = mark_key(str(__import__("s3ferry.core.urls", fromlist=["parse"]).parse(self.dst)))
        return any(t["Key"] == wanted and t["Value"] == etag.strip('"') for t in tags)

    def queued(self) -> dict[str, int]:
        db = self.state / "journal.sqlite3"
        if not db.exists():
            return {}
        with sqlite3.connect(db) as conn:
            return {k.removeprefix("out/"): n for k, n in conn.execute("SELECT key, attempts FROM push_queue")}

    def exists(self, name: str) -> bool:
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"out/{name}").get("Contents", [])
        return any(o["Key"] == f"out/{name}" for o in listing)

    def state_of(self, name: str) -> int:
        exists, marked, queued = self.exists(name), self.marked(name), name in self.queued()
        if not exists:
            return 2 if queued else 1
        return {(False, False): 3, (False, True): 4, (True, False): 5, (True, True): 6}[(marked, queued)]


@pytest.fixture
def box(s3: testbed.SeaweedServer, ssh: testbed.SshServer, bucket: str, tmp_path: Path,
        s3_env: dict[str, str]) -> Outbox:
    return Outbox(s3, ssh, bucket, tmp_path)


def in_state_3(box: Outbox) -> None:
    box.put("f.csv", b"v1")
    assert box.state_of("f.csv") == 3


def in_state_4(box: Outbox) -> None:
    in_state_3(box)
    box.break_destination()
    report = box.push()
    assert len(report.failed) == 1 and report.exit_code == 2
    box.mend_destination()
    assert box.state_of("f.csv") == 4


def in_state_5(box: Outbox) -> None:
    in_state_3(box)
    assert box.push().copied == ["f.csv"]
    assert box.state_of("f.csv") == 5


def in_state_6(box: Outbox) -> None:
    in_state_4(box)
    box.put("f.csv", b"v2")  # overwritten: a new version, a new delivery
    assert box.push().copied == ["f.csv"]
    assert box.delivered("f.csv") == b"v2"
    assert box.state_of("f.csv") == 6


def in_state_2(box: Outbox) -> None:
    in_state_4(box)
    box.delete("f.csv")
    assert box.state_of("f.csv") == 2


# -- state 1 and 2 ------------------------------------------------------------

def test_1_put_new_object_goes_to_3(box: Outbox) -> None:
    in_state_3(box)


def test_2_put_new_object_goes_to_4(box: Outbox) -> None:
    in_state_2(box)
    box.put("f.csv", b"again")
    assert box.state_of("f.csv") == 4


def test_2_retry_skips_deleted_object_goes_to_1(box: Outbox) -> None:
    in_state_2(box)
    report = box.push(retry=True)
    assert report.skipped == ["f.csv"] and not report.copied
    assert box.state_of("f.csv") == 1


# -- state 3 ------------------------------------------------------------------

def test_3_overwrite_stays_3(box: Outbox) -> None:
    in_state_3(box)
    box.put("f.csv", b"v1b")
    assert box.state_of("f.csv") == 3


def test_3_push_works_goes_to_5_and_a_second_push_does_nothing(box: Outbox) -> None:
    in_state_5(box)
    assert box.delivered("f.csv") == b"v1"
    again = box.push()
    assert again.copied == [] and again.skipped == ["f.csv"]


def test_3_push_fails_goes_to_4(box: Outbox) -> None:
    in_state_4(box)
    assert box.queued() == {"f.csv": 1}


def test_3_delete_goes_to_1(box: Outbox) -> None:
    in_state_3(box)
    box.delete("f.csv")
    assert box.state_of("f.csv") == 1


# -- state 4 ------------------------------------------------------------------

def test_4_overwrite_stays_4(box: Outbox) -> None:
    in_state_4(box)
    box.put("f.csv", b"v2")
    assert box.state_of("f.csv") == 4


def test_4_push_leaves_an_unchanged_failed_object_to_retry(box: Outbox) -> None:
    in_state_4(box)
    report = box.push()
    # waiting for --retry-failed, not skipped: the run is not ok while it waits (issue 17)
    assert report.copied == [] and report.skipped == [] and report.waiting == ["f.csv"]
    assert report.exit_code == 1 and not report.ok
    assert box.state_of("f.csv") == 4


def test_4_push_works_after_overwrite_goes_to_6(box: Outbox) -> None:
    in_state_6(box)


def test_4_push_fails_again_stays_4(box: Outbox) -> None:
    in_state_4(box)
    box.put("f.csv", b"v2")
    box.break_destination()
    assert len(box.push().failed) == 1
    box.mend_destination()
    assert box.state_of("f.csv") == 4 and box.queued() == {"f.csv": 2}


def test_4_retry_works_goes_to_5(box: Outbox) -> None:
    in_state_4(box)
    report = box.push(retry=True)
    assert report.copied == ["f.csv"]
    assert box.delivered("f.csv") == b"v1"
    assert box.state_of("f.csv") == 5


def test_4_retry_fails_stays_4(box: Outbox) -> None:
    in_state_4(box)
    box.break_destination()
    assert len(box.push(retry=True).failed) == 1
    box.mend_destination()
    assert box.state_of("f.csv") == 4 and box.queued() == {"f.csv": 2}


def test_4_delete_goes_to_2(box: Outbox) -> None:
    in_state_2(box)


# -- state 5 and 6 --------------------------------------------------------------

def test_5_overwrite_goes_to_3_and_is_delivered_again(box: Outbox) -> None:
    in_state_5(box)
    box.put("f.csv", b"v2")
    assert box.state_of("f.csv") == 3
    assert box.push().copied == ["f.csv"] and box.delivered("f.csv") == b"v2"


def test_5_delete_goes_to_1(box: Outbox) -> None:
    in_state_5(box)
    box.delete("f.csv")
    assert box.state_of("f.csv") == 1


def test_6_retry_skips_delivered_goes_to_5(box: Outbox) -> None:
    in_state_6(box)
    report = box.push(retry=True)
    assert report.copied == [] and report.skipped == ["f.csv"]
    assert box.state_of("f.csv") == 5


def test_6_overwrite_goes_to_4(box: Outbox) -> None:
    in_state_6(box)
    box.put("f.csv", b"v3")
    assert box.state_of("f.csv") == 4


def test_6_delete_goes_to_2(box: Outbox) -> None:
    in_state_6(box)
    box.delete("f.csv")
    assert box.state_of("f.csv") == 2


# -- races and the command line ---------------------------------------------------

class OverwriteWhileDelivering:
    """A progress listener that overwrites ``race.bin`` as soon as its delivery starts moving bytes."""

    def __init__(self, box: Outbox) -> None:
        self.box = box

    def started(self, name: str, total: int) -> None: ...

    def advanced(self, nbytes: int) -> None:
        self.box.put("race.bin", b"newer version")

    def finished(self) -> None: ...


def test_object_overwritten_mid_push_is_not_marked_and_goes_again(box: Outbox) -> None:
    box.put("race.bin", os.urandom(READ_WHOLE + 1))  # read by ranged GETs after its HEAD (a small one: below)

    first = box.push(progress=OverwriteWhileDelivering(box))
    # The engine's last look at the source sees the new version: the delivery fails (and is queued).
    assert len(first.failed) == 1 and "overwritten" in str(first.failed[0][1])
    assert not box.marked("race.bin")
    second = box.push()
    assert second.copied == ["race.bin"] and box.delivered("race.bin") == b"newer version"
    assert box.marked("race.bin")


def test_small_object_overwritten_after_its_read_is_delivered_as_read_not_marked_and_goes_again(
        box: Outbox) -> None:
    """A small object is read whole by the request that pins its version: overwritten after that, the
    version read is delivered whole (never a mix), left unmarked, and the newer one goes next time."""
    older = os.urandom(1000)
    box.put("race.bin", older)

    first = box.push(progress=OverwriteWhileDelivering(box))
    assert first.copied == ["race.bin"] and not first.failed
    assert box.delivered("race.bin") == older
    assert not box.marked("race.bin")
    second = box.push()
    assert second.copied == ["race.bin"] and box.delivered("race.bin") == b"newer version"
    assert box.marked("race.bin")


class DeleteWhileDelivering:
    """A progress listener that deletes ``gone.bin`` from the bucket as soon as its delivery moves bytes."""

    def __init__(self, box: Outbox) -> None:
        self.box = box

    def started(self, name: str, total: int) -> None: ...

    def advanced(self, nbytes: int) -> None:
        self.box.delete("gone.bin")

    def finished(self) -> None: ...


def test_small_object_deleted_after_its_read_is_delivered_and_reported_copied(box: Outbox) -> None:
    """Read whole, then deleted before its mark: the delivery stands (copied, exit 0, not queued), and
    there is nothing left to tag."""
    data = os.urandom(1000)
    box.put("gone.bin", data)

    report = box.push(progress=DeleteWhileDelivering(box))
    assert report.copied == ["gone.bin"] and not report.failed and report.exit_code == 0
    assert box.delivered("gone.bin") == data and not box.exists("gone.bin")
    assert box.queued() == {}
    assert box.push().copied == []  # gone from the bucket: nothing to deliver, nothing queued


def test_push_command_line(box: Outbox, ssh: testbed.SshServer) -> None:
    box.put("a/b.csv", b"x" * 100)
    box.put("c.csv", b"y" * 10)
    result = run_cli("push", box.src, box.dst, "--json", "--state-dir", str(box.state), *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["copied"] == 2
    assert box.delivered("a/b.csv") == b"x" * 100 and box.delivered("c.csv") == b"y" * 10
    again = run_cli("push", box.src, box.dst, "--json", "--state-dir", str(box.state), *sftp_flags(ssh))
    assert json.loads(again.stdout)["copied"] == 0


def test_push_of_an_empty_outbox(box: Outbox) -> None:
    report = box.push()
    assert report.copied == [] and report.exit_code == 0


def test_hostile_key_refused_on_push(box: Outbox, s3: testbed.SeaweedServer, ssh: testbed.SshServer) -> None:
    from servers.s3proxy import S3FaultProxy

    box.put("f.csv", b"fine")
    box.put("g.csv", b"also fine")
    with S3FaultProxy(s3.s3_port) as proxy:
        # SeaweedFS refuses such keys itself; a hostile server would list them.
        hostile = b"<Key>out/a/../../../escaped-by-push.csv</Key>"
        proxy.rewrite_listing = lambda body: body.replace(b"<Key>out/g.csv</Key>", hostile)
        result = run_cli("push", box.src, box.dst, "--json", "--state-dir", str(box.state), *sftp_flags(ssh),
                         env={"AWS_ENDPOINT_URL_S3": proxy.url})
    assert result.code == 2, result.stderr
    assert "unsafe name 'a/../../../escaped-by-push.csv'" in result.stderr
    assert json.loads(result.stdout)["copied"] == 1 and box.delivered("f.csv") == b"fine"
    assert not list(ssh.root.parent.rglob("escaped-by-push.csv"))


def test_a_new_small_object_costs_five_requests(box: Outbox, s3: testbed.SeaweedServer,
                                                ssh: testbed.SshServer) -> None:
    """Per new small object: the scan's tag read, one GET (read whole, pinned), then the mark: tags read,
    written with this destination's, read back. No HEAD: an object overwritten before its mark has another
    ETag, which the mark (the version delivered) never matches."""
    from servers.s3proxy import S3FaultProxy

    names = [f"n{i}.csv" for i in range(5)]
    for name in names:
        box.put(name, os.urandom(2000))
    with S3FaultProxy(s3.s3_port) as proxy:
        result = run_cli("push", box.src, box.dst, "--json", "--state-dir", str(box.state), *sftp_flags(ssh),
                         env={"AWS_ENDPOINT_URL_S3": proxy.url})
        counts = {op: proxy.count(op) for op in ("HeadObject", "GetObject", "GetObjectTagging", "PutObjectTagging")}
    assert result.code == 0 and json.loads(result.stdout)["copied"] == len(names), result.stderr
    n = len(names)
    assert counts == {"HeadObject": 0, "GetObject": n, "GetObjectTagging": 3 * n, "PutObjectTagging": n}, counts
    assert all(box.marked(name) for name in names)


def test_a_tag_that_cannot_be_written_is_written_by_the_next_run(box: Outbox, s3: testbed.SeaweedServer,
                                                                 ssh: testbed.SshServer) -> None:
    """The delivery stands (copied, recorded, exit 0, a warning); its tag is written by the next run, which
    does not send the file again."""
    from servers.s3proxy import S3FaultProxy

    box.put("t.csv", b"tagged later")
    args = ["push", box.src, box.dst, "--json", "--state-dir", str(box.state), *sftp_flags(ssh)]
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.fail_next.append(("PutObjectTagging", 403, "AccessDenied"))
        first = run_cli(*args, env={"AWS_ENDPOINT_URL_S3": proxy.url})
    assert first.code == 0, first.stderr
    assert json.loads(first.stdout)["copied"] == 1 and box.delivered("t.csv") == b"tagged later"
    assert "t.csv was delivered, but its delivery tag could not be written" in first.stderr
    assert not box.marked("t.csv") and box.queued() == {}
    second = run_cli(*args)
    assert second.code == 0 and json.loads(second.stdout)["skipped"] == 1, second.stderr
    assert box.marked("t.csv")
