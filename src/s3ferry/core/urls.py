"""Parsing of the locations s3ferry reads and writes.

``sftp://[user@]host[:port]/path``, ``ftp://`` / ``ftps://`` (same form),
``http(s)://host[:port]/path[?query]``, ``s3://bucket/key``, ``file:///path``
or a plain path. Passwords in URLs are refused: a command line is visible to
every user of the machine (``ps``) and ends up in shell history.

One escaping rule (README, *Names and paths*): paths are LITERAL in every
scheme but http(s). The S3 key is every character after the bucket's ``/``,
as the AWS CLI reads it; an SFTP, FTP or ``file://`` path is everything from
the first ``/`` after the host, as scp and rclone read it. ``%``, ``?``,
``#``, ``+`` and spaces are themselves: no percent-decoding, so ``a%41.bin``
names the file ``a%41.bin``, never ``aA.bin``. Only the user name is
percent-decoded (``me%40corp@host`` is the user ``me@corp``: the ``@`` must be
written somehow). ``http(s)://`` URLs are real URLs: the path is decoded and
sent re-encoded, and the query string is kept for the request (pre-signed URLs
need it) but never displayed: it often carries a signature.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, quote, unquote, urlsplit

from s3ferry.core.errors import UsageError

SCHEMES = ("sftp", "s3", "file", "ftp", "ftps", "http", "https")


@dataclass(frozen=True)
class Location:
    """A parsed location. ``path`` is the remote path, S3 key or local path."""

    scheme: str
    path: str
    host: str = ""
    port: int | None = None
    user: str | None = None
    bucket: str = ""
    query: str = ""  # http(s) only; kept out of every display form

    @property
    def name(self) -> str:
        """The last path component (used when the destination ends in ``/``)."""
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def is_dir_like(self) -> bool:
        return self.path == "" or self.path.endswith("/")

    def with_path(self, path: str) -> Location:
        return Location(self.scheme, path, self.host, self.port, self.user, self.bucket)

    @property
    def url(self) -> str:
        """The full URL to request (http/https: with the query string). Never print it."""
        port = f":{self.port}" if self.port else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = quote(self.path, safe="/~!$&'()*+,;=:@")
        return f"{self.scheme}://{host}{port}{path}" + (f"?{self.query}" if self.query else "")

    def __str__(self) -> str:
        """A display form that never contains a secret (there is none to hide)."""
        if self.scheme == "file":
            return self.path
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.path}"
        user = f"{quote(self.user)}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}{port}{self.path}"


#: schemes whose path is taken literally (everything but http/https)
LITERAL_SCHEMES = ("sftp", "s3", "file", "ftp", "ftps")


def parse(text: str) -> Location:
    """Parse a command-line location; raises :class:`UsageError` when malformed."""
    if not text:
        raise UsageError("empty location")
    if "://" not in text:
        _refuse_mistyped(text)
        return Location("file", str(Path(text).expanduser()) + ("/" if text.endswith("/") else ""))
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise UsageError(f"unsupported scheme {scheme!r} in {redact(text)} (use one of: {', '.join(SCHEMES)})")
    if scheme in ("http", "https"):
        return _parse_http(text)
    # Literal paths: the host part ends at the first "/", and every character after it is the path.
    netloc, slash, tail = rest.partition("/")
    if scheme == "file":
        if netloc not in ("", "localhost"):
            raise UsageError(f"file URLs name no host: {redact(text)}")
        return Location("file", slash + tail)
    if scheme == "s3":
        return _parse_s3(text, netloc, tail)
    return _parse_remote(text, scheme, netloc, slash + tail)


#: ``s3:/b/k``, ``s3:b/k``, ``sftp:host:/path``, ``HTTPS:/x``: a scheme with its ``//`` lost (or scp's syntax).
_MISTYPED_RE = re.compile(r"^(" + "|".join(SCHEMES) + r"):/?(?!/)(.*)$", re.IGNORECASE | re.DOTALL)


def _refuse_mistyped(text: str) -> None:
    """A local path that reads as a URL with a typo is refused: copying to ``./s3:`` succeeds silently and
    fills a local disk. ``./s3:x`` (or an absolute path) is how to mean such a file.

    The message does not repeat what was typed (it may hold a password): only the suggestion, redacted.
    """
    match = _MISTYPED_RE.match(text)
    if match is None:
        return
    scheme, typed_scheme, rest = match.group(1).lower(), match.group(1), match.group(2)
    note = ""
    scp = _SCP_RE.match(rest) if scheme in ("sftp", "ftp", "ftps") else None
    if scp is not None:  # scp's [user@]host:path
        user, host, path = scp.group("user"), scp.group("host"), scp.group("path")
        rest = f"{user + '@' if user is not None else ''}{host}/{path.lstrip('/')}"
        note = "" if path.startswith("/") else "; the path of an sftp:// or ftp:// URL is absolute"
    elif scheme == "file":
        rest = "/" + rest.lstrip("/")
    raise UsageError(f"this location looks like a mistyped URL: did you mean {redact(f'{scheme}://{rest}')!r}? "
                     f"(for a local file whose name starts with {typed_scheme + ':'!r}, write ./ before it){note}")


_SCP_RE = re.compile(r"^(?:(?P<user>[^/]*)@)?(?P<host>[^:/@]+):(?P<path>.*)$", re.DOTALL)


def _parse_s3(text: str, bucket: str, key: str) -> Location:
    if not bucket:
        raise UsageError(f"missing bucket in {text!r} (expected s3://bucket/key)")
    if "@" in bucket or ":" in bucket:
        raise UsageError(f"S3 URLs carry no credentials or port: {redact(text)}")
    if "?" in bucket or "#" in bucket:
        raise UsageError(f"unexpected '?' or '#' in the bucket name of {redact(text)}")
    if not (3 <= len(bucket) <= 63):
        raise UsageError(f"bucket name {bucket!r} must be 3 to 63 characters long")
    return Location("s3", key, bucket=bucket)


def _host_port(parts: SplitResult, text: str) -> tuple[str, int | None]:
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise UsageError(f"bad port in {redact(text)}") from exc
    if not host:
        raise UsageError(f"missing host in {redact(text)} (expected {parts.scheme}://[user@]host[:port]/path)")
    return host, port


def _parse_http(text: str) -> Location:
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"refusing credentials inside the URL {redact(text)}: use a pre-signed URL instead")
    host, port = _host_port(parts, text)
    return Location(parts.scheme.lower(), unquote(parts.path) or "/", host=host, port=port, query=parts.query)


def _parse_remote(text: str, scheme: str, netloc: str, path: str) -> Location:
    """sftp/ftp/ftps: ``[user@]host[:port]`` (the user percent-decoded), then ``path`` exactly as given."""
    userinfo, _, hostport = netloc.rpartition("@")
    if ":" in userinfo:
        env = "S3FERRY_FTP_PASSWORD" if scheme.startswith("ftp") else "S3FERRY_SFTP_PASSWORD"
        raise UsageError(f"refusing a password inside the URL {redact(text)}: set {env} or use --password-file")
    if "?" in hostport or "#" in hostport:
        raise UsageError(f"unexpected '?' or '#' in the host of {redact(text)}")
    host, port = _host_port(urlsplit(f"{scheme}://{hostport}"), text)
    return Location(scheme, path or "/", host=host, port=port, user=unquote(userinfo) or None)


def redact(text: str) -> str:
    """``text`` with any ``user:password@`` reduced to ``user:***@`` and a query string hidden.

    A ``?`` in an s3/sftp/ftp/file URL is part of a literal name, not a query: it stays.
    """
    if "://" not in text:
        return text
    scheme, rest = text.split("://", 1)
    if "?" in rest and scheme.lower() not in LITERAL_SCHEMES:
        rest = rest.split("?", 1)[0] + "?***"
    netloc, sep, tail = rest.partition("/")
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    return f"{scheme}://{netloc}{sep}{tail}"


def join_name(dst: Location, name: str) -> Location:
    """Append a source file name to a destination that ends in ``/``.

    The name comes from the remote side, so it is checked to stay inside the
    destination (no ``..``, no separators, not empty).
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise UsageError(f"refusing unsafe file name {name!r} from the source")
    return dst.with_path(dst.path + name)


class UnsafeName(str):
    """A path that a listing already found unusable as a name (an SFTP server listing ``a/b``, say).

    Its text is the path as best shown; :func:`safe_relative` refuses it with
    ``reason``. A listing yields one instead of stopping, so that the other
    files still go and the refused one is reported by name.
    """

    reason: str

    def __new__(cls, path: str, reason: str) -> UnsafeName:
        made = super().__new__(cls, path)
        made.reason = reason
        return made

    def __reduce__(self) -> tuple[type[UnsafeName], tuple[str, str]]:
        # copy, deepcopy and pickle (a Dask task's arguments) rebuild it with its reason
        return (UnsafeName, (str(self), self.reason))


def _is_escaped(path: str) -> bool:
    """Whether ``path`` holds bytes that were not UTF-8 (decoded with ``surrogateescape``, as Python lists names)."""
    return any("\udc80" <= c <= "\udcff" for c in path)


def _shown(path: str) -> str:
    """``path`` quoted for a message; a name that is not UTF-8 is shown as its bytes (``'bad\\xff.bin'``)."""
    if not _is_escaped(path):
        return repr(path)
    try:
        return repr(path.encode("utf-8", "surrogateescape"))[1:]
    except UnicodeEncodeError:  # other lone surrogates too: no bytes decode to this
        return repr(path)


def safe_relative(path: str) -> str:
    """Check a relative path that came from the remote side (a tree listing, an S3 key).

    Refuses what could land outside the destination: absolute paths, ``..``
    components, backslashes, NUL, empty components; and names that are not
    valid UTF-8 (Python's surrogate-escaped str from a local or SFTP listing):
    an S3 key must be UTF-8, and such a name cannot be shown or journaled
    faithfully. Returns the path unchanged.
    """
    if isinstance(path, UnsafeName):
        raise UsageError(f"refusing unsafe name {_shown(path)} from the source: {path.reason}")
    parts = path.split("/")
    if (not path or path.startswith("/") or "\\" in path or "\0" in path
            or any(p in ("", ".", "..") for p in parts)):
        raise UsageError(f"refusing unsafe name {_shown(path)} from the source: it would land outside the destination")
    if _is_escaped(path):
        raise UsageError(f"refusing the name {_shown(path)} from the source: not valid UTF-8")
    return path
