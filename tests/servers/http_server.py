"""A real HTTP(S) static file server on loopback, for the HTTP source's tests.

:class:`HttpServer` runs this very module as a child process
(``python tests/servers/http_server.py``): an ``aiohttp.web`` server on 127.0.0.1
serving the files below a root folder.

* ``ranges=True``: ``aiohttp.web.FileResponse`` answers, so Range handling,
  ETag (``"<mtime_ns hex>-<size hex>"``) and Last-Modified are aiohttp's own.
  If-Range is evaluated here first: aiohttp 3.14 only understands a date
  there; an ETag parses as "no If-Range", so it would serve the range of a
  file that changed.
* ``ranges=False``: a server that ignores Range: always 200 with the whole
  body, ETag and Last-Modified but no Accept-Ranges.
* ``tls=True``: https with a certificate for 127.0.0.1/localhost signed by a
  throw-away CA (:attr:`HttpServer.ca_file`).
* ``head=False``: HEAD is refused with 405 (as by servers that only GET).

Test hooks, so that faults happen at a known point rather than by timing:

* ``change_at=N``: the first GET asking for bytes at offset N or beyond first
  replaces the file with new random bytes of the same size and a later mtime
  (a new inode, so a response already being sent is unaffected), then is
  answered: a file changing between two parts, deterministically.
* ``cut_at=N`` (``ranges=False`` only): the first GET without a Range header
  has its connection aborted after N body bytes: a stream broken mid-file.
* ``/__status/NNN`` answers with status NNN (for error mapping tests).
* ``/__echo`` serves the request target exactly as received (path and query),
  to check that a URL goes out byte for byte.
* ``/__nosize`` sends a chunked body without Content-Length, even to HEAD.
* ``/__loop`` redirects (302) to itself, query included, forever: a
  misconfigured server, on which a client gives up with "too many redirects".

The hooks note on stderr (``workdir/http.log``) when they fire.

Directories and missing files are 404. Nothing here is used by a transfer.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import re
import subprocess
import sys
from email.utils import parsedate_to_datetime
from pathlib import Path

from s3ferry.demo.servers import free_port, stop_process, wait_for_port

CHUNK = 256 * 1024


class HttpServer:
    """``python tests/servers/http_server.py`` serving ``root_dir`` on 127.0.0.1."""

    def __init__(self, root_dir: Path, workdir: Path, *, ranges: bool = True, tls: bool = False,
                 head: bool = True, change_at: int | None = None, cut_at: int | None = None) -> None:
        self.root_dir, self.workdir = Path(root_dir), Path(workdir)
        self.ranges, self.tls, self.head = ranges, tls, head
        self.change_at, self.cut_at = change_at, cut_at
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        return self.workdir / "ca.pem"

    def url(self, path: Path | str) -> str:
        """``http(s)://127.0.0.1:PORT/<path relative to root_dir>``."""
        target = Path(path)
        rel = target.relative_to(self.root_dir) if target.is_absolute() else target
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/{rel.as_posix()}"

    def start(self) -> HttpServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        cmd = [sys.executable, __file__, "--root", str(self.root_dir), "--port", str(self.port)]
        if not self.ranges:
            cmd.append("--no-ranges")
        if not self.head:
            cmd.append("--no-head")
        if self.change_at is not None:
            cmd += ["--change-at", str(self.change_at)]
        if self.cut_at is not None:
            cmd += ["--cut-at", str(self.cut_at)]
        if self.tls:
            cert, key = _make_certificates(self.workdir, self.ca_file)
            cmd += ["--cert", str(cert), "--key", str(key)]
        with open(self.workdir / "http.log", "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_for_port(self.port, 20, self.proc)
        return self

    def stop(self) -> None:
        stop_process(self.proc, grace=5)


def _make_certificates(workdir: Path, ca_file: Path) -> tuple[Path, Path]:
    """A CA (written to ``ca_file``) and a server certificate for 127.0.0.1 / localhost it signed."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s3ferry testbed CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path, key_path = workdir / "server.pem", workdir / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


# --- the server process -------------------------------------------------------------------------

_RANGE_START = re.compile(r"^\s*bytes\s*=\s*(\d+)\s*-")


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'  # the same value aiohttp's FileResponse sends


def _if_range_matches(value: str, st: os.stat_result) -> bool:
    """RFC 9110 13.1.5: a strong ETag must equal the current one; a date must equal Last-Modified."""
    value = value.strip()
    if value.startswith(("W/", '"')):
        return value == _etag(st)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return False
    return int(when) == math.ceil(st.st_mtime)  # aiohttp rounds Last-Modified up


def _change_file(path: Path) -> None:
    """Replace ``path`` by new bytes of the same size, 10 s newer: a new ETag and Last-Modified."""
    st = path.stat()
    tmp = path.with_name(path.name + ".changing")
    with open(tmp, "wb") as fh:
        left = st.st_size
        while left:
            block = os.urandom(min(CHUNK * 32, left))
            fh.write(block)
            left -= len(block)
    os.utime(tmp, (st.st_atime + 10, st.st_mtime + 10))
    os.replace(tmp, path)


def _make_app(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from aiohttp import hdrs, web

    root: Path = args.root.resolve()
    state = {"changed": False, "cut": False}

    class IfRangeFileResponse(web.FileResponse):
        async def prepare(self, request: web.BaseRequest):  # type: ignore[no-untyped-def]
            # Decide If-Range here and hand aiohttp a request without it (see the module docstring).
            headers = request.headers.copy()
            value = headers.popall(hdrs.IF_RANGE, [])
            if value and not _if_range_matches(value[0], self._path.stat()):
                headers.popall(hdrs.RANGE, None)
            return await super().prepare(request.clone(headers=headers))

    def resolve(request: web.Request) -> Path:
        path = (root / request.match_info["tail"]).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise web.HTTPNotFound()
        return path

    async def whole(request: web.Request, path: Path) -> web.StreamResponse:
        """The no-ranges server: the whole file, whatever Range says."""
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            resp = web.StreamResponse(status=200)
            resp.content_length = st.st_size
            resp.content_type = "application/octet-stream"
            resp.headers[hdrs.ETAG] = _etag(st)
            resp.last_modified = st.st_mtime
            await resp.prepare(request)
            if request.method == hdrs.METH_HEAD:
                return resp
            cut = None  # the offset to break this body at
            if args.cut_at is not None and not state["cut"] and hdrs.RANGE not in request.headers:
                cut = args.cut_at
            sent = 0
            while block := fh.read(CHUNK):
                if cut is not None and sent + len(block) >= cut:
                    state["cut"] = True
                    await resp.write(block[: cut - sent])
                    await resp.drain()
                    assert request.transport is not None
                    request.transport.abort()  # no end of body: the client sees a broken connection
                    print(f"cut a GET of {path.name} after {cut} bytes", file=sys.stderr, flush=True)
                    return resp
                await resp.write(block)
                sent += len(block)
            await resp.write_eof()
            return resp

    async def nosize(request: web.Request) -> web.StreamResponse:
        """A body of unknown length (chunked, no Content-Length), as dynamic pages are sent."""
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if request.method != hdrs.METH_HEAD:
            await resp.write(b"generated on the fly")
        await resp.write_eof()
        return resp

    async def handle(request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        if tail.startswith("__status/"):
            return web.Response(status=int(tail.split("/")[1]))
        if tail == "__echo":
            return web.Response(body=request.raw_path.encode())
        if tail == "__nosize":
            return await nosize(request)
        if tail == "__loop":
            raise web.HTTPFound(request.raw_path)
        path = resolve(request)
        start = _RANGE_START.match(request.headers.get(hdrs.RANGE, ""))
        if (args.change_at is not None and not state["changed"] and request.method == hdrs.METH_GET
                and start is not None and int(start.group(1)) >= args.change_at):
            state["changed"] = True
            _change_file(path)
            print(f"changed {path.name} before answering {request.headers[hdrs.RANGE]}", file=sys.stderr, flush=True)
        if args.no_ranges:
            return await whole(request, path)
        return IfRangeFileResponse(path)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle, allow_head=not args.no_head)
    return app


def main(argv: list[str] | None = None) -> None:
    import ssl

    from aiohttp import web

    parser = argparse.ArgumentParser(description="s3ferry test HTTP(S) file server")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-ranges", action="store_true")
    parser.add_argument("--no-head", action="store_true")
    parser.add_argument("--change-at", type=int)
    parser.add_argument("--cut-at", type=int)
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    args = parser.parse_args(argv)
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    app = _make_app(args)
    web.run_app(app, host="127.0.0.1", port=args.port, ssl_context=context, print=None, access_log=None)


if __name__ == "__main__":
    main()
