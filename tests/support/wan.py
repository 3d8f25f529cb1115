"""The test sshd across a WAN: a :class:`~servers.delay_line.DelayLine` in front of it, and the cp flags and
URLs that reach it through the line (its host key trusted on the line's port)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from s3ferry.demo import servers as testbed
from servers.delay_line import DelayLine, known_hosts_via

RTT = 0.050  # a continent away
RATE = 125e6  # 1 Gbit/s per direction


def wan_url(ssh: testbed.SshServer, link: DelayLine, path: Path) -> str:
    """``ssh.url(path)`` with the line's port in place of the server's."""
    return ssh.url(path).replace(f"@127.0.0.1:{ssh.port}/", f"@127.0.0.1:{link.port}/")


@dataclass
class WanSftp:
    ssh: testbed.SshServer
    link: DelayLine
    #: --identity and --known-hosts for the server on the line's port
    flags: list[str]

    def url(self, path: Path) -> str:
        return wan_url(self.ssh, self.link, path)


@contextlib.contextmanager
def sftp_across_wan(ssh: testbed.SshServer, folder: Path, target_port: int | None = None, *,
                    rtt: float = RTT, rate: float = RATE) -> Iterator[WanSftp]:
    """The sshd ``rtt`` away; ``target_port`` puts something between the line and the server (a fault proxy
    forwarding to ``ssh.port``)."""
    with DelayLine(target_port or ssh.port, rtt=rtt, rate=rate) as link:
        known_hosts = known_hosts_via(ssh.known_hosts, link.port, folder / f"known_hosts_wan_{link.port}")
        yield WanSftp(ssh, link, ["--identity", str(ssh.user_key), "--known-hosts", str(known_hosts)])
