"""An SFTP authentication failure says what was tried (the key files, the password) and what the server
offers -- on its error line, and with -v on a log line too (real OpenSSH sshd)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from s3ferry.demo import servers as testbed
from support.helpers import assert_one_line_error, run_cli


def wrong_key(folder: Path) -> Path:
    key = folder / "not_the_user_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True)
    return key


def test_a_wrong_key_is_named(ssh: testbed.SshServer, tmp_path: Path) -> None:
    key = wrong_key(tmp_path)
    (tmp_path / "x.bin").write_bytes(b"x")
    result = run_cli("cp", ssh.url(ssh.root / "nothing.bin"), str(tmp_path / "out.bin"), "-i", str(key),
                     "--known-hosts", str(ssh.known_hosts))
    assert result.code == 2
    assert_one_line_error(result.stderr, "authentication failed", f"tried: publickey ({key})",
                          "the server offers: publickey")


def test_with_v_the_attempt_is_logged_and_the_password_never(ssh: testbed.SshServer, tmp_path: Path,
                                                               clean_env: Path) -> None:
    key = wrong_key(clean_env / ".ssh")  # a default key file, found as ssh finds it
    key.rename(clean_env / ".ssh" / "id_ed25519")
    key.with_suffix(".pub").rename(clean_env / ".ssh" / "id_ed25519.pub")
    secret = "not-the-password-4711"
    result = run_cli("cp", "-v", ssh.url(ssh.root / "nothing.bin"), str(tmp_path / "out.bin"),
                     "--known-hosts", str(ssh.known_hosts), env={"S3FERRY_SFTP_PASSWORD": secret})
    assert result.code == 2
    error = [line for line in result.stderr.splitlines() if line.startswith("s3ferry: error: ")]
    assert len(error) == 1 and "tried: publickey (id_ed25519); password" in error[0], result.stderr
    logged = [line for line in result.stderr.splitlines() if "SSH authentication to" in line]
    assert len(logged) == 1 and "id_ed25519" in logged[0] and "the server offers: publickey" in logged[0]
    assert secret not in result.stderr + result.stdout
