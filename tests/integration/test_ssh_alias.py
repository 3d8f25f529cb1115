"""A ``Host`` alias from ``~/.ssh/config`` is followed the same way by ``cp`` and ``doctor``, and host-key
messages name the host and port really reached, with advice that is safe to follow (real sshd).

The known_hosts file used comes from ``--known-hosts``, ``UserKnownHostsFile`` or ``~/.ssh/known_hosts``;
each is tried, since the advice must name the file actually read.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from support.helpers import run_cli, write_random

#: where the known_hosts file comes from: "flag" (--known-hosts), "config" (UserKnownHostsFile), "default"
SOURCES = ("flag", "config", "default")


def alias_home(home: Path, ssh: testbed.SshServer, source: str, extra: str = "") -> tuple[Path, list[str], str]:
    """``Host partner`` -> the test sshd; returns the known_hosts file to fill, the extra CLI flags, and the
    name of that file as the advice should show it."""
    config = (f"Host partner\n  HostName 127.0.0.1\n  Port {ssh.port}\n  User {ssh.user}\n"
              f"  IdentityFile {ssh.user_key}\n{extra}")
    if source == "default":
        known, shown = home / ".ssh" / "known_hosts", "~/.ssh/known_hosts"
    else:
        known = home / "kh" / "partner_known_hosts"
        known.parent.mkdir()
        shown = str(known)
    if source == "config":
        config += f"  UserKnownHostsFile {known}\n"
    (home / ".ssh" / "config").write_text(config)
    known.write_text("")
    return known, (["--known-hosts", str(known)] if source == "flag" else []), shown


def public_key(path: Path) -> str:
    """'ALGORITHM BASE64' of an OpenSSH public key file."""
    return " ".join(path.read_text().split()[:2])


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {stderr!r}"
    assert lines[0].startswith("s3ferry: error: ") and "Traceback" not in stderr
    return lines[0]


def doctor_lines(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        status, area, *rest = line.split()
        found[f"{area} {rest[0] if rest[0] != 'host' else 'host key'}"] = line
        assert status in ("ok", "FAIL"), line
    return found


def advice(message: str) -> str:
    """The one command quoted between backticks in a message."""
    commands = re.findall(r"`([^`]+)`", message)
    assert len(commands) == 1, message
    return commands[0]


def test_doctor_follows_the_alias_like_cp(clean_env: Path, ssh: testbed.SshServer, tmp_path: Path) -> None:
    # IdentityFile and UserKnownHostsFile only in ~/.ssh/config: HOME holds no default key or known_hosts.
    known, flags, _ = alias_home(clean_env, ssh, "config")
    shutil.copy(ssh.known_hosts, known)
    (ssh.root / "alias-drop").mkdir(exist_ok=True)
    result = run_cli("doctor", f"sftp://partner{ssh.root / 'alias-drop'}", *flags)
    assert result.code == 0, result.stdout + result.stderr
    seen = doctor_lines(result.stdout)
    assert list(seen) == ["sftp resolve", "sftp connect", "sftp handshake", "sftp host key", "sftp login",
                          "sftp path"]
    assert all(line.startswith("ok") for line in seen.values()), result.stdout
    assert "127.0.0.1" in seen["sftp resolve"] and f"127.0.0.1:{ssh.port}" in seen["sftp connect"]
    assert ssh.host_fingerprint in seen["sftp host key"]
    assert ssh.user in seen["sftp login"]
    # cp through the same alias works too: one way to connect.
    src = ssh.root / "alias-drop" / "a.bin"
    digest = write_random(src, 5000)
    copied = run_cli("cp", f"sftp://partner{src}", str(tmp_path / "a.bin"), "--no-progress", *flags)
    assert copied.code == 0, copied.stderr
    assert hashlib.sha256((tmp_path / "a.bin").read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("source", SOURCES)
def test_changed_key_through_an_alias(source: str, clean_env: Path, ssh: testbed.SshServer, tmp_path: Path) -> None:
    known, flags, shown = alias_home(clean_env, ssh, source)
    # Another key (the user's own public key will do) recorded for the real host and port.
    known.write_text(f"[127.0.0.1]:{ssh.port} {public_key(ssh.user_key.with_suffix('.pub'))}\n")
    before = known.read_text()
    src = ssh.root / "alias-changed.bin"
    write_random(src, 1000)
    removal = f"ssh-keygen -R '[127.0.0.1]:{ssh.port}' -f {shown}"

    copied = run_cli("cp", f"sftp://partner{src}", str(tmp_path / "x.bin"), "--no-progress", *flags)
    assert copied.code == 2, copied.stderr
    line = error_line(copied.stderr)
    doctor = run_cli("doctor", f"sftp://partner{ssh.root}", *flags)
    assert doctor.code == 2, doctor.stdout + doctor.stderr
    seen = doctor_lines(doctor.stdout)
    assert seen["sftp host key"].startswith("FAIL") and "sftp login" not in seen
    for message in (line, seen["sftp host key"]):
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in message
        assert f"127.0.0.1:{ssh.port}" in message and ssh.host_fingerprint in message
        assert "partner:22" not in message and "is not known" not in message
        assert "ssh-keyscan" not in message and ">>" not in message  # never advise adding a second key
        assert advice(message) == removal
    assert not (tmp_path / "x.bin").exists() and known.read_text() == before


@pytest.mark.parametrize("source", SOURCES)
def test_unknown_key_through_an_alias(source: str, clean_env: Path, ssh: testbed.SshServer, tmp_path: Path) -> None:
    known, flags, shown = alias_home(clean_env, ssh, source)
    src = ssh.root / "alias-unknown.bin"
    digest = write_random(src, 1000)
    keyscan = f"ssh-keyscan -p {ssh.port} 127.0.0.1 >> {shown}"

    copied = run_cli("cp", f"sftp://partner{src}", str(tmp_path / "x.bin"), "--no-progress", *flags)
    assert copied.code == 2, copied.stderr
    line = error_line(copied.stderr)
    doctor = run_cli("doctor", f"sftp://partner{ssh.root}", *flags)
    assert doctor.code == 2, doctor.stdout + doctor.stderr
    host_key = doctor_lines(doctor.stdout)["sftp host key"]
    for message in (line, host_key):
        assert "is not known" in message and f"127.0.0.1:{ssh.port}" in message
        assert ssh.host_fingerprint in message and "partner:22" not in message
        assert advice(message) == keyscan
    # The advice, followed as printed, is what makes the next copy work.
    subprocess.run(["sh", "-c", keyscan], check=True, capture_output=True, timeout=60)
    assert known.read_text().startswith(f"[127.0.0.1]:{ssh.port} ")
    again = run_cli("cp", f"sftp://partner{src}", str(tmp_path / "x.bin"), "--no-progress", *flags)
    assert again.code == 0, again.stderr
    assert hashlib.sha256((tmp_path / "x.bin").read_bytes()).hexdigest() == digest


def test_host_key_alias_is_the_name_looked_up(clean_env: Path, ssh: testbed.SshServer, tmp_path: Path) -> None:
    known, flags, shown = alias_home(clean_env, ssh, "config", "  HostKeyAlias partner-key\n")
    src = ssh.root / "alias-hostkeyalias.bin"
    digest = write_random(src, 1000)
    name = f"[partner-key]:{ssh.port}"
    # Unknown: the advice writes the key under the alias, which is what the next lookup reads.
    unknown = run_cli("cp", f"sftp://partner{src}", str(tmp_path / "x.bin"), "--no-progress", *flags)
    assert unknown.code == 2, unknown.stderr
    command = advice(error_line(unknown.stderr))
    assert command.startswith(f"ssh-keyscan -p {ssh.port} 127.0.0.1 ") and command.endswith(f">> {shown}")
    assert "partner-key" in command
    subprocess.run(["sh", "-c", command], check=True, capture_output=True, timeout=60)
    assert known.read_text().startswith(f"{name} ")
    again = run_cli("cp", f"sftp://partner{src}", str(tmp_path / "x.bin"), "--no-progress", *flags)
    assert again.code == 0, again.stderr
    assert hashlib.sha256((tmp_path / "x.bin").read_bytes()).hexdigest() == digest
    # Another key under the alias is a changed key, to be removed under the alias.
    known.write_text(f"{name} {public_key(ssh.user_key.with_suffix('.pub'))}\n")
    changed = run_cli("cp", f"sftp://partner{src}", str(tmp_path / "y.bin"), "--no-progress", *flags)
    assert changed.code == 2, changed.stderr
    line = error_line(changed.stderr)
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in line and f"127.0.0.1:{ssh.port}" in line
    assert advice(line) == f"ssh-keygen -R {shlex.quote(name)} -f {shown}"
