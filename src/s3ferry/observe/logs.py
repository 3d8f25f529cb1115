"""Log output: readable lines by default, JSON lines with ``--log-format json``.

Nothing reaches stderr unscrubbed, whatever logged it and at any verbosity:
the formatters here pass the whole record -- message, exception text, stack
-- through :func:`s3ferry.core.redaction.scrub` (secrets masked) and, for text,
:func:`s3ferry.core.redaction.printable` (control characters escaped, so a file
name holding ``ESC [31m`` or a newline shows as ``\\x1b[31m`` / ``\\n``).
:func:`setup` puts them on the ``s3ferry`` logger and on a root handler that
is always there (so botocore, aiobotocore, asyncssh, asyncio, aiohttp and
``warnings`` records get them too, never Python's bare ``lastResort``), and
replaces the exception hooks (main thread, other threads, "exception
ignored") with scrubbing ones. s3/sftp/ftp/file URLs have no query string:
their ``?`` is a character of a name and is kept.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from types import TracebackType
from typing import TextIO

from s3ferry.core.redaction import json_printable, printable, scrub

__all__ = ["FORMAT", "JsonFormatter", "SafeFormatter", "final_error", "safe_traceback", "scrub", "setup"]

#: what :func:`logging.basicConfig` prints, as ``--debug`` always showed third-party records
ROOT_FORMAT = "%(levelname)s:%(name)s:%(message)s"


def _details(formatter: logging.Formatter, record: logging.LogRecord) -> tuple[str, str]:
    """The record's exception text and stack, scrubbed (not escaped)."""
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    stack = formatter.formatStack(record.stack_info) if record.stack_info else ""
    return scrub(record.exc_text or ""), scrub(stack)


class SafeFormatter(logging.Formatter):
    """A text formatter whose lines are scrubbed; the message is kept on one line (its control characters,
    newlines included, escaped: a name cannot forge a log line), a traceback keeps its own line breaks."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = printable(scrub(record.getMessage()))
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        details = "\n".join(part for part in _details(self, record) if part)
        return f"{text}\n{printable(details, keep_newlines=True)}" if details else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the exception's type and traceback if any.

    Strings are scrubbed before they are encoded; json.dumps escapes the C0
    control characters and :func:`json_printable` the rest.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key in ("exit_code", "flow", "path"):
            if hasattr(record, key):
                value = getattr(record, key)
                entry[key] = scrub(value) if isinstance(value, str) else value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        exc_text, stack = _details(self, record)
        if exc_text:
            entry["traceback"] = exc_text
        if stack:
            entry["stack"] = stack
        return json_printable(json.dumps(entry, ensure_ascii=False))


class _SafeStderr(logging.StreamHandler[TextIO]):
    """The handlers :func:`setup` installs (told apart from anyone else's when it runs again)."""

    def handleError(self, record: logging.LogRecord) -> None:
        """A record that could not be written (a library passing bad format arguments, say): reported as
        logging does, "--- Logging error ---" and the traceback, but scrubbed -- the arguments may be secret."""
        exc = sys.exc_info()[1]
        if exc is None or not logging.raiseExceptions:
            return
        _write(f"--- Logging error ---\n{safe_traceback(exc)}"
               f"{printable(scrub(f'Message: {record.msg!r}, arguments: {record.args!r}'))}\n")


def _handler(fmt: str, text_format: str, level: int = logging.NOTSET) -> logging.Handler:
    handler = _SafeStderr(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(JsonFormatter() if fmt == "json" else SafeFormatter(text_format))
    return handler


FORMAT = "text"


def setup(*, debug: bool = False, verbose: int = 0, quiet: bool = False, fmt: str = "text") -> None:
    """Configure logging for a command: stderr, scrubbed, text or JSON.

    The ``s3ferry`` logger: WARNING, -v INFO, -vv/--debug DEBUG, -q errors only.
    Every other logger reaches the root handler: WARNING and above (errors
    only with -q), everything with --debug.
    """
    global FORMAT
    FORMAT = fmt
    ours = logging.getLogger("s3ferry")
    ours.handlers[:] = [_handler(fmt, "s3ferry: %(message)s")]
    level = logging.DEBUG if debug or verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    ours.setLevel(logging.ERROR if quiet and not debug else level)
    ours.propagate = False
    root = logging.getLogger()
    third_party = _handler(fmt, ROOT_FORMAT)
    if not (debug or verbose >= 2):
        third_party.addFilter(_drop_transport_noise)
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _SafeStderr)] + [third_party]
    root.setLevel(logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING)
    # for a logger that stops propagation without a handler of its own
    logging.lastResort = _handler(fmt, "%(message)s", logging.WARNING)
    logging.captureWarnings(True)  # warnings.warn(...) as records of "py.warnings", not raw stderr writes
    install_hooks()


#: asyncio repeats this warning for every write queued after the peer closed the connection (asyncssh
#: keeps writing until it notices); the lost connection itself is reported once, as the command's error.
_TRANSPORT_NOISE = frozenset({"socket.send() raised exception."})


def _drop_transport_noise(record: logging.LogRecord) -> bool:
    return not (record.name == "asyncio" and (record.msg in _TRANSPORT_NOISE or _orphaned_tornado_timeout(record)))


def _orphaned_tornado_timeout(record: logging.LogRecord) -> bool:
    """Dask's client at shutdown: its batched sender waits on a tornado ``Event.wait(timeout)``; closing the
    client cancels the waiter, and the timeout still fires later on the orphaned future (tornado's
    ``with_timeout`` sets ``TimeoutError("Timeout")``), which asyncio reports when the future is collected.
    Nothing of ours awaits such a future: it is noise beside the command's own one-line result."""
    exc = record.exc_info[1] if record.exc_info else None
    return (isinstance(record.msg, str) and record.msg.startswith("Future exception was never retrieved")
            and isinstance(exc, TimeoutError) and exc.args == ("Timeout",))


def safe_traceback(exc: BaseException) -> str:
    """``exc``'s traceback as Python prints it, scrubbed, control characters escaped but for line breaks."""
    return _safe_lines(traceback.format_exception(exc))


def _safe_lines(lines: list[str]) -> str:
    return printable(scrub("".join(lines)), keep_newlines=True)


def install_hooks() -> None:
    """Uncaught exceptions in the main thread and in other threads, and "Exception ignored in ..." (raised
    in a __del__ or a finalizer): printed as Python would, but scrubbed and escaped."""
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    sys.unraisablehook = _unraisablehook


def _write(text: str) -> None:
    if sys.stderr is not None:  # pythonw, or stderr closed at shutdown: nowhere to write
        sys.stderr.write(text)
        sys.stderr.flush()


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    _write(_safe_lines(traceback.format_exception(exc_type, exc, tb)))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # as threading's own hook: a thread calling sys.exit() is no error
        return
    name = args.thread.name if args.thread is not None else threading.get_ident()
    _write(_safe_lines([f"Exception in thread {name}:\n",
                        *traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)]))


def _unraisablehook(unraisable: sys.UnraisableHookArgs) -> None:
    head = unraisable.err_msg or "Exception ignored in"
    if unraisable.object is not None:
        try:
            head = f"{head}: {unraisable.object!r}"
        except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not hide the exception itself
            head = f"{head}: <object repr() failed: {type(exc).__name__}>"
    lines = [f"{head}\n"]
    if unraisable.exc_type is not None:
        lines += traceback.format_exception(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
    _write(_safe_lines(lines))


def final_error(message: str, exit_code: int) -> str:
    """The last line printed for a failure, in the configured format: scrubbed, on one line."""
    if FORMAT == "json":
        return json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "error",
                           "logger": "s3ferry", "message": scrub(message), "exit_code": exit_code})
    return printable(scrub(f"s3ferry: {message}"))
