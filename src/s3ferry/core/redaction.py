"""What may be shown: secrets masked (:func:`scrub`), control characters made visible (:func:`printable`).

The one place that knows what is secret. Two kinds of knowledge:

* pattern rules: URL passwords and query strings (pre-signed signatures),
  ``secret=``-style words, and the headers and parameters that carry keys or
  signatures wherever botocore, aiohttp or a traceback print them
  (``x-amz-server-side-encryption-customer-key``, ``SSECustomerKey``,
  ``Authorization``, ``X-Amz-Signature``, ``X-Amz-Credential``,
  ``X-Amz-Security-Token``, ...), as ``name=value``, ``name: value`` or a
  dict's ``'name': b'value'``;
* secret values: :func:`register_secret` is called by whatever reads a secret
  (the SSE-C key files, the SFTP/FTP passwords), and every later occurrence of
  it, in any of the forms it gets printed in, is masked whatever the
  surrounding text looks like.

No I/O, nothing heavy imported: :mod:`s3ferry.core.options` registers secrets as it
reads them, and every output path (the log formatters, the CLI's error and
summary lines, the exception hooks) runs its text through here.
"""

from __future__ import annotations

import functools
import re
import threading
from urllib.parse import quote

MASK = "***"
#: Shorter secret values are masked by the pattern rules only: masking every
#: "abc" of the output would garble it while hiding next to nothing.
MIN_SECRET_LENGTH = 4

_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None
_registering = threading.Lock()  # passwords are read in worker threads (asyncio.to_thread)

# Patterns are compiled on first use (:func:`_compiled`): every start, even `s3ferry --help`, imports this module.
_URL_USERINFO = r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+):[^@\s/]*@"
# A "?" in an s3/sftp/ftp/file URL is a character of a literal name (urls.py), not a query string: it stays.
_URL_QUERY = r"(?i)(\b(?!(?:s3|sftp|ftps?|file)://)[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#]+)\?[^\s\"']*"
#: names whose value is secret: S3 headers and botocore parameters, query parameters of pre-signed URLs,
#: AWS credential settings, and the generic words (the longer names first: alternation takes the first match)
_SECRET_NAMES = "|".join([
    r"x-amz-(?:copy-source-)?server-side-encryption-customer-key(?:-md5)?",
    r"(?:copy-?source-?)?sse-?c(?:ustomer)?-?key(?:-?md5)?",
    r"x-amz-security-token", r"x-amz-signature", r"x-amz-credential",
    r"(?:proxy-)?authorization",
    r"aws_secret_access_key", r"aws_session_token", r"secret_?access_?key", r"session_?token",
    r"password", r"passwd", r"secret", r"token", r"signature", r"credential",
])
_QUOTED = r"""b?'(?:[^'\\\n]|\\.)*'|b?"(?:[^"\\\n]|\\.)*\""""
#: name, the quote that may close it ('SSECustomerKey': ...), separator, then a quoted value (its quotes and
#: a bytes prefix kept) or a bare word
_NAMED_VALUE = (
    rf"(?i)(?<!\w)(?P<name>{_SECRET_NAMES})(?P<close>['\"]?)(?P<sep>\s*[=:]\s*)"
    rf"(?:(?P<quoted>{_QUOTED})|(?P<bare>[^\s,;&\"'<>(){{}}\[\]]+))"
)
#: an Authorization header written out unquoted ("Authorization: AWS4-HMAC-SHA256 Credential=..., Signature=...")
#: holds spaces: its whole value to the end of the line is the secret
_AUTHORIZATION_LINE = r"(?im)(?<![\w-])((?:proxy-)?authorization\s*:\s*)(?!['\"]|b['\"]|\*\*\*)[^\r\n]+"
#: credentials in an XML response body (botocore's DEBUG dump of an STS / IMDS answer)
_XML_SECRET = r"(?i)(<(SecretAccessKey|SessionToken|Token|Password)>)[^<]*(</\2>)"


def register_secret(secret: str | bytes) -> None:
    """Mask ``secret`` from now on, in the forms it may be printed in (see :func:`forms_of`)."""
    global _secret_re
    if len(secret) < MIN_SECRET_LENGTH:
        return
    forms = {form for form in forms_of(secret) if len(form) >= MIN_SECRET_LENGTH}
    with _registering:
        if forms <= _secrets:
            return
        _secrets.update(forms)
        # the longest first: a form that contains another is masked whole
        _secret_re = re.compile("|".join(re.escape(form) for form in sorted(_secrets, key=len, reverse=True)))


def forms_of(secret: str | bytes) -> set[str]:
    """The texts a secret shows up as in logs and tracebacks.

    Text: itself, its ``repr()`` escapes (a password with a quote or a control
    character inside a dict or an exception's args) and its URL-quoted form.
    Bytes (an SSE-C key): the base64 and the base64 of the MD5 that botocore
    sends as headers and logs, hex, the escapes of ``repr(bytes)`` (also
    doubled, as a repr inside a repr shows them) and the bytes read as Latin-1.
    """
    if isinstance(secret, str):
        return {secret, repr(secret)[1:-1], quote(secret, safe="")}
    import base64
    import hashlib

    b64 = base64.b64encode(secret).decode()
    md5 = base64.b64encode(hashlib.md5(secret, usedforsecurity=False).digest()).decode()
    escaped = repr(secret)[2:-1]
    return ({b64, quote(b64, safe=""), md5, quote(md5, safe=""), secret.hex(), escaped, escaped.replace("\\", "\\\\")}
            | forms_of(secret.decode("latin-1")))


def scrub(text: str) -> str:
    """``text`` with every registered secret and everything the pattern rules know as secret masked."""
    if _secret_re is not None:
        text = _secret_re.sub(MASK, text)
    text = _compiled(_URL_USERINFO).sub(rf"\1:{MASK}@", text)
    text = _compiled(_URL_QUERY).sub(rf"\1?{MASK}", text)
    text = _compiled(_AUTHORIZATION_LINE).sub(rf"\1{MASK}", text)
    text = _compiled(_NAMED_VALUE).sub(_mask_value, text)
    return _compiled(_XML_SECRET).sub(rf"\1{MASK}\3", text)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _mask_value(match: re.Match[str]) -> str:
    quoted = match["quoted"]
    if quoted is None:
        value = MASK
    else:
        opening = quoted[: 2 if quoted.startswith("b") else 1]
        value = f"{opening}{MASK}{quoted[-1]}"
    return f"{match['name']}{match['close']}{match['sep']}{value}"


# C0 controls (ESC starts every terminal escape sequence), DEL, C1 controls (U+009B is a one-character CSI),
# the Unicode line and paragraph separators, and the bidirectional overrides that make text display in
# another order than it is stored.
_OTHER_CONTROLS = r"\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROL = rf"[\x00-\x1f{_OTHER_CONTROLS}]"
_CONTROL_BUT_NEWLINE = rf"[\x00-\x09\x0b-\x1f{_OTHER_CONTROLS}]"
_JSON_UNESCAPED = rf"[{_OTHER_CONTROLS}]"
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``, ``\\n``, ``\\u202e``): visible, inert.

    For names that came from the remote side (file names, S3 keys) on their
    way to a terminal or a log. ``keep_newlines`` keeps the line breaks of a
    multi-line text (a traceback) and escapes the rest.
    """
    pattern = _compiled(_CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL)
    if pattern.search(text) is None:  # the usual case: no copy
        return text
    return pattern.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def json_printable(dumped: str) -> str:
    """JSON text (``json.dumps(..., ensure_ascii=False)``) with what that leaves raw -- DEL, C1 controls, line
    separators, bidi overrides -- written as ``\\uXXXX`` escapes: the same JSON value, inert on a terminal.

    Safe on the whole document: these characters can only occur inside its strings.
    """
    pattern = _compiled(_JSON_UNESCAPED)
    if pattern.search(dumped) is None:
        return dumped
    return pattern.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped)
