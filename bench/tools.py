"""The commands the benchmark compares, each with the environment it runs in.

Every tool gets the same clean base environment: no inherited ``AWS_*``,
``RCLONE_*``, ``S3FERRY_*`` or ssh-agent variables, and ``HOME`` pointing at an
empty folder so no user configuration (``~/.aws``, ``~/.ssh/config``,
``~/.config/rclone``) is read.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from s3ferry.demo.servers import SeaweedServer, SshServer

BIN = Path(sys.executable).parent
SCRUBBED_PREFIXES = ("AWS_", "RCLONE_", "S3FERRY_", "SSH_AUTH_SOCK", "SSH_AGENT_PID")
ALL_TOOLS = ("s3ferry", "s3ferry-base", "rclone", "s5cmd", "ssh-cat")
UPLOADERS = ("s3ferry", "rclone", "s5cmd")
TREE_TOOLS = ("s3ferry", "s3ferry-base", "rclone", "s5cmd")  # what --tree can run (default: s3ferry,rclone)


@dataclass(frozen=True)
class Bed:
    """Everything a command needs to know about the running test bed."""

    ssh: SshServer
    s3: SeaweedServer
    bucket: str
    source: Path  # the random file (or, with --tree, the folder of random files), below ssh.root
    home: Path  # an empty folder: HOME of every child; rclone.conf (empty) lives next to it
    s3ferry_args: list[str] = field(default_factory=list)
    rclone_args: list[str] = field(default_factory=list)
    rclone_provider: str = "SeaweedFS"
    #: --baseline: another checkout's src folder, run as "s3ferry-base" (the same command, that code)
    baseline: Path | None = None


@dataclass(frozen=True)
class Command:
    tool: str
    argv: list[str]
    env: dict[str, str]
    key: str | None  # the object it writes (a prefix ending in / for a tree), None for ssh-cat
    stdout_path: Path | None = None  # None: captured to a log file
    emptied: tuple[Path, ...] = ()  # files truncated right before every run

    def shell(self) -> str:
        return shlex.join(self.argv)


def tool_path(name: str) -> str:
    """A tool from the venv's bin folder (where the pip packages put them), else from PATH."""
    here = BIN / name
    return str(here) if here.exists() else name


def base_env(bed: Bed) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env["HOME"] = str(bed.home)
    return env


def s3ferry(bed: Bed, key: str) -> Command:
    argv = [
        tool_path("s3ferry"), "cp", bed.ssh.url(bed.source), f"s3://{bed.bucket}/{key}",
        "--identity", str(bed.ssh.user_key), "--known-hosts", str(bed.ssh.known_hosts), "--json",
        *bed.s3ferry_args,
    ]
    # The resume journal goes to real disk (the testbed folder), not to the
    # tmpfs HOME: its writes are part of what s3ferry writes to disk.
    state = {"S3FERRY_STATE_DIR": str(bed.ssh.base.parent / "s3ferry-state")}
    return Command("s3ferry", argv, base_env(bed) | bed.s3.env() | state, key)


def s3ferry_base(bed: Bed, key: str) -> Command:
    """s3ferry from the --baseline source tree: before/after figures of a change, in one run."""
    if bed.baseline is None:
        raise ValueError("s3ferry-base needs --baseline SRC")
    cmd = s3ferry(bed, key)
    return Command("s3ferry-base", cmd.argv, cmd.env | {"PYTHONPATH": str(bed.baseline)}, key)


def rclone_config(bed: Bed) -> Path:
    """rclone's config file: empty before every run.

    rclone saves what it detects about an SFTP server (shell_type, md5sum_command,
    sha1sum_command) into it, so without emptying it the first round would do
    that detection and later rounds would not.
    """
    return bed.home.parent / "rclone.conf"


def rclone_env(bed: Bed) -> dict[str, str]:
    """rclone's two remotes, ``src:`` (sftp) and ``dst:`` (s3), from environment variables only."""
    return base_env(bed) | {
        "RCLONE_CONFIG": str(rclone_config(bed)),
        "RCLONE_CONFIG_SRC_TYPE": "sftp",
        "RCLONE_CONFIG_SRC_HOST": "127.0.0.1",
        "RCLONE_CONFIG_SRC_PORT": str(bed.ssh.port),
        "RCLONE_CONFIG_SRC_USER": bed.ssh.user,
        "RCLONE_CONFIG_SRC_KEY_FILE": str(bed.ssh.user_key),
        "RCLONE_CONFIG_SRC_KNOWN_HOSTS_FILE": str(bed.ssh.known_hosts),
        "RCLONE_CONFIG_DST_TYPE": "s3",
        "RCLONE_CONFIG_DST_PROVIDER": bed.rclone_provider,
        "RCLONE_CONFIG_DST_ENDPOINT": bed.s3.endpoint,
        "RCLONE_CONFIG_DST_ACCESS_KEY_ID": bed.s3.access_key,
        "RCLONE_CONFIG_DST_SECRET_ACCESS_KEY": bed.s3.secret_key,
        "RCLONE_CONFIG_DST_REGION": "us-east-1",
    }


def rclone(bed: Bed, key: str) -> Command:
    argv = [tool_path("rclone"), "copyto", f"src:{bed.source}", f"dst:{bed.bucket}/{key}", *bed.rclone_args]
    return Command("rclone", argv, rclone_env(bed), key, emptied=(rclone_config(bed),))


def s5cmd(bed: Bed, key: str) -> Command:
    argv = [tool_path("s5cmd"), "--endpoint-url", bed.s3.endpoint, "cp", str(bed.source), f"s3://{bed.bucket}/{key}"]
    return Command("s5cmd", argv, base_env(bed) | bed.s3.env(), key)


def ssh_cat(bed: Bed, key: str) -> Command:
    argv = [
        "ssh", "-F", "/dev/null", "-i", str(bed.ssh.user_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={bed.ssh.known_hosts}",
        "-p", str(bed.ssh.port), f"{bed.ssh.user}@127.0.0.1", "cat", shlex.quote(str(bed.source)),
    ]
    return Command("ssh-cat", argv, base_env(bed), None, stdout_path=Path("/dev/null"))


BUILDERS: dict[str, Callable[[Bed, str], Command]] = {
    "s3ferry": s3ferry, "s3ferry-base": s3ferry_base, "rclone": rclone, "s5cmd": s5cmd, "ssh-cat": ssh_cat,
}


def s3ferry_base_tree(bed: Bed, prefix: str) -> Command:
    """s3ferry cp -r from the --baseline source tree."""
    if bed.baseline is None:
        raise ValueError("s3ferry-base needs --baseline SRC")
    cmd = s3ferry_tree(bed, prefix)
    return Command("s3ferry-base", cmd.argv, cmd.env | {"PYTHONPATH": str(bed.baseline)}, prefix)


def s3ferry_tree(bed: Bed, prefix: str) -> Command:
    argv = [
        tool_path("s3ferry"), "cp", "-r", bed.ssh.url(bed.source), f"s3://{bed.bucket}/{prefix}",
        "--identity", str(bed.ssh.user_key), "--known-hosts", str(bed.ssh.known_hosts), "--no-progress", "--json",
        *bed.s3ferry_args,
    ]
    state = {"S3FERRY_STATE_DIR": str(bed.ssh.base.parent / "s3ferry-state")}
    return Command("s3ferry", argv, base_env(bed) | bed.s3.env() | state, prefix)


def rclone_tree(bed: Bed, prefix: str) -> Command:
    argv = [tool_path("rclone"), "copy", f"src:{bed.source}", f"dst:{bed.bucket}/{prefix.rstrip('/')}",
            *bed.rclone_args]
    return Command("rclone", argv, rclone_env(bed), prefix, emptied=(rclone_config(bed),))


def s5cmd_tree(bed: Bed, prefix: str) -> Command:
    """The local folder straight into S3 (``dir/*`` keeps the relative paths below ``dir``)."""
    argv = [tool_path("s5cmd"), "--endpoint-url", bed.s3.endpoint, "cp", f"{bed.source}/*",
            f"s3://{bed.bucket}/{prefix}"]
    return Command("s5cmd", argv, base_env(bed) | bed.s3.env(), prefix)


TREE_BUILDERS: dict[str, Callable[[Bed, str], Command]] = {
    "s3ferry": s3ferry_tree, "s3ferry-base": s3ferry_base_tree, "rclone": rclone_tree, "s5cmd": s5cmd_tree,
}


def command(tool: str, bed: Bed, run_label: str) -> Command:
    """The command for ``tool`` writing object ``<tool>-<run_label>``."""
    return BUILDERS[tool](bed, f"{tool}-{run_label}")


def tree_command(tool: str, bed: Bed, run_label: str) -> Command:
    """The command for ``tool`` copying the folder ``bed.source`` below the new prefix ``<tool>-<run_label>/``."""
    return TREE_BUILDERS[tool](bed, f"{tool}-{run_label}/")


def rclone_provider() -> str:
    """``SeaweedFS`` if this rclone knows that S3 provider, else ``Other``."""
    text = subprocess.run(
        [tool_path("rclone"), "help", "backend", "s3"], capture_output=True, text=True, check=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")},
    ).stdout
    return "SeaweedFS" if '"SeaweedFS"' in text else "Other"
