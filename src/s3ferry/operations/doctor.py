"""``s3ferry doctor``: check, step by step, that an SFTP server and an S3 bucket are usable.

Each check prints one line, ``ok`` or ``FAIL`` with what to do; a failed check
skips the checks that depend on it. The checks go through the same code as a
transfer (:class:`~.backends.sftp.SftpSource`'s connection and trust rules,
:class:`~.backends.s3.sink.S3Sink`'s client and bucket check), so what passes here
passes for ``cp``. The only extra network code is the TCP probe (and the
SSH greeting read on it), which tells "nothing listens" from "not SSH".

SFTP: resolve the host (after ``~/.ssh/config``), TCP connect and SSH
greeting, SSH handshake, host key (known_hosts or ``--host-key``),
authentication, the path (stat; a folder is listed, a file read).

S3: the endpoint answers (TCP), the credentials are accepted (ListBuckets:
an AccessDenied answer still proves them valid), the bucket exists and is
accessible (HeadBucket), multipart uploads are allowed (CreateMultipartUpload
of a unique key under the prefix, aborted at once: nothing is left behind),
and with ``write_test`` a small PutObject + DeleteObject.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import stat as statmod
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from s3ferry.core.errors import (
    AuthError,
    HostKeyError,
    NotFoundError,
    PermissionError_,
    S3FerryError,
    TransferError,
    UsageError,
)
from s3ferry.core.options import TransferOptions
from s3ferry.core.urls import Location

PROBE_TIMEOUT = 10.0


@dataclass
class Check:
    area: str  # "sftp" or "s3"
    name: str
    ok: bool
    detail: str
    error: S3FerryError | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else (self.error.exit_code if self.error else 1)

    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':<6}{self.area:<6}{self.name:<13}{self.detail}"

    def as_dict(self) -> dict[str, Any]:
        return {"area": self.area, "check": self.name, "ok": self.ok, "detail": self.detail,
                "exit_code": self.exit_code}


class _Failed(Exception):
    """Stops the checks of one location after a failure (already reported)."""


class _Report:
    def __init__(self, area: str, out: Callable[[Check], None]) -> None:
        self.area, self.out = area, out
        self.checks: list[Check] = []

    def ok(self, name: str, detail: str) -> None:
        self._add(Check(self.area, name, True, detail))

    def fail(self, name: str, error: S3FerryError, hint: str | None = None) -> _Failed:
        hint = error.hint or hint
        detail = f"{error}" + (f"; {hint}" if hint else "")
        self._add(Check(self.area, name, False, detail, error))
        return _Failed()

    def _add(self, check: Check) -> None:
        self.checks.append(check)
        self.out(check)


async def diagnose(locations: list[Location], options: TransferOptions, out: Callable[[Check], None],
                   write_test: bool = False) -> list[Check]:
    """Run the checks of every location (sftp:// or s3://) in turn; returns every check made."""
    checks: list[Check] = []
    for location in locations:
        report = _Report(location.scheme, out)
        try:
            if location.scheme == "sftp":
                await check_sftp(location, options, report)
            elif location.scheme == "s3":
                await check_s3(location, options, report, write_test)
            else:
                raise UsageError(f"doctor checks sftp:// and s3:// locations, not {location.scheme}://")
        except _Failed:
            pass
        checks.extend(report.checks)
    return checks


def exit_code(checks: list[Check]) -> int:
    """The exit code of the first failed check (0 when all passed)."""
    return next((c.exit_code for c in checks if not c.ok), 0)


# -- TCP probe ---------------------------------------------------------------------------------

async def _resolve(host: str, port: int, report: _Report, where: str) -> list[tuple[Any, ...]]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), PROBE_TIMEOUT)
    except socket.gaierror as exc:
        raise report.fail("resolve", UsageError(f"cannot resolve host {host!r}: {exc.strerror}"),
                          f"check the host name ({where}) and this machine's DNS") from exc
    except TimeoutError as exc:
        raise report.fail("resolve", TransferError(f"no DNS answer for {host!r} within {PROBE_TIMEOUT:.0f} s"),
                          "check this machine's DNS servers (/etc/resolv.conf)") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    report.ok("resolve", f"{host} -> {', '.join(addresses[:4])}" + (" …" if len(addresses) > 4 else ""))
    return infos


async def _tcp_connect(host: str, port: int, report: _Report, service: str) \
        -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT)
    except ConnectionRefusedError as exc:
        raise report.fail("connect", TransferError(f"{host}:{port} refused the connection (nothing listens there)"),
                          f"is the {service} running, is the port right, does a firewall reject it?") from exc
    except TimeoutError as exc:
        raise report.fail("connect", TransferError(f"no answer from {host}:{port} within {PROBE_TIMEOUT:.0f} s"),
                          "a firewall dropping packets, or a wrong address or port") from exc
    except OSError as exc:
        raise report.fail("connect", TransferError(f"cannot connect to {host}:{port}: {exc.strerror or exc}"),
                          "check the network route to the server (VPN, proxy, firewall)") from exc
    report.ok("connect", f"{host}:{port} accepted a TCP connection ({(time.monotonic() - started) * 1000:.0f} ms)")
    return reader, writer


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(TimeoutError, OSError):  # a probe connection: nothing to tell
        await asyncio.wait_for(writer.wait_closed(), 2)


# -- SFTP ------------------------------------------------------------------------------------------

async def _greeting(reader: asyncio.StreamReader, host: str, port: int, report: _Report) -> str:
    """The server's SSH identification line (RFC 4253 allows other lines before it)."""
    try:
        for _ in range(20):
            line = await asyncio.wait_for(reader.readline(), PROBE_TIMEOUT)
            if not line:
                break
            if line.startswith(b"SSH-"):
                return line.decode("ascii", "replace").strip()
    except (TimeoutError, OSError, ValueError):
        pass
    raise report.fail("handshake", TransferError(f"{host}:{port} accepted the connection but sent no SSH greeting"),
                      "is it an SSH server on that port (SSH usually listens on 22; FTP on 21)? A server "
                      "that closes at once may be refusing this address (MaxStartups, fail2ban, AllowUsers)")


async def check_sftp(location: Location, options: TransferOptions, report: _Report) -> None:
    from s3ferry.backends.sftp import SftpSource

    source = SftpSource(location, options.sftp, options.sftp_block, options.sftp_window)
    try:
        target = await source.target()  # host, port and proxy after ~/.ssh/config, as cp's connection has them
    except UsageError as exc:
        raise report.fail(_usage_step(exc), exc) from exc
    version = ""
    if target.via:
        report.ok("connect", f"{location.host} is reached through {target.via}: not probed directly")
    else:
        host, port = target.host, target.port
        await _resolve(host, port, report, "in the URL, or HostName in ~/.ssh/config")
        reader, writer = await _tcp_connect(host, port, report, "SSH server")
        try:
            version = await _greeting(reader, host, port, report)
        finally:
            await _close(writer)

    try:
        try:
            conn, sftp = await source.connect()  # the transfer's own connection code and trust rules
        except HostKeyError as exc:
            report.ok("handshake", f"{version or 'SSH'}: key exchange done")
            raise report.fail("host key", exc) from exc
        except AuthError as exc:
            report.ok("handshake", f"{version or 'SSH'}: key exchange done")
            report.ok("host key", _trust_detail(options, None))
            raise report.fail("login", exc, "check the user (sftp://USER@host or User in ~/.ssh/config), the key "
                                            "(--identity, IdentityFile) or the password (--password-file, "
                                            "--password-command, S3FERRY_SFTP_PASSWORD); the server's log says "
                                            "which") from exc
        except UsageError as exc:
            raise report.fail(_usage_step(exc), exc) from exc
        except TransferError as exc:
            raise report.fail("handshake", exc, "the server ended the SSH handshake: its log says why (no shared "
                                                "algorithm, too many connections, a ban)") from exc
        server_key = conn.get_server_host_key()
        fingerprint = server_key.get_fingerprint("sha256") if server_key else None
        algorithm = server_key.get_algorithm() if server_key else "?"
        report.ok("handshake", f"{version or 'SSH'}, host key {algorithm}")
        report.ok("host key", _trust_detail(options, fingerprint))
        report.ok("login", f"authenticated as {conn.get_extra_info('username') or location.user or '?'}")
        await _check_path(sftp, location, report)
    finally:
        await source.close()


def _usage_step(exc: UsageError) -> str:
    """The check a bad SFTP option belongs to."""
    text = str(exc)
    if text.startswith(("--identity", "cannot read --password-file", "--password-command", "the SSH key passphrase",
                        "cannot read the SSH key passphrase")):
        return "login"
    if text.startswith(("--known-hosts", "--host-key")):
        return "host key"
    return "resolve" if text.startswith("cannot use the SSH settings") else "handshake"


def _trust_detail(options: TransferOptions, fingerprint: str | None) -> str:
    if options.sftp.host_key:
        return f"{fingerprint or options.sftp.host_key} matches --host-key"
    where = options.sftp.known_hosts or "known_hosts"
    return f"{fingerprint} is trusted by {where}" if fingerprint else f"trusted by {where}"


async def _check_path(sftp: Any, location: Location, report: _Report) -> None:
    import asyncssh

    from s3ferry.backends.sftp import translate_error

    path = location.path or "/"
    try:
        attrs = await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile as exc:
        raise report.fail("path", NotFoundError(f"{path} does not exist on {location.host}"),
                          "check the path (it is absolute: sftp://host/home/me/x, not ~/x)") from exc
    except (asyncssh.Error, OSError) as exc:
        raise report.fail("path", translate_error(exc, str(location)),
                          "the SFTP user needs read access to the path and its folders") from exc
    mode = attrs.permissions or 0
    try:
        if statmod.S_ISDIR(mode):
            names = [n for n in await sftp.listdir(path) if n not in (".", "..")]
            report.ok("path", f"{path} is a folder; listed, {len(names)} entr{'y' if len(names) == 1 else 'ies'}")
        elif statmod.S_ISREG(mode):
            async with sftp.open(path, "rb") as fh:
                await fh.read(1)
            report.ok("path", f"{path} is a file of {_size(attrs.size or 0)}; readable")
        else:
            report.ok("path", f"{path} exists")
    except (asyncssh.Error, OSError) as exc:
        what = "list the folder" if statmod.S_ISDIR(mode) else "read the file"
        error = translate_error(exc, str(location))
        raise report.fail("path", error, f"the SFTP user must be allowed to {what}") from exc


def _size(n: int) -> str:
    from s3ferry.core.units import human_bytes

    return human_bytes(n)


# -- S3 ----------------------------------------------------------------------------------------------

def _doctor_key(location: Location) -> str:
    """A unique key under the location's prefix (``s3://b/p`` and ``s3://b/p/`` both mean below ``p/``)."""
    prefix = location.path
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"{prefix}.s3ferry-doctor-{secrets.token_hex(6)}"


async def check_s3(location: Location, options: TransferOptions, report: _Report, write_test: bool) -> None:
    from s3ferry.backends.s3.sink import S3Sink
    from s3ferry.engine.retry import RetryPolicy

    sink = S3Sink(location, options.s3, pool_size=2, retry=RetryPolicy(retries=0))
    try:
        try:
            client = await sink.client()
        except S3FerryError as exc:
            raise report.fail("endpoint", exc, "check --profile / AWS_PROFILE and ~/.aws/config") from exc
        endpoint = str(client.meta.endpoint_url)
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        await _resolve(host, port, report, "--endpoint-url, AWS_ENDPOINT_URL_S3, or --region for AWS")
        _, writer = await _tcp_connect(host, port, report, f"S3 endpoint {endpoint}")
        await _close(writer)
        await _check_credentials(sink, endpoint, report)
        bucket = f"s3://{location.bucket}"
        try:
            await sink.check_bucket()
        except NotFoundError as exc:
            raise report.fail("bucket", exc, "check the bucket name (and --region for AWS); s3ferry never creates "
                                             "buckets") from exc
        except S3FerryError as exc:
            raise report.fail("bucket", exc, "the credentials need s3:ListBucket on the bucket") from exc
        report.ok("bucket", f"{bucket} exists and is accessible (HeadBucket)")
        await _check_multipart(sink, location, report)
        if write_test:
            await _check_put(sink, location, report)
    finally:
        await sink.close()


async def _check_credentials(sink: Any, endpoint: str, report: _Report) -> None:
    try:
        answer = await sink.call_once("list_buckets")
    except PermissionError_:
        # Signature and key were accepted; only the action is not allowed (s3ferry never lists buckets).
        report.ok("credentials", "accepted (ListBuckets is not allowed for them, which s3ferry does not need)")
        return
    except AuthError as exc:
        raise report.fail("credentials", exc, "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, --profile / "
                                              "AWS_PROFILE, ~/.aws/credentials; a wrong clock also breaks "
                                              "signatures") from exc
    except S3FerryError as exc:
        raise report.fail("credentials", exc, f"is {endpoint} an S3 endpoint (--endpoint-url)?") from exc
    count = len(answer.get("Buckets", []))
    report.ok("credentials", f"accepted by {endpoint} ({count} bucket{'' if count == 1 else 's'} visible)")


async def _check_multipart(sink: Any, location: Location, report: _Report) -> None:
    key = _doctor_key(location)
    where = f"s3://{location.bucket}/{key}"
    try:
        answer = await sink.call("create_multipart_upload", Bucket=location.bucket, Key=key, **sink.kms_args())
    except S3FerryError as exc:
        raise report.fail("multipart", exc, "files larger than one part need s3:PutObject (multipart uploads) "
                                            f"below s3://{location.bucket}/{location.path}") from exc
    upload_id = str(answer["UploadId"])
    try:
        await sink.abort_upload(key, upload_id)
    except S3FerryError as exc:
        raise report.fail("multipart", exc, f"the test upload was left behind: `s3ferry cancel {where}`; "
                                            "s3ferry also needs s3:AbortMultipartUpload to clean up after "
                                            "failures") from exc
    report.ok("multipart", f"CreateMultipartUpload + AbortMultipartUpload allowed on {where} "
                           "(nothing left behind)")


async def _check_put(sink: Any, location: Location, report: _Report) -> None:
    key = _doctor_key(location)
    where = f"s3://{location.bucket}/{key}"
    body = b"s3ferry doctor write test\n"
    try:
        await sink.call("put_object", Bucket=location.bucket, Key=key, Body=body, **sink.kms_args())
    except S3FerryError as exc:
        raise report.fail("put/delete", exc, "the credentials need s3:PutObject below the prefix") from exc
    try:
        await sink.call("delete_object", Bucket=location.bucket, Key=key)
    except S3FerryError as exc:
        raise report.fail("put/delete", exc, f"the test object {where} was left behind: delete it; s3ferry "
                                             "needs s3:DeleteObject only to remove a failed copy") from exc
    report.ok("put/delete", f"PutObject + DeleteObject of {len(body)} bytes allowed on {where}")
