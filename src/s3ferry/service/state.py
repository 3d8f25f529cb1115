"""What ``s3ferry serve`` knows of its flows while it runs: their runs, live progress, and the journal's records.

The in-memory part is bounded and lives only as long as the process: the
runs this process saw (:data:`RUNS_KEPT` at most) and the bytes of the runs in
flight. What must survive a restart is read back from the jobs' own journal
(each flow's state dir): the last run of each flow, the files delivered and
failed (the journal's run history), and push's retry queue. So a restarted
``serve`` shows what the one before it did, and nothing is kept twice.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from s3ferry.engine.journal import HistoryEvent, Journal, QueuedPush, RunRecord, default_state_dir, open_journal
from s3ferry.jobs.flowfile import Flow
from s3ferry.jobs.push import PushSettings
from s3ferry.jobs.runner import Outcome, Scheduler

#: the runs of this process kept in memory (older ones are in the journal)
RUNS_KEPT = 500


def iso(moment: datetime | float | None) -> str | None:
    """An instant as ISO 8601 UTC (``...Z``), as every time the API gives."""
    if moment is None:
        return None
    if isinstance(moment, float | int):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


#: the names of the latest files a run started, shown with its progress (a run of 100k files keeps only these)
NAMES_KEPT = 20


@dataclass
class RunProgress:
    """The bytes of one run in flight. The engine's listener says which file starts, not which file a chunk
    belongs to (files of a run copy concurrently), so bytes are counted for the run as a whole: the bytes
    done of the files started so far."""

    flow: str
    started: float = field(default_factory=time.time)
    names: deque[str] = field(default_factory=lambda: deque(maxlen=NAMES_KEPT))
    files_started: int = 0
    files_finished: int = 0
    total: int = 0
    done: int = 0

    def started_file(self, name: str, total: int) -> None:
        self.names.append(name)
        self.files_started += 1
        self.total += total

    def advanced(self, nbytes: int) -> None:
        self.done += nbytes

    def finished(self) -> None:
        self.files_finished += 1

    def as_dict(self) -> dict[str, object]:
        return {"flow": self.flow, "started": iso(self.started), "files_started": self.files_started,
                "files_finished": self.files_finished, "bytes_done": self.done, "bytes_total": self.total,
                "files": list(self.names)}


class _Listener:
    """The engine's progress listener for one run (:class:`s3ferry.observe.progress.ProgressListener`)."""

    def __init__(self, run: RunProgress) -> None:
        self.run = run

    def started(self, name: str, total: int) -> None:
        self.run.started_file(name, total)

    def advanced(self, nbytes: int) -> None:
        self.run.advanced(nbytes)

    def finished(self) -> None:
        self.run.finished()


class ServiceState:
    """The flows of a scheduler, what their runs did, and the journal reads behind the API."""

    def __init__(self) -> None:
        self.runs: deque[dict[str, object]] = deque(maxlen=RUNS_KEPT)
        self.progress: dict[str, RunProgress] = {}
        self.last: dict[str, Outcome] = {}
        self.scheduler: Scheduler | None = None
        self._journals: dict[Path, Journal] = {}
        self._serial = 0

    # -- the scheduler's hooks --------------------------------------------------------------------------------

    def listener(self, flow: Flow) -> _Listener:
        """The progress listener of a run of ``flow`` starting now."""
        run = RunProgress(flow.name)
        self.progress[flow.name] = run
        return _Listener(run)

    def on_outcome(self, outcome: Outcome) -> None:
        self.progress.pop(outcome.flow.name, None)
        if outcome.skipped:
            return  # a skipped time is a log note, not a run
        self._serial += 1
        self.last[outcome.flow.name] = outcome
        self.runs.appendleft({"id": self._serial, "ended": iso(time.time()), **outcome.as_dict()})

    # -- reads ------------------------------------------------------------------------------------------------

    @property
    def sched(self) -> Scheduler:
        assert self.scheduler is not None, "the scheduler starts before the server"
        return self.scheduler

    def flow(self, name: str) -> Flow | None:
        return self.sched.flows.get(name)

    async def journal(self, flow: Flow) -> Journal:
        """The journal of ``flow``'s state dir (one connection per dir, opened once)."""
        where = flow.options.state_dir or default_state_dir()
        if where not in self._journals:
            self._journals[where] = await open_journal(where, required=True)
        return self._journals[where]

    async def close(self) -> None:
        for journal in self._journals.values():
            await journal.close()
        self._journals.clear()

    async def queue(self, flow: Flow) -> list[QueuedPush]:
        """Push's retry queue of ``flow`` (empty for a pull)."""
        if not isinstance(flow.settings, PushSettings):
            return []
        return await (await self.journal(flow)).queued(str(flow.source), str(flow.destination))

    async def last_run(self, flow: Flow) -> RunRecord | None:
        return await (await self.journal(flow)).last_run(flow.name)

    def health(self, flow: Flow, last: RunRecord | None) -> str:
        """``running``, ``paused``, ``failing`` (its last run failed) or ``healthy``."""
        if self.sched.is_running(flow.name):
            return "running"
        if flow.name in self.sched.paused:
            return "paused"
        outcome = self.last.get(flow.name)
        failed = outcome.status == "failed" if outcome is not None else last is not None and last.status != "ok"
        return "failing" if failed else "healthy"

    async def flow_view(self, flow: Flow) -> dict[str, object]:
        last = await self.last_run(flow)
        queue = await self.queue(flow)
        due = self.sched.next_due.get(flow.name)
        return {"name": flow.name, "kind": flow.kind, "source": str(flow.source),
                "destination": str(flow.destination), "schedule": str(flow.schedule),
                "state": self.health(flow, last), "paused": flow.name in self.sched.paused,
                "running": self.sched.is_running(flow.name),
                "next_run": None if flow.name in self.sched.paused else iso(due),
                "queue_depth": len(queue),
                "last_run": None if last is None else {**last.as_dict(), "started": iso(last.started),
                                                       "ended": iso(last.ended)}}

    async def flow_views(self) -> list[dict[str, object]]:
        return [await self.flow_view(flow) for flow in self.sched.flows.values()]

    async def events(self, flows: Sequence[Flow], result: str | None, limit: int,
                     offset: int) -> list[dict[str, object]]:
        """Files copied (``result="copied"``: deliveries) or failed, newest first, one page."""
        found: list[HistoryEvent] = []
        by_journal: dict[int, tuple[Journal, list[str]]] = {}
        for flow in flows:
            journal = await self.journal(flow)
            by_journal.setdefault(id(journal), (journal, []))[1].append(flow.name)
        for journal, names in by_journal.values():
            # the page is cut from the newest offset + limit of every journal (flows may keep separate ones)
            found.extend(await journal.history(names, failed_only=result == "failed", limit=offset + limit,
                                               copied_only=result == "copied"))
        found.sort(key=lambda e: e.time, reverse=True)
        return [{**dataclasses.asdict(e), "time": iso(e.time)} for e in found[offset:offset + limit]]

    async def queue_views(self, flows: Iterable[Flow]) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for flow in flows:
            for item in await self.queue(flow):
                out.append({"flow": flow.name, "key": item.key, "etag": item.etag, "attempts": item.attempts,
                            "last_error": item.last_error, "updated": iso(item.updated),
                            "first_failed": iso(item.first_failed)})
        return out

    def start_run(self, flow: Flow, retry: bool = False, keys: Iterable[str] = ()) -> bool:
        """Start a run of ``flow`` now (``retry``: through its retry queue, as ``push --retry-failed``, or only
        ``keys`` of it); False when one is in flight (or the service stops)."""
        chosen = flow
        if retry and isinstance(flow.settings, PushSettings):
            settings = dataclasses.replace(flow.settings, retry_failed=True, retry_keys=frozenset(keys))
            chosen = dataclasses.replace(flow, settings=settings)
        return self.sched.trigger(flow.name, chosen) is not None

    async def drop(self, flow: Flow, key: str) -> bool:
        """Take ``key`` off ``flow``'s retry queue (it is not delivered); False when it is not queued."""
        if key not in {item.key for item in await self.queue(flow)}:
            return False
        await (await self.journal(flow)).dequeue(str(flow.source), str(flow.destination), key)
        return True

    def progress_views(self) -> list[dict[str, object]]:
        return [run.as_dict() for run in self.progress.values()]
