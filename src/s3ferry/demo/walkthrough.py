"""``s3ferry demo``: a real transfer end to end on embedded servers.

Starts OpenSSH sshd (or asyncssh's server where sshd is missing) and
SeaweedFS on loopback in a temporary folder, writes a random file into the
SFTP root, runs ``s3ferry cp`` on it as a separate process (so the progress
bar, summary and figures are exactly what a user sees), reads the object back
to compare SHA-256, and stops the servers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from s3ferry.core.errors import IntegrityError, TransferError
from s3ferry.core.units import human_bytes
from s3ferry.demo import servers as testbed

_CHUNK = 8 * 1024 * 1024


def _write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(_CHUNK, left))
            digest.update(block)
            fh.write(block)
            left -= len(block)
    return digest.hexdigest()


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("s3ferry")
    return [str(script)] if script.exists() else [sys.executable, "-m", "s3ferry"]


def run_demo(size: int, keep: bool) -> None:
    base = Path(tempfile.mkdtemp(prefix="s3ferry-demo-"))
    click.echo(f"s3ferry demo: servers and data in {base}")
    try:
        with testbed.servers(base) as (ssh, s3):
            kind = "OpenSSH sshd" if ssh.proc is not None else "asyncssh SFTP server (sshd not installed)"
            click.echo(f"  SFTP: {kind} on 127.0.0.1:{ssh.port}")
            click.echo(f"  S3:   SeaweedFS on {s3.endpoint}")
            s3.client().create_bucket(Bucket="demo")
            source = ssh.root / "demo.bin"
            click.echo(f"  writing {human_bytes(size)} of random bytes to {source} ...")
            expected = _write_random(source, size)
            cmd = [*_cli(), "cp", ssh.url(source), "s3://demo/incoming/",
                   "--identity", str(ssh.user_key), "--known-hosts", str(ssh.known_hosts)]
            click.echo("  $ s3ferry " + " ".join(cmd[len(_cli()):]))
            env = {**os.environ, **s3.env()}
            code = subprocess.run(cmd, env=env).returncode
            if code != 0:
                raise TransferError(f"s3ferry cp exited with {code}")
            _read_back(s3, expected)
    finally:
        if keep:
            click.echo(f"  kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _read_back(s3: testbed.SeaweedServer, expected: str) -> None:
    body = s3.client().get_object(Bucket="demo", Key="incoming/demo.bin")["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(_CHUNK), b""):
        digest.update(chunk)
    if digest.hexdigest() != expected:
        raise IntegrityError("read back from S3: SHA-256 differs from the source")
    click.echo(f"  read back s3://demo/incoming/demo.bin: SHA-256 {expected[:16]}... matches the source")
