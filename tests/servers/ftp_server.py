"""A real FTP / FTPS server on loopback for the test suite: pyftpdlib in a child process.

:class:`FtpServer` serves ``root_dir`` to one user (``ferry``, random password)
on 127.0.0.1 and a free port, passive mode only. With ``tls=True`` it speaks
explicit TLS (``AUTH TLS``) and *requires* it on the control and data
connections, with a self-signed certificate for 127.0.0.1 / localhost whose
PEM file is :attr:`FtpServer.ca_file` (what a client passes as ``--ca-bundle``).
With ``mlsx=False`` the server forgets MLST/MLSD, like vsftpd, so the
SIZE/MDTM and LIST fallbacks can be tested (pyftpdlib answers LIST in ``ls -l``
form, times in UTC). With ``fail_every=N`` every N-th RETR (all
connections counted) breaks off after 1 MiB with ``426``, as when a server's
disk or network fails mid-transfer.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from s3ferry.demo.servers import free_port, stop_process, wait_for_port

# Runs in the child: everything it needs comes in one JSON file (no password in argv).
_SERVER = """
import json, logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer

cfg = json.load(open(sys.argv[1]))
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
auth = DummyAuthorizer()
auth.add_user(cfg["user"], cfg["password"], cfg["root"], perm="elradfmwMT")
handler = TLS_FTPHandler if cfg["tls"] else FTPHandler
if cfg["tls"]:
    handler.certfile, handler.keyfile = cfg["cert"], cfg["key"]
    handler.tls_control_required = handler.tls_data_required = True
if not cfg["mlsx"]:
    handler.proto_cmds = {k: v for k, v in handler.proto_cmds.items() if k not in ("MLST", "MLSD")}
if cfg["fail_every"]:
    import errno
    from pyftpdlib.exceptions import _FileReadWriteError

    class Failing:  # a producer that dies after 1 MiB: pyftpdlib then answers 426
        def __init__(self, inner):
            self.inner, self.left = inner, 1 << 20
        def more(self):
            if self.left <= 0:
                raise _FileReadWriteError(OSError(errno.EIO, "injected fault"))
            data = self.inner.more()
            self.left -= len(data)
            return data

    class Flaky(handler):
        retrs = 0
        def push_dtp_data(self, data, isproducer=False, file=None, cmd=None):
            if cmd == "RETR":
                Flaky.retrs += 1
                if Flaky.retrs % cfg["fail_every"] == 0:
                    data = Failing(data)
            return super().push_dtp_data(data, isproducer, file, cmd)

    handler = Flaky
handler.authorizer = auth
handler.passive_ports = range(cfg["passive"][0], cfg["passive"][1])
handler.auth_failed_timeout = 0.1  # pyftpdlib waits 3 s before each 530 by default
server = FTPServer(("127.0.0.1", cfg["port"]), handler)
server.serve_forever()
"""


def _self_signed(cert: Path, key: Path) -> None:
    """A self-signed certificate (its own CA) for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s3ferry test FTPS")])
    now = datetime.datetime.now(datetime.UTC)
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    ski = x509.SubjectKeyIdentifier.from_public_key(private.public_key())
    built = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    key.chmod(0o600)


@dataclass
class FtpServer:
    """pyftpdlib serving ``root_dir`` on 127.0.0.1; ``workdir`` holds its config, keys and log."""

    root_dir: Path
    workdir: Path
    tls: bool = False
    mlsx: bool = True
    fail_every: int = 0
    user: str = "ferry"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        return self.workdir / "ftps-cert.pem"

    @property
    def scheme(self) -> str:
        return "ftps" if self.tls else "ftp"

    def url(self, path: Path | str = "") -> str:
        """A URL for ``path`` (absolute below :attr:`root_dir`, or relative to it)."""
        target = Path(path)
        rel = target.relative_to(self.root_dir) if target.is_absolute() else target
        text = rel.as_posix()
        remote = "/" if text == "." else "/" + text
        return f"{self.scheme}://{self.user}@127.0.0.1:{self.port}{remote}"  # paths are literal: no quoting

    def start(self) -> FtpServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root_dir.mkdir(parents=True, exist_ok=True)
        key = self.workdir / "ftps-key.pem"
        if self.tls and not self.ca_file.exists():
            _self_signed(self.ca_file, key)
        self.port = self.port or free_port()
        passive = free_port()  # pyftpdlib falls back to any free port when one in the range is taken
        config = self.workdir / "ftpd.json"
        config.write_text(json.dumps({
            "user": self.user, "password": self.password, "root": str(self.root_dir), "port": self.port,
            "tls": self.tls, "cert": str(self.ca_file), "key": str(key), "mlsx": self.mlsx,
            "fail_every": self.fail_every, "passive": [passive, min(passive + 64, 65535)],
        }))
        config.chmod(0o600)
        with open(self.workdir / "ftpd.log", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(config)],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_for_port(self.port, 20, self.proc)
        return self

    def stop(self) -> None:
        stop_process(self.proc, grace=5)
