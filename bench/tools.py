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
from dataclasses import dataclass, field, replace
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
    #: WAN mode: the delay line's port in front of sshd and a known_hosts naming the key on that port
    via_port: int | None = None
    via_known_hosts: Path | None = None

    @property
    def sftp_port(self) -> int:
        """The port the tools connect to for SFTP: sshd's own, or the delay line's in front of it."""
        return self.via_port or self.ssh.port

    @property
    def known_hosts(self) -> Path:
        return self.via_known_hosts or self.ssh.known_hosts

    def sftp_url(self, path: Path) -> str:
        """An ``sftp://`` URL of an absolute path on the test sshd, through :attr:`sftp_port`."""
        return f"sftp://{self.ssh.user}@127.0.0.1:{self.sftp_port}{path}"


@dataclass(frozen=True)
class Command:
    tool: str
    argv: list[str]
    env: dict[str, str]
    key: str | None  # the object it writes (a prefix ending in / for a tree), None for ssh-cat
    stdout_path: Path | None = None  # None: captured to a log file
    emptied: tuple[Path, ...] = ()  # files truncated right before every run
    dest: Path | None = None  # s3 -> sftp: the file (or folder) it writes on the SFTP server, else None

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


def s3ferry_cp(bed: Bed, source: str, dest: str, *flags: str, verb: str = "cp") -> tuple[list[str], dict[str, str]]:
    """``s3ferry cp SOURCE DEST`` (or ``verb``: pull, push) with the test bed's SFTP key and known_hosts: argv
    and environment."""
    argv = [
        tool_path("s3ferry"), verb, *flags, source, dest,
        "--identity", str(bed.ssh.user_key), "--known-hosts", str(bed.known_hosts), "--json",
        *bed.s3ferry_args,
    ]
    # The resume journal goes to real disk (the testbed folder), not to the
    # tmpfs HOME: its writes are part of what s3ferry writes to disk.
    state = {"S3FERRY_STATE_DIR": str(bed.ssh.base.parent / "s3ferry-state")}
    env = base_env(bed) | bed.s3.env() | state
    if bed.baseline is not None:
        env["PYTHONPATH"] = str(bed.baseline)
    return argv, env


def s3ferry(bed: Bed, key: str) -> Command:
    argv, env = s3ferry_cp(replace(bed, baseline=None), bed.sftp_url(bed.source), f"s3://{bed.bucket}/{key}")
    return Command("s3ferry", argv, env, key)


def s3ferry_base(bed: Bed, key: str) -> Command:
    """s3ferry from the --baseline source tree: before/after figures of a change, in one run."""
    if bed.baseline is None:
        raise ValueError("s3ferry-base needs --baseline SRC")
    argv, env = s3ferry_cp(bed, bed.sftp_url(bed.source), f"s3://{bed.bucket}/{key}")
    return Command("s3ferry-base", argv, env, key)


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
        "RCLONE_CONFIG_SRC_PORT": str(bed.sftp_port),
        "RCLONE_CONFIG_SRC_USER": bed.ssh.user,
        "RCLONE_CONFIG_SRC_KEY_FILE": str(bed.ssh.user_key),
        "RCLONE_CONFIG_SRC_KNOWN_HOSTS_FILE": str(bed.known_hosts),
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


def ssh_argv(bed: Bed, *remote: str) -> list[str]:
    """``ssh`` to the test sshd (through the delay line in WAN mode) running ``remote``, no user config."""
    return [
        "ssh", "-F", "/dev/null", "-i", str(bed.ssh.user_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={bed.known_hosts}",
        "-p", str(bed.sftp_port), f"{bed.ssh.user}@127.0.0.1", *remote,
    ]


def ssh_cat(bed: Bed, key: str) -> Command:
    argv = ssh_argv(bed, "cat", shlex.quote(str(bed.source)))
    return Command("ssh-cat", argv, base_env(bed), None, stdout_path=Path("/dev/null"))


def ssh_cat_to_server(bed: Bed, key: str) -> Command:
    """The file into ``cat > /dev/null`` on the server: the SSH side alone, towards the server."""
    # sh execs ssh (the measured process stays ssh) with the file as its stdin.
    script = f"exec {shlex.join(ssh_argv(bed, 'cat', '>/dev/null'))} < {shlex.quote(str(bed.source))}"
    return Command("ssh-cat", ["/bin/sh", "-c", script], base_env(bed), None)


BUILDERS: dict[str, Callable[[Bed, str], Command]] = {
    "s3ferry": s3ferry, "s3ferry-base": s3ferry_base, "rclone": rclone, "s5cmd": s5cmd, "ssh-cat": ssh_cat,
}


def s3ferry_base_tree(bed: Bed, prefix: str) -> Command:
    """s3ferry cp -r from the --baseline source tree."""
    if bed.baseline is None:
        raise ValueError("s3ferry-base needs --baseline SRC")
    argv, env = s3ferry_cp(bed, bed.sftp_url(bed.source), f"s3://{bed.bucket}/{prefix}", "-r", "--no-progress")
    return Command("s3ferry-base", argv, env, prefix)


def s3ferry_tree(bed: Bed, prefix: str) -> Command:
    argv, env = s3ferry_cp(replace(bed, baseline=None), bed.sftp_url(bed.source), f"s3://{bed.bucket}/{prefix}",
                           "-r", "--no-progress")
    return Command("s3ferry", argv, env, prefix)


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
