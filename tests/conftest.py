"""Fixtures only (helpers are in support/helpers.py). Real servers for the whole session: OpenSSH sshd and
SeaweedFS on loopback, started only by the tests that ask for them (no server fixture is autouse).

Every test runs with HOME pointing at an empty folder and without ssh-agent
or AWS variables from the outside, so nothing from the developer's own
~/.ssh or ~/.aws leaks in; the S3 variables of the test server are set.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from support.helpers import empty_and_delete


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


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state folder of this test's own (journal, locks, audit trail), through S3FERRY_STATE_DIR."""
    folder = tmp_path / "state"
    monkeypatch.setenv("S3FERRY_STATE_DIR", str(folder))
    return folder


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config file path s3ferry reads (through S3FERRY_CONFIG); the test writes it."""
    path = tmp_path / "cfg" / "config.toml"
    path.parent.mkdir()
    monkeypatch.setenv("S3FERRY_CONFIG", str(path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return path
