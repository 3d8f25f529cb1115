"""`s3ferry doctor` against the real sshd and SeaweedFS: every check, and what a failure looks like."""

from __future__ import annotations

import json
from pathlib import Path

from s3ferry.demo import servers as testbed
from support.helpers import run_cli, sftp_flags, uploads_for


def lines(stdout: str) -> dict[str, str]:
    """'area check' -> the whole line, for the lines doctor printed."""
    found = {}
    for line in stdout.splitlines():
        status, area, *rest = line.split()
        name = rest[0] if rest[0] != "host" else "host key"
        found[f"{area} {name}"] = line
        assert status in ("ok", "FAIL"), line
    return found


def test_all_ok_on_working_endpoints(ssh: testbed.SshServer, s3: testbed.SeaweedServer, s3_env: dict[str, str],
                                     bucket: str) -> None:
    (ssh.root / "drop").mkdir(exist_ok=True)
    (ssh.root / "drop" / "a.csv").write_text("x\n")
    result = run_cli("doctor", ssh.url(ssh.root / "drop"), f"s3://{bucket}/in/", *sftp_flags(ssh), "--write-test")
    assert result.code == 0, result.stdout + result.stderr
    seen = lines(result.stdout)
    assert list(seen) == ["sftp resolve", "sftp connect", "sftp handshake", "sftp host key", "sftp login",
                          "sftp path", "s3 resolve", "s3 connect", "s3 credentials", "s3 bucket", "s3 multipart",
                          "s3 put/delete"]
    assert all(line.startswith("ok") for line in seen.values())
    assert "SSH-2.0-OpenSSH" in seen["sftp handshake"]
    assert ssh.host_fingerprint in seen["sftp host key"]
    assert "1 entry" in seen["sftp path"]
    assert "all 12 checks passed" in result.stderr
    # Nothing left behind by the multipart and write checks.
    assert uploads_for(s3, bucket) == []
    assert s3.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_file_path_and_pinned_key_and_json(ssh: testbed.SshServer, s3_env: dict[str, str]) -> None:
    src = ssh.root / "doctor-file.bin"
    src.write_bytes(b"0123456789")
    result = run_cli("doctor", ssh.url(src), "--identity", str(ssh.user_key), "--host-key", ssh.host_fingerprint,
                     "--json")
    assert result.code == 0, result.stderr
    checks = [json.loads(line) for line in result.stdout.splitlines()]
    assert [c["check"] for c in checks] == ["resolve", "connect", "handshake", "host key", "login", "path"]
    assert all(c["ok"] and c["exit_code"] == 0 for c in checks)
    assert "matches --host-key" in checks[3]["detail"]
    assert "file of 10 B" in checks[5]["detail"] or "file of 10" in checks[5]["detail"]


def test_unknown_host_key_fails_with_the_keyscan_hint(ssh: testbed.SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    result = run_cli("doctor", ssh.url(ssh.root), "--identity", str(ssh.user_key), "--known-hosts", str(empty))
    assert result.code == 2, result.stdout + result.stderr
    seen = lines(result.stdout)
    assert seen["sftp handshake"].startswith("ok")
    assert seen["sftp host key"].startswith("FAIL")
    assert f"ssh-keyscan -p {ssh.port} 127.0.0.1" in seen["sftp host key"]
    assert ssh.host_fingerprint in seen["sftp host key"]
    assert "sftp login" not in seen  # skipped after the failure
    assert "1 check failed: sftp host key" in result.stderr


def test_wrong_login(ssh: testbed.SshServer, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    testbed._keygen(other, "not-authorized")
    result = run_cli("doctor", ssh.url(ssh.root), "--identity", str(other), "--known-hosts", str(ssh.known_hosts))
    assert result.code == 2
    seen = lines(result.stdout)
    assert seen["sftp host key"].startswith("ok")
    assert seen["sftp login"].startswith("FAIL") and "authentication failed" in seen["sftp login"]


def test_missing_path(ssh: testbed.SshServer) -> None:
    result = run_cli("doctor", ssh.url(ssh.root / "no-such-folder"), *sftp_flags(ssh))
    assert result.code == 2
    seen = lines(result.stdout)
    assert seen["sftp login"].startswith("ok")
    assert seen["sftp path"].startswith("FAIL") and "does not exist" in seen["sftp path"]


def test_unreachable_port_fails_with_exit_1(ssh: testbed.SshServer) -> None:
    port = testbed.free_port()
    result = run_cli("doctor", f"sftp://me@127.0.0.1:{port}/x", *sftp_flags(ssh))
    assert result.code == 1, result.stdout + result.stderr
    seen = lines(result.stdout)
    assert seen["sftp resolve"].startswith("ok")
    assert seen["sftp connect"].startswith("FAIL") and "refused" in seen["sftp connect"]
    assert list(seen) == ["sftp resolve", "sftp connect"]


def test_wrong_s3_credentials_fail_with_exit_2(s3: testbed.SeaweedServer, s3_env: dict[str, str],
                                               bucket: str) -> None:
    result = run_cli("doctor", f"s3://{bucket}/", env={"AWS_SECRET_ACCESS_KEY": "wrong-secret"})
    assert result.code == 2, result.stdout + result.stderr
    seen = lines(result.stdout)
    assert seen["s3 connect"].startswith("ok")
    assert seen["s3 credentials"].startswith("FAIL")
    assert "wrong-secret" not in result.stdout + result.stderr
    assert "s3 bucket" not in seen


def test_missing_bucket_fails_with_exit_2(s3: testbed.SeaweedServer, s3_env: dict[str, str]) -> None:
    result = run_cli("doctor", "s3://no-such-bucket-doctor/x/")
    assert result.code == 2, result.stdout + result.stderr
    seen = lines(result.stdout)
    assert seen["s3 credentials"].startswith("ok")
    assert seen["s3 bucket"].startswith("FAIL") and "bucket not found" in seen["s3 bucket"]
    assert "no-such-bucket-doctor" not in [b["Name"] for b in s3.client().list_buckets()["Buckets"]]


def test_unreachable_s3_endpoint_fails_with_exit_1(s3_env: dict[str, str]) -> None:
    port = testbed.free_port()
    result = run_cli("doctor", "s3://some-bucket/", "--endpoint-url", f"http://127.0.0.1:{port}")
    assert result.code == 1, result.stdout + result.stderr
    seen = lines(result.stdout)
    assert seen["s3 connect"].startswith("FAIL")


def test_multipart_check_leaves_no_upload_behind(s3: testbed.SeaweedServer, s3_env: dict[str, str],
                                                 bucket: str) -> None:
    for target in (f"s3://{bucket}", f"s3://{bucket}/deep/prefix", f"s3://{bucket}/deep/prefix/"):
        result = run_cli("doctor", target)
        assert result.code == 0, result.stdout + result.stderr
        multipart = lines(result.stdout)["s3 multipart"]
        assert multipart.startswith("ok") and "nothing left behind" in multipart
        if "deep" in target:
            assert f"s3://{bucket}/deep/prefix/.s3ferry-doctor-" in multipart
    assert uploads_for(s3, bucket) == []
    assert s3.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_first_failure_decides_the_exit_code(ssh: testbed.SshServer, s3_env: dict[str, str]) -> None:
    port = testbed.free_port()
    # SFTP unreachable (1) comes first, then a missing bucket (2): exit 1, both reported.
    result = run_cli("doctor", f"sftp://me@127.0.0.1:{port}/x", "s3://no-such-bucket-doctor/")
    assert result.code == 1
    assert "2 checks failed: sftp connect, s3 bucket" in result.stderr
