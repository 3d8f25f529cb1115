"""deploy/systemd/: the unit files parse (systemd-analyze verify, no warning at all) and their
s3ferry command lines are ones s3ferry accepts, checked against an example flows file."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/usr/local/bin/s3ferry"
FLOWS = "/etc/s3ferry/flows.toml"
#: `systemctl reload`: SIGHUP to s3ferry run, which checks the flows file itself before using it
RELOAD = ["/bin/kill", "-HUP", "$MAINPID"]


def s3ferry_path() -> str:
    found = shutil.which("s3ferry", path=str(Path(sys.executable).parent))
    assert found, "the s3ferry script is not installed next to this Python"
    return found


def unit_files() -> list[Path]:
    return sorted(p for p in UNITS.iterdir() if p.suffix in (".service", ".timer"))


def test_unit_files_exist() -> None:
    names = {p.name for p in unit_files()}
    assert {"s3ferry.service", "s3ferry-once.service", "s3ferry-once.timer", "s3ferry-serve.service"} <= names
    assert (UNITS / "s3ferry.sysusers").is_file()


def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    """Every unit verifies with no output: an unknown key or a typo is only a warning (exit 0) to
    systemd-analyze, so the test also requires silence."""
    verify = shutil.which("systemd-analyze")
    assert verify, "systemd-analyze is missing: install Debian's systemd package (make test does)"
    copies = []
    for unit in unit_files():  # the real script instead of /usr/local/bin, which the verifier checks exists
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(INSTALLED, s3ferry_path()))
        copies.append(str(copy))
    done = subprocess.run([verify, "verify", *copies], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "" and done.stderr.strip() == "", done.stderr + done.stdout


def exec_lines(unit: Path) -> list[list[str]]:
    commands = []
    for line in unit.read_text().splitlines():
        match = re.match(r"^Exec(?:Start|StartPre|Reload)=(.*)$", line)
        if match:
            commands.append(shlex.split(match.group(1)))
    return commands


@pytest.mark.parametrize("unit", ["s3ferry.service", "s3ferry-once.service", "s3ferry-serve.service"])
def test_command_lines_are_accepted(unit: str, tmp_path: Path) -> None:
    """Each s3ferry command of the unit, run with --check against an example flows file: the options
    parse and the file validates (a renamed option would fail the service only at its first start)."""
    commands = [cmd for cmd in exec_lines(UNITS / unit) if cmd != RELOAD]
    assert commands and all(cmd[0] == INSTALLED for cmd in commands)
    example = ROOT / "examples" / "outbox.toml"
    token = tmp_path / "serve-token"  # what LoadCredential= gives serve at %d/serve-token
    token.write_text("0123456789abcdef0123456789abcdef\n")
    for cmd in commands:
        argv = [s3ferry_path(), *[example.as_posix() if a == FLOWS else a.replace("%d/", f"{tmp_path}/")
                                  for a in cmd[1:]]]
        if "--check" not in argv:
            argv.insert(2, "--check")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "S3FERRY_STATE_DIR": str(tmp_path / "state"),
               "PARTNER_SFTP_PASSWORD": "x",
               # the code under test, when it is not the installed one (a worktree run with PYTHONPATH)
               **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, f"{shlex.join(argv)}: {done.stderr}"


@pytest.mark.parametrize("unit", ["s3ferry.service", "s3ferry-serve.service"])
def test_service_is_hardened(unit: str) -> None:
    """The long-running services run as their own user with the sandbox options the README promises."""
    text = (UNITS / unit).read_text()
    for setting in ("User=s3ferry", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                    "PrivateTmp=yes", "StateDirectoryMode=0700", "CapabilityBoundingSet=", "UMask=0077",
                    "SuccessExitStatus=130", f"ExecReload={' '.join(RELOAD)}"):
        assert re.search(rf"^{re.escape(setting)}$", text, re.MULTILINE), setting
    assert "AWS_SECRET_ACCESS_KEY=" not in text and "password =" not in text
    if unit == "s3ferry-serve.service":  # the API token from a credential, never on the command line
        assert re.search(r"^LoadCredential=serve-token:", text, re.MULTILINE)
        assert re.search(r"^ExecStart=\S+ serve --token-file %d/serve-token ", text, re.MULTILINE)
