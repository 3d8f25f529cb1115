"""An HTTP reverse proxy in front of a real S3 server, for fault tests.

``S3FaultProxy(target_port)`` listens on a free loopback port and forwards
every request to ``http://127.0.0.1:{target_port}`` (SeaweedFS in the test
suite). Point an S3 client at :attr:`S3FaultProxy.url`; it signs the ``Host``
header with the proxy's host:port, so the proxy forwards the method, the raw
path and query, every end-to-end header (``Host`` included) and the body
exactly as they came. Only hop-by-hop headers are dropped both ways (and
``Expect``, which the proxy answers itself); response bodies are re-framed
with a fresh ``Content-Length``.

On the way it can inject faults without forwarding the request:

* :attr:`~S3FaultProxy.slowdown_rate` -- that fraction of ``UploadPart`` and
  ``PutObject`` requests is answered ``503 SlowDown`` (deterministic through
  ``random.Random(seed)``);
* :attr:`~S3FaultProxy.fail_next` -- a queue of one-shot ``(operation, status,
  code)`` answers;
* :attr:`~S3FaultProxy.hold_complete` -- an Event that ``CompleteMultipartUpload``
  waits for before it is forwarded.

And it can change what comes back, the way a faulty network or a lesser store
would:

* :attr:`~S3FaultProxy.corrupt_gets` -- that many successful ``GetObject``
  answers get one byte of their body flipped (a body corrupted in flight);
* :attr:`~S3FaultProxy.strip_checksums` -- every ``x-amz-checksum-*`` header
  and ``<Checksum...>`` element is removed from the answers (a store that
  returns no checksums at all);
* :attr:`~S3FaultProxy.ignore_part_number` -- a ``HeadObject`` with
  ``partNumber`` answers the whole object's length, as the last plain
  ``HeadObject`` of that key saw it (a store that ignores ``partNumber``,
  so part sizes cannot be learnt from it).

It also records every request (:attr:`~S3FaultProxy.requests`, with its
target in :attr:`~S3FaultProxy.targets`) and the body
bytes of uploads the server accepted (:attr:`~S3FaultProxy.upload_bytes`).
The server runs on aiohttp in a background thread with its own event loop,
so tests can drive a client synchronously or as a subprocess::

    with S3FaultProxy(s3.s3_port, slowdown_rate=0.2, seed=1) as proxy:
        run_cli("cp", src, f"s3://{bucket}/key", env={"AWS_ENDPOINT_URL_S3": proxy.url})
        assert proxy.count("UploadPart", 503) > 0
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Self
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import aiohttp
import yarl
from aiohttp import web
from multidict import CIMultiDict

from s3ferry.demo.servers import free_port

__all__ = ["S3FaultProxy", "operation_name"]

# RFC 9110 section 7.6.1 hop-by-hop headers, plus Expect: the proxy's own
# server already answered "100 Continue", and forwarding the header would make
# the client wait for a second one. None of these is signed by SigV4 clients.
_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
        "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Expect",
    )
)
# What aiohttp's client would otherwise add on its own.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")
_MAX_BODY = 1 << 34  # aiohttp's server refuses bodies over 1 MiB by default
_UPLOADS = frozenset({"UploadPart", "PutObject"})
_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "ServiceUnavailable": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "RequestTimeout": "Your socket connection to the server was not read from or written to within the timeout "
                      "period.",
    "AccessDenied": "Access Denied",
    "NoSuchUpload": "The specified upload does not exist. The upload ID may be invalid, or the upload may have "
                    "been aborted or completed.",
    "NoSuchKey": "The specified key does not exist.",
}


def operation_name(method: str, raw_path: str, headers: Mapping[str, str] | None = None) -> str:
    """The S3 operation of a path-style request (``/bucket`` or ``/bucket/key...``).

    ``raw_path`` is the request target as sent, query string included;
    ``headers`` (case-insensitive) tell ``UploadPartCopy`` from ``UploadPart``.
    Anything not listed in the module's naming rules is ``"Other"``.
    """
    path, _, query_string = raw_path.partition("?")
    query = {name for name, _ in parse_qsl(query_string, keep_blank_values=True)}
    bucket, _, key = path.lstrip("/").partition("/")
    has_key = bool(bucket) and bool(key)
    method = method.upper()
    if not bucket:
        return "Other"
    if "tagging" in query and has_key and method in ("GET", "PUT", "DELETE"):
        return {"GET": "GetObjectTagging", "PUT": "PutObjectTagging", "DELETE": "DeleteObjectTagging"}[method]
    if method == "GET" and has_key and "attributes" in query:
        return "GetObjectAttributes"
    if method == "PUT":
        if "partNumber" in query and "uploadId" in query:
            if headers is not None and "x-amz-copy-source" in headers:
                return "UploadPartCopy"
            return "UploadPart"
        if has_key and headers is not None and "x-amz-copy-source" in headers:
            return "CopyObject"
        return "PutObject" if has_key else "CreateBucket"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "Other"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        return "DeleteObject" if has_key else "Other"
    if method == "GET":
        if "uploadId" in query:
            return "ListParts"
        if "uploads" in query and not has_key:
            return "ListMultipartUploads"
        return "GetObject" if has_key else "ListObjects"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    return "Other"


def error_body(code: str, resource: str, request_id: str, message: str | None = None) -> bytes:
    """A standard S3 XML error document."""
    message = message if message is not None else _MESSAGES.get(code, f"Injected {code} fault.")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()


def _strip_hop_by_hop(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """A copy of ``headers`` (repeated names kept) without the hop-by-hop ones."""
    items = list(headers.items())
    named: set[str] = set()
    for name, value in items:
        if name.lower() == "connection":
            named |= {token.strip().lower() for token in value.split(",") if token.strip()}
    drop = _HOP_BY_HOP | named
    return CIMultiDict((name, value) for name, value in items if name.lower() not in drop)


class S3FaultProxy:
    """A reverse proxy to ``127.0.0.1:target_port`` that injects S3 faults and counts traffic.

    Use as a context manager; the proxy serves between ``__enter__`` and
    ``__exit__``. The fault settings may be changed at any time from the
    test's thread. Counters are written on the proxy's thread only (under a
    lock) and may be read from anywhere.

    Attributes:
        port: the loopback port the proxy listens on.
        url: ``http://127.0.0.1:{port}`` -- the ``endpoint_url`` for clients.
        slowdown_rate: fraction (0..1) of ``UploadPart``/``PutObject``
            requests answered ``503 SlowDown`` without forwarding them.
        fail_next: queue of ``(operation, status, code)``; the next request of
            that operation (``"*"`` matches any) is answered with that status
            and an S3 XML error with that code, without being forwarded, and
            the entry is removed. Entries are consumed in list order per
            operation and take precedence over ``slowdown_rate``.
        hold_complete: when an Event, ``CompleteMultipartUpload`` requests wait
            (without blocking other requests) until it is set, then go on.
        complete_seen: set when a ``CompleteMultipartUpload`` request arrives.
        requests: ``(operation, status)`` of every answered request, in the
            order they were answered.
        targets: ``(operation, request target)`` of every answered request,
            in the same order (the raw path with its query string: what a
            listing asked for, ``delimiter=%2F`` say).
        upload_bytes: request body bytes of forwarded ``UploadPart`` and
            ``PutObject`` requests that got a 2xx answer.
        body_bytes: request plus response body bytes of every forwarded
            request: the payload that passed through the client.
        trailers: how many forwarded requests carried their checksum as an
            HTTP trailer (``x-amz-trailer``: parts streamed while read).
        rewrite_listing: a function applied to the body of every successful
            ``ListObjects`` answer (plays a server that returns hostile names).
        corrupt_gets: how many more successful ``GetObject`` answers get one
            byte of their body flipped (the middle one); counts down.
        corrupted: how many answers were corrupted so far.
        strip_checksums: remove every checksum header and XML element from
            the answers (plays a store without checksum support).
        delays: operation -> seconds each such request waits before it is
            forwarded (widens the window of a race, e.g. a read-modify-write).
    """

    def __init__(self, target_port: int, *, slowdown_rate: float = 0.0, seed: int = 0) -> None:
        self.target_port = target_port
        self.port: int = free_port()
        self.url: str = f"http://127.0.0.1:{self.port}"
        self.slowdown_rate: float = slowdown_rate
        self.fail_next: list[tuple[str, int, str]] = []
        self.hold_complete: threading.Event | None = None
        self.complete_seen = threading.Event()
        self.requests: list[tuple[str, int]] = []
        self.targets: list[tuple[str, str]] = []
        self.upload_bytes: int = 0
        self.body_bytes: int = 0
        self.trailers: int = 0
        self.rewrite_listing: Callable[[bytes], bytes] | None = None
        self.corrupt_gets: int = 0
        self.corrupted: int = 0
        self.strip_checksums: bool = False
        self.ignore_part_number: bool = False
        self._lengths: dict[str, str] = {}  # path -> Content-Length of its last plain HeadObject
        self.delays: dict[str, float] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stop_event: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    # -- counters ---------------------------------------------------------

    def count(self, operation: str, status: int | None = None) -> int:
        """How many ``operation`` requests were answered (with ``status``, if given)."""
        with self._lock:
            seen = list(self.requests)
        return sum(1 for op, st in seen if op == operation and (status is None or st == status))

    def _record(self, operation: str, status: int, uploaded: int = 0, target: str = "") -> None:
        with self._lock:
            self.requests.append((operation, status))
            self.targets.append((operation, target))
            if operation in _UPLOADS and 200 <= status < 300:
                self.upload_bytes += uploaded

    # -- lifecycle --------------------------------------------------------

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=f"s3proxy-{self.port}", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._start_error is not None:
            self._thread.join(5)
            raise RuntimeError(f"S3FaultProxy could not start on port {self.port}") from self._start_error
        if not self._started.is_set():
            raise RuntimeError(f"S3FaultProxy did not start on port {self.port}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving (requests held by ``hold_complete`` are answered 503) and join the thread."""
        self._closing.set()
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        stop = self._stop_event
        if stop is not None and thread.is_alive() and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already finished
                loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        self._thread = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to __enter__
            self._start_error = exc
            self._started.set()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _serve(self) -> None:
        self._stop_event = asyncio.Event()
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # auto_decompress=False: hand request bodies on byte for byte even
        # when they carry a Content-Encoding.
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False, shutdown_timeout=2.0)
        await self._runner.setup()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            auto_decompress=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        try:
            site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            await site.start()
            self._started.set()
            await self._stop_event.wait()
        finally:
            await self._runner.cleanup()
            await self._session.close()

    # -- request handling -------------------------------------------------

    def _injected(self, operation: str) -> tuple[int, str] | None:
        with self._lock:
            for index, (op, status, code) in enumerate(self.fail_next):
                if op == operation or op == "*":
                    del self.fail_next[index]
                    return status, code
            if operation in _UPLOADS and self.slowdown_rate > 0 and self._random.random() < self.slowdown_rate:
                return 503, "SlowDown"
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path
        operation = operation_name(request.method, raw_path, request.headers)
        body = await request.read()  # always drain the body, even for answers we make up
        fault = self._injected(operation)
        if fault is not None:
            status, code = fault
            return self._answer(request, operation, status, code)
        if self.delays.get(operation):
            await asyncio.sleep(self.delays[operation])
        if operation == "CompleteMultipartUpload":
            self.complete_seen.set()
            while (held := self.hold_complete) is not None and not held.is_set():
                if self._closing.is_set():
                    return self._answer(request, operation, 503, "ServiceUnavailable", "The proxy is shutting down.")
                await asyncio.sleep(0.01)
        try:
            response = await self._forward(request, raw_path, body)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return self._answer(request, operation, 502, "BadGateway", f"S3FaultProxy: upstream failed: {exc!r}")
        self._record(operation, response.status, len(body), raw_path)
        return response

    async def _forward(self, request: web.Request, raw_path: str, body: bytes) -> web.Response:
        assert self._session is not None
        url = yarl.URL(f"http://127.0.0.1:{self.target_port}{raw_path}", encoded=True)
        headers = _strip_hop_by_hop(request.headers)
        async with self._session.request(
            request.method, url, headers=headers, data=body if body else None,
            allow_redirects=False, compress=None, chunked=None,
        ) as upstream:
            payload = await upstream.read()
            rewrite = self.rewrite_listing
            listing = operation_name(request.method, raw_path) == "ListObjects"
            if rewrite is not None and upstream.status == 200 and listing:
                payload = rewrite(payload)
            with self._lock:
                self.body_bytes += len(body) + len(payload)
                self.trailers += "x-amz-trailer" in request.headers
            payload = self._tamper(request.method, raw_path, upstream.status, payload)
            out = _strip_hop_by_hop(upstream.headers)
            if self.strip_checksums:
                for name in [n for n in out if n.lower().startswith("x-amz-checksum")]:
                    out.popall(name)
            if request.method == "HEAD" and 200 <= upstream.status < 300:  # a part answers 206
                self._head_length(raw_path, out)
            # Frame the body ourselves; a HEAD answer keeps the object's length
            # (aiohttp leaves an explicit Content-Length of a HEAD answer alone).
            if request.method != "HEAD":
                out.popall("Content-Length", None)
                out["Content-Length"] = str(len(payload))
            return web.Response(status=upstream.status, reason=upstream.reason, headers=out, body=payload or None)

    def _head_length(self, raw_path: str, out: CIMultiDict[str]) -> None:
        """Remember a plain HEAD's length; with :attr:`ignore_part_number`, give it to a part's HEAD too."""
        path, _, query = raw_path.partition("?")
        if "partNumber" not in {name for name, _ in parse_qsl(query, keep_blank_values=True)}:
            with self._lock:
                self._lengths[path] = out.get("Content-Length", "")
        elif self.ignore_part_number and self._lengths.get(path):
            out.popall("Content-Length", None)
            out["Content-Length"] = self._lengths[path]
            out.popall("Content-Range", None)

    def _tamper(self, method: str, raw_path: str, status: int, payload: bytes) -> bytes:
        """Corrupt a GET body or strip checksums from an XML answer, as configured."""
        if operation_name(method, raw_path) == "GetObject" and 200 <= status < 300 and payload:
            with self._lock:
                corrupt = self.corrupt_gets > 0
                if corrupt:
                    self.corrupt_gets -= 1
                    self.corrupted += 1
            if corrupt:
                middle = len(payload) // 2
                return payload[:middle] + bytes([payload[middle] ^ 0x01]) + payload[middle + 1:]
        if self.strip_checksums and payload.lstrip().startswith(b"<"):
            return re.sub(rb"<Checksum[A-Za-z0-9]*>[^<]*</Checksum[A-Za-z0-9]*>", b"", payload)
        return payload

    def _answer(
        self, request: web.Request, operation: str, status: int, code: str, message: str | None = None
    ) -> web.Response:
        request_id = uuid.uuid4().hex[:16].upper()
        headers = CIMultiDict({"Content-Type": "application/xml", "x-amz-request-id": request_id})
        body = b"" if request.method == "HEAD" else error_body(code, request.path, request_id, message)
        self._record(operation, status, target=request.raw_path)
        return web.Response(status=status, headers=headers, body=body or None)
