"""The demo's fallback SFTP server (asyncssh) for machines without OpenSSH's sshd."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from support.helpers import object_sha256, run_cli


def test_demo_falls_back_to_an_asyncssh_server(tmp_path: Path, s3: testbed.SeaweedServer, s3_env: dict[str, str],
                                               bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testbed, "SSHD_CANDIDATES", ("/nonexistent/sshd",))
    server = testbed.SshServer(tmp_path / "fallback").start()
    try:
        assert server.proc is None  # not OpenSSH
        src = server.root / "x.bin"
        src.write_bytes(os.urandom(9 * 1024 * 1024 + 5))
        result = run_cli("cp", server.url(src), f"s3://{bucket}/x.bin", "-i", str(server.user_key),
                         "--known-hosts", str(server.known_hosts))
        assert result.code == 0, result.stderr
        import hashlib

        assert object_sha256(s3, bucket, "x.bin") == hashlib.sha256(src.read_bytes()).hexdigest()
    finally:
        server.stop()
