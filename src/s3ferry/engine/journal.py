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
checked against the source (see :mod:`s3ferry.engine.resume`). Each commit is one SQLite transaction, so a
crash at any instant leaves the database consistent.

It also keeps what the recurring jobs must not forget: pull's record of an
upload verified but not yet archived (``pulled``: healing after a crash needs
proof, not a guess from metadata), push's ledger of deliveries
(``delivered``: the object tags are a cache of it that concurrent flows may
overwrite) and push's retry queue; and, for people, each run of a job
(``runs``: when, what came of it, its counts) with what it copied or failed
(``events``), which ``s3ferry status`` and ``s3ferry history`` read. Runs
older than :data:`HISTORY_DAYS` are dropped as new ones are recorded.

The schema grows by :data:`MIGRATIONS`, numbered by SQLite's
``user_version``: a journal written by an older s3ferry is brought up to date
when it is opened (each step once, in one transaction), and keeps every
record it had.

A damaged journal is named with what to do (:class:`JournalError`); a plain
copy goes on without resume (:func:`open_journal`), a job that needs its
records stops.

All SQLite calls run in a worker thread: none blocks the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar, cast

from s3ferry.core.errors import JournalError, UsageError
from s3ferry.engine.locks import FileLock, held, pair_lock

log = logging.getLogger("s3ferry")

T = TypeVar("T")

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

#: schema steps after SCHEMA (the tables of version 0), applied in order; step N leaves ``user_version`` = N
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: runs and their events (status, history); when a queued object first failed
        """CREATE TABLE IF NOT EXISTS runs (
            id INTEGER PRIMARY KEY,
            flow TEXT,
            kind TEXT NOT NULL,
            source TEXT NOT NULL,
            destination TEXT NOT NULL,
            started REAL NOT NULL,
            ended REAL NOT NULL,
            status TEXT NOT NULL,
            exit_code INTEGER NOT NULL,
            copied INTEGER NOT NULL,
            failed INTEGER NOT NULL,
            waiting INTEGER NOT NULL,
            skipped INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            error TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS runs_by_time ON runs (flow, started)",
        """CREATE TABLE IF NOT EXISTS events (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            result TEXT NOT NULL,
            error TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id)",
        "ALTER TABLE push_queue ADD COLUMN first_failed REAL",
    ),
    (  # 2: pushes under way (a crash between the rename into place and the mark is recognised, not redone)
        """CREATE TABLE IF NOT EXISTS delivering (
            source TEXT NOT NULL,
            destination TEXT NOT NULL,
            key TEXT NOT NULL,
            etag TEXT NOT NULL,
            started REAL NOT NULL,
            PRIMARY KEY (source, destination, key)
        )""",
    ),
)

#: runs (and their events) older than this are dropped when a new run is recorded
HISTORY_DAYS = 30


def migrate(db: sqlite3.Connection) -> None:
    """Bring the schema to the last version, each step once (two processes opening one journal: the second
    finds the step done inside its own transaction)."""
    for version, statements in enumerate(MIGRATIONS, 1):
        if db.execute("PRAGMA user_version").fetchone()[0] >= version:
            continue
        with db:
            db.execute("BEGIN IMMEDIATE")
            if db.execute("PRAGMA user_version").fetchone()[0] < version:
                for statement in statements:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={version}")


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
    first_failed: float | None = None  # None: queued by an s3ferry that did not record it


@dataclass(frozen=True)
class RunRecord:
    """One run of a job: what ``s3ferry status`` shows of a flow's last run."""

    flow: str | None  # None: a plain pull or push
    kind: str
    source: str
    destination: str
    started: float
    ended: float
    status: str  # ok, failed
    exit_code: int
    copied: int
    failed: int
    waiting: int
    skipped: int
    bytes: int
    error: str | None
    #: (path, result, error) of each file copied or failed; path "" for the run as a whole
    events: tuple[tuple[str, str, str | None], ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {name: value for name, value in dataclasses.asdict(self).items() if name != "events"}

    @property
    def row(self) -> tuple[object, ...]:
        """The values of :data:`_RUN_COLUMNS`, in their order."""
        # Not dataclasses.astuple: it deep-copies every value, the events' names included.
        values = (getattr(self, name) for name in _RUN_COLUMNS)
        return tuple(_storable(v) if isinstance(v, str) else v for v in values)


def _storable(text: str | None) -> str | None:
    """A name or message as SQLite can hold it: a name that was not UTF-8 on the server (surrogate-escaped)
    is kept with its bytes shown as ``\\xNN`` (SQLite's TEXT must be valid UTF-8)."""
    if text is None:
        return None
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_RUN_COLUMNS = ("flow", "kind", "source", "destination", "started", "ended", "status", "exit_code", "copied",
                "failed", "waiting", "skipped", "bytes", "error")


@dataclass(frozen=True)
class HistoryEvent:
    """One file copied or failed (or a run failed as a whole: ``path`` empty), with its run."""

    time: float  # the end of its run
    flow: str | None
    kind: str
    source: str
    destination: str
    path: str
    result: str  # copied, failed
    error: str | None


@dataclass(frozen=True)
class QueueSummary:
    """A push's retry queue: its depth and the failure waiting longest."""

    depth: int
    oldest: QueuedPush | None


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
                # One process at a time: two opening a new journal together met the switch to WAL's lock
                # ("database is locked" at once -- SQLite's busy timeout does not cover it)
                with held(self.state_dir / "locks" / "journal-setup.lock"):
                    self._set_up(db)
            except OSError as exc:
                db.close()
                raise UsageError(f"cannot open the journal {self.path}: {exc}") from exc
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    @staticmethod
    def _set_up(db: sqlite3.Connection) -> None:
        db.execute("PRAGMA page_size=1024")  # only takes effect when the file is created
        db.execute("PRAGMA journal_mode=WAL")
        # A commit is written before it returns, not synced: it survives the process being killed
        # (kill -9 is tested), not a power cut, which can lose the last commits. Those only save work:
        # what they record was verified first, so what is lost is done again (a part sent again, a
        # file pulled again) -- never taken as done. A sync per commit held back every small file:
        # `pull` of 300 files across 50 ms spent most of its time waiting on them.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(SCHEMA)
        migrate(db)
        db.execute("SELECT count(*) FROM transfers").fetchone()  # reads a page: damage shows here

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        async with self._lock:  # one thread touches the connection at a time
            work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # A thread cannot be stopped: the connection stays locked until it is done, else the next
                # call starts a transaction inside the one still running (and the journal looks damaged).
                await asyncio.wait([work])
                if not work.cancelled():
                    work.exception()  # looked at: the cancellation is what the caller hears of
                raise
            except sqlite3.OperationalError as exc:  # locked for longer than the timeout, disk full, ...
                # first: it is a DatabaseError too, and a busy journal is not a damaged one (moving it aside,
                # as that message advises, would lose its resume points, records and retry queue)
                raise UsageError(f"cannot use the journal {self.path}: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                raise self.damaged(exc) from exc

    def damaged(self, exc: BaseException) -> JournalError:
        return JournalError(
            f"the journal {self.path} is damaged ({exc}); move it aside to start a new one: "
            f"mv '{self.path}' '{self.path}.damaged' (it holds resume points, pull and push records and the push "
            "retry queue; they are lost)")

    async def check(self) -> None:
        """Open the database now: a damaged journal raises :class:`JournalError` here, not mid-transfer."""
        await self._run(self._connect)

    def lock(self, source: str, destination: str, kind: str = "") -> FileLock:
        """The lock on one (source, destination) pair in this state dir (see :func:`s3ferry.engine.locks.pair_lock`)."""
        return pair_lock(self.state_dir, source, destination, kind)

    # -- queries -------------------------------------------------------------

    def _find(self, source: str, destination: str) -> TransferRecord | None:
        db = self._connect()
        row = db.execute("SELECT * FROM transfers WHERE source=? AND destination=?", (source, destination)).fetchone()
        return self._with_parts(db, row) if row else None

    def _with_parts(self, db: sqlite3.Connection, row: Sequence[object]) -> TransferRecord:
        parts = db.execute("SELECT number, size, etag, digest FROM parts WHERE transfer_id=? ORDER BY number",
                           (row[0],)).fetchall()
        # a row holds the record's fields in order, which mypy cannot see in a Sequence[object]
        return TransferRecord(*row, parts=tuple(PartRecord(*p) for p in parts))  # type: ignore[arg-type, misc]

    async def find(self, source: str, destination: str) -> TransferRecord | None:
        return await self._run(self._find, source, destination)

    def _by_upload(self, upload_ids: Sequence[str]) -> dict[str, TransferRecord]:
        db = self._connect()
        found = {}
        for uid in upload_ids:
            row = db.execute("SELECT * FROM transfers WHERE upload_id=?", (uid,)).fetchone()
            if row:
                found[uid] = self._with_parts(db, row)
        return found

    async def by_upload(self, upload_ids: Sequence[str]) -> dict[str, TransferRecord]:
        return await self._run(self._by_upload, list(upload_ids))

    # -- changes -------------------------------------------------------------

    def _start(self, rec: TransferRecord) -> int:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM transfers WHERE source=? AND destination=?", (rec.source, rec.destination))
            cur = db.execute(
                "INSERT INTO transfers (source, destination, size, mtime, etag, part_size, checksum, upload_id,"
                " created) VALUES (?,?,?,?,?,?,?,?,?)",
                (rec.source, rec.destination, rec.size, rec.mtime, rec.etag, rec.part_size, rec.checksum,
                 rec.upload_id, rec.created),
            )
            new_id = int(cur.lastrowid or 0)
            db.executemany("INSERT INTO parts VALUES (?,?,?,?,?)",
                           [(new_id, p.number, p.size, p.etag, p.digest) for p in rec.parts])
        return new_id

    async def start(self, rec: TransferRecord) -> int:
        """Record a transfer (replacing any earlier one for the same pair); returns its id."""
        return await self._run(self._start, rec)

    def _write(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """One change statement, once per row, in one transaction."""
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(sql, rows)

    async def set_upload(self, transfer_id: int, upload_id: str) -> None:
        """Fill in the upload id of a transfer started with an empty one."""
        await self._run(self._write, "UPDATE transfers SET upload_id=? WHERE id=?", [(upload_id, transfer_id)])

    async def record_part(self, transfer_id: int, part: PartRecord) -> None:
        self._pending.append((transfer_id, part))
        if time.monotonic() - self._last_flush >= self.flush_interval:
            await self.flush()

    async def flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._pending:
            pending, self._pending = self._pending, []
            await self._run(self._write, "INSERT OR REPLACE INTO parts VALUES (?,?,?,?,?)",
                            [(tid, p.number, p.size, p.etag, p.digest) for tid, p in pending])

    async def forget(self, transfer_id: int) -> None:
        self._pending = [(tid, p) for tid, p in self._pending if tid != transfer_id]
        await self._run(self._write, "DELETE FROM transfers WHERE id=?", [(transfer_id,)])

    async def forget_upload(self, upload_id: str) -> None:
        await self._run(self._write, "DELETE FROM transfers WHERE upload_id=?", [(upload_id,)])

    # -- the push retry queue ------------------------------------------------

    async def queue_failure(self, source: str, destination: str, key: str, etag: str, error: str) -> None:
        """Add (or count again) a failed delivery of ``key`` at version ``etag``."""
        await self._run(
            self._write,
            "INSERT INTO push_queue (source, destination, key, etag, attempts, last_error, updated, first_failed)"
            " VALUES (?,?,?,?,1,?,?,?) ON CONFLICT (source, destination, key) DO UPDATE"
            " SET etag=excluded.etag, attempts=attempts + 1, last_error=excluded.last_error, updated=excluded.updated",
            [(source, destination, key, etag, error, now := time.time(), now)])

    def _queued(self, source: str, destination: str) -> list[QueuedPush]:
        rows = self._connect().execute(
            "SELECT key, etag, attempts, last_error, updated, first_failed FROM push_queue"
            " WHERE source=? AND destination=? ORDER BY key", (source, destination)).fetchall()
        return [QueuedPush(*row) for row in rows]

    async def queued(self, source: str, destination: str) -> list[QueuedPush]:
        return await self._run(self._queued, source, destination)

    def _queue_summary(self, source: str, destination: str) -> QueueSummary:
        queued = self._queued(source, destination)
        oldest = min(queued, key=lambda q: q.first_failed or q.updated, default=None)
        return QueueSummary(len(queued), oldest)

    async def queue_summary(self, source: str, destination: str) -> QueueSummary:
        return await self._run(self._queue_summary, source, destination)

    # -- runs and their events (status, history) -----------------------------

    def _record_run(self, run: RunRecord) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute(f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * 14)})",
                             run.row)
            db.executemany("INSERT INTO events VALUES (?,?,?,?)",
                           [(cur.lastrowid, *map(_storable, e)) for e in run.events])
            db.execute("DELETE FROM runs WHERE ended < ?", (time.time() - HISTORY_DAYS * 86400,))

    async def record_run(self, run: RunRecord) -> None:
        await self._run(self._record_run, run)

    def _last_run(self, flow: str) -> RunRecord | None:
        row = self._connect().execute(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE flow=?"
                                      " ORDER BY started DESC, id DESC LIMIT 1", (flow,)).fetchone()
        return RunRecord(*row) if row else None

    async def last_run(self, flow: str) -> RunRecord | None:
        """The latest run recorded for the flow named ``flow``."""
        return await self._run(self._last_run, flow)

    def _flows(self) -> list[str]:
        rows = self._connect().execute("SELECT DISTINCT flow FROM runs WHERE flow IS NOT NULL ORDER BY flow")
        return [str(name) for (name,) in rows.fetchall()]

    async def flows(self) -> list[str]:
        """The names of the flows that have runs recorded."""
        return await self._run(self._flows)

    def _history(self, flows: Sequence[str], since: float | None, failed_only: bool,
                 limit: int, copied_only: bool = False) -> list[HistoryEvent]:
        where: list[str] = ["1"]
        args: list[object] = []
        if flows:
            where.append(f"r.flow IN ({', '.join('?' * len(flows))})")
            args.extend(flows)
        if since is not None:
            where.append("r.ended>=?")
            args.append(since)
        if failed_only:
            where.append("e.result='failed'")
        if copied_only:
            where.append("e.result='copied'")
        rows = self._connect().execute(
            "SELECT r.ended, r.flow, r.kind, r.source, r.destination, e.path, e.result, e.error FROM events e"
            f" JOIN runs r ON r.id = e.run_id WHERE {' AND '.join(where)} ORDER BY r.ended DESC, e.rowid DESC"
            " LIMIT ?", (*args, limit)).fetchall()
        return [HistoryEvent(*row) for row in rows]

    async def history(self, flows: Sequence[str] = (), since: float | None = None, failed_only: bool = False,
                      limit: int = 50, copied_only: bool = False) -> list[HistoryEvent]:
        """The latest files copied or failed (of the runs of ``flows``, or all; only the failures, or only the
        files copied), newest first."""
        return await self._run(self._history, list(flows), since, failed_only, limit, copied_only)

    async def dequeue(self, source: str, destination: str, key: str) -> None:
        await self._run(self._write, "DELETE FROM push_queue WHERE source=? AND destination=? AND key=?",
                        [(source, destination, key)])

    # -- pull: uploaded, not yet archived -----------------------------------

    async def record_pulled(self, rec: PulledRecord) -> None:
        """Before archiving: the file's upload is verified (what a crash before the archive leaves to prove)."""
        await self._run(self._write, "INSERT OR REPLACE INTO pulled VALUES (?,?,?,?,?,?,?,?,?)",
                        [(rec.source, rec.destination, rec.size, rec.mtime, rec.checksum_algorithm, rec.part_size,
                          rec.checksum, rec.etag, rec.uploaded)])

    def _unarchived(self) -> dict[tuple[str, str], PulledRecord]:
        rows = self._connect().execute("SELECT * FROM pulled").fetchall()
        return {(str(row[0]), str(row[1])): PulledRecord(*row) for row in rows}

    async def unarchived(self) -> dict[tuple[str, str], PulledRecord]:
        """Every file uploaded and not yet archived, by (file, object): read once per run (a look per file was
        a thread hop each). Few: a record lives from a file's verified upload to its archive move."""
        return await self._run(self._unarchived)

    async def forget_pulled(self, source: str, destination: str) -> None:
        await self._run(self._write, "DELETE FROM pulled WHERE source=? AND destination=?", [(source, destination)])

    # -- push: the delivery ledger -------------------------------------------

    async def record_delivery(self, source: str, destination: str, key: str, etag: str, *,
                              tag_next: bool = False) -> None:
        """``key`` at version ``etag`` is delivered to ``destination``, and its delivery ended (one transaction);
        with ``tag_next`` it stays started until :meth:`delivery_ended`: its tag is written next, and a run
        that dies before that leaves the next run to write it (:meth:`deliveries_started`)."""
        await self._run(self._record_delivery, source, destination, key, etag, tag_next)

    def _record_delivery(self, source: str, destination: str, key: str, etag: str, tag_next: bool) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO delivered VALUES (?,?,?,?,?)",
                       (source, destination, key, etag, time.time()))
            if not tag_next:
                db.execute("DELETE FROM delivering WHERE source=? AND destination=? AND key=?",
                           (source, destination, key))

    async def delivery_started(self, source: str, destination: str, key: str, etag: str) -> None:
        """``key`` at version ``etag`` is being delivered: until its delivery is recorded (or it ends), a file
        found in place after a crash may be this delivery's (:meth:`deliveries_started`)."""
        await self._run(self._write, "INSERT OR REPLACE INTO delivering VALUES (?,?,?,?,?)",
                        [(source, destination, key, etag, time.time())])

    async def delivery_ended(self, source: str, destination: str, key: str) -> None:
        await self._run(self._write, "DELETE FROM delivering WHERE source=? AND destination=? AND key=?",
                        [(source, destination, key)])

    def _key_etags(self, table: Literal["delivering", "delivered"], source: str, destination: str
                   ) -> dict[str, str]:
        rows = self._connect().execute(f"SELECT key, etag FROM {table} WHERE source=? AND destination=?",
                                       (source, destination)).fetchall()
        return {str(k): str(e) for k, e in rows}

    async def deliveries_started(self, source: str, destination: str) -> dict[str, str]:
        """Key -> the ETag whose delivery started and neither was recorded nor ended (a crash, a kill -9)."""
        return await self._run(self._key_etags, "delivering", source, destination)

    async def deliveries(self, source: str, destination: str) -> dict[str, str]:
        """Key -> the ETag delivered, for one push (source prefix, destination folder)."""
        return await self._run(self._key_etags, "delivered", source, destination)

    async def forget_deliveries(self, source: str, destination: str, keys: Sequence[str]) -> None:
        """Objects gone from the bucket: their records would only grow the journal."""
        if keys:
            await self._run(self._write, "DELETE FROM delivered WHERE source=? AND destination=? AND key=?",
                            [(source, destination, k) for k in keys])

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

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        # find() -> None; queued() etc. are never used without a working journal
        return cast(T, None)

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
