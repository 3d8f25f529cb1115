"""s3ferry run on real servers: once and long-running modes, two runs at once, object settings (the flows file
and schedules alone: tests/unit/test_flows_file.py)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.s3proxy import S3FaultProxy
from support.helpers import (
    LineReader,
    MiB,
    json_lines,
    object_sha256,
    pull_flow,
    run_cli,
    sftp_flags,
    start_run,
    stop,
    write_random,
)

# -- running ----------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("s3_env")
def test_run_once_pulls_over_sftp(tmp_path: Path, ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                  bucket: str) -> None:
    drop = ssh.root / f"flow-drop-{bucket}"
    files = {"a.csv.gz": 1000, "sub/b.csv.gz": 6 * MiB + 1, "skip.tmp": 10}
    digests = {}
    for rel, size in files.items():
        (drop / rel).parent.mkdir(parents=True, exist_ok=True)
        digests[rel] = write_random(drop / rel, size)
    path = tmp_path / "flows.toml"
    path.write_text(pull_flow("partner-drop", ssh.url(drop), bucket, s3.endpoint, ssh)
                    + 'include = ["*.csv.gz"]\n' + f'\n[flows.other]\nkind = "pull"\nsource = "nowhere/"\n'
                    f'destination = "s3://{bucket}/other/"\nevery = "1h"\n')
    result = run_cli("run", "--once", "--flow", "partner-drop", str(path))
    assert result.code == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"partner-drop: pull {ssh.url(drop)} -> s3://{bucket}/in/: 2 copied, 2 archived")
    for rel in ("a.csv.gz", "sub/b.csv.gz"):
        assert object_sha256(s3, bucket, f"in/{rel}") == digests[rel]
        assert (drop / Path(rel).parent / ".done" / Path(rel).name).exists()
    assert (drop / "skip.tmp").exists()  # not included
    again = run_cli("run", "--once", "--json", "--flow", "partner-drop", str(path))
    assert again.code == 0, again.stderr
    (report,) = json_lines(again.stdout)
    assert (report["flow"], report["kind"], report["copied"], report["failed"]) == ("partner-drop", "pull", 0, 0)


@pytest.mark.usefixtures("s3_env")
def test_run_once_exits_with_the_worst_flow(tmp_path: Path, s3: testbed.SeaweedServer, bucket: str) -> None:
    (tmp_path / "good").mkdir()
    write_random(tmp_path / "good" / "x.bin", 100)
    path = tmp_path / "flows.toml"
    path.write_text(pull_flow("good", "good/", bucket, s3.endpoint)
                    + pull_flow("no-bucket", "good/", "no-such-bucket-here", s3.endpoint))
    result = run_cli("run", "--once", "--json", str(path))
    assert result.code == 2, result.stderr
    by_flow = {r["flow"]: r for r in json_lines(result.stdout)}
    assert by_flow["good"]["copied"] == 1 and by_flow["good"]["failed"] == 0
    assert by_flow["good"]["status"] == "ok" and by_flow["no-bucket"]["status"] == "failed"
    assert by_flow["no-bucket"]["exit_code"] == 2 and "no-such-bucket-here" in by_flow["no-bucket"]["error"]
    assert "s3ferry: error: flow no-bucket: " in result.stderr


@pytest.mark.usefixtures("s3_env")
def test_two_runs_at_once_never_copy_a_file_twice(tmp_path: Path, ssh: testbed.SshServer,
                                                   s3: testbed.SeaweedServer, bucket: str) -> None:
    drop = ssh.root / f"flow-race-{bucket}"
    drop.mkdir()
    count = 12
    digests = {f"f{i:02}.bin": write_random(drop / f"f{i:02}.bin", 256 * 1024) for i in range(count)}
    path = tmp_path / "flows.toml"
    with S3FaultProxy(s3.s3_port) as proxy:
        path.write_text(pull_flow("race", ssh.url(drop), bucket, proxy.url, ssh) + "transfers = 2\n")
        procs = [start_run("--once", "--json", str(path)) for _ in range(2)]
        outputs = [p.communicate(timeout=300) for p in procs]
        puts = proxy.count("PutObject", 200) + proxy.count("CreateMultipartUpload", 200)
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    reports = [r for out, _ in outputs for r in json_lines(out)]
    assert len(reports) == 2
    assert sum(r.get("copied", 0) for r in reports) == count
    assert puts == count  # every file went to S3 exactly once
    # one of the two held the lock; the other was skipped, or came after it and found nothing left
    assert any((r["status"] == "skipped" and r["reason"] == "locked") or r["copied"] == 0 for r in reports), reports
    for rel, digest in digests.items():
        assert object_sha256(s3, bucket, f"in/{rel}") == digest
        assert (drop / ".done" / rel).exists()


@pytest.mark.usefixtures("s3_env")
def test_scheduler_runs_a_flow_each_interval_until_sigterm(tmp_path: Path, s3: testbed.SeaweedServer,
                                                           bucket: str) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    write_random(drop / "first.bin", 1000)
    path = tmp_path / "flows.toml"
    path.write_text(pull_flow("tick", "drop/", bucket, s3.endpoint, every="1s"))
    port = testbed.free_port()
    proc = start_run("--json", "--metrics-port", str(port), str(path))
    try:
        reader = LineReader(proc.stdout)
        started = time.monotonic()
        first = reader.next_report(timeout=60)
        assert (first["flow"], first["copied"]) == ("tick", 1)
        # what the runs count carries the flow's name
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert 's3ferry_flow_last_success_timestamp_seconds{flow="tick"}' in scraped
        assert 's3ferry_files_total{flow="tick",result="copied"} 1.0' in scraped
        # a file dropped between runs is picked up by a later one (written aside, then renamed in)
        write_random(tmp_path / "second.bin", 2000)
        os.rename(tmp_path / "second.bin", drop / "second.bin")
        later = [reader.next_report(timeout=60)]
        while sum(r["copied"] for r in later) < 1 and len(later) < 30:
            later.append(reader.next_report(timeout=60))
        assert sum(r["copied"] for r in later) == 1, later
        elapsed = time.monotonic() - started
        assert all(r["failed"] == 0 for r in [first, *later])
        # runs start a second apart: not more often
        assert elapsed >= len(later) - 0.5
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1].startswith("s3ferry: interrupted")
    assert object_sha256(s3, bucket, "in/second.bin")


@pytest.mark.usefixtures("s3_env")
def test_a_flow_still_running_at_its_next_time_is_not_started_twice(tmp_path: Path, s3: testbed.SeaweedServer,
                                                                    bucket: str) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    digest = write_random(drop / "big.bin", 9 * MiB)  # two parts: completed by CompleteMultipartUpload
    path = tmp_path / "flows.toml"
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.hold_complete = threading.Event()  # the first run hangs at completion
        path.write_text(pull_flow("slow", "drop/", bucket, proxy.url, every="1s"))
        proc = start_run("--json", str(path))
        try:
            out, err = LineReader(proc.stdout), LineReader(proc.stderr)
            assert proxy.complete_seen.wait(60), err.seen
            note = err.wait_for("still running", timeout=30)
            assert note.startswith("s3ferry: flow slow: still running at its next time ")
            skip = out.next_json(timeout=30)
            assert (skip["flow"], skip["status"], skip["reason"]) == ("slow", "skipped", "running")
            assert skip["destination"] == f"s3://{bucket}/in/"
            assert "copied" not in skip
            proxy.hold_complete.set()
            first = out.next_report(timeout=60)
            assert (first["copied"], first["failed"]) == (1, 0)
            assert out.next_report(timeout=30)["copied"] == 0  # the next tick runs again, finds nothing
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            stop(proc)
        assert proc.returncode == 130
        assert proxy.count("CreateMultipartUpload") == 1  # never a second upload while the first ran
    assert object_sha256(s3, bucket, "in/big.bin") == digest


@pytest.mark.usefixtures("s3_env")
def test_run_once_pushes_to_sftp(tmp_path: Path, ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                 bucket: str) -> None:
    client = s3.client()
    bodies = {"r1.pdf": os.urandom(5000), "sub/r2.csv": os.urandom(70_000), "ignore.log": b"x"}
    for rel, body in bodies.items():
        client.put_object(Bucket=bucket, Key=f"outbox/{rel}", Body=body)
    inbox = ssh.root / f"flow-inbox-{bucket}"
    inbox.mkdir()
    path = tmp_path / "flows.toml"
    path.write_text(f"""\
[defaults]
identity = "{ssh.user_key}"
known_hosts = "{ssh.known_hosts}"
endpoint_url = "{s3.endpoint}"

[flows.reports]
kind = "push"
source = "s3://{bucket}/outbox/"
destination = "{ssh.url(inbox)}/"
schedule = "*/10 * * * *"
exclude = ["*.log"]
""")
    result = run_cli("run", "--once", "--json", str(path))
    assert result.code == 0, result.stderr
    (report,) = json_lines(result.stdout)
    assert (report["flow"], report["kind"], report["copied"], report["failed"]) == ("reports", "push", 2, 0)
    for rel in ("r1.pdf", "sub/r2.csv"):
        assert (inbox / rel).read_bytes() == bodies[rel]
    assert not (inbox / "ignore.log").exists()
    again = run_cli("run", "--once", "--json", str(path))
    assert again.code == 0, again.stderr
    (report,) = json_lines(again.stdout)
    assert report["copied"] == 0


@pytest.mark.usefixtures("s3_env")
def test_run_once_sets_the_flows_object_settings(tmp_path: Path, ssh: testbed.SshServer,
                                                 s3: testbed.SeaweedServer, bucket: str) -> None:
    drop = ssh.root / f"flow-settings-{bucket}"
    drop.mkdir()
    write_random(drop / "small.csv", 1000)
    write_random(drop / "big.bin", 9 * MiB)  # multipart: the settings go on CreateMultipartUpload
    path = tmp_path / "flows.toml"
    path.write_text(pull_flow("tagged", ssh.url(drop), bucket, s3.endpoint, ssh) + """\
storage_class = "STANDARD_IA"
metadata = { owner = "etl", batch = "42" }
tags = { team = "data", "cost-center" = "cc 7/a" }
""")
    result = run_cli("run", "--once", str(path))
    assert result.code == 0, result.stderr
    assert "2 copied, 2 archived" in result.stdout
    client = s3.client()
    for name, content_type in (("small.csv", "text/csv"), ("big.bin", "application/octet-stream")):
        head = client.head_object(Bucket=bucket, Key=f"in/{name}")
        assert head.get("StorageClass") == "STANDARD_IA"
        assert head["ContentType"] == content_type  # guessed from the name, as `pull` does
        assert head["Metadata"]["owner"] == "etl" and head["Metadata"]["batch"] == "42"
        assert head["Metadata"]["s3ferry-source-size"] == str((drop / ".done" / name).stat().st_size)  # kept
        tags = client.get_object_tagging(Bucket=bucket, Key=f"in/{name}")["TagSet"]
        assert {t["Key"]: t["Value"] for t in tags} == {"team": "data", "cost-center": "cc 7/a"}


@pytest.mark.usefixtures("s3_env")
def test_dry_run_of_a_pull_flow_changes_nothing(tmp_path: Path, ssh: testbed.SshServer,
                                                s3: testbed.SeaweedServer, bucket: str) -> None:
    drop = ssh.root / f"flow-dry-{bucket}"
    for rel, size in {"a.csv.gz": 1000, "sub/b.csv.gz": 3000, "skip.tmp": 10}.items():
        (drop / rel).parent.mkdir(parents=True, exist_ok=True)
        write_random(drop / rel, size)
    s3.client().put_object(Bucket=bucket, Key="in/already.txt", Body=b"x")
    path = tmp_path / "flows.toml"
    # a schedule every second and no --once: a dry run is still one pass, then the process exits
    path.write_text(pull_flow("dry", ssh.url(drop), bucket, s3.endpoint, ssh, every="1s")
                    + 'include = ["*.csv.gz"]\nmetadata = { owner = "etl" }\n')

    def files() -> list[tuple[str, int, float]]:
        return sorted((str(p.relative_to(drop)), p.stat().st_size, p.stat().st_mtime)
                      for p in drop.rglob("*"))

    def listing() -> list[tuple[str, int]]:
        found = s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted((o["Key"], o["Size"]) for o in found)

    before = (files(), listing())
    result = run_cli("run", "--dry-run", str(path), timeout=120)
    assert result.code == 0, result.stderr
    assert result.stdout == (f"dry: pull {ssh.url(drop)} -> s3://{bucket}/in/: 2 would copy, 2 archived "
                             "(dry run: nothing changed)\n")
    as_json = run_cli("run", "--dry-run", "--json", str(path), timeout=120)
    assert as_json.code == 0, as_json.stderr
    (report,) = json_lines(as_json.stdout)
    assert (report["flow"], report["status"], report["dry_run"], report["copied"]) == ("dry", "ok", True, 2)
    # the keys of `pull --dry-run --json`, plus the flow's
    pulled = run_cli("pull", "--dry-run", "--json", "--include", "*.csv.gz", *sftp_flags(ssh), ssh.url(drop),
                     f"s3://{bucket}/in/")
    assert pulled.code == 0, pulled.stderr
    assert set(report) == set(json.loads(pulled.stdout)) | {"flow", "started", "status", "exit_code"}
    assert (files(), listing()) == before
