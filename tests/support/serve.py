"""Helpers for ``s3ferry serve`` tests: start it as a real process, talk to its HTTP API, write push flows."""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s3ferry.demo import servers as testbed
from support.helpers import S3FERRY, LineReader


def push_flow(name: str, bucket: str, endpoint: str, ssh: testbed.SshServer, folder: Path, every: str = "1h",
              extra: str = "") -> str:
    """A push flow from ``s3://bucket/out/`` to ``folder`` on the test sshd."""
    return (f'[flows.{name}]\nkind = "push"\nsource = "s3://{bucket}/out/"\ndestination = "{ssh.url(folder)}"\n'
            f'every = "{every}"\nendpoint_url = "{endpoint}"\nidentity = "{ssh.user_key}"\n'
            f'known_hosts = "{ssh.known_hosts}"\n{extra}')


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the openssl command line."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Served:
    """A running ``s3ferry serve`` process and a client for it."""

    proc: subprocess.Popen[str]
    base: str
    token: str
    cafile: Path | None = None
    err: LineReader = field(init=False)
    out: LineReader = field(init=False)

    def __post_init__(self) -> None:
        self.err, self.out = LineReader(self.proc.stderr), LineReader(self.proc.stdout)

    def call(self, method: str, path: str, token: str | None = "", data: bytes | None = None) -> Answer:
        """One request; ``token`` "" sends the right token, None sends none."""
        headers = {"Authorization": f"Bearer {self.token if token == '' else token}"} if token is not None else {}
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        context = ssl.create_default_context(cafile=str(self.cafile)) if self.cafile else None
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as answer:
                return Answer(answer.status, answer.read(), dict(answer.headers))
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.read(), dict(exc.headers))

    def get(self, path: str) -> Any:
        answer = self.call("GET", path)
        assert answer.status == 200, (path, answer)
        return answer.json()

    def post(self, path: str) -> Answer:
        return self.call("POST", path, data=b"")

    def wait(self, what: Callable[[], Any], timeout: float = 60, note: str = "") -> Any:
        """Poll ``what`` until it gives something true; that value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, ("serve ended", self.err.seen)
            if found := what():
                return found
            time.sleep(0.2)
        raise AssertionError(f"not within {timeout} s: {note} {self.err.seen[-5:]} {self.out.seen[-3:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def new_token(tmp: Path) -> tuple[str, Path]:
    token = secrets.token_hex(24)
    path = tmp / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token, path


def start_serve(flows: Path, state: Path, token: str, token_file: Path, *more: str,
                tls: tuple[Path, Path] | None = None, port: int | None = None) -> Served:
    """``s3ferry serve`` on ``port`` (default: a free one), up (its /healthz answers) before this returns."""
    port = port or testbed.free_port()
    args = [S3FERRY, "serve", "--json", "--listen", f"127.0.0.1:{port}", "--state-dir", str(state),
            "--token-file", str(token_file), *more]
    if tls is not None:
        args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    proc = subprocess.Popen([*args, str(flows)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    served = Served(proc, f"{'https' if tls else 'http'}://127.0.0.1:{port}", token, tls[0] if tls else None)
    try:
        served.wait(lambda: _up(served), timeout=60, note="healthz")
    except BaseException:
        served.stop()
        raise
    return served


def _up(served: Served) -> bool:
    try:
        return served.call("GET", "/healthz", token=None).status == 200
    except (urllib.error.URLError, ConnectionError, ssl.SSLError):
        return False
