"""FTP and FTPS source over aioftp: passive mode only, TLS verified.

* ``ftps://`` is explicit TLS: ``AUTH TLS`` on the control connection before
  the password is sent, then ``PBSZ 0`` / ``PROT P`` so every data connection
  is TLS too. The certificate and host name are checked against the system
  store or ``--ca-bundle``; there is no way to turn that off.
* Passive mode only (EPSV, then PASV): active mode needs the server to connect
  back, which NAT and firewalls break. The data address is always the control
  host, never the one PASV announces (the classic PASV-redirect attack).
* A ranged read is ``REST offset`` + ``RETR`` on a control connection of its
  own. FTP cannot ask for N bytes, so once the part buffer is full we hang up
  the data connection; the server answers the RETR with 426 (or 226 when it
  had already sent everything), after which the control connection is in step
  again and is reused. When that answer does not come in time, the connection
  is dropped instead: a stray late reply must never be read as the answer to
  a later command.
* Received chunks are copied straight into the part buffer; asyncio's stream
  reader holds at most ~128 KiB per connection in between.
* A data connection that ends early is a short file only if the server then
  says 226; any other ending is a lost connection (retried), never truncation.
* Folders are listed with MLSD (RFC 3659: exact sizes, UTC times to the
  second). Servers without it (vsftpd, many IIS setups) are listed with LIST,
  whose Unix ``ls -l`` or DOS lines are parsed; a line that fits neither stops
  the walk rather than losing a file. A server that refused MLSD once is not
  asked again.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import posixpath
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import aioftp

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
from s3ferry.core.options import FtpOptions
from s3ferry.core.storage import Entry, Features, Stat
from s3ferry.core.urls import Location
from s3ferry.core.verification import StoredCheck

T = TypeVar("T")
log = logging.getLogger("s3ferry")

#: a server silent for this long (control reply or data) is a lost connection
_IO_TIMEOUT = 120.0
#: how long to wait for the RETR reply after hanging up early before giving the connection up
_FINISH_TIMEOUT = 10.0
#: QUIT is a courtesy: closing never waits longer than this
_CLOSE_TIMEOUT = 5.0
_CHUNK = 256 * 1024
#: a deeper tree is almost surely a directory symlink loop on the server
_MAX_DEPTH = 100

#: failures of the connection itself (as opposed to a server reply); SSLError and
#: TimeoutError are OSErrors, IncompleteReadError an EOFError
_WIRE_ERRORS = (OSError, EOFError)
_DIR_TYPES = ("dir", "cdir", "pdir")
#: replies meaning "this server has no such command" (as opposed to "not for this path")
_NOT_IMPLEMENTED = ("500", "502", "504")


def _reply_text(exc: aioftp.StatusCodeError) -> str:
    info = exc.info if isinstance(exc.info, list) else [exc.info]
    return " ".join(line.strip(" -") for line in info if line.strip(" -"))


def _reply_code(exc: aioftp.StatusCodeError) -> str:
    return str(exc.received_codes[-1]) if exc.received_codes else ""


def _from_reply(exc: aioftp.StatusCodeError, where: str) -> S3FerryError:
    """Map an FTP reply code to the s3ferry tree (the text decides 550's two meanings)."""
    code, text = _reply_code(exc), _reply_text(exc)
    said = f"{code} {text}".strip()
    if code == "550":
        if any(word in text.lower() for word in ("permission", "denied", "privilege", "not allowed", "access")):
            return PermissionError_(f"permission denied: {where} ({said})")
        return NotFoundError(f"source not found: {where}")
    if code in ("530", "532", "553"):
        return PermissionError_(f"permission denied: {where} ({said})")
    if code.startswith("4"):
        return TransferError(f"FTP server refused {where} for now: {said}")
    return TransferError(f"FTP server refused {where}: {said}", retryable=False)


def _translate(exc: BaseException, where: str) -> S3FerryError:
    """Map aioftp / OS errors on an open connection to the s3ferry tree."""
    if isinstance(exc, aioftp.StatusCodeError):
        return _from_reply(exc, where)
    if isinstance(exc, ssl.SSLError):
        return TransferError(f"TLS error on the FTPS connection for {where}: {exc.reason or exc}")
    if isinstance(exc, _WIRE_ERRORS):
        return TransferError(f"FTP connection lost at {where}: {_reason(exc)}")
    raise exc


def _reason(exc: BaseException) -> str:
    """A readable reason; aioftp and asyncio raise some errors without a message."""
    if str(exc):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"no answer for {_IO_TIMEOUT:.0f} s"
    if isinstance(exc, (ConnectionResetError, EOFError)):
        return "connection closed"
    return type(exc).__name__


def _untrusted(exc: ssl.SSLCertVerificationError, host: str, port: int) -> UserError:
    reason = (exc.verify_message or str(exc)).rstrip(".")
    if "mismatch" in reason.lower():
        advice = "connect with a host name the certificate lists"
    else:
        advice = "pass --ca-bundle with the CA certificate that signed it"
    return UserError(f"TLS certificate of {host}:{port} not trusted: {reason}; {advice}")


def _lost(exc: BaseException) -> bool:
    """Whether the control connection is gone: a wire error, or 421 (the server is closing it,
    e.g. after its idle timeout: a pooled connection can meet that on its first command)."""
    return not isinstance(exc, aioftp.StatusCodeError) or _reply_code(exc) == "421"


def _hang_up(client: aioftp.Client) -> None:
    """Close a control connection at once, without a TLS goodbye (it may be dead or out of step)."""
    stream = client._stream  # aioftp has no public "is connected"
    if stream is not None:
        stream.writer.transport.abort()


def _alive(client: aioftp.Client) -> bool:
    stream = client._stream  # see _hang_up
    return stream is not None and not stream.writer.transport.is_closing() and not stream.reader.at_eof()


def _parse_facts(line: str) -> tuple[str, dict[str, str]]:
    """One MLST/MLSD line (``type=file;size=3; name``) -> (name, lower-cased facts)."""
    facts_text, _, name = line.lstrip(" ").partition(" ")
    facts = {}
    for fact in facts_text.split(";"):
        key, sep, value = fact.partition("=")
        if sep:
            facts[key.strip().lower()] = value
    return name, facts


def _mtime(value: str | None) -> float | None:
    """``YYYYMMDDHHMMSS[.sss]`` (UTC, RFC 3659) -> epoch seconds; None if absent or odd."""
    if not value:
        return None
    whole, _, frac = value.strip().partition(".")
    try:
        seconds = calendar.timegm(time.strptime(whole, "%Y%m%d%H%M%S"))
    except ValueError:
        return None
    return seconds + (float(f"0.{frac}") if frac.isdigit() else 0.0)


def _size(facts: dict[str, str], where: str) -> int:
    try:
        return int(facts["size"])
    except (KeyError, ValueError) as exc:
        raise TransferError(f"the FTP server gave no size for {where}", retryable=False) from exc


@asynccontextmanager
async def _data(client: aioftp.Client, command: str, offset: int = 0) -> AsyncIterator[asyncio.StreamReader]:
    """Open a passive data connection and start ``command`` on it; hang it up on the way out."""
    reader, writer = await client.get_passive_connection("I")
    try:
        if offset:
            await client.command(f"REST {offset}", "350")
        await client.command(command, "1xx")
        yield reader
    finally:
        writer.transport.abort()  # early: the server notices and answers 426


async def _final_reply(client: aioftp.Client, timeout: float) -> tuple[str, str]:
    """The reply that ends a transfer (after any 1xx marks) as (code, text)."""
    async with asyncio.timeout(timeout):
        code, info = await client.parse_response()
        while code.matches("1xx"):
            code, info = await client.parse_response()
    return str(code), " ".join(info).strip()


@dataclass(frozen=True)
class _Listed:
    """One entry of a folder listing, whichever command gave it."""

    name: str
    kind: str  # "file", "dir", "link", or another type the server named (MLSD's "cdir", "OS.unix=...")
    size: int | None = None
    mtime: float | None = None


def _from_facts(name: str, facts: dict[str, str]) -> _Listed:
    """An MLSD line's facts as a :class:`_Listed`."""
    size = facts.get("size", "")
    return _Listed(name, facts.get("type", "").lower(), int(size) if size.isdigit() else None,
                   _mtime(facts.get("modify")))


_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                       "dec"), start=1)}
_UNIX_KINDS = {"-": "file", "d": "dir", "l": "link"}
# ``ls -l``: mode, then link count / owner / group (any of them may be missing, and Windows-made owners
# hold spaces), then the first "size month day time-or-year" run; the name is everything after the one
# space that follows (so names may start with spaces). The mode may end in an ACL mark (+ . @).
_UNIX_LINE = re.compile(r"(?P<mode>[-dlbcpsD][-rwxsStTlL]{9})[+.@]?\s+(?:.*?\s)??"
                        r"(?P<size>\d+)\s+(?P<month>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+"
                        r"(?:(?P<hour>\d{1,2}):(?P<minute>\d{2})|(?P<year>\d{4})) (?P<name>.+)")
# IIS / DOS: "11-21-26  12:00PM  1234 name" or "... <DIR> name"; 4-digit years and 24-hour times
# exist too. The padding before the name is not fixed, so a leading space of a name is lost.
_DOS_LINE = re.compile(r"(?P<date>\d{2}-\d{2}-(?:\d{4}|\d{2}))\s+(?P<time>\d{1,2}:\d{2})\s*(?P<ampm>[AaPp][Mm])?\s+"
                       r"(?:(?P<dir><DIR>)|(?P<size>\d+))\s+(?P<name>.+)")
_TOTAL_LINE = re.compile(r"total\s+\d+")


def _parse_list_line(line: str, now: datetime) -> _Listed | None:
    """One LIST line -> :class:`_Listed`; None for a ``total N`` header. ValueError if it is neither format.

    Times are taken as UTC (vsftpd's and pyftpdlib's default; IIS may send local time) and LIST gives
    them to the minute at best, and to the day for files older than about six months.
    """
    if _TOTAL_LINE.fullmatch(line):
        return None
    if unix := _UNIX_LINE.fullmatch(line):
        kind = _UNIX_KINDS.get(unix["mode"][0], "other")
        return _Listed(unix["name"], kind, int(unix["size"]), _unix_mtime(unix, now))
    if dos := _DOS_LINE.fullmatch(line):
        size = None if dos["dir"] else int(dos["size"])
        return _Listed(dos["name"], "dir" if dos["dir"] else "file", size, _dos_mtime(dos))
    raise ValueError(f"not a Unix or DOS listing line: {line!r}")


def _unix_mtime(match: re.Match[str], now: datetime) -> float:
    month = _MONTHS.get(match["month"].lower())
    if month is None:
        raise ValueError(f"unknown month {match['month']!r}")  # e.g. a localised listing
    day = int(match["day"])
    if match["year"]:
        return datetime(int(match["year"]), month, day, tzinfo=UTC).timestamp()
    return _recent(month, day, int(match["hour"]), int(match["minute"]), now).timestamp()


def _recent(month: int, day: int, hour: int, minute: int, now: datetime) -> datetime:
    """``ls`` leaves the year out for recent files: this year, unless that would lie in the future.

    A day's grace absorbs the server's time zone and clock skew before "future" means last year.
    """
    for year in (now.year, now.year - 1):
        try:
            stamp = datetime(year, month, day, hour, minute, tzinfo=UTC)
        except ValueError:  # 29 February outside a leap year
            continue
        if stamp <= now + timedelta(days=1):
            return stamp
    raise ValueError(f"no recent year has {month:02d}-{day:02d}")


def _dos_mtime(match: re.Match[str]) -> float:
    date_format = "%m-%d-%Y" if len(match["date"]) == 10 else "%m-%d-%y"  # %y: 00-68 -> 20xx, 69-99 -> 19xx
    time_format = "%I:%M%p" if match["ampm"] else "%H:%M"
    stamp = datetime.strptime(f"{match['date']} {match['time']}{match['ampm'] or ''}",
                              f"{date_format} {time_format}")
    return stamp.replace(tzinfo=UTC).timestamp()


def _parse_listing(lines: list[str], where: str) -> list[_Listed]:
    """A LIST reply; an unreadable line stops the walk (skipping it could silently leave a file out)."""
    now = datetime.now(UTC)
    listed = []
    for line in lines:
        try:
            item = _parse_list_line(line, now)
        except ValueError as exc:
            raise TransferError(f"cannot read the FTP server's listing of {where}: unrecognised line {line!r}",
                                retryable=False) from exc
        if item is not None:
            listed.append(item)
    return listed


class _Pool:
    """Control connections to one server, shared by a source and its children."""

    def __init__(self, location: Location, options: FtpOptions) -> None:
        self.location, self.options = location, options
        self.tls = location.scheme == "ftps"
        self.idle: list[aioftp.Client] = []
        self.all: set[aioftp.Client] = set()
        self._context: ssl.SSLContext | None = None
        self._password: str | None = None
        self._password_read = False  # read once: every reconnect would read the file again
        self.mlsd = True  # until the server says it has no MLSD: then every folder is listed with LIST

    @property
    def user(self) -> str:
        return self.location.user or "anonymous"

    @property
    def endpoint(self) -> str:
        return f"{self.user}@{self.location.host}:{self.location.port or 21}"

    def _load_context(self) -> ssl.SSLContext:
        ca = self.options.ca_file
        if ca is not None and not ca.is_file():
            raise UsageError(f"--ca-bundle {ca} does not exist")
        try:
            return ssl.create_default_context(cafile=str(ca) if ca else None)
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(f"cannot load --ca-bundle {ca}: {exc}") from exc

    async def _secrets(self) -> tuple[str, bool]:
        """The password to send, and whether the user gave one."""
        if not self._password_read:
            self._password = await asyncio.to_thread(self.options.password)  # may read --password-file
            self._password_read = True
        if self._password is not None:
            return self._password, True
        return ("anonymous@" if self.user == "anonymous" else ""), False

    async def connect(self) -> aioftp.Client:
        if self.tls and self._context is None:
            self._context = await asyncio.to_thread(self._load_context)  # reads the CA file
        password, given = await self._secrets()
        client = aioftp.Client(socket_timeout=_IO_TIMEOUT, connection_timeout=self.options.connect_timeout,
                               encoding="utf-8")
        try:
            await self._handshake(client, password, given)
        except BaseException:
            _hang_up(client)
            raise
        self.all.add(client)
        return client

    async def _handshake(self, client: aioftp.Client, password: str, given: bool) -> None:
        host, port = self.location.host, self.location.port or 21
        step = "connect"
        try:
            await client.connect(host, port)
            if self._context is not None:
                step = "tls"
                await client.command("AUTH TLS", "234")
                await client.stream.start_tls(sslcontext=self._context, server_hostname=host)
            step = "login"
            await client.login(self.user, password)
            step = "setup"
            if self._context is not None:
                await client.command("PBSZ 0", "200")
                await client.command("PROT P", "200")  # data connections encrypted too
            # RFC 2640 servers may want this before UTF-8 names; a refusal is harmless.
            await client.command("OPTS UTF8 ON", ("2xx", "5xx"))
            await client.command("TYPE I", "200")  # SIZE and REST count bytes only in binary mode
        except ssl.SSLCertVerificationError as exc:
            raise _untrusted(exc, host, port) from exc
        except socket.gaierror as exc:
            raise UsageError(f"cannot resolve host {host!r}: {exc.strerror}") from exc
        except aioftp.StatusCodeError as exc:
            raise self._refused(exc, step, given) from exc
        except _WIRE_ERRORS as exc:
            reason = (exc.reason if isinstance(exc, ssl.SSLError) else None) or _reason(exc)
            raise TransferError(f"cannot connect to {self.endpoint} ({step}): {reason}") from exc

    def _refused(self, exc: aioftp.StatusCodeError, step: str, given: bool) -> S3FerryError:
        code = _reply_code(exc)
        if step == "login" and code in ("530", "331", "332"):
            why = "" if given else " (no password given: set S3FERRY_FTP_PASSWORD or use --password-file)"
            return AuthError(f"authentication failed for {self.endpoint}{why}")
        if step == "login" and code.startswith("5"):  # e.g. 550 "SSL/TLS required": not a missing file
            return AuthError(f"{self.endpoint} refused the login: {code} {_reply_text(exc)}")
        if step == "tls" and code.startswith("5"):
            return UsageError(f"{self.endpoint} refused AUTH TLS: it does not offer explicit FTPS")
        return _from_reply(exc, self.endpoint)

    async def checkout(self) -> tuple[aioftp.Client, bool]:
        """A connection, and whether it was idle (so possibly closed by the server meanwhile)."""
        while self.idle:
            client = self.idle.pop()
            if _alive(client):
                return client, True
            self.discard(client)
        return await self.connect(), False

    def checkin(self, client: aioftp.Client) -> None:
        if client in self.all and _alive(client):
            self.idle.append(client)

    def discard(self, client: aioftp.Client) -> None:
        self.all.discard(client)
        _hang_up(client)

    async def run(self, operation: Callable[[aioftp.Client], Awaitable[T]], where: str) -> T:
        """Run a short command sequence; an idle connection found dead is replaced once."""
        client, reused = await self.checkout()
        while True:
            try:
                result = await operation(client)
            except (aioftp.StatusCodeError, *_WIRE_ERRORS) as exc:
                if not _lost(exc):  # a complete error reply leaves the connection in step
                    self.checkin(client)
                    raise _translate(exc, where) from exc
                self.discard(client)
                if not reused:
                    raise _translate(exc, where) from exc
                client, reused = await self.connect(), False
                continue
            except BaseException:
                self.discard(client)  # cancelled or a bug: the connection's state is unknown
                raise
            self.checkin(client)
            return result

    async def close(self) -> None:
        clients, self.all, self.idle = list(self.all), set(), []
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await asyncio.gather(*(self._quit(c) for c in clients))
        except TimeoutError:
            pass  # QUIT is a courtesy; the connections are cut below
        finally:
            for client in clients:
                _hang_up(client)

    @staticmethod
    async def _quit(client: aioftp.Client) -> None:
        try:
            await client.command("QUIT", "2xx")
        except (aioftp.StatusCodeError, *_WIRE_ERRORS):
            pass  # the server is gone or was mid-transfer: nothing to tell the user


async def _mlst(client: aioftp.Client, path: str) -> dict[str, str] | None:
    """The facts of ``path``; None when the reply has no facts line where RFC 3659 puts it."""
    _, info = await client.command(f"MLST {path}", "2xx")
    # The facts line sits between "250-Listing" and "250 End"; it starts with a space.
    for line in info[1:-1]:
        if "=" in line:
            return _parse_facts(line)[1]
    return None


async def _stat_fallback(client: aioftp.Client, path: str) -> dict[str, str]:
    """MLST's facts from SIZE and MDTM, for servers without MLST (vsftpd)."""
    try:
        _, info = await client.command(f"SIZE {path}", "213")
    except aioftp.StatusCodeError as exc:
        if _reply_code(exc) != "550":
            raise
        # No size: a directory (CWD works) or nothing at all.
        await client.command(f"CWD {path}", "2xx")
        return {"type": "dir"}
    facts = {"type": "file", "size": info[-1].strip()}
    try:
        _, info = await client.command(f"MDTM {path}", "213")
        facts["modify"] = info[-1].strip()
    except aioftp.StatusCodeError:
        pass  # no modification time: change detection then rests on the size alone
    return facts


async def _facts(client: aioftp.Client, path: str) -> dict[str, str]:
    try:
        facts = await _mlst(client, path)
    except aioftp.StatusCodeError as exc:
        if _reply_code(exc) not in _NOT_IMPLEMENTED:  # try the old commands
            raise
        facts = None
    return facts if facts is not None else await _stat_fallback(client, path)


async def _lines(client: aioftp.Client, command: str, path: str) -> list[str]:
    """Run a listing command (MLSD, LIST) for folder ``path``: its non-blank lines, without line ends."""
    lines: list[str] = []
    async with _data(client, command) as stream:
        async with asyncio.timeout(None) as deadline:
            while True:
                deadline.reschedule(asyncio.get_running_loop().time() + _IO_TIMEOUT)  # a stall is fatal
                line = await stream.readline()
                if not line:
                    break
                if line.strip():
                    lines.append(_decode(line, path).rstrip("\r\n"))
    code, text = await _final_reply(client, _IO_TIMEOUT)
    if not code.startswith("2"):
        raise TransferError(f"listing of {path} broke off: {code} {text}")
    return lines


async def _folder(pool: _Pool, client: aioftp.Client, path: str) -> tuple[str, list[str]]:
    """The listing of folder ``path`` as (command, lines): MLSD where the server has it, else LIST."""
    if pool.mlsd:
        try:
            return "MLSD", await _lines(client, f"MLSD {path}", path)
        except aioftp.StatusCodeError as exc:
            if _reply_code(exc) not in _NOT_IMPLEMENTED:
                raise
            pool.mlsd = False  # a complete reply: the connection is in step for LIST
            log.debug("%s has no MLSD (%s): listing with LIST", pool.endpoint, _reply_code(exc))
    return "LIST", await _lines(client, f"LIST {path}", path)


def _decode(line: bytes, path: str) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the FTP server listed a name in {path} that is not UTF-8") from exc


class FtpReader:
    """Ranged reads (REST + RETR) over one control connection, replaced when it breaks."""

    def __init__(self, pool: _Pool, client: aioftp.Client, reused: bool, path: str, where: str) -> None:
        self._pool, self._path, self._where = pool, path, where
        self._client: aioftp.Client | None = client
        self._unproven = reused  # an idle connection may have died meanwhile: one free retry

    async def read_into(self, offset: int, buf: memoryview) -> None:
        if not len(buf):
            return
        while True:
            client = self._client or await self._pool.connect()
            self._client = client
            try:
                await self._read(client, offset, buf)
            except (aioftp.StatusCodeError, *_WIRE_ERRORS) as exc:
                self.drop()
                if self._unproven and _lost(exc):  # a read only writes into buf: doing it again is safe
                    self._unproven = False
                    continue
                raise self._failure(exc, offset) from exc
            except BaseException:
                self.drop()  # incl. SourceChangedError / cancellation: start clean next time
                raise
            self._unproven = False
            return

    def _failure(self, exc: BaseException, offset: int) -> S3FerryError:
        # RFC 1123's 554 to a RETR after REST: "REST position > file size"
        if isinstance(exc, aioftp.StatusCodeError) and _reply_code(exc) == "554" and offset:
            return SourceChangedError(f"{self._where} is now shorter than {offset} bytes")
        return _translate(exc, self._where)

    async def _read(self, client: aioftp.Client, offset: int, buf: memoryview) -> None:
        async with _data(client, f"RETR {self._path}", offset) as stream:
            filled = await _receive(stream, buf)
            early = filled == len(buf) and not stream.at_eof()
        if filled < len(buf):
            await self._ended_short(client, filled, len(buf))
            return
        try:
            code, _ = await _final_reply(client, _FINISH_TIMEOUT if early else _IO_TIMEOUT)
        except (aioftp.StatusCodeError, *_WIRE_ERRORS):
            code = ""
        # 226: all sent; 426/450/451: aborted because we hung up. Both leave it in step.
        if not (code.startswith("2") or code in ("426", "450", "451")):
            self.drop()  # buf is complete; only the connection is in doubt

    async def _ended_short(self, client: aioftp.Client, filled: int, wanted: int) -> None:
        """The data connection closed before ``wanted`` bytes: a short file only if the server says so."""
        code, text = await _final_reply(client, _IO_TIMEOUT)
        if code.startswith("2"):
            raise SourceChangedError(f"{self._where} became shorter while it was being read")
        raise TransferError(f"FTP transfer of {self._where} broke off after {filled} of {wanted} bytes: "
                            f"{code} {text}")

    def drop(self) -> None:
        if self._client is not None:
            self._pool.discard(self._client)
            self._client = None

    def release(self) -> None:
        if self._client is not None:
            self._pool.checkin(self._client)
            self._client = None


async def _receive(stream: asyncio.StreamReader, buf: memoryview) -> int:
    """Copy the data connection into ``buf`` until it is full or the server closes; bytes received."""
    filled, total = 0, len(buf)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as deadline:
        while filled < total:
            deadline.reschedule(loop.time() + _IO_TIMEOUT)  # a stall, not a slow transfer, is fatal
            chunk = await stream.read(min(_CHUNK, total - filled))
            if not chunk:
                break
            buf[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
    return filled


class FtpSource:
    # change_window: MDTM has whole seconds, and the server's clock may differ a little from ours
    features = Features(ranged_reads=True, listing=True, change_window=2.0)

    def __init__(self, location: Location, options: FtpOptions, *, _pool: _Pool | None = None) -> None:
        if "\r" in location.path or "\n" in location.path:
            raise UsageError(f"cannot ask an FTP server for {location}: the name contains a line break")
        self.location = location
        self.options = options
        self._owner = _pool is None
        self._pool = _pool or _Pool(location, options)

    @property
    def where(self) -> str:
        return str(self.location)

    def child(self, path: str) -> FtpSource:
        return FtpSource(self.location.with_path(path), self.options, _pool=self._pool)

    async def stat(self) -> Stat:
        path = self.location.path
        facts = await self._pool.run(lambda client: _facts(client, path), self.where)
        kind = facts.get("type", "").lower()
        if kind in _DIR_TYPES:
            raise UsageError(f"{self.where} is a directory (use cp -r)")
        if kind != "file":
            raise UsageError(f"{self.where} is not a regular file")
        return Stat(size=_size(facts, self.where), mtime=_mtime(facts.get("modify")))

    async def stored_check(self) -> StoredCheck | None:
        return None  # FTP has no standard checksum command every server answers

    @asynccontextmanager
    async def reader(self, length: int | None = None) -> AsyncIterator[FtpReader]:
        client, reused = await self._pool.checkout()
        reader = FtpReader(self._pool, client, reused, self.location.path, self.where)
        try:
            yield reader
        except BaseException:
            reader.drop()  # the caller saw it fail: never reuse that connection
            raise
        reader.release()

    async def walk(self) -> AsyncIterator[Entry]:
        top = self.location.path.rstrip("/") or "/"
        facts = await self._pool.run(lambda client: _facts(client, top), self.where)
        if facts.get("type", "").lower() not in _DIR_TYPES:
            raise UsageError(f"{self.where} is not a directory")
        pending = [("", top)]
        while pending:
            rel, path = pending.pop()
            if rel.count("/") >= _MAX_DEPTH:
                raise UsageError(f"{self.where} nests deeper than {_MAX_DEPTH} folders (a symlink loop?)")
            for item in await self._list(path):
                rel_name = f"{rel}/{item.name}" if rel else item.name
                if item.name in (".", "..") or item.kind in ("cdir", "pdir"):
                    continue
                if item.kind == "dir":
                    pending.append((rel_name, posixpath.join(path, item.name)))
                elif item.kind == "file":
                    yield self._entry(item, rel_name)
                else:  # a symlink in a LIST could be a file or a folder: only following it would tell
                    log.debug("skipping %s/%s: a %s, not a file or folder", self.where.rstrip("/"), rel_name,
                              item.kind)

    async def list_folder(self) -> AsyncIterator[Entry]:
        folder = self.location.path.rstrip("/") or "/"
        facts = await self._pool.run(lambda client: _facts(client, folder), self.where)
        if facts.get("type", "").lower() not in _DIR_TYPES:
            raise NotFoundError(f"source folder not found: {self.where}")
        files = [item for item in await self._list(folder) if item.kind == "file"]
        for item in sorted(files, key=lambda item: item.name):
            yield self._entry(item, item.name)

    def _entry(self, item: _Listed, rel_name: str) -> Entry:
        if item.size is None:
            raise TransferError(f"the FTP server gave no size for {self.where.rstrip('/')}/{rel_name}",
                                retryable=False)
        return Entry(rel_name, item.size, item.mtime)

    async def _list(self, path: str) -> list[_Listed]:
        where = str(self.location.with_path(path))
        command, lines = await self._pool.run(lambda client: _folder(self._pool, client, path), where)
        if command == "MLSD":
            return [_from_facts(*_parse_facts(line)) for line in lines]
        return _parse_listing(lines, where)

    async def close(self) -> None:
        if self._owner:
            await self._pool.close()
