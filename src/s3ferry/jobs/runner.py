"""Running the flows of a flows file: each once, or each on its schedule, concurrently.

* Every run of a flow holds an exclusive ``flock`` on
  ``<state dir>/locks/flow-<name>.lock`` from start to end. A run that finds
  the lock taken (the same flow running in another ``s3ferry run``, or still
  running here) is skipped with a one-line note; it is not an error. The
  kernel releases the lock when the process ends, however it ends.
* The scheduler (:func:`run_forever`) starts a flow at each time its schedule
  gives: cron flows at the next matching minute (UTC), ``every`` flows at
  start and then every interval. A flow still running when its next time
  comes is not started twice: that time is skipped with a note. Flows run
  concurrently, each as its own asyncio task; one flow failing never stops
  the others or the scheduler.
* A dry run (:func:`dry_runs`, ``run --dry-run``) is one pass of each flow
  whose job decides and reports but changes nothing. It takes the flow's lock
  like a real run: its report would be wrong while a real run of the flow is
  moving the same files, and a real run never finds the folder half-judged.
  (A real run that comes due during a dry run is skipped as ``locked``.)
* Cancelling (SIGINT/SIGTERM through :func:`s3ferry.cli.common.run_async`) cancels
  the runs in flight: their own clean-ups run, and locks are released.
* A long-running process (``s3ferry serve``) also pauses and resumes a flow's
  schedule (:meth:`Scheduler.pause`; a paused flow's times pass without a
  run), starts a run now (:meth:`Scheduler.trigger`, refused while one runs),
  reads each flow's next time (:attr:`Scheduler.next_due`), watches the bytes
  of each run (``progress``), and stops scheduling while the runs in flight
  finish (:meth:`Scheduler.drain`).
* The flows of a running scheduler can be replaced (:meth:`Scheduler.replace`,
  ``s3ferry run`` on SIGHUP): flows that are gone or changed stop being
  scheduled, new and changed ones start on their schedule; runs in flight
  finish undisturbed, and a flow still running is not started twice by its
  new schedule. An unchanged flow keeps its schedule (an ``every`` flow does
  not run again at once).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from s3ferry.core.errors import S3FerryError
from s3ferry.engine.journal import default_state_dir
from s3ferry.engine.locks import FileLock
from s3ferry.jobs import FLOW_NAME, JobReport
from s3ferry.jobs.flowfile import Flow
from s3ferry.jobs.pull import PullSettings, pull
from s3ferry.jobs.push import push
from s3ferry.observe import metrics
from s3ferry.observe.progress import ProgressListener

log = logging.getLogger("s3ferry")


@dataclass
class Outcome:
    """What one scheduled time of one flow came to: a report, an error, or a skip."""

    flow: Flow
    started: datetime
    report: JobReport | None = None
    error: S3FerryError | None = None
    skipped: str | None = None  # why the run did not start: "locked" (another run holds the lock), "running"

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        return self.report.exit_code if self.report is not None else 0

    @property
    def status(self) -> str:
        """``ok``, ``failed`` (the run, or some of its files) or ``skipped`` (it did not start)."""
        if self.skipped:
            return "skipped"
        return "failed" if self.exit_code else "ok"

    def as_dict(self) -> dict[str, object]:
        """``flow``, ``started``, ``status``, ``exit_code``, then the report's fields, or ``error``, or the
        ``reason`` a run was skipped (``locked``: another run holds the lock; ``running``: still running here);
        ``dry_run`` in every case."""
        head: dict[str, object] = {"flow": self.flow.name,
                                   "started": self.started.isoformat(timespec="seconds").replace("+00:00", "Z"),
                                   "status": self.status, "exit_code": self.exit_code}
        if self.report is not None:
            return {**head, **self.report.as_dict()}
        body: dict[str, object] = {"kind": self.flow.kind, "source": str(self.flow.source),
                                   "destination": str(self.flow.destination),
                                   "dry_run": self.flow.options.dry_run}
        if self.error is not None:
            body["error"] = str(self.error)
        else:
            body["reason"] = self.skipped
        return {**head, **body}


OnOutcome = Callable[[Outcome], None]
#: the progress listener of one run of a flow (None: nobody watches)
ProgressFor = Callable[[Flow], ProgressListener | None]


def flow_lock(state_dir: Path, flow: Flow) -> FileLock:
    """The lock every run of ``flow`` holds (the file names the process holding it, for people looking)."""
    return FileLock(state_dir / "locks" / f"flow-{flow.lock_name}.lock",
                    f"another run of flow {flow.name} is running", note_pid=True)


def with_state_dir(flows: Sequence[Flow], fallback: Path | None) -> list[Flow]:
    """Flows whose options name a state dir: their own, else ``fallback`` (--state-dir), else the default."""
    out = []
    for flow in flows:
        if flow.options.state_dir is None:
            state = fallback or default_state_dir()
            flow = dataclasses.replace(flow, options=flow.options.replace(state_dir=state))
        out.append(flow)
    return out


def dry_runs(flows: Sequence[Flow]) -> list[Flow]:
    """The flows as dry runs: each job (pull, push) decides and reports, and changes nothing."""
    return [dataclasses.replace(flow, options=flow.options.replace(dry_run=True)) for flow in flows]


def _now() -> datetime:
    return datetime.now(UTC)


async def run_flow(flow: Flow, on_outcome: OnOutcome, progress: ProgressListener | None = None) -> Outcome:
    """One run of ``flow`` under its lock (dry runs too: see the module docstring); the outcome is handed to
    ``on_outcome`` and returned. ``progress`` hears the bytes of each file the run copies."""
    metrics.FLOW.set(flow.name)  # this task's context: the flow's label on everything it counts
    FLOW_NAME.set(flow.name)  # ... and the name its error lines and journal records carry
    outcome = Outcome(flow, _now())
    lock = flow_lock(flow.options.state_dir or default_state_dir(), flow)
    try:
        if not await lock.acquire():
            outcome.skipped = "locked"
            log.warning("flow %s: skipped: another run of it holds %s", flow.name, lock.path)
            on_outcome(outcome)
            return outcome
        started = time.monotonic()
        if isinstance(flow.settings, PullSettings):
            outcome.report = await pull(flow.source, flow.destination, flow.options, flow.settings, progress)
        else:
            outcome.report = await push(flow.source, flow.destination, flow.options, flow.settings, progress)
        if not outcome.report.seconds:
            outcome.report.seconds = time.monotonic() - started
        if outcome.report.locked is not None:  # another flow (or a plain pull/push) runs the same job
            outcome.skipped, outcome.report = "locked", None
    except S3FerryError as exc:
        outcome.error = exc
    except Exception as exc:
        log.debug("flow %s failed", flow.name, exc_info=True)
        outcome.error = S3FerryError(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
    finally:
        lock.release()
    on_outcome(outcome)
    return outcome


async def run_once(flows: Sequence[Flow], on_outcome: OnOutcome) -> int:
    """Every flow once, concurrently; the worst exit code (0 when all went well or were skipped)."""
    outcomes = await asyncio.gather(*(run_flow(flow, on_outcome) for flow in flows))
    return max((o.exit_code for o in outcomes), default=0)


async def _sleep_until(due: datetime, clock: Callable[[], datetime]) -> None:
    # Short naps against the wall clock: cron times are wall-clock times, and a
    # suspended machine or a clock step must not push a run hours late.
    while (left := (due - clock()).total_seconds()) > 0:
        await asyncio.sleep(min(left, 30.0))


class Scheduler:
    """Runs each flow at its schedule until cancelled; its flows can be replaced while it runs."""

    def __init__(self, flows: Sequence[Flow], on_outcome: OnOutcome, clock: Callable[[], datetime] = _now,
                 progress: ProgressFor | None = None) -> None:
        self.flows = {flow.name: flow for flow in flows}
        self.on_outcome, self.clock, self.progress = on_outcome, clock, progress
        self.running: dict[str, asyncio.Task[Outcome]] = {}  # the latest run of each flow (by name)
        self.loops: dict[str, asyncio.Task[None]] = {}  # each flow's schedule loop
        self.next_due: dict[str, datetime] = {}  # each scheduled flow's next time
        self.paused: set[str] = set()  # flows whose times pass without a run (a trigger still runs them)
        self.draining = False  # drain() was called: nothing new starts
        self.group: asyncio.TaskGroup | None = None

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            self.group = group
            for flow in self.flows.values():
                self._start(flow)
            await asyncio.Event().wait()  # until cancelled (the loops may be replaced, so not awaited)

    def replace(self, flows: Sequence[Flow]) -> tuple[list[str], list[str], list[str]]:
        """Schedule ``flows`` instead; the names (added, changed, removed)."""
        new = {flow.name: flow for flow in flows}
        added = [name for name in new if name not in self.flows]
        removed = [name for name in self.flows if name not in new]
        changed = [name for name in new if name in self.flows  # where it stands in the file is no change
                   and dataclasses.replace(new[name], line=self.flows[name].line) != self.flows[name]]
        for name in removed + changed:
            self.loops.pop(name).cancel()  # its schedule only: a run in flight is its own task
            self.next_due.pop(name, None)
        self.paused &= set(new)
        self.flows = new
        for name in added + changed:
            self._start(new[name])
        return added, changed, removed

    def is_running(self, name: str) -> bool:
        task = self.running.get(name)
        return task is not None and not task.done()

    def pause(self, name: str, paused: bool = True) -> None:
        """Stop (``paused``) or restart running ``name`` at its times; a run in flight goes on."""
        if paused:
            self.paused.add(name)
        else:
            self.paused.discard(name)

    def trigger(self, name: str, flow: Flow | None = None) -> asyncio.Task[Outcome] | None:
        """Run the flow named ``name`` now (as ``flow``, a variant of it, when given); None when a run of it is
        in flight here, or the scheduler stops. Its schedule is unchanged."""
        if self.group is None or self.draining or self.is_running(name):
            return None  # (no group: the scheduler has not started yet)
        return self._launch(flow or self.flows[name])

    async def drain(self, grace: float) -> bool:
        """Stop scheduling and wait up to ``grace`` seconds for the runs in flight; True when all finished
        (the caller cancels the rest: their journals keep what a next start resumes)."""
        self.draining = True
        for loop in self.loops.values():
            loop.cancel()
        self.next_due.clear()
        busy = [task for task in self.running.values() if not task.done()]
        if not busy:
            return True
        _, pending = await asyncio.wait(busy, timeout=grace)
        return not pending

    def _launch(self, flow: Flow) -> asyncio.Task[Outcome]:
        assert self.group is not None
        listener = self.progress(flow) if self.progress is not None else None
        task = self.group.create_task(run_flow(flow, self.on_outcome, listener), name=f"flow {flow.name}")
        self.running[flow.name] = task
        return task

    def _start(self, flow: Flow) -> None:
        assert self.group is not None
        self.loops[flow.name] = self.group.create_task(self._loop(flow), name=f"schedule {flow.name}")

    async def _loop(self, flow: Flow) -> None:
        assert self.group is not None
        due = flow.schedule.first_after(self.clock())
        while True:
            self.next_due[flow.name] = due
            await _sleep_until(due, self.clock)
            if flow.name in self.paused:
                log.info("flow %s: paused; its run at %s is skipped", flow.name, due.strftime("%Y-%m-%d %H:%M:%S UTC"))
            elif self.is_running(flow.name):
                log.warning("flow %s: still running at its next time %s; that run is skipped", flow.name,
                            due.strftime("%Y-%m-%d %H:%M:%S UTC"))
                self.on_outcome(Outcome(flow, due, skipped="running"))
            else:
                self._launch(flow)
            now = self.clock()
            due = flow.schedule.next_after(due)
            if due <= now:  # late (a long pause): skip the times already past
                due = flow.schedule.next_after(now)


async def run_forever(flows: Sequence[Flow], on_outcome: OnOutcome,
                      clock: Callable[[], datetime] = _now) -> None:
    """Run each flow at its schedule until cancelled."""
    await Scheduler(flows, on_outcome, clock).run()
