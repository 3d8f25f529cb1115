"""Transfer controls users expect from rclone and the AWS CLI (issue 9)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.s3proxy import S3FaultProxy
from support.helpers import MiB, object_sha256, run_cli, sftp_flags, write_random


@pytest.mark.usefixtures("s3_env")
def test_bwlimit_is_honoured(tmp_path: Path, bucket: str) -> None:
    src = tmp_path / "limited.bin"
    write_random(src, 64 * MiB)
    result = run_cli("cp", str(src), f"s3://{bucket}/limited.bin", "--bwlimit", "16M", "--json", "--no-progress")
    assert result.code == 0, result.stderr
    seconds = json.loads(result.stdout)["seconds"]
    assert 3.6 <= seconds <= 4.4, seconds  # 64 MiB at 16 MiB/s: 4 s, within 10%


def _tree(root: Path) -> dict[str, str]:
    files = {"a.csv": 100, "b.csv.gz": 2000, "c.txt": 30, "sub/d.csv": 40}
    return {rel: write_random(_mk(root / rel), size) for rel, size in files.items()}


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.usefixtures("s3_env")
def test_second_tree_copy_sends_nothing_and_reports_every_file_skipped(tmp_path: Path, bucket: str,
                                                                      s3: testbed.SeaweedServer) -> None:
    _tree(tmp_path / "src")
    first = run_cli("cp", "-r", str(tmp_path / "src"), f"s3://{bucket}/t/", "--json", "--no-progress")
    assert first.code == 0 and json.loads(first.stdout)["copied"] == 4
    with S3FaultProxy(s3.s3_port) as proxy:
        again = run_cli("cp", "-r", str(tmp_path / "src"), f"s3://{bucket}/t/", "--json", "--no-progress",
                        env={"AWS_ENDPOINT_URL_S3": proxy.url})
    report = json.loads(again.stdout)
    assert again.code == 0 and (report["copied"], report["skipped"]) == (0, 4)
    assert proxy.upload_bytes == 0
    # A file that changed goes again; the rest is still skipped.
    write_random(tmp_path / "src" / "c.txt", 31)
    third = json.loads(run_cli("cp", "-r", str(tmp_path / "src"), f"s3://{bucket}/t/", "--json",
                               "--no-progress").stdout)
    assert (third["copied"], third["skipped"]) == (1, 3)


@pytest.mark.usefixtures("s3_env")
def test_download_restores_mtime_and_rerun_skips(tmp_path: Path, bucket: str) -> None:
    src = tmp_path / "old.bin"
    write_random(src, 5000)
    past = time.time() - 86400 * 3
    os.utime(src, (past, past))
    assert run_cli("cp", str(src), f"s3://{bucket}/old.bin", "--no-progress").code == 0
    out = tmp_path / "dl" / "old.bin"
    assert run_cli("cp", f"s3://{bucket}/old.bin", str(out), "--no-progress").code == 0
    assert abs(out.stat().st_mtime - past) < 1
    again = run_cli("cp", f"s3://{bucket}/old.bin", str(out), "--json", "--no-progress")
    assert json.loads(again.stdout)["skipped"] is True


@pytest.mark.usefixtures("s3_env")
def test_no_clobber_and_overwrite(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer) -> None:
    src = tmp_path / "f.bin"
    write_random(src, 1000)
    assert run_cli("cp", str(src), f"s3://{bucket}/f.bin", "--no-progress").code == 0
    digest = write_random(src, 1200)  # changed
    kept = run_cli("cp", str(src), f"s3://{bucket}/f.bin", "--no-clobber", "--json", "--no-progress")
    assert json.loads(kept.stdout)["skipped"] is True
    assert s3.client().head_object(Bucket=bucket, Key="f.bin")["ContentLength"] == 1000
    forced = run_cli("cp", str(src), f"s3://{bucket}/f.bin", "--overwrite", "--json", "--no-progress")
    assert json.loads(forced.stdout)["skipped"] is False
    assert object_sha256(s3, bucket, "f.bin") == digest


@pytest.mark.usefixtures("s3_env")
def test_dry_run_changes_nothing(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer) -> None:
    _tree(tmp_path / "src")
    before = s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    result = run_cli("cp", "-r", str(tmp_path / "src"), f"s3://{bucket}/t/", "--dry-run", "--json", "--no-progress")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["dry_run"] is True
    assert s3.client().list_objects_v2(Bucket=bucket).get("Contents", []) == before
    single = run_cli("cp", str(tmp_path / "src" / "a.csv"), f"s3://{bucket}/a.csv", "--dry-run", "--no-progress")
    assert single.code == 0 and "would copy" in single.stdout
    assert s3.client().list_objects_v2(Bucket=bucket).get("Contents", []) == before


@pytest.mark.usefixtures("s3_env")
def test_object_settings_read_back(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer) -> None:
    src = tmp_path / "report.csv"
    write_random(src, 9 * MiB)  # multipart: the settings go on CreateMultipartUpload
    result = run_cli("cp", str(src), f"s3://{bucket}/report.csv", "--no-progress", "--storage-class", "STANDARD_IA",
                     "--metadata", "owner=etl", "--metadata", "batch=42", "--tag", "team=data", "--tag", "pii=no")
    assert result.code == 0, result.stderr
    head = s3.client().head_object(Bucket=bucket, Key="report.csv")
    assert head["ContentType"] == "text/csv"
    assert head.get("StorageClass") == "STANDARD_IA"
    assert head["Metadata"]["owner"] == "etl" and head["Metadata"]["batch"] == "42"
    assert abs(float(head["Metadata"]["s3ferry-mtime"]) - src.stat().st_mtime) < 1e-3
    tags = s3.client().get_object_tagging(Bucket=bucket, Key="report.csv")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "data", "pii": "no"}
    small = tmp_path / "page.html"
    small.write_text("<p>hi</p>")
    assert run_cli("cp", str(small), f"s3://{bucket}/page.html", "--content-type", "text/x-custom",
                   "--no-progress").code == 0
    assert s3.client().head_object(Bucket=bucket, Key="page.html")["ContentType"] == "text/x-custom"


def test_glob_in_the_source_copies_exactly_the_matching_files(tmp_path: Path, ssh: testbed.SshServer) -> None:
    _tree(ssh.root / "globbed")
    out = tmp_path / "out"
    result = run_cli("cp", ssh.url(ssh.root / "globbed") + "/*.csv*", f"{out}/", "--no-progress", *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["a.csv", "b.csv.gz"]


def test_sftp_through_a_jump_host(tmp_path: Path, ssh: testbed.SshServer, trusted_home: Path) -> None:
    import hashlib

    jump = testbed.SshServer(tmp_path / "jump")
    jump.start()
    try:
        known = trusted_home / ".ssh" / "known_hosts"
        known.write_text(known.read_text() + jump.known_hosts.read_text())
        (jump.base / "authorized_keys").write_text(ssh.user_key.with_suffix(".pub").read_text())
        src = ssh.root / "behind-the-bastion.bin"
        digest = write_random(src, 3 * MiB)
        via_flag = run_cli("cp", ssh.url(src), str(tmp_path / "a.bin"), "--no-progress",
                           "--jump", f"{ssh.user}@127.0.0.1:{jump.port}")
        assert via_flag.code == 0, via_flag.stderr
        (trusted_home / ".ssh" / "config").write_text(
            f"Host target\n  HostName 127.0.0.1\n  Port {ssh.port}\n  User {ssh.user}\n"
            f"  ProxyJump {ssh.user}@127.0.0.1:{jump.port}\n")
        via_config = run_cli("cp", f"sftp://target{src}", str(tmp_path / "b.bin"), "--no-progress")
        assert via_config.code == 0, via_config.stderr
        for name in ("a.bin", "b.bin"):
            assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
    finally:
        jump.stop()
    # With the jump host gone the same command fails: the copy really went through it.
    gone = run_cli("cp", ssh.url(src), str(tmp_path / "c.bin"), "--no-progress",
                   "--jump", f"{ssh.user}@127.0.0.1:{jump.port}")
    assert gone.code != 0 and not (tmp_path / "c.bin").exists()


@pytest.mark.usefixtures("s3_env")
def test_proxy_variables_are_honoured(tmp_path: Path, bucket: str) -> None:
    src = tmp_path / "p.bin"
    write_random(src, 1000)
    dead = f"http://127.0.0.1:{testbed.free_port()}"  # a proxy that is not there
    through = run_cli("cp", str(src), f"s3://{bucket}/p.bin", "--no-progress", "--retries", "0",
                      env={"HTTP_PROXY": dead, "HTTPS_PROXY": dead, "NO_PROXY": ""})
    assert through.code == 1, through.stderr  # S3 requests went to the proxy
    bypass = run_cli("cp", str(src), f"s3://{bucket}/p.bin", "--no-progress",
                     env={"HTTP_PROXY": dead, "HTTPS_PROXY": dead, "NO_PROXY": "127.0.0.1,localhost"})
    assert bypass.code == 0, bypass.stderr


def _listing(s3: testbed.SeaweedServer, bucket: str) -> list[tuple[str, int]]:
    return sorted((o["Key"], o["Size"]) for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", []))


def _files(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())


@pytest.mark.usefixtures("s3_env")
def test_dry_run_of_pull_and_push_changes_nothing(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer,
                                                  ssh: testbed.SshServer) -> None:
    drop = ssh.root / "dry-drop"
    _tree(drop)
    old = time.time() - 30 * 86400
    (drop / ".done").mkdir()
    (drop / ".done" / "ancient.csv").write_text("x")
    os.utime(drop / ".done" / "ancient.csv", (old, old))
    s3.client().put_object(Bucket=bucket, Key="out/deliver-me.csv", Body=b"1,2,3")
    inbox = ssh.root / "dry-inbox"
    inbox.mkdir()
    before = (_files(drop), _listing(s3, bucket), _files(inbox))
    pulled = run_cli("pull", ssh.url(drop), f"s3://{bucket}/in/", "--dry-run", "--retention-days", "7", "--json",
                     *sftp_flags(ssh))
    assert pulled.code == 0, pulled.stderr
    report = json.loads(pulled.stdout)
    assert report["dry_run"] and (report["copied"], report["archived"], report["deleted"]) == (4, 4, 1)
    pushed = run_cli("push", f"s3://{bucket}/out/", ssh.url(inbox), "--dry-run", "--json", *sftp_flags(ssh))
    assert pushed.code == 0, pushed.stderr
    assert json.loads(pushed.stdout)["copied"] == 1
    assert (_files(drop), _listing(s3, bucket), _files(inbox)) == before
    tags = s3.client().get_object_tagging(Bucket=bucket, Key="out/deliver-me.csv")["TagSet"]
    assert tags == []


def test_jump_host_key_problems_name_the_jump_host(tmp_path: Path, ssh: testbed.SshServer,
                                                   trusted_home: Path) -> None:
    # ~/.ssh/known_hosts trusts the target but not the jump host: the error must not blame the target.
    jump = testbed.SshServer(tmp_path / "jump")
    jump.start()
    try:
        (jump.base / "authorized_keys").write_text(ssh.user_key.with_suffix(".pub").read_text())
        src = ssh.root / "behind-an-unknown-bastion.bin"
        write_random(src, 1000)
        unknown = run_cli("cp", ssh.url(src), str(tmp_path / "a.bin"), "--no-progress",
                          "--jump", f"{ssh.user}@127.0.0.1:{jump.port}")
        assert unknown.code == 2, unknown.stderr
        assert f"jump host 127.0.0.1:{jump.port}" in unknown.stderr and "is not known" in unknown.stderr
        assert f"ssh-keyscan -p {jump.port} 127.0.0.1" in unknown.stderr
        assert f"127.0.0.1:{ssh.port}" not in unknown.stderr  # the target's key is fine
        # An entry for the jump host with another key: a changed key, also named as the jump host's.
        known = trusted_home / ".ssh" / "known_hosts"
        other = ssh.known_hosts.read_text().split(None, 1)[1]  # the target's key under the jump host's name
        known.write_text(known.read_text() + f"[127.0.0.1]:{jump.port} {other}")
        changed = run_cli("cp", ssh.url(src), str(tmp_path / "b.bin"), "--no-progress",
                          "--jump", f"{ssh.user}@127.0.0.1:{jump.port}")
        assert changed.code == 2, changed.stderr
        assert f"jump host 127.0.0.1:{jump.port}" in changed.stderr and "CHANGED" in changed.stderr
        assert not (tmp_path / "a.bin").exists() and not (tmp_path / "b.bin").exists()
    finally:
        jump.stop()
