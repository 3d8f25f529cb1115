"""Log output: readable lines by default, JSON lines with ``--log-format json``.

Every record passes through :func:`scrub` on its way out, so a URL that
slipped into a message (an exception text quoting an endpoint, say) loses its
``user:password@`` and its query string (pre-signed signatures) whatever
code logged it. s3/sftp/ftp/file URLs have no query string: their ``?`` is a
character of a name and is kept.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+):[^@\s/]*@")
# A "?" in an s3/sftp/ftp/file URL is part of a literal name (urls.py), not a query string: it stays.
_QUERY = re.compile(r"(\b(?!(?:s3|sftp|ftps?|file)://)[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#]+)\?[^\s\"']*", re.I)
_SECRET_WORDS = re.compile(
    r"(?i)\b(password|passwd|secret|token|signature|credential|x-amz-security-token|sse-?c-?key)"
    r"(\s*[=:]\s*)([^\s,;&\"']+)"
)


def scrub(text: str) -> str:
    """``text`` with URL passwords, URL query strings and ``secret=...`` values masked."""
    text = _USERINFO.sub(r"\1:***@", text)
    text = _QUERY.sub(r"\1?***", text)
    return _SECRET_WORDS.sub(r"\1\2***", text)


class Scrubbing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception type, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("exit_code", "flow", "path"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


FORMAT = "text"


def setup(*, debug: bool = False, verbose: int = 0, quiet: bool = False, fmt: str = "text") -> None:
    """Configure the ``s3ferry`` logger: stderr, scrubbed, text or JSON; -v INFO, -vv/--debug DEBUG, -q errors."""
    global FORMAT
    FORMAT = fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Scrubbing())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("s3ferry: %(message)s"))
    root = logging.getLogger("s3ferry")
    root.handlers[:] = [handler]
    level = logging.DEBUG if debug or verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    root.setLevel(logging.ERROR if quiet and not debug else level)
    root.propagate = False
    if debug:
        logging.basicConfig(level=logging.DEBUG)
        for other in logging.getLogger().handlers:
            other.addFilter(Scrubbing())


def final_error(message: str, exit_code: int) -> str:
    """The last line printed for a failure, in the configured format."""
    if FORMAT == "json":
        return json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "error",
                           "logger": "s3ferry", "message": scrub(message), "exit_code": exit_code})
    return scrub(f"s3ferry: {message}")
