"""HTTP(S) source over aiohttp: GETs of one URL, in parallel byte ranges when the server allows.

* One ``aiohttp.ClientSession`` per source, shared with its children: keep-alive
  connections are reused from part to part. Certificates are always verified,
  against the system store or only the ``--ca-bundle`` file.
* :meth:`HttpSource.stat` asks HEAD (a ranged GET where HEAD is refused) for
  the size, ETag and Last-Modified, then whether Range really works: a 1-byte
  ranged GET must answer 206, because ``Accept-Ranges`` is only advisory.
* Ranged reads send ``If-Range`` with a strong validator, so a file that
  changed answers 200 instead of 206 and the transfer stops
  (:class:`~s3ferry.core.errors.SourceChangedError`) instead of mixing two versions.
* A server that ignores Range is read through one GET kept open across parts
  (the engine then uses one reader, in order); a reader asked to go back
  (a retry after a broken connection) restarts the GET and discards up to the
  offset.
* Bodies are copied from aiohttp's receive buffer straight into the part
  buffer, at most :data:`CHUNK` bytes at a time; no part is ever assembled as
  ``bytes``. Content is requested and kept as is (no decompression), because
  the byte ranges refer to the stored representation.
* The query string is sent (pre-signed URLs carry their signature there) but
  never shown: messages use ``str(location)``, and aiohttp's own exception
  texts, which may quote the full URL, are not repeated.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import NoReturn

import aiohttp
import yarl
from aiohttp import hdrs
from aiohttp.http_exceptions import HttpProcessingError

from s3ferry.core.errors import (
    AuthError,
    NotFoundError,
    PermissionError_,
    S3FerryError,
    SourceChangedError,
    TransferError,
    UsageError,
    UserError,
)
from s3ferry.core.options import HttpOptions
from s3ferry.core.storage import Entry, Features, Stat
from s3ferry.core.urls import Location
from s3ferry.core.verification import StoredCheck
from s3ferry.core.version import installed_version

log = logging.getLogger("s3ferry.http")

#: Most bytes taken from aiohttp per read; also its receive buffer size. (aiohttp 3.14's
#: ``StreamReader.read(n)`` raises the buffer's high-water mark to 2n for good, so n stays small.)
CHUNK = 256 * 1024
#: Pool size when the caller does not say: the most read streams TransferOptions allows.
MAX_STREAMS = 256
#: A body this small is read to the end so that its connection goes back to the pool.
_SMALL_BODY = 64 * 1024
#: Last-Modified (and the ETags many servers derive from it) have whole seconds; the server's clock may differ a little
_CHANGE_WINDOW = 2.0

# What aiohttp raises for network and protocol trouble (asyncio.TimeoutError is an OSError in 3.11).
_NET_ERRORS = (aiohttp.ClientError, HttpProcessingError, OSError)
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _http_date(value: str | None) -> float | None:
    """An HTTP date as epoch seconds; None when absent or unreadable."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class _Answer:
    """What one HEAD or probe response said about the file."""

    size: int | None
    etag: str | None
    last_modified: str | None
    date: str | None
    ranged: bool | None = None  # probe only: did Range work?


def _answer(resp: aiohttp.ClientResponse, size: int | None, ranged: bool | None = None) -> _Answer:
    headers = resp.headers
    return _Answer(size, headers.get(hdrs.ETAG), headers.get(hdrs.LAST_MODIFIED), headers.get(hdrs.DATE), ranged)


def _if_range(answer: _Answer) -> str | None:
    """The validator for If-Range: RFC 9110 allows only a strong one."""
    if answer.etag and not answer.etag.startswith("W/"):
        return answer.etag
    modified, date = _http_date(answer.last_modified), _http_date(answer.date)
    # A Last-Modified date is strong only if the file was not modified in the second the response was sent.
    if modified is not None and date is not None and date - modified >= 1:
        return answer.last_modified
    return None


@dataclass(frozen=True)
class _Known:
    """What stat learnt: the size, and the validators later responses must still show."""

    size: int
    etag: str | None
    last_modified: str | None
    if_range: str | None

    @property
    def stat(self) -> Stat:
        return Stat(size=self.size, mtime=_http_date(self.last_modified), etag=self.etag)


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verification on; with ``--ca-bundle`` its certificates are the only ones trusted."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        raise UsageError(f"--ca-bundle {ca_file} holds no usable PEM certificate ({exc.reason})") from exc
    except OSError as exc:
        raise UsageError(f"cannot read --ca-bundle {ca_file}: {exc.strerror or exc}") from exc


class _Client:
    """The aiohttp session a source and its children share, opened on first use."""

    def __init__(self, options: HttpOptions, tls: bool, streams: int) -> None:
        self._options, self._tls, self._streams = options, tls, streams
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()  # parallel readers start together; open one session

    async def session(self) -> aiohttp.ClientSession:
        async with self._lock:
            if self._session is None or self._session.closed:
                self._session = await self._open()
            return self._session

    async def _open(self) -> aiohttp.ClientSession:
        context: ssl.SSLContext | bool = True
        if self._tls:
            context = await asyncio.to_thread(_tls_context, self._options.ca_file)  # reads files
        # One connection per read stream, plus one for stat's requests; limit=0: no overall cap
        # (redirects may lead to other hosts).
        connector = aiohttp.TCPConnector(ssl=context, limit=0, limit_per_host=self._streams + 1)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._options.connect_timeout,
                                        sock_read=self._options.read_timeout)
        # trust_env: HTTP(S)_PROXY and NO_PROXY, as curl and the AWS CLI honour them.
        return aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, read_bufsize=CHUNK, trust_env=True,
            headers={hdrs.ACCEPT_ENCODING: "identity", hdrs.USER_AGENT: f"s3ferry/{installed_version()}"},
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class HttpSource:
    """A file behind an http:// or https:// URL (see the module docstring)."""

    def __init__(self, location: Location, options: HttpOptions, *, streams: int = MAX_STREAMS,
                 client: _Client | None = None) -> None:
        self.location = location
        self.options = options
        #: ranged until stat finds the server ignores Range
        self.features = Features(ranged_reads=True, change_window=_CHANGE_WINDOW)
        self._owner = client is None
        self._client = client or _Client(options, location.scheme == "https", streams)
        # encoded=True: Location.url is already quoted, and a pre-signed query must go out byte for byte.
        self._url = yarl.URL(location.url, encoded=True)
        self._known: _Known | None = None

    @property
    def where(self) -> str:
        return str(self.location)

    @property
    def _endpoint(self) -> str:
        port = self.location.port or (443 if self.location.scheme == "https" else 80)
        return f"{self.location.host}:{port}"

    # --- requests and errors ---------------------------------------------------------------------

    async def _send(self, method: str, headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        session = await self._client.session()
        try:
            return await session.request(method, self._url, headers=headers, allow_redirects=True)
        except _NET_ERRORS as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: BaseException) -> S3FerryError:
        """aiohttp / OS errors -> the s3ferry tree; the texts never include the URL's query."""
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            cert = exc.certificate_error
            reason = (cert.verify_message if isinstance(cert, ssl.SSLCertVerificationError) else None
                      ) or type(cert).__name__
            error = UserError(f"the TLS certificate of {self._endpoint} is not trusted ({reason})")
            error.hint = "if you trust this server, pass the CA certificate that signed it with --ca-bundle FILE"
            return error
        if isinstance(exc, aiohttp.ClientConnectorSSLError):
            failed = exc.os_error
            reason = (failed.reason if isinstance(failed, ssl.SSLError) else None) or type(failed).__name__
            return UserError(f"TLS handshake with {self._endpoint} failed ({reason}); is it an https server?")
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return UsageError(f"cannot resolve host {self.location.host!r}")
        if isinstance(exc, aiohttp.ClientConnectorError):
            cause = exc.os_error  # asyncio's own text repeats the address; the errno's says what happened
            reason = os.strerror(cause.errno) if cause.errno else str(cause) or type(cause).__name__
            return TransferError(f"cannot connect to {self._endpoint}: {reason}")
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return TransferError(f"cannot connect to {self._endpoint}: no answer in {self.options.connect_timeout:g}s")
        if isinstance(exc, TimeoutError):
            return TransferError(f"{self.where}: no data for {self.options.read_timeout:g}s")
        if isinstance(exc, aiohttp.TooManyRedirects):
            return UserError(f"{self.where}: too many redirects")
        if isinstance(exc, aiohttp.RedirectClientError):
            return UserError(f"{self.where}: the server redirected to a URL s3ferry cannot follow")
        if isinstance(exc, aiohttp.ClientPayloadError):
            return TransferError(f"connection to {self._endpoint} broke while reading {self.where}")
        return TransferError(f"connection to {self._endpoint} lost while reading {self.where} ({type(exc).__name__})")

    def _status_error(self, resp: aiohttp.ClientResponse) -> S3FerryError:
        status, reason = resp.status, resp.reason or ""
        if status in (404, 410):
            return NotFoundError(f"source not found: {self.where}")
        if status == 401:
            return AuthError(f"{self.where} asks for credentials (HTTP 401); s3ferry sends none: "
                             "use a pre-signed or otherwise public URL")
        if status == 403:
            return PermissionError_(f"access denied to {self.where} (HTTP 403); a pre-signed URL may have expired")
        if status in (408, 429) or status >= 500:  # the server is busy or failing: it may pass
            return TransferError(f"{self.where}: the server answered HTTP {status} {reason}".rstrip())
        return UserError(f"{self.where}: the server answered HTTP {status} {reason}".rstrip())

    async def _finish(self, resp: aiohttp.ClientResponse) -> None:
        """Done with ``resp``: read a small body to the end so the connection is reused, else drop it."""
        length = resp.content_length
        if length is None or length > _SMALL_BODY:
            resp.close()
            return
        try:
            await resp.read()
        except _NET_ERRORS as exc:
            resp.close()
            raise self._translate(exc) from exc
        resp.release()

    async def _fill(self, resp: aiohttp.ClientResponse, buf: memoryview) -> int:
        """Copy the body into ``buf`` until it is full or the body ends; returns the bytes copied."""
        done, total = 0, len(buf)
        try:
            while done < total:
                chunk = await resp.content.read(min(CHUNK, total - done))
                if not chunk:
                    break
                buf[done : done + len(chunk)] = chunk
                done += len(chunk)
        except _NET_ERRORS as exc:
            raise self._translate(exc) from exc
        return done

    # --- Source ----------------------------------------------------------------------------------

    async def stat(self) -> Stat:
        head = await self._head()
        probe = await self._probe() if head is None or head.size != 0 else None
        known, ranged = self._combine(head, probe)
        self._known = known
        self.features = Features(ranged_reads=ranged, change_window=_CHANGE_WINDOW)
        if not ranged:
            log.debug("%s: the server ignores Range; reading it as one stream", self.where)
        return known.stat

    async def stored_check(self) -> StoredCheck | None:
        return None  # HTTP servers give no checksum every one of them computes the same way

    async def _head(self) -> _Answer | None:
        """HEAD's answer; None when the server refuses HEAD."""
        resp = await self._send(hdrs.METH_HEAD)
        try:
            # A pre-signed S3 URL is signed for GET only: HEAD gets 403 where GET would work.
            if resp.status in (405, 501) or (resp.status == 403 and self.location.query):
                log.debug("%s: HEAD refused (HTTP %d); asking with a ranged GET", self.where, resp.status)
                return None
            if resp.status != 200:
                raise self._status_error(resp)
            return _answer(resp, _int(resp.headers.get(hdrs.CONTENT_LENGTH)))
        finally:
            resp.release()  # HEAD has no body: the connection is reusable

    async def _probe(self) -> _Answer:
        """GET the first byte: 206 means ranges work, 200 that the server ignores Range."""
        resp = await self._send(hdrs.METH_GET, {hdrs.RANGE: "bytes=0-0"})
        try:
            if resp.status == 206:
                found = _CONTENT_RANGE.match(resp.headers.get(hdrs.CONTENT_RANGE, ""))
                total = found.group(3) if found else None
                return _answer(resp, _int(total), ranged=True)
            if resp.status == 200:  # the whole file follows; _finish drops it unread
                return _answer(resp, _int(resp.headers.get(hdrs.CONTENT_LENGTH)), ranged=False)
            if resp.status == 416:  # not even byte 0: an empty file ("bytes */0")
                found = _UNSATISFIED_RANGE.match(resp.headers.get(hdrs.CONTENT_RANGE, ""))
                return _answer(resp, _int(found.group(1)) if found else None, ranged=True)
            raise self._status_error(resp)
        finally:
            await self._finish(resp)

    def _combine(self, head: _Answer | None, probe: _Answer | None) -> tuple[_Known, bool]:
        answers = [a for a in (head, probe) if a is not None]
        sizes = {a.size for a in answers if a.size is not None}
        if not sizes:
            raise UsageError(f"{self.where}: the server does not report the file's size (no Content-Length); "
                             "s3ferry needs it to plan the upload")
        if len(sizes) > 1:
            raise TransferError(f"{self.where} changed while its size was read ({sorted(sizes)})")
        first = answers[0]  # HEAD's validators when it answered
        known = _Known(sizes.pop(), first.etag, first.last_modified, _if_range(first))
        return known, probe is None or probe.ranged is not False

    @asynccontextmanager
    async def reader(self, length: int | None = None) -> AsyncIterator[_RangedReader | _StreamReader]:
        if self._known is None:
            await self.stat()  # the readers need the validators, and whether Range works
        assert self._known is not None
        reader = _RangedReader(self, self._known) if self.features.ranged_reads else _StreamReader(self, self._known)
        try:
            yield reader
        except BaseException:
            reader.close(broken=True)  # its connection may be mid-body: never reuse it
            raise
        reader.close(broken=False)

    def child(self, path: str) -> HttpSource:
        # with_path drops the query: a pre-signed signature belongs to the original path only.
        return HttpSource(self.location.with_path(path), self.options, client=self._client)

    def walk(self) -> AsyncIterator[Entry]:
        raise UsageError("http sources cannot be listed; copy files one by one")

    def list_folder(self) -> AsyncIterator[Entry]:
        raise UsageError("http sources cannot be listed; copy files one by one")

    async def close(self) -> None:
        if self._owner:
            await self._client.close()

    def _changed(self, detail: str) -> NoReturn:
        raise SourceChangedError(f"{self.where} changed during the transfer ({detail}); nothing was written")


class _RangedReader:
    """One GET per read, for exactly that byte range, on a pooled connection."""

    def __init__(self, source: HttpSource, known: _Known) -> None:
        self._source, self._known = source, known
        self._resp: aiohttp.ClientResponse | None = None

    async def read_into(self, offset: int, buf: memoryview) -> None:
        if not len(buf):
            return  # an empty file: "bytes=0--1" is no range
        headers: dict[str, str] = {hdrs.RANGE: f"bytes={offset}-{offset + len(buf) - 1}"}
        if self._known.if_range:
            headers[hdrs.IF_RANGE] = self._known.if_range
        self._resp = resp = await self._source._send(hdrs.METH_GET, headers)
        try:
            self._check(resp, offset, len(buf))
            if await self._source._fill(resp, buf) < len(buf):
                raise TransferError(f"the body of {self._source.where} ended early (connection closed)")
        except BaseException:
            self.close(broken=True)
            raise
        self._resp = None
        resp.release()

    def _check(self, resp: aiohttp.ClientResponse, offset: int, length: int) -> None:
        source = self._source
        if resp.status == 200:
            # With If-Range this is the server saying the validator no longer matches.
            source._changed("the server answered a range request with the whole, different file")
        if resp.status == 416:
            raise SourceChangedError(f"{source.where} became shorter while it was being read")
        if resp.status != 206:
            raise source._status_error(resp)
        found = _CONTENT_RANGE.match(resp.headers.get(hdrs.CONTENT_RANGE, ""))
        if found is None:
            raise TransferError(f"{source.where}: the server sent 206 without a readable Content-Range",
                                retryable=False)
        start, last, total = int(found.group(1)), int(found.group(2)), found.group(3)
        if total != "*" and int(total) != self._known.size:
            source._changed(f"size {self._known.size} -> {total}")
        if start != offset or last - start + 1 > length:
            raise TransferError(f"{source.where}: asked for bytes {offset}-{offset + length - 1}, "
                                f"the server sent {start}-{last}", retryable=False)
        if last - start + 1 < length:
            raise SourceChangedError(f"{source.where} became shorter while it was being read")

    def close(self, broken: bool) -> None:
        resp, self._resp = self._resp, None
        if resp is not None:
            resp.close()


class _StreamReader:
    """One GET of the whole file, kept open and read in order (for servers that ignore Range)."""

    def __init__(self, source: HttpSource, known: _Known) -> None:
        self._source, self._known = source, known
        self._resp: aiohttp.ClientResponse | None = None
        self._pos = 0  # offset of the next body byte

    async def read_into(self, offset: int, buf: memoryview) -> None:
        if not len(buf):
            return
        try:
            if self._resp is None or offset < self._pos:
                await self._restart(offset)
            if offset > self._pos:
                log.debug("%s: the server ignores Range: reading and dropping %d bytes to reach offset %d",
                          self._source.where, offset - self._pos, offset)
                await self._skip(offset - self._pos)
            assert self._resp is not None  # opened above by _restart
            got = await self._source._fill(self._resp, buf)
            self._pos += got
            if got < len(buf):
                self._ended_early()
        except BaseException:
            self.close(broken=True)
            raise

    async def _restart(self, offset: int) -> None:
        if self._resp is not None:
            log.debug("%s: offset %d is behind the stream (at %d); the server ignores Range, so the GET "
                      "starts again from 0", self._source.where, offset, self._pos)
            self.close(broken=True)
        resp = self._resp = await self._source._send(hdrs.METH_GET)
        self._pos = 0
        if resp.status != 200:
            raise self._source._status_error(resp)
        self._check_same(resp)

    def _check_same(self, resp: aiohttp.ClientResponse) -> None:
        """The body must be the file stat saw: same ETag, Last-Modified and size where both sides tell."""
        known, headers = self._known, resp.headers
        pairs = [("ETag", known.etag, headers.get(hdrs.ETAG)),
                 ("Last-Modified", known.last_modified, headers.get(hdrs.LAST_MODIFIED)),
                 ("size", str(known.size), headers.get(hdrs.CONTENT_LENGTH))]
        for name, before, now in pairs:
            if before is not None and now is not None and before != now:
                self._source._changed(f"{name} {before} -> {now}")

    def _ended_early(self) -> NoReturn:
        """The body ended before the bytes asked for."""
        resp = self._resp
        assert resp is not None
        # aiohttp raises when a body with a length (or chunked) is cut short, so such a body
        # really ended: the file is shorter. One delimited by closing the connection may be cut.
        chunked = "chunked" in resp.headers.get(hdrs.TRANSFER_ENCODING, "").lower()
        if resp.content_length is not None or chunked:
            raise SourceChangedError(f"{self._source.where} became shorter while it was being read")
        raise TransferError(f"the body of {self._source.where} ended early (connection closed)")

    async def _skip(self, count: int) -> None:
        """Read and drop ``count`` body bytes, CHUNK at a time (never held all at once)."""
        assert self._resp is not None
        content = self._resp.content
        try:
            while count:
                chunk = await content.read(min(CHUNK, count))
                if not chunk:
                    self._ended_early()
                count -= len(chunk)
                self._pos += len(chunk)
        except _NET_ERRORS as exc:
            raise self._source._translate(exc) from exc

    def close(self, broken: bool) -> None:
        resp, self._resp = self._resp, None
        if resp is None:
            return
        if broken:
            resp.close()
        else:
            resp.release()  # aiohttp drops the connection anyway unless the body was read to the end
