"""Resume, retries and cancel against real sshd and SeaweedFS.

Every run goes through its own :class:`S3FaultProxy`, which counts the
payload bytes S3 accepted: a re-run after a crash must send exactly the bytes
S3 did not already hold, no more.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.proxy import CuttingProxy
from servers.s3proxy import S3FaultProxy
from support.helpers import MiB, object_exists, object_sha256, run_cli, sftp_flags, uploads_for, write_random
from support.resume import kill_at, rerun, start_via, stored_bytes, wait_until

SIZE = 300 * MiB
PARTS = -(-SIZE // (8 * MiB))  # 38 at the default part size


@pytest.fixture(scope="module")
def big(ssh: testbed.SshServer) -> tuple[Path, str]:
    path = ssh.root / "resume-300.bin"
    return path, write_random(path, SIZE)


def cp_args(ssh: testbed.SshServer, src: Path, bucket: str, key: str, *extra: str) -> list[str]:
    return ["cp", ssh.url(src), f"s3://{bucket}/{key}", *sftp_flags(ssh), "--json", *extra]


MOMENTS: dict[str, list[Callable[[S3FaultProxy], bool]]] = {
    "before-first-part": [lambda p: p.count("CreateMultipartUpload") >= 1],
    "mid-way": [lambda p: p.count("UploadPart", 200) >= PARTS // 2],
    "after-last-part": [lambda p: p.count("UploadPart", 200) >= PARTS],
    "during-completion": [lambda p: p.complete_seen.is_set()],
    "twice-in-a-row": [lambda p: p.count("UploadPart", 200) >= 8, lambda p: p.count("UploadPart", 200) >= 10],
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_then_rerun_sends_only_what_is_missing(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                       s3_env: dict[str, str], bucket: str, big: tuple[Path, str],
                                                       state: Path, moment: str) -> None:
    src, expected = big
    args = cp_args(ssh, src, bucket, "big.bin")
    holds = moment in ("after-last-part", "during-completion")
    for when in MOMENTS[moment]:
        kill_at(s3, args, when, hold_complete=holds, forward_held_complete=moment == "during-completion")
    already = stored_bytes(s3, bucket, "big.bin")
    report, sent, stderr = rerun(s3, args)
    assert object_sha256(s3, bucket, "big.bin") == expected
    if moment == "during-completion":  # S3 finished it: nothing to send, only to check
        assert sent == 0 and "completed before the interruption" in stderr
    else:
        assert sent == SIZE - already, f"re-sent {sent} bytes, {SIZE - already} were missing"
    assert report["uploaded_bytes"] == sent
    if moment in ("mid-way", "after-last-part", "twice-in-a-row"):
        assert report["resumed_parts"] > 0 and "resuming upload" in stderr
    assert uploads_for(s3, bucket) == []
    assert not list(state.glob("*.sqlite3")) or _journal_is_empty(state)


def _journal_is_empty(state: Path) -> bool:
    import sqlite3

    with sqlite3.connect(state / "journal.sqlite3") as db:
        return db.execute("SELECT COUNT(*) FROM transfers").fetchone()[0] == 0


def test_source_rewritten_between_crash_and_rerun(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                  s3_env: dict[str, str], bucket: str, state: Path) -> None:
    src = ssh.root / "rewritten.bin"
    write_random(src, 120 * MiB)
    args = cp_args(ssh, src, bucket, "rw.bin")
    kill_at(s3, args, lambda p: p.count("UploadPart", 200) >= 6)
    time.sleep(0.01)
    expected = write_random(src, 120 * MiB)  # same size, new bytes, new mtime
    report, sent, stderr = rerun(s3, args)
    assert "source changed since the earlier attempt" in stderr and "starting over" in stderr
    assert sent == 120 * MiB and report["resumed_parts"] == 0
    assert object_sha256(s3, bucket, "rw.bin") == expected
    assert uploads_for(s3, bucket) == []


def test_sftp_connection_cut_every_64MiB(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str],
                                         bucket: str, big: tuple[Path, str], state: Path) -> None:
    src, expected = big
    with CuttingProxy(ssh.port, cut_every=64 * MiB) as proxy:
        url = f"sftp://{ssh.user}@127.0.0.1:{proxy.port}{src}"
        result = run_cli("cp", url, f"s3://{bucket}/flaky.bin", "-i", str(ssh.user_key),
                         "--host-key", ssh.host_fingerprint, "--json")
        assert proxy.cuts >= 4
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "flaky.bin") == expected


def test_s3_answering_slowdown_to_one_request_in_ten(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                     s3_env: dict[str, str], bucket: str, big: tuple[Path, str],
                                                     state: Path) -> None:
    src, expected = big
    with S3FaultProxy(s3.s3_port, slowdown_rate=0.1, seed=3) as proxy:
        result = run_cli(*cp_args(ssh, src, bucket, "slow.bin"), env={"AWS_ENDPOINT_URL_S3": proxy.url})
        throttled = proxy.count("UploadPart", 503)
    assert result.code == 0, result.stderr
    assert throttled > 0
    assert object_sha256(s3, bucket, "slow.bin") == expected


def test_non_retryable_s3_error_fails_at_once_and_aborts(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                          s3_env: dict[str, str], bucket: str, state: Path) -> None:
    src = ssh.root / "denied.bin"
    write_random(src, 40 * MiB)
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.fail_next.append(("UploadPart", 403, "AccessDenied"))
        result = run_cli(*cp_args(ssh, src, bucket, "denied.bin"), env={"AWS_ENDPOINT_URL_S3": proxy.url})
        attempts = proxy.count("UploadPart", 403)
    assert result.code == 2, result.stderr
    assert "access denied" in result.stderr and attempts == 1
    assert uploads_for(s3, bucket) == [] and not object_exists(s3, bucket, "denied.bin")


def test_sigint_keeps_the_upload_and_says_how_to_resume(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                        s3_env: dict[str, str], bucket: str, big: tuple[Path, str],
                                                        state: Path) -> None:
    src, expected = big
    args = cp_args(ssh, src, bucket, "int.bin")
    with S3FaultProxy(s3.s3_port) as proxy:
        proc = start_via(args, proxy.url)
        wait_until(lambda: proxy.count("UploadPart", 200) >= 10, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "resume" in lines[0], err
    assert f"s3ferry cancel s3://{bucket}/int.bin" in lines[0]
    already = stored_bytes(s3, bucket, "int.bin")
    assert already >= 10 * 8 * MiB
    _, sent, _ = rerun(s3, args)
    assert sent == SIZE - already
    assert object_sha256(s3, bucket, "int.bin") == expected


def test_sigterm_is_handled_like_sigint(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str],
                                        bucket: str, big: tuple[Path, str], state: Path) -> None:
    src, _ = big
    with S3FaultProxy(s3.s3_port) as proxy:
        proc = start_via(cp_args(ssh, src, bucket, "term.bin"), proxy.url)
        wait_until(lambda: proxy.count("UploadPart", 200) >= 4, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert len(uploads_for(s3, bucket, "term.bin")) == 1


def test_uploads_and_cancel(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str], bucket: str,
                            big: tuple[Path, str], state: Path) -> None:
    src, _ = big
    for key in ("keep/a.bin", "drop/b.bin", "drop/c.bin"):
        kill_at(s3, cp_args(ssh, src, bucket, key), lambda p: p.count("UploadPart", 200) >= 3)
    listing = run_cli("uploads", f"s3://{bucket}", "--json")
    assert listing.code == 0, listing.stderr
    rows = [json.loads(line) for line in listing.stdout.splitlines()]
    assert sorted(r["key"] for r in rows) == ["drop/b.bin", "drop/c.bin", "keep/a.bin"]
    assert all(r["journaled"] and r["parts"] >= 3 and r["bytes"] >= 3 * 8 * MiB for r in rows)

    young = run_cli("cancel", "--prefix", "--older-than", "7d", f"s3://{bucket}/drop/")
    assert young.code == 0 and len(uploads_for(s3, bucket)) == 3  # nothing is a week old
    dropped = run_cli("cancel", "--prefix", f"s3://{bucket}/drop/")
    assert dropped.code == 0, dropped.stderr
    assert [u["Key"] for u in uploads_for(s3, bucket)] == ["keep/a.bin"]
    one = run_cli("cancel", f"s3://{bucket}/keep/a.bin")
    assert one.code == 0 and "aborted" in one.stdout
    assert uploads_for(s3, bucket) == []
    assert run_cli("uploads", f"s3://{bucket}", "--json").stdout == ""
    assert _journal_is_empty(state)


def test_force_discards_the_earlier_attempt(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                            s3_env: dict[str, str], bucket: str, big: tuple[Path, str],
                                            state: Path) -> None:
    src, expected = big
    args = cp_args(ssh, src, bucket, "force.bin")
    kill_at(s3, args, lambda p: p.count("UploadPart", 200) >= 6)
    report, sent, stderr = rerun(s3, [*args, "--force"])
    assert "discarding the earlier attempt" in stderr
    assert sent == SIZE and report["resumed_parts"] == 0
    assert object_sha256(s3, bucket, "force.bin") == expected
    assert uploads_for(s3, bucket) == []


def test_no_resume_refuses_to_touch_an_earlier_attempt(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                       s3_env: dict[str, str], bucket: str, big: tuple[Path, str],
                                                       state: Path) -> None:
    src, _ = big
    args = cp_args(ssh, src, bucket, "nr.bin")
    kill_at(s3, args, lambda p: p.count("UploadPart", 200) >= 4)
    before = stored_bytes(s3, bucket, "nr.bin")
    result = run_cli(*args, "--no-resume")
    assert result.code == 2
    assert "unfinished earlier attempt" in result.stderr
    assert stored_bytes(s3, bucket, "nr.bin") == before  # untouched


def test_resume_without_journal_adopts_the_upload_after_checking_parts(
        ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str], bucket: str,
        big: tuple[Path, str], state: Path, tmp_path: Path) -> None:
    """Another machine (empty journal): --resume finds the upload and verifies each part's MD5 first."""
    src, expected = big
    args = cp_args(ssh, src, bucket, "adopt.bin")
    kill_at(s3, args, lambda p: p.count("UploadPart", 200) >= 12)
    already = stored_bytes(s3, bucket, "adopt.bin")
    other_machine = ["--state-dir", str(tmp_path / "elsewhere")]
    report, sent, stderr = rerun(s3, [*args, *other_machine, "--resume"])
    assert "adopting upload" in stderr
    assert sent == SIZE - already and report["resumed_parts"] == already // (8 * MiB)
    assert object_sha256(s3, bucket, "adopt.bin") == expected
    run_cli("cancel", "--prefix", f"s3://{bucket}/")  # the old journal's entry is stale now
    assert uploads_for(s3, bucket) == []


def test_two_processes_never_copy_the_same_pair_at_once(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                        s3_env: dict[str, str], bucket: str, state: Path) -> None:
    src = ssh.root / "locked.bin"
    expected = write_random(src, 24 * MiB)
    args = cp_args(ssh, src, bucket, "locked.bin")
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.hold_complete = threading.Event()
        first = start_via(args, proxy.url)
        wait_until(lambda: proxy.complete_seen.is_set(), first)  # the first one is busy completing
        second = run_cli(*args, env={"AWS_ENDPOINT_URL_S3": proxy.url})
        proxy.hold_complete.set()
        _, err = first.communicate(timeout=120)
    assert second.code == 2 and "another s3ferry process is copying" in second.stderr
    assert first.returncode == 0, err
    assert object_sha256(s3, bucket, "locked.bin") == expected
