"""The resume journal: a small SQLite database of unfinished transfers.

One row per transfer (source, destination, the source's fingerprint, the
options that shape parts, the upload id) and one row per stored part (size,
ETag, checksum). Metadata only, never payload. Credentials never appear:
locations are stored in their display form, which carries none.

Part records are buffered and committed at most every ``flush_interval``
seconds (and at the end, on interrupt, on failure), with 1 KiB pages: a
commit per part would write more to local disk than the zero-disk budget
allows (measured: ~30 KiB/s of journal writes at one commit a second with
4 KiB pages). A SIGKILL can therefore lose the last seconds of records;
those parts are still in S3 and are adopted on resume after their bytes are
checked against the source (see :mod:`s3ferry.resume`). Each commit is one SQLite transaction, so a
crash at any instant leaves the database consistent.

It also keeps what the recurring jobs must not forget: pull's record of an
upload verified but not yet archived (``pulled``: healing after a crash needs
proof, not a guess from metadata), push's ledger of deliveries
(``delivered``: the object tags are a cache of it that concurrent flows may
overwrite) and push's retry queue.

A damaged journal is named with what to do (:class:`JournalError`); a plain
copy goes on without resume (:func:`open_journal`), a job that needs its
records stops.

All SQLite calls run in a worker thread: none blocks the event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from s3ferry.core.errors import JournalError, UsageError, UserError

log = logging.getLogger("s3ferry")

SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL,
    etag TEXT,
    part_size INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (source, destination)
);
CREATE TABLE IF NOT EXISTS parts (
    transfer_id INTEGER NOT NULL REFERENCES transfers(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    digest TEXT,
    PRIMARY KEY (transfer_id, number)
);
CREATE TABLE IF NOT EXISTS pulled (
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL,
    checksum_algorithm TEXT NOT NULL,
    part_size INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    etag TEXT NOT NULL,
    uploaded REAL NOT NULL,
    PRIMARY KEY (source, destination)
);
CREATE TABLE IF NOT EXISTS delivered (
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    delivered REAL NOT NULL,
    PRIMARY KEY (source, destination, key)
);
CREATE TABLE IF NOT EXISTS push_queue (
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (source, destination, key)
);
"""


def default_state_dir() -> Path:
    """``S3FERRY_STATE_DIR``, else ``$XDG_STATE_HOME/s3ferry``, else ``~/.local/state/s3ferry``."""
    if os.environ.get("S3FERRY_STATE_DIR"):
        return Path(os.environ["S3FERRY_STATE_DIR"]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(base) / "s3ferry"


@dataclass(frozen=True)
class PartRecord:
    number: int
    size: int
    etag: str
    digest: str | None  # base64 checksum of the part, None with --checksum none


@dataclass(frozen=True)
class QueuedPush:
    """An object whose delivery failed, waiting for ``push --retry-failed``."""

    key: str
    etag: str  # the version that failed
    attempts: int
    last_error: str
    updated: float


@dataclass(frozen=True)
class PulledRecord:
    """A file pull uploaded and verified, not yet archived: what a later run must prove before it heals."""

    source: str  # the file
    destination: str  # the object
    size: int
    mtime: float | None
    checksum_algorithm: str
    part_size: int
    checksum: str  # of the bytes read from the file, in the algorithm's whole-object form
    etag: str  # the object written
    uploaded: float


@dataclass(frozen=True)
class TransferRecord:
    id: int
    source: str
    destination: str
    size: int
    mtime: float | None
    etag: str | None
    part_size: int
    checksum: str
    upload_id: str
    created: float
    parts: tuple[PartRecord, ...] = ()


class LockedError(UserError):
    """Another process holds the lock (a job that finds its lock held is skipped, not failed)."""


def try_flock(path: Path) -> int | None:
    """An exclusive, non-blocking ``flock`` on ``path`` (created as needed): the open fd, or None if held.

    Closing the fd releases it, and so does the kernel when the process ends,
    however it ends: a SIGKILL never leaves a stale lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class PairLock:
    """An exclusive, cross-process lock on one (source, destination) pair.

    ``flock`` on a file under ``<state dir>/locks``: released by the kernel
    when the process ends, however it ends, so a SIGKILL never leaves it stale.
    ``kind`` separates locks of the same pair: a copy of one file, a pull or
    push job, the object tags of one bucket.
    """

    def __init__(self, state_dir: Path, source: str, destination: str, kind: str = "") -> None:
        digest = hashlib.sha256(f"{kind}\0{source}\0{destination}".encode()).hexdigest()[:32]
        self.path = state_dir / "locks" / f"{kind + '-' if kind else ''}{digest}.lock"
        self._source, self._destination, self._kind = source, destination, kind
        self._fd: int | None = None

    def _acquire(self) -> None:
        self._fd = try_flock(self.path)
        if self._fd is None:
            doing = f"running `{self._kind}` of" if self._kind else "copying"
            raise LockedError(f"another s3ferry process is {doing} {self._source} to {self._destination} "
                              f"right now (lock {self.path})")

    async def __aenter__(self) -> PairLock:
        try:
            await asyncio.to_thread(self._acquire)
        except OSError as exc:
            raise UsageError(f"cannot create the lock {self.path}: {exc.strerror}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


class TagLock:
    """A blocking, cross-process lock around a short critical section (push's tag read-modify-write).

    The asyncio lock orders this process's own tasks; the ``flock`` (taken in
    a thread, as it blocks) orders processes. Released by the kernel if the
    process dies, like every lock here.
    """

    def __init__(self, local: asyncio.Lock, path: Path) -> None:
        self._local, self.path = local, path
        self._fd: int | None = None

    def _acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd

    async def __aenter__(self) -> TagLock:
        await self._local.acquire()
        try:
            await asyncio.to_thread(self._acquire)
        except BaseException:
            self._local.release()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._local.release()


class Journal:
    """Thread-confined SQLite access behind async methods."""

    def __init__(self, state_dir: Path | None = None, flush_interval: float = 5.0) -> None:
        self.state_dir = state_dir or default_state_dir()
        self.path = self.state_dir / "journal.sqlite3"
        self.flush_interval = flush_interval
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[int, PartRecord]] = []
        self._last_flush = 0.0
        self._lock = asyncio.Lock()

    #: False for :class:`NoJournal`: nothing is recorded, so nothing may be kept for resume
    working = True

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            except OSError as exc:
                raise UsageError(f"cannot open the journal {self.path}: {exc}") from exc
            try:
                db.execute("PRAGMA page_size=1024")  # only takes effect when the file is created
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA foreign_keys=ON")
                db.executescript(SCHEMA)
                db.execute("SELECT count(*) FROM transfers").fetchone()  # reads a page: damage shows here
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        async with self._lock:  # one thread touches the connection at a time
            try:
                return await asyncio.to_thread(fn, *args)
            except sqlite3.DatabaseError as exc:
                raise self.damaged(exc) from exc
            except sqlite3.OperationalError as exc:  # locked for longer than the timeout, disk full, ...
                raise UsageError(f"cannot use the journal {self.path}: {exc}") from exc

    def damaged(self, exc: BaseException) -> JournalError:
        return JournalError(
            f"the journal {self.path} is damaged ({exc}); move it aside to start a new one: "
            f"mv '{self.path}' '{self.path}.damaged' (it holds resume points, pull and push records and the push "
            "retry queue; they are lost)")

    async def check(self) -> None:
        """Open the database now: a damaged journal raises :class:`JournalError` here, not mid-transfer."""
        await self._run(self._connect)

    def lock(self, source: str, destination: str, kind: str = "") -> PairLock:
        return PairLock(self.state_dir, source, destination, kind)

    # -- queries -------------------------------------------------------------

    def _find(self, source: str, destination: str) -> TransferRecord | None:
        db = self._connect()
        row = db.execute("SELECT * FROM transfers WHERE source=? AND destination=?", (source, destination)).fetchone()
        return self._with_parts(db, row) if row else None

    def _with_parts(self, db: sqlite3.Connection, row: Sequence[object]) -> TransferRecord:
        parts = db.execute("SELECT number, size, etag, digest FROM parts WHERE transfer_id=? ORDER BY number",
                           (row[0],)).fetchall()
        return TransferRecord(*row, parts=tuple(PartRecord(*p) for p in parts))  # type: ignore[arg-type]

    async def find(self, source: str, destination: str) -> TransferRecord | None:
        return await self._run(self._find, source, destination)  # type: ignore[no-any-return]

    def _by_upload(self, upload_ids: Sequence[str]) -> dict[str, TransferRecord]:
        db = self._connect()
        found = {}
        for uid in upload_ids:
            row = db.execute("SELECT * FROM transfers WHERE upload_id=?", (uid,)).fetchone()
            if row:
                found[uid] = self._with_parts(db, row)
        return found

    async def by_upload(self, upload_ids: Sequence[str]) -> dict[str, TransferRecord]:
        return await self._run(self._by_upload, list(upload_ids))  # type: ignore[no-any-return]

    # -- changes -------------------------------------------------------------

    def _start(self, rec: TransferRecord) -> int:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM transfers WHERE source=? AND destination=?", (rec.source, rec.destination))
            cur = db.execute(
                "INSERT INTO transfers (source, destination, size, mtime, etag, part_size, checksum, upload_id, created)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (rec.source, rec.destination, rec.size, rec.mtime, rec.etag, rec.part_size, rec.checksum,
                 rec.upload_id, rec.created),
            )
            new_id = int(cur.lastrowid or 0)
            db.executemany("INSERT INTO parts VALUES (?,?,?,?,?)",
                           [(new_id, p.number, p.size, p.etag, p.digest) for p in rec.parts])
        return new_id

    async def start(self, rec: TransferRecord) -> int:
        """Record a transfer (replacing any earlier one for the same pair); returns its id."""
        return await self._run(self._start, rec)  # type: ignore[no-any-return]

    def _set_upload(self, transfer_id: int, upload_id: str) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE transfers SET upload_id=? WHERE id=?", (upload_id, transfer_id))

    async def set_upload(self, transfer_id: int, upload_id: str) -> None:
        """Fill in the upload id of a transfer started with an empty one."""
        await self._run(self._set_upload, transfer_id, upload_id)

    async def record_part(self, transfer_id: int, part: PartRecord) -> None:
        self._pending.append((transfer_id, part))
        if time.monotonic() - self._last_flush >= self.flush_interval:
            await self.flush()

    def _flush(self, pending: list[tuple[int, PartRecord]]) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO parts VALUES (?,?,?,?,?)",
                           [(tid, p.number, p.size, p.etag, p.digest) for tid, p in pending])

    async def flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._pending:
            pending, self._pending = self._pending, []
            await self._run(self._flush, pending)

    def _forget(self, column: str, value: object) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"DELETE FROM transfers WHERE {column}=?", (value,))

    async def forget(self, transfer_id: int) -> None:
        self._pending = [(tid, p) for tid, p in self._pending if tid != transfer_id]
        await self._run(self._forget, "id", transfer_id)

    async def forget_upload(self, upload_id: str) -> None:
        await self._run(self._forget, "upload_id", upload_id)

    # -- the push retry queue ------------------------------------------------

    def _queue_failure(self, source: str, destination: str, key: str, etag: str, error: str) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO push_queue VALUES (?,?,?,?,1,?,?) ON CONFLICT (source, destination, key) DO UPDATE"
                " SET etag=excluded.etag, attempts=attempts + 1, last_error=excluded.last_error,"
                " updated=excluded.updated",
                (source, destination, key, etag, error, time.time()),
            )

    async def queue_failure(self, source: str, destination: str, key: str, etag: str, error: str) -> None:
        """Add (or count again) a failed delivery of ``key`` at version ``etag``."""
        await self._run(self._queue_failure, source, destination, key, etag, error)

    def _queued(self, source: str, destination: str) -> list[QueuedPush]:
        rows = self._connect().execute(
            "SELECT key, etag, attempts, last_error, updated FROM push_queue WHERE source=? AND destination=?"
            " ORDER BY key", (source, destination)).fetchall()
        return [QueuedPush(*row) for row in rows]

    async def queued(self, source: str, destination: str) -> list[QueuedPush]:
        return await self._run(self._queued, source, destination)  # type: ignore[no-any-return]

    def _dequeue(self, source: str, destination: str, key: str) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM push_queue WHERE source=? AND destination=? AND key=?", (source, destination, key))

    async def dequeue(self, source: str, destination: str, key: str) -> None:
        await self._run(self._dequeue, source, destination, key)

    # -- pull: uploaded, not yet archived -----------------------------------

    def _record_pulled(self, rec: PulledRecord) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO pulled VALUES (?,?,?,?,?,?,?,?,?)",
                       (rec.source, rec.destination, rec.size, rec.mtime, rec.checksum_algorithm, rec.part_size,
                        rec.checksum, rec.etag, rec.uploaded))

    async def record_pulled(self, rec: PulledRecord) -> None:
        """Before archiving: the file's upload is verified (what a crash before the archive leaves to prove)."""
        await self._run(self._record_pulled, rec)

    def _pulled(self, source: str, destination: str) -> PulledRecord | None:
        row = self._connect().execute("SELECT * FROM pulled WHERE source=? AND destination=?",
                                      (source, destination)).fetchone()
        return PulledRecord(*row) if row else None

    async def pulled(self, source: str, destination: str) -> PulledRecord | None:
        return await self._run(self._pulled, source, destination)  # type: ignore[no-any-return]

    def _forget_pulled(self, source: str, destination: str) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM pulled WHERE source=? AND destination=?", (source, destination))

    async def forget_pulled(self, source: str, destination: str) -> None:
        await self._run(self._forget_pulled, source, destination)

    # -- push: the delivery ledger -------------------------------------------

    def _record_delivery(self, source: str, destination: str, key: str, etag: str) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO delivered VALUES (?,?,?,?,?)",
                       (source, destination, key, etag, time.time()))

    async def record_delivery(self, source: str, destination: str, key: str, etag: str) -> None:
        """``key`` at version ``etag`` is delivered to ``destination`` (before its tag is written)."""
        await self._run(self._record_delivery, source, destination, key, etag)

    def _deliveries(self, source: str, destination: str) -> dict[str, str]:
        rows = self._connect().execute("SELECT key, etag FROM delivered WHERE source=? AND destination=?",
                                       (source, destination)).fetchall()
        return {str(k): str(e) for k, e in rows}

    async def deliveries(self, source: str, destination: str) -> dict[str, str]:
        """Key -> the ETag delivered, for one push (source prefix, destination folder)."""
        return await self._run(self._deliveries, source, destination)  # type: ignore[no-any-return]

    def _forget_deliveries(self, source: str, destination: str, keys: Sequence[str]) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("DELETE FROM delivered WHERE source=? AND destination=? AND key=?",
                           [(source, destination, k) for k in keys])

    async def forget_deliveries(self, source: str, destination: str, keys: Sequence[str]) -> None:
        """Objects gone from the bucket: their records would only grow the journal."""
        if keys:
            await self._run(self._forget_deliveries, source, destination, list(keys))

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            if self._db is not None:
                db, self._db = self._db, None
                await asyncio.to_thread(db.close)


class NoJournal(Journal):
    """Stands in for a damaged journal so that a plain copy still runs: nothing is recorded or found.

    Locks still work (they are files of their own). An attempt with no
    journal is never kept for resume: a failure cleans up after itself.
    """

    working = False

    async def check(self) -> None:
        return None

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return None  # find() -> None, queued() etc. are never used without a working journal

    async def record_part(self, transfer_id: int, part: PartRecord) -> None:
        return None

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def open_journal(state_dir: Path | None, *, required: bool) -> Journal:
    """The journal, checked. Damaged: a job that needs it (``required``) stops with what to do; a copy
    goes on without resume (one warning says so)."""
    journal = Journal(state_dir)
    try:
        await journal.check()
    except JournalError as exc:
        if required:
            raise
        log.warning("%s; copying without resume", exc)
        return NoJournal(state_dir)
    return journal
