"""Real servers for the whole session: OpenSSH sshd and SeaweedFS on loopback.

Every test runs with HOME pointing at an empty folder and without ssh-agent
or AWS variables from the outside, so nothing from the developer's own
~/.ssh or ~/.aws leaks in; the S3 variables of the test server are set.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed

MiB = 1024 * 1024


@pytest.fixture(scope="session")
def ssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testbed.SshServer]:
    if not os.access("/usr/sbin/sshd", os.X_OK):
        pytest.fail("OpenSSH sshd is required: run `make test` (installs openssh-server as root)")
    server = testbed.SshServer(tmp_path_factory.mktemp("ssh")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testbed.SeaweedServer]:
    server = testbed.SeaweedServer(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3: testbed.SeaweedServer) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:12]}"
    client = s3.client()
    client.create_bucket(Bucket=name)
    yield name
    empty_and_delete(client, name)


def empty_and_delete(client: object, name: str) -> None:
    """Remove a test bucket: SeaweedFS gives each bucket its own volumes, a finite supply."""
    for up in client.list_multipart_uploads(Bucket=name).get("Uploads", []):  # type: ignore[attr-defined]
        client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])  # type: ignore[attr-defined]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=name)  # type: ignore[attr-defined]
    for page in pages:
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])  # type: ignore[attr-defined]
    client.delete_bucket(Bucket=name)  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith(("AWS_", "S3FERRY_", "XDG_")) or name == "SSH_AUTH_SOCK":
            monkeypatch.delenv(name)
    return home


@pytest.fixture
def s3_env(s3: testbed.SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3.env()


@pytest.fixture
def trusted_home(clean_env: Path, ssh: testbed.SshServer) -> Path:
    """A HOME whose ~/.ssh trusts the test sshd and holds the user key (as `ssh` would use)."""
    dot = clean_env / ".ssh"
    shutil.copy(ssh.known_hosts, dot / "known_hosts")
    shutil.copy(ssh.user_key, dot / "id_ed25519")
    (dot / "id_ed25519").chmod(0o600)
    return clean_env


def write_random(path: Path, size: int) -> str:
    """Write ``size`` random bytes; return their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(8 * MiB, left))
            digest.update(block)
            fh.write(block)
            left -= len(block)
    return digest.hexdigest()


def object_sha256(s3: testbed.SeaweedServer, bucket: str, key: str) -> str:
    body = s3.client().get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(8 * MiB), b""):
        digest.update(chunk)
    return digest.hexdigest()


def uploads_for(s3: testbed.SeaweedServer, bucket: str, key: str | None = None) -> list[dict[str, object]]:
    found = s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [u for u in found if key is None or u["Key"] == key]


def object_exists(s3: testbed.SeaweedServer, bucket: str, key: str) -> bool:
    listing = s3.client().list_objects_v2(Bucket=bucket, Prefix=key)
    return any(o["Key"] == key for o in listing.get("Contents", []))


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
    """Run the installed ``s3ferry`` as a user would (a separate process)."""
    script = Path(sys.executable).with_name("s3ferry")
    proc = subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def sftp_flags(ssh: testbed.SshServer) -> list[str]:
    return ["--identity", str(ssh.user_key), "--known-hosts", str(ssh.known_hosts)]
