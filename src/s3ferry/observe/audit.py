"""The audit trail: every delivery appended to a hash-chained JSON-lines log.

One JSON object per line (an :class:`Entry`): ``seq`` (1, 2, ...), ``time`` (UTC),
``op`` (cp, pull, push, serve), ``flow``, ``source``, ``destination`` (secrets
masked), ``size``, ``checksum``, ``verified`` and ``verification`` (what it was
verified against, or why it was not), ``etag``, ``version_id``, ``prev`` (the
previous entry's ``hash``; the first entry's is :data:`GENESIS`) and ``hash``:
the SHA-256 of the entry's canonical JSON (sorted keys, no spaces) without
``hash``. Editing an entry breaks its hash; removing or reordering entries
breaks ``seq`` and ``prev``. Cutting the tail off cannot be seen from the chain
alone: :func:`verify` reports the head hash and the entry count so that an
operator can anchor them elsewhere.

:meth:`AuditLog.append_many` holds an exclusive ``flock`` on the log while it
reads the last entry and writes the next ones (flushed and fsynced), so
processes that append at once keep one chain. Blocking file I/O: coroutines use
:func:`record_delivery`, which runs it in a thread and writes the deliveries
that finish while one write is under way together, in the next (a group
commit: a tree of small files finishes dozens a second, and one fsync each,
one after another under the lock, held them back: 300 files of 64 KiB across
50 ms took 0.7 s longer than with the audit trail off).
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import hashlib
import json
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from s3ferry.core.errors import IntegrityError, S3FerryError
from s3ferry.core.redaction import scrub

Op = Literal["cp", "pull", "push", "serve"]
OPS: tuple[str, ...] = ("cp", "pull", "push", "serve")
GENESIS = "0" * 64
FILE_NAME = "audit.jsonl"
#: ``audit_log = "off"``: record nothing
OFF = "off"

#: what the deliveries of the running task belong to: (op, flow name or None); a job sets it for its run
CONTEXT: contextvars.ContextVar[tuple[Op, str | None]] = contextvars.ContextVar("s3ferry_audit", default=("cp", None))


class AuditError(S3FerryError):
    """The audit log cannot be written or read (the delivery itself may be complete)."""


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    value: str


@dataclass(frozen=True)
class Delivery:
    """One delivery, as its maker knows it: what :meth:`AuditLog.append` chains into an :class:`Entry`."""

    op: Op
    flow: str | None
    source: str
    destination: str
    size: int
    checksum: Checksum | None
    #: checked against an independent check (``verification`` says which), or not (it says why)
    verified: bool
    verification: str
    etag: str | None = None
    version_id: str | None = None


@dataclass(frozen=True)
class Entry:
    """One line of the log."""

    seq: int
    time: str
    op: str
    flow: str | None
    source: str
    destination: str
    size: int
    checksum: Checksum | None
    verified: bool
    verification: str
    etag: str | None
    version_id: str | None
    prev: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return canonical(self.as_dict())

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.time)


def canonical(fields: dict[str, Any]) -> str:
    """The JSON text that is hashed (and written): sorted keys, no spaces, non-ASCII escaped."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def entry_hash(fields: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``fields`` without ``hash``."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def chain(delivery: Delivery, seq: int, prev: str, time: str) -> Entry:
    """The entry that records ``delivery`` after the entry numbered ``seq - 1`` whose hash is ``prev``."""
    fields = {**asdict(delivery), "seq": seq, "time": time, "prev": prev, "source": scrub(delivery.source),
              "destination": scrub(delivery.destination), "verification": scrub(delivery.verification)}
    return _entry({**fields, "hash": entry_hash(fields)})


def _entry(fields: dict[str, Any]) -> Entry:
    checksum = fields.get("checksum")
    return Entry(**{**fields, "checksum": Checksum(**checksum) if checksum is not None else None})


def parse_line(text: str) -> Entry:
    """An entry from its line (ValueError, KeyError or TypeError if it is not one)."""
    fields = json.loads(text)
    if not isinstance(fields, dict):
        raise ValueError("not a JSON object")
    entry = _entry(fields)
    if not isinstance(entry.seq, int) or not isinstance(entry.hash, str):
        raise ValueError("seq or hash of the wrong type")
    return entry


class AuditLog:
    """The log at ``path`` (created with its folder, mode 0600, on the first append)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, delivery: Delivery) -> Entry:
        """Chain ``delivery`` onto the last entry and write it, under an exclusive lock (blocking I/O)."""
        return self.append_many([delivery])[0]

    def append_many(self, deliveries: Sequence[Delivery]) -> list[Entry]:
        """Chain ``deliveries`` in order onto the last entry and write them with one write and one fsync,
        under an exclusive lock (blocking I/O)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the audit log {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the close
            seq, prev = self._head(fd)
            now, entries = _utc_now(), []
            for delivery in deliveries:
                entry = chain(delivery, seq + 1, prev, now)
                seq, prev = entry.seq, entry.hash
                entries.append(entry)
            _write_all(fd, "".join(entry.line() + "\n" for entry in entries).encode())
            os.fsync(fd)
            return entries
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {self.path}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    def _head(self, fd: int) -> tuple[int, str]:
        """The last entry's seq and hash ((0, GENESIS) for an empty log); a damaged last line is refused."""
        last = _last_line(fd)
        if last is None:
            return 0, GENESIS
        try:
            entry = parse_line(last.decode())
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(f"the last line of the audit log {self.path} is not an entry ({exc}): check it with "
                             "`s3ferry audit verify`") from None
        return entry.seq, entry.hash

    def entries(self) -> Iterator[tuple[int, str]]:
        """Each line of the log with its number (1-based), without its line end; none if there is no log."""
        try:
            with self.path.open("r", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
                for number, text in enumerate(f, 1):
                    yield number, text.rstrip("\n")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AuditError(f"cannot read the audit log {self.path}: {exc.strerror}") from exc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _last_line(fd: int, block: int = 4096) -> bytes | None:
    """The last non-empty line of the file (without its line end), read backwards from the end."""
    end = os.lseek(fd, 0, os.SEEK_END)
    tail = b""
    position = end
    while position > 0:
        start = max(0, position - block)
        tail = os.pread(fd, position - start, start) + tail
        position = start
        stripped = tail.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    stripped = tail.rstrip(b"\n")
    return stripped or None


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify` found: the entries read, the head, and the first break (None: intact)."""

    count: int
    head: str
    broken_line: int | None = None
    problem: str | None = None
    #: the position of the entry ``--expect-head`` named (None: not asked, or not found)
    anchored_at: int | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


def verify(log: AuditLog, expect_head: str | None = None) -> ChainReport:
    """Recompute the chain of ``log``; stop at the first line that breaks it."""
    seq, prev, anchored = 0, GENESIS, None
    want = expect_head.lower() if expect_head else None
    for number, text in log.entries():
        problem = _check(number, text, seq, prev)
        if problem is not None:
            return ChainReport(seq, prev, number, problem)
        entry = parse_line(text)
        seq, prev = entry.seq, entry.hash
        if want is not None and anchored is None and entry.hash.startswith(want):
            anchored = number
    if want is not None and anchored is None:
        return ChainReport(seq, prev, None, f"the expected head {expect_head} is not in the chain: entries were "
                                            "cut off the end or the log was rewritten")
    return ChainReport(seq, prev, anchored_at=anchored)


def _check(number: int, text: str, seq: int, prev: str) -> str | None:
    """Why line ``number`` does not follow the entry ``seq`` whose hash is ``prev`` (None: it does)."""
    try:
        entry = parse_line(text)
        fields = json.loads(text)
    except (ValueError, KeyError, TypeError) as exc:
        return f"line {number} is not an audit entry ({exc}): edited or damaged"
    if entry_hash(fields) != entry.hash:
        return f"line {number} (seq {entry.seq}) was edited: its hash does not match its content"
    if entry.seq != seq + 1:
        if seq == 0:
            return f"line {number} holds seq {entry.seq}, not 1: the first entries were removed or reordered"
        return f"line {number} holds seq {entry.seq} after seq {seq}: an entry was removed or reordered"
    if entry.prev != prev:
        return (f"line {number} (seq {entry.seq}) does not follow the entry before it (prev is not its hash): "
                "an entry was removed, reordered or rewritten")
    return None


@dataclass(frozen=True)
class Selection:
    """Which entries ``audit show`` lists (every field None or empty: all of them)."""

    flow: str | None = None
    op: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    grep: str | None = None  #: a substring of the source or the destination

    def wants(self, entry: Entry) -> bool:
        if self.flow is not None and entry.flow != self.flow:
            return False
        if self.op is not None and entry.op != self.op:
            return False
        if self.since is not None and entry.when < self.since:
            return False
        if self.until is not None and entry.when > self.until:
            return False
        return self.grep is None or self.grep in entry.source or self.grep in entry.destination


def select(log: AuditLog, selection: Selection, on_bad_line: Callable[[int, str], None]) -> Iterator[Entry]:
    """The entries of ``log`` that ``selection`` wants, in log order; a line that is no entry is handed to
    ``on_bad_line`` (its number and why) and passed over (``audit verify`` is what judges the chain)."""
    for number, text in log.entries():
        try:
            entry = parse_line(text)
            entry.when  # noqa: B018 - a time that cannot be read makes the line no entry
        except (ValueError, KeyError, TypeError) as exc:
            on_bad_line(number, str(exc))
            continue
        if selection.wants(entry):
            yield entry


def resolve(setting: str | None, state_dir: Path) -> AuditLog | None:
    """The log an ``audit_log`` setting names: None -> ``<state_dir>/audit.jsonl``, ``off`` -> none."""
    if setting == OFF:
        return None
    return AuditLog(Path(setting).expanduser() if setting else state_dir / FILE_NAME)


async def record_delivery(log: AuditLog | None, delivery: Delivery) -> Entry | None:
    """Append ``delivery`` to ``log`` (nothing if the audit trail is off): what ``cp``, ``pull``, ``push``
    and ``serve`` call once a delivery is complete. Returns when the entry is on disk (fsynced); the file
    work runs in a thread, for the deliveries finishing meanwhile at once (see the module docstring)."""
    if log is None:
        return None
    appenders = _APPENDERS.setdefault(asyncio.get_running_loop(), {})
    appender = appenders.get(log.path)
    if appender is None:
        appender = appenders[log.path] = _Appender(log)
    return await appender.append(delivery)


class _Appender:
    """The deliveries waiting to be written to one log by one event loop, and the task writing them."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self.waiting: list[tuple[Delivery, asyncio.Future[Entry]]] = []
        self.writer: asyncio.Task[None] | None = None

    async def append(self, delivery: Delivery) -> Entry:
        done: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self.waiting.append((delivery, done))
        if self.writer is None:
            self.writer = asyncio.ensure_future(self._write())
        return await done

    async def _write(self) -> None:
        batch: list[tuple[Delivery, asyncio.Future[Entry]]] = []
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                try:
                    entries = await asyncio.to_thread(self.log.append_many, [delivery for delivery, _ in batch])
                except Exception as exc:  # noqa: BLE001 - an AuditError (else a bug): each caller raises it
                    for _, done in batch:
                        if not done.done():  # a caller cancelled meanwhile: its entry's fate is not awaited
                            done.set_exception(exc)
                    continue
                for (_, done), entry in zip(batch, entries, strict=True):
                    if not done.done():
                        done.set_result(entry)
            batch = []
        except BaseException:  # cancelled with the loop: no caller is left waiting
            for _, done in batch + self.waiting:
                done.cancel()
            raise
        finally:
            self.writer = None


#: per event loop (the CLI runs one per command, ``serve`` one for its life), per log
_APPENDERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, _Appender]] = weakref.WeakKeyDictionary()


def broken(report: ChainReport, log: AuditLog) -> IntegrityError:
    """The one-line error of a broken chain (exit 3)."""
    return IntegrityError(f"audit log {log.path}: {report.problem}")
